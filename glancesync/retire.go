package glancesync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// ServerChecker tells whether any server uses an image. The cmd wires Nova
// when it can; without one, the sync treats use as unknown.
type ServerChecker interface {
	// InUse reports whether a server uses the image. known=false, or an
	// error that is ErrServersUnknown, means it cannot tell, and will not
	// by asking again (no right to list every project's servers): the
	// sync then deactivates and hides instead of deleting. Any other
	// error means it could not ask now (Nova unreachable, 5xx): the
	// image's retirement is left for the next pass (an error of the
	// pass), and Nova is not asked again in this pass.
	InUse(ctx context.Context, imageID string) (inUse, known bool, err error)
}

// ServerPass is a ServerChecker that is told when a pass begins, under
// retire = delete and not in a dry run, before it is asked anything: it
// may look again for what it lacked (the cmd's Nova check reads the
// catalog again while it has no compute service).
type ServerPass interface {
	BeginPass(ctx context.Context)
}

// DefaultServersDownGrace (sync.nova_down_grace's default) is how long a
// Nova that cannot be asked (unreachable, 5xx, 429) holds back the
// retirement of images under retire = delete: past it they are deactivated and hidden (servers may
// use them: not deleted), so that a Nova this host will never reach (a
// firewall, an endpoint registered wrong) does not keep images that left
// their sources, or were superseded, active and shown for ever. Counted
// from the first failure of those in a row, on the wall clock: by the
// process (a daemon, across its reloads: KeepServersOutage) and, with
// Options.ServersOutageFile, by every sync run that shares the file (a
// daemon and --once runs, one after another).
const DefaultServersDownGrace = config.DefaultNovaDownGrace

// KeepServersOutage carries prev's memory of when its ServerChecker began
// failing to s, a Syncer built on reload to replace prev, so that a reload
// does not restart ServersDownGrace. Only from retire = delete to delete:
// Nova is asked under delete only, so an outage prev (or one before it)
// saw before a reload to keep or hide says nothing of Nova since, and
// would spend a later outage's grace at its first failure (New removes
// the record of it under keep or hide likewise).
func (s *Syncer) KeepServersOutage(prev *Syncer) {
	if prev == nil || prev == s || prev.o.Sync.Retire != "delete" || s.o.Sync.Retire != "delete" {
		return
	}
	prev.mu.Lock()
	since, last := prev.serversDownSince, prev.serversLastFailure
	prev.mu.Unlock()
	s.mu.Lock()
	s.serversDownSince, s.serversLastFailure = since, last
	s.mu.Unlock()
}

// serversFailed records a failure to ask Servers and returns since when
// they have failed in a row (recorded in Options.ServersOutageFile, with
// the failure's time). An outage whose last failure is older than
// outageStale is over (its end was not seen): this failure starts a new
// one.
func (s *Syncer) serversFailed() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	// the wall clock (no monotonic reading): the times are compared
	// with the clock of later runs, which read them from the file
	now := s.o.Now().Round(0)
	if !s.serversDownSince.IsZero() && now.Sub(s.serversLastFailure) > s.outageStale() {
		s.log.Info("Nova's outage on record saw no failure for longer than the bound: taken as over; this failure starts a new one",
			"recorded", s.serversDownSince.UTC().Format(time.RFC3339), "last_failure", s.serversLastFailure.UTC().Format(time.RFC3339), "bound", s.outageStale())
		s.serversDownSince = time.Time{}
	}
	if s.serversDownSince.IsZero() {
		s.serversDownSince = now
	}
	if now.After(s.serversLastFailure) {
		s.serversLastFailure = now
	}
	s.saveServersOutage(outageRecord{since: s.serversDownSince, last: s.serversLastFailure})
	return s.serversDownSince
}

// serversAnswered records that Servers answered (whatever it said).
func (s *Syncer) serversAnswered() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.serversDownSince.IsZero() {
		s.serversDownSince, s.serversLastFailure = time.Time{}, time.Time{}
		s.clearServersOutage()
	}
}

