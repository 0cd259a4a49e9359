package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Overload limits. A gated request (create, rebuild, rescue, and any other
// server action, whose body the gate reads to tell) holds its body, the
// parsed document, the merged user data and the re-serialised body: it
// allocates up to GatedRequestCost. The gate bounds how many run at once
// (Options.MaxGated), and the client connections it holds
// (ServerOptions.MaxConns): a burst, or a client with a valid token, then
// meets a quick 503 or a closed connection rather than making the process
// grow until the OOM killer ends the compute endpoint for everyone.
// Pass-through requests never wait for a gated slot.

const (
	// DefaultGatedQueueTimeout is how long a gated request waits for a
	// slot by default before it is refused.
	DefaultGatedQueueTimeout = 2 * time.Second
	// DefaultMaxConns is ServerOptions.MaxConns's default.
	DefaultMaxConns = 4096
	// GatedMemoryBudget is what the gated requests of the default limit
	// allocate at once, at most (DefaultMaxGatedFor).
	GatedMemoryBudget = 512 << 20
	// overloadRetryAfter is the Retry-After of an overload refusal, in
	// seconds.
	overloadRetryAfter = "1"
	// overloadLogInterval is the period of the overload summary lines.
	overloadLogInterval = 10 * time.Second
)

// gatedBodyTimeout is how long a gated request that holds a slot may take
// to send the rest of its body (gateLimited): 10 s, and a second more per
// 64 KiB of the body limit (26 s at the default 1 MiB), at most a minute
// (the server's ReadTimeout is 2). Without it a
// client that stalls in the middle of its body held its slot until the
// server's ReadTimeout, 2 minutes: as many such clients as there are
// slots stopped every boot that long.
func gatedBodyTimeout(maxBody int64) time.Duration {
	return min(10*time.Second+time.Duration(maxBody>>16)*time.Second, time.Minute)
}

// GatedRequestCost is what one gated request allocates, at most, with a
// body limit of maxBody, and with contextualisation (a UserData hook) or
// without, as BenchmarkGatedMemory measures it: 11.8 MB for a 1 MiB body
// (read with io.ReadAll's growing buffer, parsed, re-serialised and
// forwarded), hence 12 times the limit; and 18.9 MB for user data that
// expands to the merge's 1 MiB bound (contextualise's maxDecompressed,
// whatever the body limit: decoded, gunzipped, encoded twice into MIME,
// gzipped and base64-encoded again), hence 20 MiB. Not all of it is live
// at once, but with the garbage collector's default (GOGC=100) the heap
// grows to about twice what is live: this is the figure to plan with.
func GatedRequestCost(maxBody int64, userData bool) int64 {
	c := 12 * maxBody
	if userData {
		c += 20 << 20
	}
	return c
}

// DefaultMaxGatedFor is the default bound on concurrent gated requests:
// as many as GatedMemoryBudget holds at GatedRequestCost each, at least 4
// and at most 64. At the default 1 MiB body limit: 16 with
// contextualisation (32 MiB each), 42 without (12 MiB each); at 16 MiB, 4.
func DefaultMaxGatedFor(maxBody int64, userData bool) int {
	return int(min(max(GatedMemoryBudget/GatedRequestCost(maxBody, userData), 4), 64))
}

// DefaultMaxGatedPerProjectFor is the default share of one project, out of
// maxGated slots: half of them (at least one). See gatedLimit for what the
// share does.
func DefaultMaxGatedPerProjectFor(maxGated int) int { return max(maxGated/2, 1) }

// Reasons of imagetrust_proxy_gated_rejections_total.
const (
	// RejectQueueFull: every slot taken and every waiting place too, none
	// of them one the request's project may take from another; refused at
	// once.
	RejectQueueFull = "queue-full"
	// RejectQueueTimeout: no slot came free within the queue timeout.
	RejectQueueTimeout = "queue-timeout"
	// RejectProjectLimit: no slot came free within the queue timeout while
	// the request's project held its share (Options.MaxGatedPerProject) or
	// more, or the request's waiting place was given to a project that had
	// fewer of them, or its slot, borrowed beyond its project's share, was
	// taken back for another project before its body had arrived
	// (gatedLimit.reclaimFor).
	RejectProjectLimit = "project-limit"
	// RejectClientGone: the client went away while it waited (no answer).
	RejectClientGone = "client-gone"
	// RejectValidationBusy: the request's token was not in the cache and
	// as many uncached validations as the gate runs at once
	// (maxValidationsFor) were under way until the queue timeout.
	RejectValidationBusy = "validation-busy"
)

// GatedRejectReasons are the reason labels of
// imagetrust_proxy_gated_rejections_total, each at 0 from the start.
var GatedRejectReasons = []string{RejectQueueFull, RejectQueueTimeout, RejectProjectLimit, RejectClientGone, RejectValidationBusy}

// gatedLimit bounds the gated requests judged and forwarded at once, and
// shares them out between projects, work-conserving and max-min fair:
//   - a request takes a free slot at once, whatever its project holds (a
//     project alone uses every slot: it borrows beyond its share what
//     nobody else asks for); there is never a free slot while a request
//     waits;
//   - a slot given back goes to the waiting request whose project holds
//     the fewest slots, ties in arrival order: a project that holds none
//     gets the next slot that comes free, and a project at or over its
//     share (perProject) gets one only when every waiting project holds
//     as many;
//   - at most n requests wait in all; when n wait, a request takes the
//     place of the newest waiting request of the project with the most
//     waiting places, when that project has two more than the request's
//     (the request taken off is refused project-limit): a third, fourth...
//     project gets a waiting place as long as another has two;
//   - a request that waits its whole timeout is refused project-limit if
//     its project holds its share or more then, else queue-timeout;
//   - a request of a project that holds and waits for no more than its
//     share, as it begins to wait, takes back a slot another project
//     holds beyond its share whose body has not arrived (reclaimFor): a
//     project that stalls its bodies keeps its share and no more.
//
// Every waiter is woken once: granted a slot (w.ready closed, granted) or
// evicted (closed, evicted), or it gives up on its timer or context.
type gatedLimit struct {
	n, perProject int
	timeout       time.Duration
	m             *Metrics

	mu        sync.Mutex
	used      int
	byProject map[string]int // slots held, by project
	waitingBy map[string]int // requests waiting, by project
	queue     []*gatedWaiter // in arrival order
	// bodies are the slots whose request's body has not been read whole
	// yet, in the order they were taken (reclaimFor); reclaiming counts,
	// by project, those of them taken back and not given back yet
	bodies     []*deadlineBody
	reclaiming map[string]int
	// waiting is the number of requests waiting (written under mu)
	waiting atomic.Int64

	// testHookGaveUp, when set (by tests), is called as a waiting request
	// gives up (timed out, or its client gone), before it takes mu
	testHookGaveUp func()
}

// gatedWaiter is a request waiting for a slot; ready is closed when it
// gets one (granted) or loses its place (evicted), under gatedLimit.mu.
type gatedWaiter struct {
	project          string
	body             *deadlineBody // (nil: none to reclaim, unit tests)
	ready            chan struct{}
	granted, evicted bool
}

func newGatedLimit(n, perProject int, timeout time.Duration, m *Metrics) *gatedLimit {
	if perProject <= 0 || perProject > n {
		perProject = n
	}
	return &gatedLimit{n: n, perProject: perProject, timeout: timeout, m: m,
		byProject: map[string]int{}, waitingBy: map[string]int{}, reclaiming: map[string]int{}}
}

// take gives a slot to a request of project, under mu; b (if any) is its
// body, which reclaimFor may take the slot back from until it is read.
func (l *gatedLimit) take(project string, b *deadlineBody) {
	l.used++
	l.byProject[project]++
	l.m.gatedInFlight(1)
	if b != nil {
		b.project = project
		l.bodies = append(l.bodies, b)
	}
}

// atShare reports, under mu, whether project holds its share or more
// ("": no project known, never).
func (l *gatedLimit) atShare(project string) bool {
	return project != "" && l.byProject[project] >= l.perProject
}

// acquire takes a slot for a request of project ("" then) or says why it
// got none.
func (l *gatedLimit) acquire(ctx context.Context, project string) string {
	return l.acquireBody(ctx, project, nil)
}

// acquireBody is acquire for a request whose body is b: until the body is
// read (bodyRead), a slot its project holds beyond its share may be taken
// back for a project below its share that waits (reclaimFor); the caller
// gives b up (dropBody) before it releases the slot.
func (l *gatedLimit) acquireBody(ctx context.Context, project string, b *deadlineBody) string {
	l.mu.Lock()
	return l.acquireLocked(ctx, project, b)
}

// acquireWithinShare is acquire for a request of project that may take or
// wait for a slot only while project holds and waits for fewer than its
// share: ok false (nothing taken, nothing to release) when it already
// has that many. A project's share otherwise bounds only whom a slot given
// back goes to, and which waiting request gives way: while slots are free
// one project takes them all (cachedIdentity.knownPlaces).
func (l *gatedLimit) acquireWithinShare(ctx context.Context, project string) (reason string, ok bool) {
	l.mu.Lock()
	if l.byProject[project]+l.waitingBy[project] >= l.perProject {
		l.mu.Unlock()
		return "", false
	}
	return l.acquireLocked(ctx, project, nil), true
}

// acquireLocked is acquireBody with mu held; it unlocks it.
func (l *gatedLimit) acquireLocked(ctx context.Context, project string, b *deadlineBody) string {
	if l.used < l.n { // (then nobody waits: release hands out every free slot)
		l.take(project, b)
		l.mu.Unlock()
		return ""
	}
	if len(l.queue) >= l.n && !l.evictFor(project) {
		l.mu.Unlock()
		return RejectQueueFull
	}
	w := &gatedWaiter{project: project, body: b, ready: make(chan struct{})}
	l.queue = append(l.queue, w)
	l.waiting.Add(1)
	l.waitingBy[project]++
	l.m.gatedWaiting(1)
	l.reclaimFor(project)
	l.mu.Unlock()

	t := time.NewTimer(l.timeout)
	defer t.Stop()
	reason := RejectQueueTimeout
	select {
	case <-w.ready:
		if w.evicted {
			return evictedReason(project)
		}
		return ""
	case <-t.C:
	case <-ctx.Done():
		reason = RejectClientGone
	}
	if l.testHookGaveUp != nil {
		l.testHookGaveUp()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case w.granted:
		return "" // (given a slot as it gave up: it is the caller's to release)
	case w.evicted:
		return evictedReason(project)
	}
	l.dequeue(w)
	if reason == RejectQueueTimeout && l.atShare(project) {
		reason = RejectProjectLimit
	}
	return reason
}

// evictedReason is the refusal of a request whose waiting place another
// project took: project-limit (its project had the most), queue-full
// without a project.
func evictedReason(project string) string {
	if project == "" {
		return RejectQueueFull
	}
	return RejectProjectLimit
}

// evictFor makes room in a full queue for a request of project, under mu:
// it takes off the newest waiting request of the project with the most
// waiting places (ties: the one holding more slots), when that project has
// at least two more than project, and reports whether it did.
func (l *gatedLimit) evictFor(project string) bool {
	mine := l.waitingBy[project]
	var big string
	most := -1
	// (in arrival order, not the map's random one: between projects tied
	// on both counts, the one whose request came first gives way)
	for _, w := range l.queue {
		p := w.project
		if c := l.waitingBy[p]; c > most || c == most && l.byProject[p] > l.byProject[big] {
			big, most = p, c
		}
	}
	if big == project || most < mine+2 {
		return false
	}
	for i := len(l.queue) - 1; i >= 0; i-- {
		if w := l.queue[i]; w.project == big {
			l.dequeue(w)
			w.evicted = true
			close(w.ready)
			return true
		}
	}
	return false // (not reached: big has waiting requests)
}

// dequeue removes w from the queue, under mu.
func (l *gatedLimit) dequeue(w *gatedWaiter) {
	if i := slices.Index(l.queue, w); i >= 0 {
		l.queue = slices.Delete(l.queue, i, i+1)
	}
	l.waiting.Add(-1)
	if l.waitingBy[w.project]--; l.waitingBy[w.project] == 0 {
		delete(l.waitingBy, w.project)
	}
	l.m.gatedWaiting(-1)
}

// release gives back a slot acquire took for a request of project, to the
// waiting request whose project holds the fewest slots (ties: the first
// to come).
func (l *gatedLimit) release(project string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.used--
	if l.byProject[project]--; l.byProject[project] == 0 {
		delete(l.byProject, project)
	}
	l.m.gatedInFlight(-1)
	for l.used < l.n && len(l.queue) > 0 {
		next := l.queue[0]
		for _, w := range l.queue[1:] {
			if l.byProject[w.project] < l.byProject[next.project] {
				next = w
			}
		}
		l.dequeue(next)
		l.take(next.project, next.body)
		next.granted = true
		close(next.ready)
	}
}

// reclaimFor takes back, under mu, a slot borrowed by another project for
// a request of project that has just begun to wait, when project holds and
// waits for no more than its share: the newest slot whose body has not
// been read yet, of the project that holds the most slots beyond its share
// (not counting those taken back already). Its request is refused 503
// project-limit (Nova not called) and its slot, given back, goes to the
// waiting request whose project holds the fewest: so a project that took
// every slot while alone, and stalls its bodies, keeps its share of them
// and no more once another project asks. A request whose body has
// arrived is never taken back: it is judged and forwarded.
func (l *gatedLimit) reclaimFor(project string) {
	if project == "" || l.byProject[project]+l.waitingBy[project] > l.perProject {
		return
	}
	var victim *deadlineBody
	most := l.perProject
	for i := len(l.bodies) - 1; i >= 0; i-- {
		b := l.bodies[i]
		if b.reclaimed || b.project == project || b.project == "" {
			continue
		}
		if held := l.byProject[b.project] - l.reclaiming[b.project]; held > most {
			victim, most = b, held
		}
	}
	if victim == nil {
		return
	}
	l.reclaiming[victim.project]++
	victim.reclaim()
}

// bodyRead reports, under mu, that b's body was read whole: its slot is
// no longer taken back. False when it was taken back first (its request
// is refused all the same: the slot is promised to another).
func (l *gatedLimit) bodyRead(b *deadlineBody) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b.reclaimed {
		return false
	}
	l.removeBody(b)
	return true
}

