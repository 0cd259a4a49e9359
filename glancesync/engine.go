package glancesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// Options configure a Syncer.
type Options struct {
	// Sync is the [sync] section (parallel, retire, stale_after ...).
	Sync config.Sync
	// VOs give each VO's visibility and projects.
	VOs map[string]config.VO
	// Trust judges the bundles.
	Trust *validator.Trust
	// Glance is the catalogue.
	Glance Glance
	// MirrorProject is the project id of the sync's credentials: the owner
	// of every image it creates.
	MirrorProject string
	Sources       []Source
	Logger        *slog.Logger
	// Metrics (nil: a private, unregistered set).
	Metrics *Metrics
	// Servers tells whether servers use an image (retire = delete); nil:
	// unknown, so such images are deactivated and hidden instead.
	Servers ServerChecker
	// ServersDownGrace is how long Servers may fail to be asked (Nova
	// unreachable, 5xx) before the images retire = delete would retire
	// are deactivated and hidden, as for a Nova that won't tell, instead
	// of left as they are for the next pass (0: Sync.NovaDownGrace, else
	// DefaultServersDownGrace).
	ServersDownGrace time.Duration
	// ServersOutageFile ("": none) keeps since when Servers have failed
	// to be asked across runs: read by New, written when an outage
	// starts, removed when Servers answer again (and by New when its
	// recorded start is unreadable or in the future: an outage is then
	// counted from its next failure). Not used with
	// DryRun. Whoever sets it keeps two Syncers of different processes
	// from sharing it at once (the cmd's sync.lock_file).
	ServersOutageFile string
	// ListingStateFile ("": none) keeps, per VO with signed listings, the
	// highest listing serial accepted (and its document's digest), so that
	// a listing rolled back is refused across runs too: read by New (an
	// unreadable file is an error), written when a higher serial is
	// accepted. Not written with DryRun. Shared as ServersOutageFile is.
	ListingStateFile string
	// ListingRereadWait is how long after reading a signed listing whose
	// signature does not verify the sync reads the pair again, once, and
	// judges that second reading instead (a pair read between the writes
	// of its two files; 0: DefaultListingRereadWait). At most one wait a
	// source a pass.
	ListingRereadWait time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// DryRun plans and prints the plan to Plan, and writes nothing.
	DryRun bool
	Plan   io.Writer
	// ImportPoll is the longest interval of status polls while Glance
	// imports (default 500ms; the first poll comes after 100ms and the
	// interval doubles up to it); ImportTimeout bounds the wait (default 30m).
	ImportPoll    time.Duration
	ImportTimeout time.Duration
	// ResumeAfter is how long a queued image this pass did not create is
	// left alone before the pass stages it (default 2m): long enough for the
	// sync that created it to start its stage.
	ResumeAfter time.Duration
	// MembersRecheck is how long the members of a shared image, once read
	// from Glance and made the VO's projects, are remembered and not read
	// again (default DefaultMembersRecheck, 6h; negative: read every pass).
	// The memory is the process's: a new Syncer (a start, a reload) reads
	// them all again, and so does a change of the VO's project list, and
	// any error reading or writing an image's members forgets that image.
	MembersRecheck time.Duration
}

// Syncer mirrors verified bundles into Glance. Run may be called again and
// again; it is not safe to call Run concurrently on one Syncer.
type Syncer struct {
	o   Options
	log *slog.Logger
	m   *Metrics

	mu sync.Mutex
	// spent remembers ids this process deleted or found deleted, so that
	// later passes report them without asking Glance again.
	spent map[string]string
	// left remembers the images this process left queued because the bytes
	// served for them did not verify (ended early, ran long, hashed wrong).
	// The back-off is recorded on the image too (backoff.go), for every
	// process to see; this memory serves when it could not be recorded.
	left map[string]leftQueued
	// members remembers, per image id, the members the sync last read and
	// set, so that steady passes do not list them again (MembersRecheck).
	members map[string]memberMemo
	// revokedSeen holds the revoked bundles (location and uuid) the last
	// pass listed: each is logged at WARN the first time this Syncer lists
	// it, at INFO on later passes (refuse).
	revokedSeen map[string]bool
	// revokedPass collects them during a pass (collect).
	revokedPass map[string]bool
	// squatSeen holds the catalogue images this Syncer found squatting
	// another VO's bound uuid: each is logged at ERROR the first time
	// (stopSquat); under mu
	squatSeen map[string]bool
	// droppedSeen holds the bundles (uuids) whose refused free-form
	// properties (image_properties) were logged at WARN: once per bundle
	// per process (noteDropped); under mu
	droppedSeen map[string]bool
	// serversDownSince is when Servers first failed to be asked, of the
	// failures in a row (zero: it answered last), on the wall clock
	// (Options.ServersOutageFile); under mu
	serversDownSince time.Time
	// serversLastFailure is when Servers last failed to be asked, of
	// those failures (zero with serversDownSince); under mu
	serversLastFailure time.Time
	// skew is how far Glance's clock is ahead of Options.Now (negative:
	// behind), read at the start of each pass (measureSkew).
	skew atomic.Int64
	// listingBase is, per VO with signed listings, the highest serial
	// accepted (Options.ListingStateFile); under mu
	listingBase map[string]validator.ListingBaseline
}