// serversDownLong reports since when Servers have failed to be asked, and
// whether that is ServersDownGrace or longer. A start in the future (the
// clock set back since) is taken as now.
func (s *Syncer) serversDownLong() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	since := s.serversDownSince
	if since.IsZero() {
		return since, false
	}
	now := s.o.Now().Round(0)
	if since.After(now) {
		s.log.Warn("the start of Nova's outage is in the future (this host's clock was set back): counting from now", "recorded", since.UTC().Format(time.RFC3339))
		since = now
		s.serversDownSince, s.serversLastFailure = since, since
		s.saveServersOutage(outageRecord{since: since, last: since})
	}
	return since, now.Sub(since) >= s.o.ServersDownGrace
}

// ErrServersUnknown marks a ServerChecker error that asking again cannot
// mend: the sync treats the image's use as unknown.
var ErrServersUnknown = errors.New("cannot tell which servers use images")

// imageCreated reads an image's imagetrust_created.
func imageCreated(im *Image) time.Time {
	t, _ := time.Parse(time.RFC3339, im.Props[validator.PropCreated])
	return t
}

// newer orders images by their descriptor's created time, then id, as a
// boot by tag does (validator.Trust.DecideTag): the signed created time of
// an image whose bundle is listed (to the fraction of a second the
// descriptor gives; imagetrust_created keeps whole seconds), else its
// imagetrust_created.
func (k recordKeys) newer(a, b *Image) bool {
	ta, tb := k.created(a), k.created(b)
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return a.ID > b.ID
}

// created is the created time newer orders im by.
func (k recordKeys) created(im *Image) time.Time {
	if it := k[im.ID]; it != nil && it.desc != nil {
		return it.desc.CreatedTime
	}
	return imageCreated(im)
}

// reconcile sets visibility, members and os_hidden of the mirror's images,
// and applies the retire policy to images that left every source or were
// superseded in their tag. It writes only what differs. It returns the
// VO/tag keys that have a current image once its writes are done (planned,
// with DryRun): an active, unhidden catalogue image of the mirror project,
// which a boot by tag may resolve to (removeDeadAliases).
func (s *Syncer) reconcile(ctx context.Context, ours []*Image, items []*item, present, complete map[string]bool, rp *reporter) map[string]bool {
	keys := signedKeys(items)
	// the newest bootable image of each tag supersedes the others (a
	// withheld one too: its VO's signed listing names it, and a source
	// that withholds it must not roll the tag back): an
	// image the operators blacklisted (or flagged with a value the gate
	// refuses) does not (a boot by tag falls back to the newest other,
	// which stays visible)
	newest := map[string]*Image{}
	for _, im := range ours {
		if im.Props[validator.PropAlias] != "" || im.Props[validator.PropUUID] == "" || (keys[im.ID] == nil && rp.withheld[im.ID] == nil) || im.Status != StatusActive ||
			validator.LocalBlocks(im.Props[validator.PropLocalValidity]) {
			continue
		}
		vo, tag := keys.of(im)
		k := vo + "/" + tag
		if cur := newest[k]; cur == nil || keys.newer(im, cur) {
			newest[k] = im
		}
	}
	// the members of the images the loop below ensures, listed ahead and in
	// parallel (only those not remembered from an earlier pass)
	var targets []memberTarget
	for _, im := range ours {
		if im.Props[validator.PropAlias] != "" || im.Props[validator.PropUUID] == "" {
			continue
		}
		vo, _ := keys.of(im)
		left := !present[vo+"/"+im.ID] && complete[vo]
		if im.Status == StatusQueued && left && s.o.Sync.Retire != "keep" {
			continue
		}
		if (im.Status == StatusActive || im.Status == StatusDeactivated) && im.Visibility == "shared" {
			targets = append(targets, memberTarget{id: im.ID, vo: vo})
		}
	}
	listed := s.listMembers(ctx, targets)
	// whether servers use the images retire = delete is to retire, asked
	// ahead and in parallel (retire reads the answers)
	if s.o.Sync.Retire == "delete" && s.o.Servers != nil && !s.o.DryRun {
		var ask []string
		for _, im := range ours {
			if im.Props[validator.PropAlias] != "" || im.Props[validator.PropUUID] == "" || (im.Status != StatusActive && im.Status != StatusDeactivated) {
				continue
			}
			vo, tag := keys.of(im)
			k := vo + "/" + tag
			left := !present[vo+"/"+im.ID] && complete[vo]
			superseded := newest[k] != nil && newest[k].ID != im.ID && keys.newer(newest[k], im)
			if left || superseded {
				ask = append(ask, im.ID)
			}
		}
		s.askServers(ctx, ask, rp)
	}
	shown := map[string]bool{}
	for _, im := range ours {
		if im.Props[validator.PropAlias] != "" || im.Props[validator.PropUUID] == "" {
			continue
		}
		vo, tag := keys.of(im)
		if s.reconcileImage(ctx, im, vo, tag, keys, newest, listed, present, complete, rp) {
			shown[vo+"/"+tag] = true
		}
	}
	return shown
}