// dropBody forgets b, whose request is about to give its slot back.
func (l *gatedLimit) dropBody(b *deadlineBody) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.removeBody(b) && b.reclaimed {
		if l.reclaiming[b.project]--; l.reclaiming[b.project] == 0 {
			delete(l.reclaiming, b.project)
		}
	}
}

// removeBody takes b out of bodies, under mu, and reports whether it was
// there.
func (l *gatedLimit) removeBody(b *deadlineBody) bool {
	i := slices.Index(l.bodies, b)
	if i < 0 {
		return false
	}
	l.bodies = slices.Delete(l.bodies, i, i+1)
	return true
}

// inFlight is the number of slots taken.
func (l *gatedLimit) inFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used
}

// gatedProject is the key of a gated request's per-project bound: the
// token's project (its user's id for a token scoped to no project),
// without an Identity the path's /{project_id} segment, else "" (no
// per-project bound).
func gatedProject(g *gateReq) string {
	if c := g.caller; c != nil {
		if c.ProjectID != "" {
			return c.ProjectID
		}
		if c.UserID != "" {
			return "user:" + c.UserID
		}
	}
	return strings.ToLower(g.rt.project)
}

// gateLimited runs the gate within the bound on gated requests: a request
// that gets no slot is answered 503 serviceUnavailable with Retry-After
// (keystoneauth retries a 503 when asked to, status_code_retries) and Nova
// is not called. The slot is given back however the request ends: an
// answer, a refusal, a client gone mid-body, an upstream error or a panic.
//
// The token is validated first (with an Identity), before the request
// waits for a slot and before its body is read: a request with no token,
// or one Keystone refuses, is answered 401 and never holds a slot, so that
// clients without a valid token cannot take the slots from the site's
// users. Every gated request is validated so, other server actions
// (reboot, stop...) too, whose body is read only to tell they are not
// rebuild or rescue: one validation per token, cached and shared
// (cachedIdentity), which Nova's keystonemiddleware would make anyway.
func (p *Proxy) gateLimited(w http.ResponseWriter, r *http.Request, rt route) string {
	g := p.newGateReq(r, rt)
	if err := p.authenticate(g); err != nil {
		if errors.Is(err, errValidationBusy) {
			p.overloaded(w, g, "", RejectValidationBusy)
		} else {
			p.refused(w, g, err)
		}
		return "refused"
	}
	project := gatedProject(g)
	// the body must come within the body timeout once the gate reads it:
	// a slot is not for a client that stalls (readBody answers 408 then);
	// and a slot borrowed beyond the project's share may be taken back
	// until the body is read (gatedLimit.reclaimFor)
	b := &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: p.bodyTimeout}
	if reason := p.limit.acquireBody(r.Context(), project, b); reason != "" {
		p.overloaded(w, g, project, reason)
		return "refused"
	}
	defer p.limit.release(project)
	defer p.limit.dropBody(b)
	r.Body = b
	g.body = b
	return p.gate(w, g)
}