// skewTolerance is the clock difference measureSkew ignores: Glance's
// clock is read from a Date field, to the second.
const skewTolerance = 2 * time.Second

// skewWarn is the clock difference measureSkew logs a warning of.
const skewWarn = time.Minute

// measureSkew reads Glance's clock and keeps how far it is from
// Options.Now, for glanceNow. Unreadable: the last difference read stays.
func (s *Syncer) measureSkew(ctx context.Context) {
	gt, err := s.o.Glance.Time(ctx)
	if err != nil {
		s.log.Warn("cannot read Glance's clock; ages of images are measured with the last difference read", "err", err, "glance_ahead", time.Duration(s.skew.Load()))
		return
	}
	d := gt.Sub(s.o.Now())
	if d.Abs() < skewTolerance {
		d = 0
	}
	if d.Abs() >= skewWarn {
		s.log.Warn("this host's clock and Glance's differ: an image is reclaimed only once stale_after has passed on both; fix NTP", "glance_ahead", d.Round(time.Second))
	}
	s.skew.Store(int64(d))
}

// glanceNow is the time now on Glance's clock (measureSkew), the clock of
// an image's created_at and updated_at.
func (s *Syncer) glanceNow() time.Time {
	return s.o.Now().Add(time.Duration(s.skew.Load()))
}

// stale reports whether an image found queued-and-staging, saving or
// importing has been so for longer than sync.stale_after, and may be
// reclaimed: deleted, which spends its uuid for good. Both clocks must say
// so, this host's and Glance's (which stamped updated_at): measured with
// this host's alone, a clock a couple of hours fast would delete an image
// another sync is streaming right now.
func (s *Syncer) stale(im *Image) bool {
	after := s.o.Sync.StaleAfter.Duration
	return s.o.Now().Sub(im.UpdatedAt) > after && s.glanceNow().Sub(im.UpdatedAt) > after
}

// stageLost reports whether an image found uploading with no size (a stage
// not completed) has been so for longer than any sync's transfer of size
// bytes may last (transferLimit): no stream is still feeding it, and Glance
// will not return it to queued by itself. Both clocks must say so, as for
// stale.
func (s *Syncer) stageLost(im *Image, size int64) bool {
	bound := s.transferLimit(size)
	return s.o.Now().Sub(im.UpdatedAt) > bound && s.glanceNow().Sub(im.UpdatedAt) > bound
}

// leftQueued is an image left queued, data-less, after a refused stream.
type leftQueued struct {
	at     time.Time
	reason string
	why    string
	// wait is how long after at the image is retried: ResumeAfter, doubled
	// with each refusal in a row up to maxRefusedBackoff.
	wait time.Duration
	n    int
	// recorded: the refusal was written on the image (recordRefusal).
	recorded bool
}

// maxRefusedBackoff bounds the wait before an image whose bytes were
// refused is downloaded again (unless ResumeAfter is longer).
const maxRefusedBackoff = 6 * time.Hour

// markLeft records a refusal of the bytes of image id (detail: what did not
// match), the refusal after prior ones in a row (those this process
// remembers, or those recorded on the image, whichever are more), and
// returns the refusal's number in the row, the wait before the next try
// and the refusal's text.
func (s *Syncer) markLeft(id string, at time.Time, reason, detail string, prior int) (int, time.Duration, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.left[id]
	l.n = max(l.n, prior) + 1
	l.at, l.reason, l.recorded = at, reason, false
	l.wait = s.backoffFor(l.n)
	l.why = fmt.Sprintf("%s; left queued without data, retried after %s (refusal %d in a row)", detail, l.wait, l.n)
	s.left[id] = l
	return l.n, l.wait, l.why
}

// markRecorded notes that the refusal of image id is recorded on it.
func (s *Syncer) markRecorded(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.left[id]; ok {
		l.recorded = true
		s.left[id] = l
	}
}

func (s *Syncer) leftSince(id string) (leftQueued, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.left[id]
	return l, ok
}

func (s *Syncer) forgetLeft(id string) {
	s.mu.Lock()
	delete(s.left, id)
	s.mu.Unlock()
}

func (s *Syncer) markSpent(id, why string) {
	s.mu.Lock()
	s.spent[id] = why
	s.mu.Unlock()
}

func (s *Syncer) spentWhy(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.spent[id]
	return w, ok
}