// recordKeys maps each valid bundle's uuid to its item, whose verified
// descriptor names the VO and tag of its image (of); the catalogue images
// it holds are those of valid bundles.
type recordKeys map[string]*item

func signedKeys(items []*item) recordKeys {
	keys := recordKeys{}
	for _, it := range items {
		if it.refused == "" {
			keys[it.desc.UUID] = it
		}
	}
	return keys
}

// of returns the VO and tag of a catalogue image: its valid bundle's, when
// a source lists one, not the copies in the image's properties, which
// anyone who can write the mirror project's images may have changed and a
// failed repair (repairRecord) may not have restored; otherwise the
// properties, all there is of an image whose bundle is gone.
func (k recordKeys) of(im *Image) (vo, tag string) {
	if it := k[im.ID]; it != nil {
		return it.desc.VO, it.desc.Tag
	}
	return im.Props[validator.PropVO], im.Props[validator.PropTag]
}

// reconcileImage is reconcile's work on one catalogue image of VO vo and
// tag tag (recordKeys.of). It returns whether the image is current once it
// is done: active and unhidden.
func (s *Syncer) reconcileImage(ctx context.Context, im *Image, vo, tag string, keys recordKeys, newest map[string]*Image, listed map[string]memberList,
	present, complete map[string]bool, rp *reporter) bool {
	k := vo + "/" + tag
	left := !present[vo+"/"+im.ID] && complete[vo]
	shown := im.Status == StatusActive && !im.Hidden
	if im.Status == StatusQueued && left && s.o.Sync.Retire != "keep" {
		// data-less (bytes refused, or never complete) and its bundle
		// gone: nothing boots it, nothing will complete it
		s.retire(ctx, im, "left every source before its bytes were mirrored", Outcome{ID: im.ID, VO: vo, Tag: tag}, rp)
		return false
	}
	if im.Status != StatusActive && im.Status != StatusDeactivated {
		return false
	}
	superseded := newest[k] != nil && newest[k].ID != im.ID && keys.newer(newest[k], im)
	o := Outcome{ID: im.ID, VO: vo, Tag: tag}
	if clear := clearRefusalOps(im); len(clear) > 0 {
		// its bytes are mirrored: a refusal recorded while it was
		// queued says nothing any more
		s.apply(ctx, im.ID, clear, o, ActionUpdate, "refusal record removed: the image has its data", rp)
	}
	// members first, for every shared image of ours (a retired, hidden
	// one still boots by uuid): a project taken out of the VO's list loses
	// them all. Glance keeps no members for an image that is not shared
	// (it answers 403 to their listing); one made shared below gets its
	// members then.
	if im.Visibility == "shared" {
		s.ensureMembers(ctx, im, vo, listed, o, rp)
	}
	if (left || superseded) && s.o.Sync.Retire != "keep" {
		why := "left every source"
		if !left {
			why = "superseded by " + newest[k].ID
		}
		// retired whatever it looked like (a deactivated image too: its
		// crl-hold mark goes), current only if a write failed
		retired := s.retire(ctx, im, why, o, rp)
		return shown && !retired
	}
	if keys[im.ID] == nil || im.Status != StatusActive {
		return shown
	}
	// A current image: visible as its VO says.
	var ops []PatchOp
	unhide := im.Hidden && !superseded && !left
	if unhide {
		ops = append(ops, PatchOp{Name: "os_hidden", Value: false})
	}
	want := s.o.VOs[vo].Visibility
	if want != "" && im.Visibility != want {
		ops = append(ops, PatchOp{Name: "visibility", Value: want})
	}
	if len(ops) == 0 {
		return shown
	}
	applied, gone := s.applyGone(ctx, im.ID, ops, o, ActionUpdate, fmt.Sprintf("hidden=false visibility=%s", want), rp)
	if gone {
		return false
	}
	if applied {
		shown = shown || unhide
		if want == "shared" && im.Visibility != "shared" {
			s.ensureMembers(ctx, im, vo, nil, o, rp)
		}
	}
	return shown
}