// errSlotReclaimed: the request's slot was taken back for another project
// before its body was read (gatedLimit.reclaimFor).
var errSlotReclaimed = errors.New("gated slot taken back for another project")

// deadlineBody is a gated request's body, read under a deadline set at
// its first read (not before: a slow Keystone must not eat into it).
// net/http lifts it once the body has been read (its background read,
// which watches for the client leaving while the request is forwarded,
// clears the connection's read deadline). Without a connection deadline
// to set (http.ErrNotSupported) the body is read as it comes.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController // (nil: no deadline, unit tests)
	timeout time.Duration
	project string // (set under gatedLimit.mu as it takes its slot)

	mu      sync.Mutex
	started bool
	// reclaimed: its slot was taken back (written under gatedLimit.mu
	// and mu, read under either)
	reclaimed bool
}

// Read implements io.Reader. Once the slot is taken back it fails with
// errSlotReclaimed, a read under way too (its deadline is moved to the
// past).
func (b *deadlineBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.reclaimed {
		b.mu.Unlock()
		return 0, errSlotReclaimed
	}
	if !b.started {
		b.started = true
		if b.rc != nil {
			_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
		}
	}
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.reclaimed {
			err = errSlotReclaimed
		}
		b.mu.Unlock()
	}
	return n, err
}

