package glancesync

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// slowServers stands in for a Nova that answers slowly (within its
// bound): after the first question, each waits until want questions are
// in flight at once (or gives up when the test's context ends, or after a
// minute), and counts the questions per image. No server uses any image.
// (The pass may ask about other tests' images of the shared mirror
// project too: they left every source of atlas.)
type slowServers struct {
	want     int
	mu       sync.Mutex
	inFlight int
	most     int
	asked    map[string]int
	full     chan struct{}
	closed   bool
	first    bool
}

func (s *slowServers) InUse(ctx context.Context, id string) (bool, bool, error) {
	s.mu.Lock()
	s.asked[id]++
	if !s.first {
		s.first = true // the first question is asked alone
		s.mu.Unlock()
		return false, true, nil
	}
	s.inFlight++
	s.most = max(s.most, s.inFlight)
	if s.inFlight == s.want && !s.closed {
		s.closed = true
		close(s.full)
	}
	s.mu.Unlock()
	select {
	case <-s.full:
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
	s.mu.Lock()
	s.inFlight--
	s.mu.Unlock()
	return false, true, nil
}

// TestRetireAsksNovaInParallel: under retire = delete, the images a pass
// retires are asked about once each, the first alone and the others on
// up to sync.parallel questions at once, so that a Nova that answers
// slowly holds the pass for a fraction of the sum of its answers (Nova's
// API takes one image per question, and the listing that names every
// server's image needs a right the mirror user is not given). All are
// deleted (no server uses them). Against the real Glance; Nova is a
// stand-in that holds each question until two are in flight. Before, they
// were asked one after the other: never two at once.
func TestRetireAsksNovaInParallel(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	var old []*published
	for i := range 3 {
		old = append(old, w.publish(dir, spec{vo: "atlas", tag: "slow-nova", created: w.now.Add(time.Duration(-5+i) * time.Hour)}))
	}
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "keep"
	run(t, o)
	cur := w.publish(dir, spec{vo: "atlas", tag: "slow-nova", created: w.now.Add(-time.Hour)})

	o.Sync.Retire = "delete"
	o.Sync.Parallel = 2
	ss := &slowServers{want: 2, asked: map[string]int{}, full: make(chan struct{})}
	o.Servers = ss
	r := run(t, o)
	for _, p := range old {
		if _, err := e.admin.Get(context.Background(), p.id); err == nil {
			t.Errorf("superseded image %s not deleted: %+v", p.id, r.Find(p.id))
		}
		if n := ss.asked[p.id]; n != 1 {
			t.Errorf("Nova asked %d times about %s in the pass, want once", n, p.id)
		}
	}
	if n := ss.asked[cur.id]; n != 0 {
		t.Errorf("Nova asked about the current image %d times", n)
	}
	if ss.most != 2 {
		t.Errorf("at most %d questions to Nova at once, want sync.parallel (2)", ss.most)
	}
}

// heldDownServers stands in for a Nova that answers the first question
// (no server uses the image) and then goes down: each later question waits
// until want are in flight at once (or a minute, or the test's end) and
// fails as a refused connection would.
type heldDownServers struct {
	slowServers
}

func (h *heldDownServers) InUse(ctx context.Context, id string) (bool, bool, error) {
	h.mu.Lock()
	first := !h.first
	h.mu.Unlock()
	if _, _, err := h.slowServers.InUse(ctx, id); err != nil || first {
		return false, true, err
	}
	return false, false, &url.Error{Op: "Get", URL: "http://nova:8774/v2.1/servers?image=" + id, Err: syscall.ECONNREFUSED}
}

// TestRetireNovaDownToldOncePerPass: when the questions a pass asks Nova
// at once (sync.parallel) all fail, the pass says so in one ERROR line
// ("left for the next pass"), not one per failed question; each image left
// is still its own failed outcome (and WARN). Against the real Glance;
// Nova is a stand-in that answers the first question (the images of other
// tests of the shared mirror project may be asked too) and fails the
// others, the first three held until all three are in flight. Before, the
// ERROR line came once per failed answer: three times. (Past the grace
// the same holds, and imagetrust_sync_errors_total counts it once; a pass
// gets there with several failed answers only with a grace shorter than a
// question, since the first answer of a pass ends the outage.)
func TestRetireNovaDownToldOncePerPass(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	var old []*published
	for i := range 4 {
		old = append(old, w.publish(dir, spec{vo: "atlas", tag: "told-once", created: w.now.Add(time.Duration(-9+i) * time.Hour)}))
	}
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "keep"
	run(t, o)
	w.publish(dir, spec{vo: "atlas", tag: "told-once", created: w.now.Add(-time.Hour)})

	o.Sync.Retire = "delete"
	o.Sync.Parallel = 3
	o.ServersDownGrace = time.Hour
	o.Servers = &heldDownServers{slowServers{want: 3, asked: map[string]int{}, full: make(chan struct{})}}
	var logs *logCapture
	o.Logger, logs = captureLogger(t)
	r := run(t, o)
	const msg = "cannot ask Nova whether servers use images: retiring them (retire = delete) is left for the next pass"
	if n := len(logs.lines(msg)); n != 1 {
		t.Errorf("%d ERROR lines %q in the pass, want 1", n, msg)
	}
	failed := 0
	for _, p := range old {
		for _, oc := range r.Find(p.id) {
			if oc.Action == ActionFailed && strings.Contains(oc.Detail, "not retired in this pass") {
				failed++
			}
		}
	}
	if failed < 3 {
		t.Errorf("%d of the 4 superseded images left as failed outcomes, want 3 or more (at most the first asked is answered)", failed)
	}
}

// lateAnswerServers stands in for a Nova that answers the first question
// of a pass, fails the second (refused) once a third is asked, and answers
// the others only once the failure is recorded (the record file exists; a minute at
// most): answers of questions asked at the same time that come after the
// pass saw Nova fail.
type lateAnswerServers struct {
	record string
	mu     sync.Mutex
	n      int
}

func (l *lateAnswerServers) InUse(ctx context.Context, id string) (bool, bool, error) {
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	switch n {
	case 1:
		return false, true, nil
	case 2:
		// once the third is in flight (a minute at most)
		for end := time.Now().Add(time.Minute); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
			l.mu.Lock()
			third := l.n >= 3
			l.mu.Unlock()
			if third {
				break
			}
		}
		return false, false, &url.Error{Op: "Get", URL: "http://nova:8774/v2.1/servers?image=" + id, Err: syscall.ECONNREFUSED}
	}
	for end := time.Now().Add(time.Minute); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(l.record); err == nil {
			break
		}
	}
	return false, true, nil
}