// apply writes ops to the image id (planned, with DryRun) and records
// the outcome o as action with detail. It returns whether they were
// written: false when the write failed (an error of the pass) or the image
// is gone (applyGone).
func (s *Syncer) apply(ctx context.Context, id string, ops []PatchOp, o Outcome, action, detail string, rp *reporter) bool {
	applied, _ := s.applyGone(ctx, id, ops, o, action, detail, rp)
	return applied
}

// applyGone is apply that also reports whether the image is gone: deleted
// since the pass listed it (Glance's 404: an operator, another sync, the
// CRL job). That is no error of the pass (logged at WARN, outcome
// skipped): there is nothing left to write, and the next listing has no
// such image.
func (s *Syncer) applyGone(ctx context.Context, id string, ops []PatchOp, o Outcome, action, detail string, rp *reporter) (applied, gone bool) {
	o.Action, o.Detail = action, detail
	if s.o.DryRun {
		fmt.Fprintf(s.o.Plan, "%-10s %s %s/%s %s\n", o.Action, o.ID, o.VO, o.Tag, o.Detail)
		rp.add(o)
		return true, false
	}
	if err := s.o.Glance.Patch(ctx, id, ops); errors.Is(err, ErrNotFound) {
		s.log.Warn("image gone since the listing (deleted meanwhile): not updated", "image", id, "action", action, "detail", detail)
		o.Action, o.Detail = ActionSkipped, "gone since the listing: "+action+" not needed"
		rp.add(o)
		return false, true
	} else if err != nil {
		s.log.Error("patch failed", "image", id, "err", err)
		s.m.Errors.Inc()
		rp.fail(id)
		o.Action, o.Detail = ActionFailed, err.Error()
		rp.add(o)
		return false, false
	}
	s.log.Info("image updated", "image", id, "action", action, "detail", detail)
	rp.add(o)
	return true, false
}