// reclaim marks b's slot taken back, under gatedLimit.mu, and ends a read
// under way (without a connection deadline to set, the next read fails).
func (b *deadlineBody) reclaim() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reclaimed = true
	if b.rc != nil {
		_ = b.rc.SetReadDeadline(aLongTimeAgo)
	}
}

// overloaded answers a gated request refused for want of a slot (none to a
// client that went away), counts it and notes it for the overload log. Its
// body is not read: the connection closes after the answer
// (closeUnreadBody).
func (p *Proxy) overloaded(w http.ResponseWriter, g *gateReq, project, reason string) {
	r := g.r
	p.o.Metrics.gatedRejected(reason)
	reqID := g.reqID
	attrs := []any{"request_id", reqID, "reason", reason, "method", r.Method,
		"path", truncate(r.URL.EscapedPath(), 256), "path_project", g.rt.project}
	if c := g.caller; c != nil {
		attrs = append(attrs, "user_id", c.UserID, "project_id", c.ProjectID)
	}
	attrs = append(attrs, "remote", remoteHost(r), "max_gated", p.limit.n, "max_gated_per_project", p.limit.perProject,
		"queue_timeout", p.limit.timeout.String())
	p.rejects.note(reason, remoteHost(r), reqID, attrs...)
	if reason == RejectClientGone {
		w.WriteHeader(499) // (nobody reads it; for the access log, as upstreamError)
		return
	}
	unread := closeUnreadBody(w, r)
	defer unread()
	w.Header().Set("Retry-After", overloadRetryAfter)
	msg := "The image gate is busy with other boot requests; try again in a few seconds."
	switch reason {
	case RejectProjectLimit:
		msg = "The image gate is busy with other boot requests of your project; try again in a few seconds."
	case RejectValidationBusy:
		msg = "The image gate is busy validating the tokens of other requests; try again in a few seconds."
	}
	writeFault(w, reqID, http.StatusServiceUnavailable, msg)
}