// threeToRetire mirrors three images of tag under retire = keep, then
// publishes a fourth: the options it returns are for a pass under retire =
// delete that retires the three, asking Nova (Options.Servers, for the
// caller to set) about each, the first alone and the others two at once,
// with a grace of an hour and an outage record of the test's own.
func threeToRetire(t *testing.T, tag string) Options {
	t.Helper()
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	for i := range 3 {
		w.publish(dir, spec{vo: "atlas", tag: tag, created: w.now.Add(time.Duration(-9+i) * time.Hour)})
	}
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "keep"
	run(t, o)
	w.publish(dir, spec{vo: "atlas", tag: tag, created: w.now.Add(-time.Hour)})

	o.Sync.Retire = "delete"
	o.Sync.Parallel = 2
	o.ServersDownGrace = time.Hour
	o.ServersOutageFile = filepath.Join(t.TempDir(), "sync.nova-down")
	return o
}

// TestRetireLateAnswerKeepsOutage: an answer of a question asked at the
// same time as one that failed, which comes after the failure, does not end
// the outage the pass saw: the record of its start (sync.nova-down) is
// still there after the pass, and the Syncer still counts it. Against the
// real Glance; Nova is a stand-in (lateAnswerServers). Pins what dcc8d80
// says of askServer; before this test, askServer ending the outage on any
// answer (the rp.serversDown() check dropped) passed every test.
func TestRetireLateAnswerKeepsOutage(t *testing.T) {
	o := threeToRetire(t, "late-answer")
	l := &lateAnswerServers{record: o.ServersOutageFile}
	o.Servers = l
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	asked := l.n
	l.mu.Unlock()
	if asked < 3 {
		t.Fatalf("Nova asked %d questions, want 3 or more (one answered, one failed, one answered late)", asked)
	}
	if _, err := os.Stat(o.ServersOutageFile); err != nil {
		t.Errorf("record of Nova's outage after a pass that saw it fail: %v", err)
	}
	if since, _ := s.serversDownLong(); since.IsZero() {
		t.Error("the outage the pass saw ended by an answer that came after the failure")
	}
}

// straddleServers stands in for a Nova whose answer to the second question
// of a pass is being recorded when the third question fails: the first
// question is answered, the second answered at once, the third refused
// once the second's answer is past its check that the pass saw no failure
// (afterAnswerChecked; a minute at most).
type straddleServers struct {
	mu      sync.Mutex
	n       int
	checked chan struct{}
}

func (l *straddleServers) InUse(ctx context.Context, id string) (bool, bool, error) {
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	if n < 3 {
		return false, true, nil
	}
	select {
	case <-l.checked:
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
	return false, false, &url.Error{Op: "Get", URL: "http://nova:8774/v2.1/servers?image=" + id, Err: syscall.ECONNREFUSED}
}

// TestRetireAnswerStraddlingFailure: an answer that the pass checked
// before another question failed, and recorded after, does not end the
// outage that failure starts: what a question reads and records of Nova's
// outage is one step (reporter.outageMu). Against the real Glance; Nova is
// a stand-in (straddleServers). The test holds the answer between its
// check and its record (afterAnswerChecked) until the failure's record
// file appears, five seconds at most: before outageMu the failure was
// recorded meanwhile and the answer then removed it.
func TestRetireAnswerStraddlingFailure(t *testing.T) {
	o := threeToRetire(t, "straddle")
	l := &straddleServers{checked: make(chan struct{})}
	o.Servers = l
	var calls int
	old := afterAnswerChecked
	afterAnswerChecked = func() {
		calls++ // under reporter.outageMu, or (before it) one at a time: the first question is asked alone
		if calls != 2 {
			return
		}
		close(l.checked)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(o.ServersOutageFile); err == nil {
				return
			}
		}
	}
	t.Cleanup(func() { afterAnswerChecked = old })
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if calls < 2 {
		t.Fatalf("%d answers checked, want 2 (the first question's, the second's)", calls)
	}
	if _, err := os.Stat(o.ServersOutageFile); err != nil {
		t.Errorf("record of Nova's outage after a pass that saw it fail: %v", err)
	}
	if since, _ := s.serversDownLong(); since.IsZero() {
		t.Error("the outage ended by an answer checked before the failure and recorded after it")
	}
}