// retire applies the retire policy (hide or delete) to one image. It
// returns whether the image is retired once it is done (planned, with
// DryRun): hidden, deactivated or deleted; false when a write failed and
// left it active and unhidden.
func (s *Syncer) retire(ctx context.Context, im *Image, why string, o Outcome, rp *reporter) bool {
	if s.o.Sync.Retire == "hide" {
		if !im.Hidden {
			applied, gone := s.applyGone(ctx, im.ID, []PatchOp{{Name: "os_hidden", Value: true}}, o, ActionHide, why, rp)
			if gone {
				return true // nothing shows it
			}
			if !applied {
				return false
			}
			s.m.Retired.WithLabelValues("hide").Inc()
		}
		return true
	}
	// delete: only what no server uses; otherwise deactivate and hide.
	inUse, known := true, false
	if im.Status == StatusQueued {
		inUse, known = false, true // a data-less image boots nothing
	} else if s.o.Servers != nil && !s.o.DryRun {
		a, asked := rp.serversAnswer(im.ID)
		if !asked && rp.serversDown() == nil {
			// not asked ahead (askServers): asked now
			a = s.askServer(ctx, im.ID, rp)
			asked = true
		}
		if !asked {
			// Nova could not be asked earlier in the pass
			if _, long := s.serversDownLong(); !long {
				return s.retireDeferred(im, why, o, rp.serversDown(), rp)
			}
			// past the grace: deactivated and hidden, below
		} else {
			u, k, err := a.inUse, a.known, a.err
			switch {
			case errors.Is(err, ErrServersUnknown):
				s.log.Warn("cannot tell whether servers use the image", "image", im.ID, "err", err)
			case err != nil:
				if ctx.Err() != nil {
					return false // stopping
				}
				// Nova unreachable: neither deleted nor deactivated on
				// a guess, and Nova not asked again in this pass (each
				// ask of a Nova that hangs may take minutes); for
				// ServersDownGrace at most. Told once a pass: the
				// questions asked at once (sync.parallel) may all
				// have failed.
				since, long := s.serversDownLong()
				first := rp.tellServersDown()
				if !long {
					if first {
						s.log.Error("cannot ask Nova whether servers use images: retiring them (retire = delete) is left for the next pass", "err", err,
							"failing_since", since.UTC().Format(time.RFC3339), "deactivate_after", since.Add(s.o.ServersDownGrace).UTC().Format(time.RFC3339))
					}
					return s.retireDeferred(im, why, o, err, rp)
				}
				if first {
					s.m.Errors.Inc() // once a pass: Nova is still down
					s.log.Error("cannot ask Nova whether servers use images, for longer than the grace: the images to retire are deactivated and hidden, not deleted, until it answers", "err", err,
						"failing_since", since.UTC().Format(time.RFC3339), "grace", s.o.ServersDownGrace)
				}
			default:
				inUse, known = u, k
			}
		}
	}
	if known && !inUse {
		o.Action, o.Detail = ActionRetireDel, why
		if s.o.DryRun {
			fmt.Fprintf(s.o.Plan, "%-10s %s %s/%s %s\n", o.Action, o.ID, o.VO, o.Tag, o.Detail)
			rp.add(o)
			return true
		}
		if err := s.o.Glance.Delete(ctx, im.ID); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Error("delete failed", "image", im.ID, "err", err)
			rp.fail(im.ID)
			return false
		}
		s.log.Info("image retired (deleted)", "image", im.ID, "why", why)
		s.m.Retired.WithLabelValues("delete").Inc()
		rp.add(o)
		return true
	}
	if im.Status == StatusActive {
		if s.o.DryRun {
			fmt.Fprintf(s.o.Plan, "%-10s %s %s/%s %s\n", ActionDeactivate, o.ID, o.VO, o.Tag, why)
		} else if err := s.o.Glance.Deactivate(ctx, im.ID); errors.Is(err, ErrNotFound) {
			// deleted since the listing: nothing boots it, no error
			s.log.Warn("image gone since the listing (deleted meanwhile): not deactivated", "image", im.ID, "why", why)
			o.Action, o.Detail = ActionSkipped, "gone since the listing: "+ActionDeactivate+" not needed"
			rp.add(o)
			return true
		} else if err != nil {
			s.log.Error("deactivate failed", "image", im.ID, "err", err)
			rp.fail(im.ID)
			return false
		}
		s.m.Retired.WithLabelValues("deactivate").Inc()
	}
	// Hidden, and no crl-hold mark: the CRL job, if it deactivated the
	// image for a hold, must not reactivate it when the hold is lifted.
	// Both are decided by Patch from its own read, not from this pass's
	// listing: the job may have deactivated the image and marked it since
	// (the image was active in the listing: the Deactivate above was then
	// a no-op), and a mark left would reactivate a retired image later.
	ops := []PatchOp{{Name: "os_hidden", Value: true}, {Name: crl.PropDeactivatedBy, Remove: true, IfValue: crl.DeactivatedByHold}}
	if !im.Hidden || im.Status == StatusActive || im.Props[crl.PropDeactivatedBy] == crl.DeactivatedByHold {
		s.apply(ctx, im.ID, ops, o, ActionDeactivate, why+" (servers may use it: deactivated and hidden, not deleted)", rp)
	}
	return true // deactivated (or not active to begin with)
}