// closeUnreadBody prepares the refusal of a request whose body the gate
// does not read: when it has one, the answer says Connection: close, and
// the returned func, called once the answer is written, ends the
// connection's reads. Without the first, net/http reads what the client
// still sends of the body (up to 256 KiB) before it answers; without the
// second, after it (closing the body drains it): either way as long as
// the client takes to send it, up to the read timeout, holding the
// connection.
func closeUnreadBody(w http.ResponseWriter, r *http.Request) (written func()) {
	if r.ContentLength == 0 {
		return func() {}
	}
	w.Header().Set("Connection", "close")
	return func() { _ = http.NewResponseController(w).SetReadDeadline(aLongTimeAgo) }
}

// overloadLog writes the overload audit lines: the first event after a
// quiet interval at once, in full; those that follow within an interval
// as one summary line at its end (counts by reason, the busiest remote
// addresses). One line per refusal would let a flood that the limit
// refuses cheaply cost a log write each, and drown the audit log.
type overloadLog struct {
	log             *slog.Logger
	first, summary  string
	interval        time.Duration
	mu              sync.Mutex
	timer           *time.Timer
	active          bool // an interval is open
	counts          map[string]int
	remotes         map[string]int
	otherRemotes    int
	lastID, firstID string
}

// maxSummaryRemotes bounds the remote addresses a summary line names (the
// busiest), maxTrackedRemotes those an interval counts apart: the
// refusals of the others are in other_remotes.
const (
	maxSummaryRemotes = 8
	maxTrackedRemotes = 1024
)