// New checks the options and returns a Syncer.
func New(o Options) (*Syncer, error) {
	if o.Trust == nil || o.Glance == nil {
		return nil, errors.New("glancesync: Trust and Glance are required")
	}
	if o.MirrorProject == "" {
		return nil, errors.New("glancesync: the mirror project is unknown")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Plan == nil {
		o.Plan = io.Discard
	}
	if o.ServersDownGrace <= 0 {
		o.ServersDownGrace = o.Sync.NovaDownGrace.Duration
	}
	if o.ServersDownGrace <= 0 {
		o.ServersDownGrace = DefaultServersDownGrace
	}
	if o.ImportPoll <= 0 {
		o.ImportPoll = 500 * time.Millisecond
	}
	if o.ImportTimeout <= 0 {
		o.ImportTimeout = 30 * time.Minute
	}
	if o.ResumeAfter < 0 {
		o.ResumeAfter = 0
	} else if o.ResumeAfter == 0 {
		o.ResumeAfter = 2 * time.Minute
	}
	if o.MembersRecheck == 0 {
		o.MembersRecheck = DefaultMembersRecheck
	}
	if o.Sync.Parallel <= 0 {
		o.Sync.Parallel = 2
	}
	if o.Sync.TransferMinRateKiB <= 0 {
		o.Sync.TransferMinRateKiB = config.DefaultTransferMinRateKiB
	}
	if o.Sync.TransferSlack.Duration <= 0 {
		o.Sync.TransferSlack.Duration = config.DefaultTransferSlack
	}
	if o.Sync.StaleAfter.Duration <= 0 {
		o.Sync.StaleAfter.Duration = 2 * time.Hour
	}
	switch o.Sync.Retire {
	case "":
		o.Sync.Retire = "hide"
	case "keep", "hide", "delete":
	default:
		return nil, fmt.Errorf("glancesync: retire policy %q: use keep, hide or delete", o.Sync.Retire)
	}
	if o.DryRun {
		o.ServersOutageFile = "" // a dry run writes nothing (and asks no Nova)
	}
	s := &Syncer{o: o, log: o.Logger, m: o.Metrics, spent: map[string]string{}, left: map[string]leftQueued{}, members: map[string]memberMemo{}, revokedSeen: map[string]bool{},
		droppedSeen: map[string]bool{}, squatSeen: map[string]bool{}}
	for vo := range o.VOs {
		s.m.DroppedProps.WithLabelValues(vo) // at 0 from the start, for increase()
	}
	s.labelListingVOs()
	s.loadServersOutage()
	if err := s.loadListingBase(); err != nil {
		return nil, fmt.Errorf("glancesync: %w", err)
	}
	return s, nil
}

// Outcome is what a pass did with one bundle or image.
type Outcome struct {
	ID       string `json:"id"`
	VO       string `json:"vo,omitempty"`
	Tag      string `json:"tag,omitempty"`
	Location string `json:"location,omitempty"`
	Action   string `json:"action"`
	Reason   string `json:"reason,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Report is the result of one pass.
type Report struct {
	Outcomes []Outcome `json:"outcomes"`
	// Errors counts operational failures (the pass should be retried):
	// those of sources (SourceErrors) and those of images (Failed).
	Errors int `json:"errors"`
	// SourceErrors counts the sources that could not be listed: the pass
	// did not see what they publish (nothing of their VOs was mirrored
	// anew or retired).
	SourceErrors int `json:"source_errors,omitempty"`
	// EmptySources counts the sources that listed without error but
	// found no bundle (an unmounted mount point, an emptied index): the
	// pass retired nothing of their VOs, and it is not made incomplete.
	EmptySources int `json:"empty_sources,omitempty"`
	// Empty names those sources (Source.Name), in the configuration's
	// order.
	Empty []string `json:"empty,omitempty"`
	// Vanished are the VOs no source listed a bundle for while each of
	// their sources listed others (and listed cleanly), and of which the
	// mirror project holds active images: every bundle of the VO withdrawn, or
	// its publisher's directory lost. The pass retired nothing of them and
	// is not made incomplete; sorted by VO.
	Vanished []VanishedVO `json:"vanished,omitempty"`
	// ListingFailed are the VOs with listing = "signed" that had no valid
	// signed listing (missing, bad signature, expired, rolled back): the
	// pass retired nothing of them and mirrored nothing new of them; not
	// made incomplete. Sorted by VO.
	ListingFailed []ListingProblem `json:"listing_failed,omitempty"`
	// Withheld are the active catalogue images that their VO's valid
	// signed listing names and no source listed: kept as they are (not
	// retired, their tag stays on them). Sorted by id.
	Withheld []WithheldImage `json:"withheld,omitempty"`
	// Failed are the images (ids; an alias not created, by its VO/tag) on
	// which an operation failed (Glance, a transfer), sorted, each once:
	// the next pass retries them.
	Failed []string `json:"failed,omitempty"`
	// Unbound counts the mirror project's active catalogue images whose
	// signed descriptor does not bind their uuid to their VO (no
	// uuid_seed), after the pass: those that stop booting when
	// trust.require_bound_uuids is turned on (unbound.go).
	Unbound int `json:"unbound_images,omitempty"`
	// Squatted counts the mirror project's catalogue images the sync
	// deactivated because they squat another VO's bound uuid
	// (imagetrust_deactivated_by=sync-uuid-squat), after the pass: each
	// waits for the operator to delete it (squat.go).
	Squatted int `json:"squatted_images,omitempty"`
}

// VanishedVO is a VO whose bundles all went away from sources that still
// list others (Report.Vanished).
type VanishedVO struct {
	VO string `json:"vo"`
	// Sources are the VO's sources (Source.Name), in the configuration's
	// order.
	Sources []string `json:"sources"`
	// Images is how many active images of the VO the mirror project holds.
	Images int `json:"images"`
}

// Complete reports whether a pass that returned no error did its whole
// work: every source listed. Operations that failed on some images
// (Failed) do not make it incomplete: one image that fails on every pass
// (an image source that does not serve it, an image Glance refuses to
// write) does not stop the others from being mirrored, retired and judged.
func (r *Report) Complete() bool { return r.SourceErrors == 0 }

// Count returns how many outcomes had action a.
func (r *Report) Count(a string) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Action == a {
			n++
		}
	}
	return n
}

// Find returns the outcomes of an image id.
func (r *Report) Find(id string) []Outcome {
	var out []Outcome
	for _, o := range r.Outcomes {
		if o.ID == id {
			out = append(out, o)
		}
	}
	return out
}

// item is one listed bundle and its verdict.
type item struct {
	b      *Bundle
	desc   *validator.Descriptor
	result *validator.Result
	record map[string]string
	// refused is the reason it will not be mirrored ("" when valid).
	refused string
	detail  string
}

type reporter struct {
	mu sync.Mutex
	r  Report
	// servers is the pass's failure to ask Nova (retire), after which it
	// is not asked again in the pass
	servers error
	// answers are Nova's answers of the pass, by image id (askServers)
	answers map[string]serversAnswer
	// serversTold: the pass logged its failure to ask Nova (retire), which
	// up to sync.parallel answers of the pass may carry
	serversTold bool
	// listings is what the pass made of the signed listings (collect)
	listings *passListings
	// withheld are the images of Report.Withheld, by id (Run)
	withheld map[string]*Image
	// outageMu makes what a question of the pass records of Nova's outage
	// one step with what it reads (askServer): an answer checked before a
	// failure of the pass and recorded after it would end the outage the
	// pass just saw. Taken before rp.mu and the Syncer's mu, never under.
	outageMu sync.Mutex
}

// tellServersDown reports whether the pass is yet to log its failure to
// ask Nova, and marks it logged: once a pass, however many of the
// questions asked at once failed.
func (rp *reporter) tellServersDown() bool {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	first := !rp.serversTold
	rp.serversTold = true
	return first
}

// serversAnswer is what ServerChecker.InUse answered for an image.
type serversAnswer struct {
	inUse, known bool
	err          error
}

func (rp *reporter) serversAnswer(id string) (serversAnswer, bool) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	a, ok := rp.answers[id]
	return a, ok
}

func (rp *reporter) setServersAnswer(id string, a serversAnswer) {
	rp.mu.Lock()
	if rp.answers == nil {
		rp.answers = map[string]serversAnswer{}
	}
	rp.answers[id] = a
	rp.mu.Unlock()
}

func (rp *reporter) serversDown() error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.servers
}

func (rp *reporter) setServersDown(err error) {
	rp.mu.Lock()
	rp.servers = err
	rp.mu.Unlock()
}

func (rp *reporter) add(o Outcome) {
	rp.mu.Lock()
	rp.r.Outcomes = append(rp.r.Outcomes, o)
	rp.mu.Unlock()
}

// fail counts an operation that failed on the image (or alias) id.
func (rp *reporter) fail(id string) {
	rp.mu.Lock()
	rp.r.Errors++
	if !slices.Contains(rp.r.Failed, id) {
		rp.r.Failed = append(rp.r.Failed, id)
		slices.Sort(rp.r.Failed)
	}
	rp.mu.Unlock()
}

// sourceEmpty counts a source that listed no bundle.
func (rp *reporter) sourceEmpty(name string) {
	rp.mu.Lock()
	rp.r.EmptySources++
	rp.r.Empty = append(rp.r.Empty, name)
	rp.mu.Unlock()
}

// sourceFailed counts a source that could not be listed.
func (rp *reporter) sourceFailed() {
	rp.mu.Lock()
	rp.r.Errors++
	rp.r.SourceErrors++
	rp.mu.Unlock()
}

// Run makes one pass: list the sources, verify, plan, and (unless DryRun)
// apply the plan to Glance. The returned error is set when the pass could
// not run at all; per-image problems are in the report.
func (s *Syncer) Run(ctx context.Context) (*Report, error) {
	start := s.o.Now()
	rp := &reporter{}
	if sp, ok := s.o.Servers.(ServerPass); ok && s.o.Sync.Retire == "delete" && !s.o.DryRun {
		sp.BeginPass(ctx)
	}
	items, present, complete, unlisted := s.collect(ctx, rp)
	if ctx.Err() != nil {
		return &rp.r, ctx.Err()
	}
	ours, err := s.o.Glance.List(ctx, s.o.MirrorProject, nil)
	if err != nil {
		s.m.Errors.Inc()
		return &rp.r, fmt.Errorf("list the mirror project's images: %w", err)
	}
	s.warnOrphans(ours)
	s.warnUnlisted(ours, unlisted, rp)
	rp.withheld = s.withheld(ours, rp.listings, rp)
	s.measureSkew(ctx)
	// by id, the mirror project's images but its aliases: those without a
	// catalogue record too, so that a bundle whose image lost its record
	// finds it (repairRecord)
	byID := map[string]*Image{}
	var aliases []*Image
	for _, im := range ours {
		if im.Props[validator.PropAlias] != "" {
			aliases = append(aliases, im)
			continue
		}
		byID[im.ID] = im
	}
	// a dry run asks too (reads only: Glance's stores and import
	// methods), so that it fails where the pass would, a wrong
	// sync.stores say, and plans as if staging
	mode := ingest{stage: true, canImport: true}
	m, err := s.ingestMode(ctx)
	if err != nil {
		s.m.Errors.Inc()
		return &rp.r, err
	}
	if !s.o.DryRun {
		mode = m
	}

	// Plan and run the per-bundle work, transfers bounded by sync.parallel.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.o.Sync.Parallel)
	current := map[string]bool{}
	newest := s.currentImages(items, byID)
	for _, it := range items {
		if it.refused != "" {
			continue
		}
		current[it.desc.UUID] = true
		im := byID[it.desc.UUID]
		it := it
		if im == nil {
			if by, ok := s.withheldAway(it, rp.withheld); ok {
				s.log.Debug("bundle superseded in its tag by a withheld image, not mirrored (retire = delete)", "image", it.desc.UUID, "vo", it.desc.VO, "tag", it.desc.Tag, "by", by)
				rp.add(s.outcome(it, ActionSkipped, "", "superseded by "+by+" in its tag (in the signed listing, withheld by the sources); with retire = delete it is not mirrored"))
				continue
			}
			if by, ok := s.retiredAway(it, newest); ok {
				s.log.Debug("bundle superseded in its tag, not mirrored (retire = delete)", "image", it.desc.UUID, "vo", it.desc.VO, "tag", it.desc.Tag, "by", by)
				rp.add(s.outcome(it, ActionSkipped, "", "superseded by "+by+" in its tag; with retire = delete it is not mirrored (its image, if it had one, was retired)"))
				continue
			}
		}
		if s.o.DryRun {
			s.planOne(it, im, rp)
			continue
		}
		if im != nil && im.Status == StatusActive && s.sameRecord(im, it) {
			s.checkActive(ctx, it, im, rp)
			continue
		}
		g.Go(func() error {
			s.mirror(gctx, it, im, mode, rp)
			return nil
		})
	}
	_ = g.Wait()
	if ctx.Err() != nil {
		return &rp.r, ctx.Err()
	}

	// Refresh what changed, then visibility, hiding and retiring.
	if !s.o.DryRun {
		if ours, err = s.o.Glance.List(ctx, s.o.MirrorProject, nil); err != nil {
			s.m.Errors.Inc()
			return &rp.r, fmt.Errorf("list the mirror project's images: %w", err)
		}
		s.pruneMembers(ours)
	}
	rp.r.Unbound = s.countUnbound(ours)
	rp.r.Squatted = s.countSquatted(ours)
	shown := s.reconcile(ctx, ours, items, present, complete, rp)
	if s.aliasesOn() {
		var live map[string]bool // VO/tag with an active image; nil: plan them all
		if !s.o.DryRun {
			live = liveTags(ours, items)
		}
		kept := s.ensureAliases(ctx, items, aliases, live, rp)
		s.removeDeadAliases(ctx, items, kept, complete, shown, rp)
	} else {
		s.removeAliases(ctx, aliases, complete, rp)
	}
	s.m.Pass.Observe(s.o.Now().Sub(start).Seconds())
	if !s.o.DryRun && ctx.Err() == nil {
		// a pass that ran to its end: images that failed in it are
		// counted, and do not make it unsuccessful; a source that could
		// not be listed does (Report.Complete)
		s.m.FailingImages.Set(float64(len(rp.r.Failed)))
		s.m.EmptySources.Set(float64(rp.r.EmptySources))
		s.m.VanishedVOs.Set(float64(len(rp.r.Vanished)))
		s.m.UnboundImages.Set(float64(rp.r.Unbound))
		s.m.SquattedImages.Set(float64(rp.r.Squatted))
		s.m.WithheldImages.Set(float64(len(rp.r.Withheld)))
		s.m.ListingFailedVOs.Set(float64(len(rp.r.ListingFailed)))
		s.setListingFailures(rp.r.ListingFailed)
		if rp.r.Complete() {
			s.m.LastSuccess.Set(float64(s.o.Now().Unix()))
		}
	}
	return &rp.r, ctx.Err()
}

// hasSource reports whether some source may publish for vo (a VO without
// one is retired entirely, as the operator asked by taking its source out).
func (s *Syncer) hasSource(vo string) bool {
	for _, src := range s.o.Sources {
		for _, v := range src.VOs() {
			if v == vo {
				return true
			}
		}
	}
	return false
}

func (s *Syncer) aliasesOn() bool { return s.o.Sync.Aliases == nil || *s.o.Sync.Aliases }

// collect lists every source and verifies every bundle without its bytes.
// present holds VO/uuid for every bundle some source lists for a VO it may
// publish for (valid or not); complete the
// VOs whose every source listed without trouble; unlisted, sorted, the VOs
// with a source that no source listed a bundle for although every one of
// their sources listed cleanly and listed others (warnUnlisted).
func (s *Syncer) collect(ctx context.Context, rp *reporter) (items []*item, present, complete map[string]bool, unlisted []string) {
	present = map[string]bool{}
	incomplete := map[string]bool{}
	s.revokedPass = map[string]bool{}
	defer func() { s.revokedSeen, s.revokedPass = s.revokedPass, nil }()
	seen := map[string]*item{}
	now := s.o.Now()
	listingDocs := map[string][]ListingDoc{}
	for _, src := range s.o.Sources {
		bundles, skipped, err := src.List(ctx)
		if err != nil {
			// a source's text (an index's unknown key, a reference) is
			// the source's to choose: cut, like every text of it logged
			s.log.Error("source listing failed; nothing of its VOs is retired this pass", "source", src.Name(), "err", capText(err.Error(), maxErrText))
			s.m.Errors.Inc()
			if errors.Is(err, ErrHungFS) {
				s.m.HungFS.Inc()
			}
			rp.sourceFailed()
			for _, v := range src.VOs() {
				incomplete[v] = true
			}
			continue
		}
		s.listingsOf(ctx, src, listingDocs)
		for loc, e := range skipped {
			if errors.Is(e, ErrNoSignature) {
				s.log.Debug("descriptor without signature skipped", "source", src.Name(), "location", loc)
				continue
			}
			loc, detail := capText(loc, maxErrText), capText(e.Error(), maxErrText)
			s.log.Warn("bundle unreadable; nothing of the source's VOs is retired this pass", "source", src.Name(), "location", loc, "err", detail)
			s.m.Refused.WithLabelValues(ReasonUnreadable).Inc()
			rp.add(Outcome{Location: loc, Action: ActionSkipped, Reason: ReasonUnreadable, Detail: detail})
			for _, v := range src.VOs() {
				incomplete[v] = true
			}
		}
		if len(bundles) == 0 {
			// an unmounted mount point, an emptied rsync target or an
			// index of no bundles looks like a VO that withdrew every
			// image: never retire on that (to retire a VO's images, take
			// its source out of the configuration)
			s.log.Warn("source listed no bundle; nothing of its VOs is retired this pass", "source", src.Name())
			rp.sourceEmpty(src.Name())
			for _, v := range src.VOs() {
				incomplete[v] = true
			}
		}
		for _, it := range s.judgeAll(bundles, now) {
			b := it.b
			if it.desc != nil {
				if b.AllowsVO(it.desc.VO) {
					// by VO and uuid: a source listing another VO's bundle,
					// or a descriptor (signed or not) that names its own VO
					// and another VO's uuid, does not keep that VO's
					// withdrawn image from being retired
					present[it.desc.VO+"/"+it.desc.UUID] = true
				}
				if prev, dup := seen[it.desc.UUID]; dup {
					if string(prev.b.Descriptor) == string(b.Descriptor) && string(prev.b.Signature) == string(b.Signature) {
						continue // the same bundle published twice
					}
					switch {
					case it.refused != "":
					case prev.desc.UUIDSeed == "" && it.desc.UUIDSeed != "":
						// a verified bound bundle proves the uuid is its
						// VO's (another VO would need a SHA-1 preimage):
						// it takes the uuid from an unbound bundle listed
						// before it, whatever the order of the sources
						// (docs/security-model.md, "One image id claimed
						// by two VOs")
						prev.refused, prev.detail = ReasonDuplicateUUID, "a bundle whose uuid is bound to VO "+it.desc.VO+" (uuid_seed) is listed at "+b.Location+": a bundle without uuid_seed cannot take it"
						s.refuse(prev, rp)
						seen[it.desc.UUID] = it
					default:
						it.refused, it.detail = ReasonDuplicateUUID, "another bundle with this uuid was listed first at "+prev.b.Location
					}
				} else if it.refused == "" {
					seen[it.desc.UUID] = it
				}
			}
			if it.desc == nil {
				// a descriptor that does not parse (a file half rewritten
				// by rsync, an error page served for it) may be any VO's
				// image: retiring on such a listing would drop it
				s.log.Warn("descriptor unparsable; nothing of the source's VOs is retired this pass", "source", src.Name(), "location", b.Location)
				for _, v := range src.VOs() {
					incomplete[v] = true
				}
			}
			items = append(items, it)
			if it.refused != "" {
				s.refuse(it, rp)
			}
		}
	}
	complete = map[string]bool{}
	for v := range s.o.VOs {
		complete[v] = !incomplete[v]
	}
	// a VO no source lists a single bundle for (its directory emptied in a
	// source of several VOs) is treated as one whose source listed nothing
	listed := map[string]bool{}
	for k := range present {
		vo, _, _ := strings.Cut(k, "/")
		listed[vo] = true
	}
	for v := range s.o.VOs {
		if complete[v] && !listed[v] && s.hasSource(v) {
			unlisted = append(unlisted, v)
			complete[v] = false
		}
	}
	slices.Sort(unlisted)
	rp.listings = s.applyListings(listingDocs, items, present, complete, rp)
	return items, present, complete, unlisted
}

// warnUnlisted logs the VOs no source listed a bundle for (collect's
// unlisted), and reports (Report.Vanished) those of them the mirror
// project holds images of: their bundles were listed before and have all
// gone from sources that still list others (a VO that withdrew everything,
// its directory lost from a shared repository), which retires nothing
// (retire rules: a VO no source lists a bundle for keeps its images) and
// so must be seen, as an empty source is. A VO without active images (a
// new VO, one whose images were all deleted, or deactivated: revoked,
// retired while in use) is only logged.
func (s *Syncer) warnUnlisted(ours []*Image, unlisted []string, rp *reporter) {
	if len(unlisted) == 0 {
		return
	}
	images := map[string]int{}
	for _, im := range ours {
		if im.Owner != "" && im.Owner != s.o.MirrorProject {
			continue
		}
		if im.Props[validator.PropAlias] != "" || im.Props[validator.PropUUID] == "" {
			continue
		}
		// (active ones alone: a deactivated image, revoked by the CRL
		// job, retired while in use or stopped by an operator, boots no
		// more and needs no retiring, and a queued one has no data; a VO
		// whose images are all so, its bundles withdrawn, made every
		// sync --once exit 1 for ever)
		if im.Status == StatusActive {
			images[im.Props[validator.PropVO]]++
		}
	}
	for _, v := range unlisted {
		n := images[v]
		if n == 0 {
			s.log.Warn("no source listed a bundle of this VO; nothing of it is retired this pass", "vo", v)
			continue
		}
		var srcs []string
		for _, src := range s.o.Sources {
			if slices.Contains(src.VOs(), v) {
				srcs = append(srcs, src.Name())
			}
		}
		s.log.Warn("every bundle of this VO vanished from its sources, which still list others; nothing of it is retired this pass",
			"vo", v, "sources", strings.Join(srcs, ", "), "images", n)
		rp.mu.Lock()
		rp.r.Vanished = append(rp.r.Vanished, VanishedVO{VO: v, Sources: srcs, Images: n})
		rp.mu.Unlock()
	}
}

// judgeAll judges bundles (judge) GOMAXPROCS at once, and returns their
// items in the bundles' order: only the verdicts are computed in parallel;
// what a pass does with them (outcomes, logs, metrics) stays in order.
func (s *Syncer) judgeAll(bundles []*Bundle, now time.Time) []*item {
	items := make([]*item, len(bundles))
	n := min(runtime.GOMAXPROCS(0), len(bundles))
	if n <= 1 {
		for i, b := range bundles {
			items[i] = s.judge(b, now)
		}
		return items
	}
	parallel(n, len(bundles), func(i int) bool {
		items[i] = s.judge(bundles[i], now)
		return true
	})
	return items
}

// judge runs every check but the image bytes on a bundle. It only reads
// the Syncer's options (Trust is safe for concurrent use): judgeAll runs
// it in parallel.
func (s *Syncer) judge(b *Bundle, now time.Time) (it *item) {
	it = &item{b: b}
	// the detail quotes unverified bytes (an unknown key of a descriptor
	// may be a megabyte long): cut for logs and outcomes
	defer func() { it.detail = capText(it.detail, maxErrText) }()
	d, err := validator.ParseDescriptor(b.Descriptor)
	if err != nil {
		it.refused, it.detail = validator.ReasonDescriptorInvalid, err.Error()
		return it
	}
	it.desc = d
	if !b.AllowsVO(d.VO) {
		it.refused = ReasonVONotAllowed
		it.detail = fmt.Sprintf("source %s may publish for %s, not for VO %q", b.Source, strings.Join(b.VOs, ", "), d.VO)
		return it
	}
	r := s.o.Trust.Verify(validator.Input{Descriptor: b.Descriptor, Signature: b.Signature, Now: now})
	it.result = r
	if !r.Valid {
		var vf *validator.VerificationFailure
		err := r.Err()
		it.refused, it.detail = validator.ReasonNotChecked, err.Error()
		if errors.As(err, &vf) && len(vf.Reasons) > 0 {
			it.refused = vf.Reasons[0]
		}
		if r.ExpiredOnly {
			it.refused = validator.ReasonExpired
		}
		return it
	}
	rec, err := validator.RecordProperties(r, b.Descriptor, b.Signature)
	if err != nil {
		it.refused, it.detail = validator.ReasonNotChecked, err.Error()
		return it
	}
	it.record = rec
	return it
}

func (s *Syncer) refuse(it *item, rp *reporter) {
	o := Outcome{Location: it.b.Location, Action: ActionRefused, Reason: it.refused, Detail: it.detail}
	if it.desc != nil {
		o.ID, o.VO, o.Tag = it.desc.UUID, it.desc.VO, it.desc.Tag
	}
	s.m.Refused.WithLabelValues(it.refused).Inc()
	// ERROR is for the refusals an operator must look at (what makes
	// `sync --once` exit 4); an expired or revoked bundle left in a source,
	// or one its VO's signed listing no longer names (withdrawn), is
	// routine and would otherwise log an ERROR every pass for as long as
	// the publisher keeps it there
	lvl := slog.LevelError
	switch it.refused {
	case validator.ReasonExpired:
		lvl = slog.LevelInfo
	case validator.ReasonRevoked, ReasonNotInListing:
		// WARN the first time this Syncer (this process, until a reload)
		// lists the bundle, INFO on every later pass
		lvl = slog.LevelInfo
		key := o.Location + "\n" + o.ID
		if s.revokedPass == nil {
			s.revokedPass = map[string]bool{}
		}
		if !s.revokedSeen[key] && !s.revokedPass[key] {
			lvl = slog.LevelWarn
		}
		s.revokedPass[key] = true
	}
	s.log.Log(context.Background(), lvl, "bundle refused", "image", o.ID, "vo", o.VO, "tag", o.Tag, "location", o.Location, "reason", o.Reason, "detail", o.Detail)
	rp.add(o)
}

// RoutineRefusal reports whether a bundle refused for reason is routine:
// expired and revoked bundles linger in sources after their images' end,
// and so do bundles their VO withdrew from its signed listing. Such
// refusals are logged at INFO (a revoked or unlisted bundle at WARN the
// first time a Syncer lists it), and `imagetrust sync --once` does not
// exit 4 for them.
func RoutineRefusal(reason string) bool {
	return reason == validator.ReasonExpired || reason == validator.ReasonRevoked || reason == ReasonNotInListing
}

// sameRecord reports whether an image carries exactly the bundle's descriptor and signature.
func (s *Syncer) sameRecord(im *Image, it *item) bool {
	return im.Props[validator.PropDescriptor] == it.record[validator.PropDescriptor] &&
		im.Props[validator.PropSignature] == it.record[validator.PropSignature]
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// checkStores checks, before a pass writes anything, that Glance has
// every store of sync.stores: Glance answers an import into a store it
// does not have with 409, the answer it also gives to an import already
// under way, and the image would be left staged.
func (s *Syncer) checkStores(ctx context.Context) error {
	want := s.o.Sync.Stores
	if len(want) == 0 {
		return nil
	}
	have, err := s.o.Glance.Stores(ctx)
	if errors.Is(err, ErrNoStores) {
		return fmt.Errorf("sync.stores = [%s], but this Glance has a single store (no enabled_backends in glance-api.conf): remove sync.stores, or configure Glance's stores", strings.Join(want, ", "))
	}
	if err != nil {
		return fmt.Errorf("reading Glance's stores (sync.stores): %w", err)
	}
	var missing []string
	for _, st := range want {
		if !contains(have, st) {
			missing = append(missing, st)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("sync.stores names %s, which this Glance does not have (its stores: %s): fix sync.stores or glance-api.conf's enabled_backends", strings.Join(missing, ", "), strings.Join(have, ", "))
	}
	return nil
}

// uploadStore is the store of an upload: the one of sync.stores (the
// configuration allows no more with sync.ingest = "upload", and
// ingestMode none when an "auto" pass uploads), or Glance's default.
func uploadStore(stores []string) string {
	if len(stores) == 1 {
		return stores[0]
	}
	return ""
}

// ingest is how a pass brings image bytes into Glance.
type ingest struct {
	// stage: PUT /stage, then the glance-direct import; otherwise one
	// PUT /file.
	stage bool
	// canImport: Glance offers glance-direct, so an image found staged
	// (left by an earlier pass) can be imported.
	canImport bool
}

// ingestMode decides the pass's ingest from sync.ingest and the import
// methods Glance offers.
func (s *Syncer) ingestMode(ctx context.Context) (ingest, error) {
	mode := s.o.Sync.Ingest
	if err := s.checkStores(ctx); err != nil {
		return ingest{}, err
	}
	methods, err := s.o.Glance.ImportMethods(ctx)
	if err != nil {
		s.log.Warn("cannot read Glance's import methods; assuming glance-direct", "ingest", mode, "err", err)
		return ingest{stage: mode != "upload", canImport: true}, nil
	}
	direct := contains(methods, "glance-direct")
	switch {
	case mode == "upload":
		return ingest{stage: false, canImport: direct}, nil
	case direct:
		return ingest{stage: true, canImport: true}, nil
	case mode == "import":
		return ingest{}, fmt.Errorf("sync.ingest = \"import\", but this Glance does not offer glance-direct (its import methods: %s): enable it in glance-api.conf (enabled_import_methods) or set sync.ingest = \"upload\" or \"auto\"", strings.Join(methods, ", "))
	case len(s.o.Sync.Stores) > 1:
		return ingest{}, fmt.Errorf("sync.stores names %d stores, but this Glance does not offer glance-direct (its import methods: %s) and an upload puts an image in one store: enable glance-direct in glance-api.conf (enabled_import_methods) or name one store", len(s.o.Sync.Stores), strings.Join(methods, ", "))
	}
	s.log.Warn("glance-direct is not enabled: uploading image data in one PUT, its last bytes held back until they verify (docs/glancesync.md, \"Ingest\")", "import_methods", methods)
	return ingest{}, nil
}
