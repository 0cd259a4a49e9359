package glancesync

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/imagetrust/imagetrust/internal/oserr"
)

// DefaultMembersRecheck is how long, by default, the members a Syncer read
// from Glance (and then made the VO's projects) are trusted without reading
// them again: an operator's out-of-band change to an image's members is
// repaired at most this long after it was made (or at the next start or
// reload of the sync, which forgets everything).
const DefaultMembersRecheck = 6 * time.Hour

// membersParallel bounds the member listings a pass makes at once.
const membersParallel = 8

// memberMemo is what a Syncer remembers of one image's members.
type memberMemo struct {
	// have is the image's members as the last listing and the writes
	// that followed it left them: always the configured projects, since a
	// failed write forgets the image.
	have []string
	// cfg is the VO's configured project list they were made to match;
	// another list (the configuration reloaded or changed) reads them again.
	cfg []string
	// at is when they were read from Glance.
	at time.Time
}

// memberTarget is an image whose members a pass will ensure.
type memberTarget struct {
	id, vo string
}

// memberList is one listing of an image's members made ahead of its use.
type memberList struct {
	have []string
	err  error
	at   time.Time
}

// rememberedMembers returns the members remembered for image id when they
// may be used instead of a listing: remembered for the same configured
// project list, less than MembersRecheck ago.
func (s *Syncer) rememberedMembers(id string, cfg []string, now time.Time) ([]string, bool) {
	if s.o.MembersRecheck < 0 {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[id]
	if !ok || !slices.Equal(m.cfg, cfg) || now.Before(m.at) || now.Sub(m.at) >= s.o.MembersRecheck {
		return nil, false
	}
	return m.have, true
}

func (s *Syncer) rememberMembers(id string, have, cfg []string, at time.Time) {
	if s.o.MembersRecheck < 0 {
		return
	}
	s.mu.Lock()
	s.members[id] = memberMemo{have: have, cfg: slices.Clone(cfg), at: at}
	s.mu.Unlock()
}

func (s *Syncer) forgetMembers(id string) {
	s.mu.Lock()
	delete(s.members, id)
	s.mu.Unlock()
}

// pruneMembers forgets the images that are no longer in the mirror project.
func (s *Syncer) pruneMembers(ours []*Image) {
	keep := make(map[string]bool, len(ours))
	for _, im := range ours {
		keep[im.ID] = true
	}
	s.mu.Lock()
	for id := range s.members {
		if !keep[id] {
			delete(s.members, id)
		}
	}
	s.mu.Unlock()
}

// listMembers lists, membersParallel at once, the members of the targets
// ensureMembers will need to read (those of shared VOs not remembered), so
// that it does not read them one after the other. The listings are only
// reads: every write stays in ensureMembers, in the pass's order.
func (s *Syncer) listMembers(ctx context.Context, targets []memberTarget) map[string]memberList {
	if s.o.DryRun {
		return nil
	}
	now := s.o.Now()
	var ids []string
	seen := map[string]bool{}
	for _, t := range targets {
		cfg := s.o.VOs[t.vo]
		if cfg.Visibility != "shared" || seen[t.id] {
			continue
		}
		seen[t.id] = true
		if _, ok := s.rememberedMembers(t.id, cfg.Projects, now); !ok {
			ids = append(ids, t.id)
		}
	}
	out := make(map[string]memberList, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, membersParallel)
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			at := s.o.Now()
			have, err := s.o.Glance.Members(ctx, id)
			mu.Lock()
			out[id] = memberList{have: have, err: err, at: at}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// ensureMembers makes a shared image's members the VO's projects: the
// missing ones added, and those no longer listed removed (a project taken
// out of [vo.X] projects loses the image). The members are read from Glance
// (from listed, when listMembers read them) unless remembered from an
// earlier pass (rememberedMembers); any error forgets them, so that the
// next pass reads them again.
func (s *Syncer) ensureMembers(ctx context.Context, im *Image, vo string, listed map[string]memberList, o Outcome, rp *reporter) {
	cfg := s.o.VOs[vo]
	if cfg.Visibility != "shared" || s.o.DryRun {
		return
	}
	have, remembered := s.rememberedMembers(im.ID, cfg.Projects, s.o.Now())
	var at time.Time
	if !remembered {
		l, ok := listed[im.ID]
		if !ok {
			l.at = s.o.Now()
			l.have, l.err = s.o.Glance.Members(ctx, im.ID)
		}
		if l.err != nil {
			s.forgetMembers(im.ID)
			s.memberFailed(im.ID, o, "list members", "", oserr.Capped(l.err), rp)
			return
		}
		have, at = l.have, l.at
	}
	failed := false
	for _, p := range cfg.Projects {
		if contains(have, p) {
			continue
		}
		if err := s.o.Glance.AddMember(ctx, im.ID, p); err != nil {
			// a limit (ErrOverQuota: an operator has one to raise), or
			// any other refusal (a policy, a 5xx): the project cannot
			// boot the image either way
			s.memberFailed(im.ID, o, "add member", p, oserr.Capped(err), rp)
			failed = true
			continue
		}
		o.Action, o.Detail = ActionUpdate, "member "+p
		rp.add(o)
	}
	for _, p := range have {
		if contains(cfg.Projects, p) {
			continue
		}
		if err := s.o.Glance.RemoveMember(ctx, im.ID, p); errors.Is(err, ErrNotFound) {
			// gone since the listing (an operator, another sync): what
			// the pass wanted is true, and not an error of the pass
			s.log.Info("member already gone", "image", im.ID, "project", p)
			continue
		} else if err != nil {
			s.memberFailed(im.ID, o, "remove member", p, oserr.Capped(err), rp)
			failed = true
			continue
		}
		s.log.Info("member removed", "image", im.ID, "project", p)
		o.Action, o.Detail = ActionUpdate, "member removed "+p
		rp.add(o)
	}
	switch {
	case failed:
		s.forgetMembers(im.ID)
	case !remembered:
		// every write done: the members are the configured projects
		set := slices.Clone(cfg.Projects)
		slices.Sort(set)
		s.rememberMembers(im.ID, slices.Compact(set), cfg.Projects, at)
	}
}

// memberFailed reports a members operation (op: "add member", "remove
// member" of project, "list members") that failed on image id: logged at
// ERROR, a failed outcome in the report naming it ("add member P: ..."),
// an error of the pass (Report.Errors and Failed,
// imagetrust_sync_errors_total and imagetrust_sync_failing_images), so
// that /metrics and `sync --once`'s exit status show it. The image's
// verification state and record are left as they are: its members say
// who may boot it, not whether it is valid; the next pass tries again.
func (s *Syncer) memberFailed(id string, o Outcome, op, project string, err error, rp *reporter) {
	what := op
	attrs := []any{"image", id}
	if op != "list members" {
		what += " " + project
		attrs = append(attrs, "project", project)
	}
	s.log.Error(op+" failed", append(attrs, "err", err)...)
	s.m.Errors.Inc()
	rp.fail(id)
	o.Action, o.Detail = ActionFailed, what+": "+err.Error()
	rp.add(o)
}