func newOverloadLog(log *slog.Logger, first, summary string) *overloadLog {
	return &overloadLog{log: log, first: first, summary: summary, interval: overloadLogInterval,
		counts: map[string]int{}, remotes: map[string]int{}}
}

// note records one event (id: its request id, if any); attrs are its
// line's when it is the first.
func (l *overloadLog) note(reason, remote, id string, attrs ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		l.active = true
		l.log.Warn(l.first, attrs...)
		if l.timer == nil {
			l.timer = time.AfterFunc(l.interval, l.flush)
		} else {
			l.timer.Reset(l.interval)
		}
		return
	}
	l.counts[reason]++
	if _, ok := l.remotes[remote]; ok || len(l.remotes) < maxTrackedRemotes {
		l.remotes[remote]++
	} else {
		l.otherRemotes++
	}
	if l.firstID == "" {
		l.firstID = id
	}
	l.lastID = id
}

// flush ends the interval: a summary line if anything happened in it (and
// another interval begins), else the log goes quiet.
func (l *overloadLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	total := 0
	for _, n := range l.counts {
		total += n
	}
	if total == 0 {
		l.active = false
		return
	}
	args := []any{"count", total}
	for _, r := range slices.Sorted(maps.Keys(l.counts)) {
		args = append(args, strings.ReplaceAll(r, "-", "_"), l.counts[r])
	}
	// the busiest remotes, most refused first (then by address)
	hosts := slices.SortedFunc(maps.Keys(l.remotes), func(a, b string) int {
		if c := l.remotes[b] - l.remotes[a]; c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	other := l.otherRemotes
	rem := make([]string, 0, maxSummaryRemotes)
	for i, h := range hosts {
		if i < maxSummaryRemotes {
			rem = append(rem, fmt.Sprintf("%s=%d", h, l.remotes[h]))
		} else {
			other += l.remotes[h]
		}
	}
	args = append(args, "remotes", strings.Join(rem, ","), "other_remotes", other)
	if l.firstID != "" {
		args = append(args, "first_request_id", l.firstID, "last_request_id", l.lastID)
	}
	args = append(args, "interval", l.interval.String())
	l.log.Warn(l.summary, args...)
	clear(l.counts)
	clear(l.remotes)
	l.otherRemotes, l.firstID, l.lastID = 0, "", ""
	l.timer.Reset(l.interval)
}

// connLimit bounds the client connections the gate's listener holds. At
// the bound, a new connection takes the place of the connection that has
// been idle the longest (a keep-alive connection waiting for its next
// request), which is closed, as nginx does when its worker_connections run
// out; when none is idle, the new one is accepted and closed at once
// (accept-and-close): its client fails at once with a closed connection,
// which clients retry (keystoneauth's connect_retries), where one left in
// the kernel's accept queue would hang until a slot came free or its
// connect timed out, with nothing counted. The count covers a connection
// from its accept to its close, on the fast server and after its
// hand-over to net/http alike.
type connLimit struct {
	max  int64
	open atomic.Int64
	m    *Metrics
	log  *overloadLog

	mu    sync.Mutex
	conns map[*connEntry]struct{} // admitted, not yet released

	// testHookIdleEnd, when set (by tests, before the server starts), is
	// called as an idle connection's next request begins to arrive,
	// before the connection is marked busy
	testHookIdleEnd func()
}

// connEntry is one admitted connection. idleSince is when it began to
// wait for its next request (UnixNano), 0 while it is not idle
// (handshake, first request, request in progress), -1 once it is closed
// to make room; its server sets it (setIdle) at each change, an atomic
// store and no lock, so that the request path pays next to nothing: the
// connections are searched only when the limit is reached.
type connEntry struct {
	c         net.Conn // as accepted: closing it ends whatever serves it
	idleSince atomic.Int64
	released  bool // under connLimit.mu
}

// setIdle marks e idle (waiting for a next request) since now.
func (e *connEntry) setIdle() { e.setIdleSince(time.Now()) }

// setIdleSince marks e idle since t (a time the caller has at hand).
func (e *connEntry) setIdleSince(t time.Time) {
	if e != nil {
		e.idleSince.Store(max(t.UnixNano(), 1))
	}
}

// setBusy marks e busy: its next request has begun to arrive. It reports
// false when closeIdle closed the connection first (its claim stays): the
// request, though its bytes may have been read already, must then not be
// served, since its client sees the connection closed and cannot know
// whether it was (a boot created while openstack server create reports a
// closed connection, and creates another when run again).
func (e *connEntry) setBusy() bool {
	if e == nil {
		return true
	}
	if e.idleSince.Swap(0) == -1 {
		e.idleSince.Store(-1) // (only closeIdle writes it otherwise, and never over -1)
		return false
	}
	return true
}

// closedForRoom reports whether closeIdle closed e's connection.
func (e *connEntry) closedForRoom() bool { return e != nil && e.idleSince.Load() == -1 }

func newConnLimit(n int, m *Metrics, log *slog.Logger) *connLimit {
	return &connLimit{max: int64(n), m: m, conns: map[*connEntry]struct{}{},
		log: newOverloadLog(log, "connection refused: connection limit reached", "connections refused: connection limit reached (summary)")}
}

// admit counts c in and returns its entry, or closes it and returns nil
// when the limit is reached and no connection is idle.
func (l *connLimit) admit(c net.Conn) *connEntry {
	for l.open.Add(1) > l.max {
		l.open.Add(-1)
		if l.closeIdle() {
			continue
		}
		l.m.connRefused()
		remote := c.RemoteAddr().String()
		if h, _, err := net.SplitHostPort(remote); err == nil {
			remote = h
		}
		// (said before the close: a client seeing it closed finds it
		// counted and logged)
		l.log.note("limit", remote, "", "remote", remote, "max_connections", l.max)
		_ = c.Close()
		return nil
	}
	l.m.connOpen(1)
	e := &connEntry{c: c}
	l.mu.Lock()
	l.conns[e] = struct{}{}
	l.mu.Unlock()
	return e
}

// closeIdle closes the connection idle the longest and gives its place
// back; false when none is idle. A connection that turns busy as it is
// chosen is closed all the same if its claim came first: its client, which
// had just sent a request on an idle keep-alive connection, sees it closed
// with no answer, as when IdleTimeout closes it (RFC 9112 9.3.1), and the
// request is not served whatever of it was read (setBusy): a client
// resends an idempotent one by itself, a boot fails and was not made.
func (l *connLimit) closeIdle() bool {
	l.mu.Lock()
	for {
		var oldest *connEntry
		var since int64
		for e := range l.conns {
			if t := e.idleSince.Load(); t > 0 && (oldest == nil || t < since) {
				oldest, since = e, t
			}
		}
		if oldest == nil {
			l.mu.Unlock()
			return false
		}
		if !oldest.idleSince.CompareAndSwap(since, -1) {
			continue // (busy again, or idle anew: look again)
		}
		oldest.released = true
		delete(l.conns, oldest)
		l.mu.Unlock()
		l.open.Add(-1)
		l.m.connOpen(-1)
		l.m.connIdleClosed()
		_ = oldest.c.Close()
		return true
	}
}

// release counts a connection admit let in out (once; nothing when it was
// closed to make room).
func (l *connLimit) release(e *connEntry) {
	l.mu.Lock()
	if e.released {
		l.mu.Unlock()
		return
	}
	e.released = true
	delete(l.conns, e)
	l.mu.Unlock()
	l.open.Add(-1)
	l.m.connOpen(-1)
}

// connState is net/http's ConnState for the gate's connections: it marks
// a counted connection idle between its requests, for closeIdle.
func (l *connLimit) connState(c net.Conn, st http.ConnState) {
	e := connEntryOf(c)
	if e == nil {
		return
	}
	switch st {
	case http.StateIdle:
		e.setIdle()
	case http.StateActive:
		if l.testHookIdleEnd != nil {
			l.testHookIdleEnd()
		}
		// (a connection closeIdle closed as its request came stays
		// marked: its request is not served, servedConn)
		e.setBusy()
	case http.StateHijacked:
		e.setBusy()
	}
}

// connEntryOf is the place in the connection limit of a connection of
// net/http's (nil: not counted).
func connEntryOf(c net.Conn) *connEntry {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	switch cc := c.(type) {
	case *limitConn:
		return cc.e
	case *handoffConn:
		return cc.e
	}
	return nil
}

// connEntryKey is the context key of a net/http connection's connEntry.
type connEntryKey struct{}

// servedConn makes s serve no request on a connection that closeIdle
// closed while the request was being read (net/http marks a connection
// active only once it has read the request's head, and calls the handler
// after): its client saw the connection closed, and must not find later
// that what it sent was done all the same.
func servedConn(s *http.Server) {
	cc, h := s.ConnContext, s.Handler
	s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if cc != nil {
			ctx = cc(ctx, c)
		}
		if e := connEntryOf(c); e != nil {
			ctx = context.WithValue(ctx, connEntryKey{}, e)
		}
		return ctx
	}
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e, _ := r.Context().Value(connEntryKey{}).(*connEntry); e.closedForRoom() {
			panic(http.ErrAbortHandler) // (the connection is closed: no answer, no log)
		}
		h.ServeHTTP(w, r)
	})
}

// limitListener is the gate's listener for net/http's server alone
// (ServerOptions.NetHTTPOnly): its connections count against l until
// closed.
type limitListener struct {
	net.Listener
	l *connLimit
}

// Accept implements net.Listener.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if e := ll.l.admit(c); e != nil {
			return &limitConn{Conn: c, l: ll.l, e: e}, nil
		}
	}
}

// limitConn is a connection counted against a connLimit: its Close gives
// its place back.
type limitConn struct {
	net.Conn
	l *connLimit
	e *connEntry
}

// Close implements net.Conn.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.l.release(c.e)
	return err
}