// askServers asks Servers whether servers use each image of ids (those
// retire = delete is to retire in this pass), ahead of reconcile's loop, and
// keeps the answers in rp for retire. Nova's API takes one image per
// question (GET /servers?image=ID: a repeated image= keeps the last), and
// the listing that names every server's image (/servers/detail) needs a
// right the mirror user is not given (etc/nova/policy-retire-delete.yaml),
// so a pass asks once per image: the first alone (a Nova that can't be
// asked is asked once in the pass, as before), the others on up to
// sync.parallel at once, so that a slow Nova (each answer within
// novaTimeout) holds the pass for a fraction of the sum of its answers.
// Once one can't be asked now (an error that is not ErrServersUnknown)
// no further question is asked: rp.serversDown, and retire leaves the
// images not asked for the next pass.
func (s *Syncer) askServers(ctx context.Context, ids []string, rp *reporter) {
	ask := func(id string) bool {
		if ctx.Err() != nil || rp.serversDown() != nil {
			return false
		}
		a := s.askServer(ctx, id, rp)
		return a.err == nil || errors.Is(a.err, ErrServersUnknown)
	}
	if len(ids) == 0 || !ask(ids[0]) {
		return
	}
	rest := ids[1:]
	parallel(s.o.Sync.Parallel, len(rest), func(i int) bool { return ask(rest[i]) })
}

// askServer asks Servers whether servers use the image id, keeps the
// answer in rp, and counts Nova's outage as the answers come (not in
// reconcile's order): one that can't be asked now is an outage
// (serversFailed, rp.serversDown: not asked again in the pass), any
// answer ends it, unless a question of the pass failed already (answers
// of questions asked at the same time do not end the outage the pass
// saw).
func (s *Syncer) askServer(ctx context.Context, id string, rp *reporter) serversAnswer {
	u, k, err := s.o.Servers.InUse(ctx, id)
	a := serversAnswer{inUse: u, known: k, err: err}
	rp.setServersAnswer(id, a)
	if err != nil && !errors.Is(err, ErrServersUnknown) {
		if ctx.Err() == nil {
			rp.outageMu.Lock()
			rp.setServersDown(err)
			s.serversFailed()
			rp.outageMu.Unlock()
		}
		return a
	}
	rp.outageMu.Lock()
	defer rp.outageMu.Unlock()
	if rp.serversDown() == nil {
		afterAnswerChecked()
		s.serversAnswered()
	}
	return a
}

// afterAnswerChecked runs between an answer's check that the pass saw no
// failure of Nova and its ending of the outage (tests hold it there, so
// that a failure comes in between).
var afterAnswerChecked = func() {}

// retireDeferred leaves im, which retire = delete would retire for why, as
// it is for this pass: Nova could not be asked whether servers use it
// (err). The pass counts an error on the image (imagetrust_sync_errors_total,
// imagetrust_sync_failing_images, Report.Failed) and its outcome is failed;
// the next pass retires it. It returns false: not retired.
func (s *Syncer) retireDeferred(im *Image, why string, o Outcome, err error, rp *reporter) bool {
	s.log.Warn("image not retired in this pass: Nova cannot be asked whether servers use it", "image", im.ID, "why", why)
	s.m.Errors.Inc()
	rp.fail(im.ID)
	o.Action, o.Detail = ActionFailed, fmt.Sprintf("%s: not retired in this pass (retire = delete): servers using it cannot be asked: %v", why, err)
	rp.add(o)
	return false
}
