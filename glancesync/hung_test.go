package glancesync

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// hangingFS makes a DirSource's calls into its file system that match
// block until released: it stands in for a kernel read, open or getdents
// on a hung NFS hard mount or CVMFS repository, which never returns and
// cannot be interrupted from Go. (TestDirSourceHungFUSE blocks real
// kernel calls, on a FUSE mount that stops answering; the passes against
// Glance use this hook, which needs neither /dev/fuse nor mount rights.)
type hangingFS struct {
	match    func(op, name string) bool
	gate     chan struct{}
	release  sync.Once
	blocked  atomic.Int32 // calls that blocked (entered the hung "kernel")
	returned atomic.Int32 // of those, the ones that returned once released
	entered  chan struct{}
}

func newHangingFS(t *testing.T, match func(op, name string) bool) *hangingFS {
	h := &hangingFS{match: match, gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	// a test that fails midway must not leave its goroutines blocked
	t.Cleanup(h.unblock)
	return h
}

func (h *hangingFS) hook(op, name string) {
	select {
	case <-h.gate:
		return // the mount is back
	default:
	}
	if !h.match(op, name) {
		return
	}
	h.blocked.Add(1)
	h.entered <- struct{}{}
	<-h.gate
	h.returned.Add(1)
}

// unblock brings the mount back: the blocked calls return.
func (h *hangingFS) unblock() { h.release.Do(func() { close(h.gate) }) }

// waitUnstuck waits until the abandoned calls of src have returned (the
// source is no longer marked hung).
func waitUnstuck(t *testing.T, src *DirSource) {
	t.Helper()
	for i := 0; src.stillHung() != nil; i++ {
		if i > 6000 {
			t.Fatalf("source %s still marked hung a minute after its calls were released", src.Root)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runBounded runs one pass and fails the test, instead of hanging it, if
// the pass does not end within minutes: on the old code a hung call held
// the pass for good.
func runBounded(t *testing.T, s *Syncer, ctx context.Context) (*Report, error) {
	t.Helper()
	type res struct {
		r   *Report
		err error
	}
	ch := make(chan res, 1)
	go func() {
		r, err := s.Run(ctx)
		ch <- res{r, err}
	}()
	select {
	case x := <-ch:
		return x.r, x.err
	case <-time.After(3 * time.Minute):
		t.Fatal("the pass did not end: it is blocked on the hung source")
		return nil, nil
	}
}

func dirSource(t *testing.T, o Options, root string) *DirSource {
	t.Helper()
	for _, src := range o.Sources {
		if d, ok := src.(*DirSource); ok && d.Root == root {
			return d
		}
	}
	t.Fatalf("no source %s", root)
	return nil
}

// TestDirSourceHungListing: a listing whose file system does not answer
// is abandoned past Limits.Time (and the grace) with an error that names
// the source and says the file system did not answer; the next listing
// does not call into the file system again but says the source is still
// hung; once the blocked call returns, the source lists again.
func TestDirSourceHungListing(t *testing.T) {
	w := newWorld(t)
	root := t.TempDir()
	w.publish(root, spec{vo: "atlas"})
	h := newHangingFS(t, func(op, _ string) bool { return op == "readdir" })
	d := &DirSource{Root: root, AllowedVOs: []string{"atlas"}, Limits: ListingLimits{Time: 50 * time.Millisecond}, HungGrace: 50 * time.Millisecond, fsHook: h.hook}
	_, _, err := d.List(context.Background())
	var he *HungError
	if !errors.As(err, &he) || !errors.Is(err, ErrHungFS) || he.Still {
		t.Fatalf("hung listing: err %v, want a HungError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, root) || !strings.Contains(msg, "the file system did not answer within 50ms (a hung mount?)") {
		t.Errorf("hung listing: %q does not name the source and say the file system did not answer", msg)
	}
	if n := StuckOperations(); n < 1 {
		t.Errorf("StuckOperations %d after an abandoned listing", n)
	}
	_, _, err = d.List(context.Background())
	if !errors.As(err, &he) || !he.Still || !strings.Contains(err.Error(), "still hung") {
		t.Fatalf("second listing: err %v, want still hung", err)
	}
	if n := h.blocked.Load(); n != 1 {
		t.Errorf("%d calls blocked in the hung file system, want 1: the second listing started another", n)
	}
	h.unblock()
	waitUnstuck(t, d)
	bundles, _, err := d.List(context.Background())
	if err != nil || len(bundles) != 1 {
		t.Fatalf("listing once the mount is back: %d bundles, err %v", len(bundles), err)
	}
}

// TestDirSourceHungListingCancel: cancelling a listing blocked in the file
// system (the daemon stopping, with the default 30-minute listing bound
// far off) returns at once with the context's error, the call abandoned.
func TestDirSourceHungListingCancel(t *testing.T) {
	root := t.TempDir()
	h := newHangingFS(t, func(op, _ string) bool { return op == "open" })
	d := &DirSource{Root: root, AllowedVOs: []string{"atlas"}, fsHook: h.hook}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-h.entered; cancel() }()
	done := make(chan error, 1)
	go func() { _, _, err := d.List(ctx); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrHungFS) || !strings.Contains(err.Error(), root) {
			t.Errorf("cancelled listing: err %v, want the context's error naming the source", err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("cancel did not end a listing blocked in the file system")
	}
	h.unblock()
	waitUnstuck(t, d)
}

// TestHungSourceListing: a pass with a directory source whose listing
// blocks in the file system ends; the other source's bundle is mirrored,
// nothing of the hung source's VO is retired, the failure is counted; the
// next pass does not start another listing on the hung source; once the
// call returns, the pass after mirrors the source again. On the old code
// the first pass never ended.
func TestHungSourceListing(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	root := t.TempDir()
	atlas, cmsDir := filepath.Join(root, "atlas"), filepath.Join(root, "cms")
	a1 := w.publish(atlas, spec{vo: "atlas"})
	c1 := w.publish(cmsDir, spec{vo: "cms"})
	o := e.options(t, w, map[string][]string{atlas: {"atlas"}, cmsDir: {"cms"}})
	log, logs := captureLogger(t)
	o.Logger = log
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if r, err := runBounded(t, s, ctx); err != nil || r.Errors != 0 {
		t.Fatalf("first pass: err %v, report %+v", err, r)
	}

	// the cms mount hangs; cms withdraws c1 (which a complete listing
	// would retire) and atlas publishes a2
	cms := dirSource(t, o, cmsDir)
	h := newHangingFS(t, func(op, _ string) bool { return op == "readdir" })
	cms.fsHook, cms.Limits.Time, cms.HungGrace = h.hook, 100*time.Millisecond, 100*time.Millisecond
	removeBundle(t, c1)
	a2 := w.publish(atlas, spec{vo: "atlas", tag: "analysis"})
	r, err := runBounded(t, s, ctx)
	if err != nil {
		t.Fatalf("pass with a hung source: %v", err)
	}
	if r.SourceErrors != 1 || r.Complete() {
		t.Errorf("pass with a hung source: %d source errors, complete %v", r.SourceErrors, r.Complete())
	}
	if im := e.get(t, a2.id); im.Status != StatusActive {
		t.Errorf("other source's new bundle: status %s, want active", im.Status)
	}
	for _, p := range []*published{a1, c1} {
		if im := e.get(t, p.id); im.Status != StatusActive || im.Hidden {
			t.Errorf("%s/%s: status %s hidden %v: retired on a listing that failed", p.vo, p.id, im.Status, im.Hidden)
		}
	}
	failed := logs.lines("source listing failed; nothing of its VOs is retired this pass")
	if len(failed) != 1 || failed[0].attrs["source"] != cmsDir ||
		!strings.Contains(failed[0].attrs["err"], "the file system did not answer within 100ms (a hung mount?)") {
		t.Fatalf("hung listing logged as %+v", failed)
	}
	if n := counterValue(s.m.HungFS); n != 1 {
		t.Errorf("hung_fs_total %v after one hung listing, want 1", n)
	}

	// still hung: the pass ends again, without another listing on it
	r, err = runBounded(t, s, ctx)
	if err != nil || r.SourceErrors != 1 {
		t.Fatalf("pass while still hung: err %v, %d source errors", err, r.SourceErrors)
	}
	if n := h.blocked.Load(); n != 1 {
		t.Errorf("%d listings blocked in the hung file system, want 1: a pass started another on the source still hung", n)
	}
	failed = logs.lines("source listing failed; nothing of its VOs is retired this pass")
	if len(failed) != 2 || !strings.Contains(failed[1].attrs["err"], "still hung") {
		t.Errorf("pass while still hung logged %+v", failed)
	}
	if im := e.get(t, c1.id); im.Hidden {
		t.Errorf("%s hidden while its source is hung", c1.id)
	}

	// the mount is back: its blocked call returns, and the next pass
	// lists the source (and, complete, retires the withdrawn c1)
	h.unblock()
	waitUnstuck(t, cms)
	if h.returned.Load() != 1 {
		t.Errorf("%d blocked calls returned, want 1", h.returned.Load())
	}
	c2 := w.publish(cmsDir, spec{vo: "cms", tag: "analysis"})
	r, err = runBounded(t, s, ctx)
	if err != nil || r.SourceErrors != 0 || r.Errors != 0 {
		t.Fatalf("pass once the mount is back: err %v, report %+v", err, r)
	}
	if im := e.get(t, c2.id); im.Status != StatusActive {
		t.Errorf("the recovered source's new bundle: status %s", im.Status)
	}
	if im := e.get(t, c1.id); !im.Hidden {
		t.Errorf("%s withdrawn from the recovered source, not retired once it lists", c1.id)
	}
}

// TestHungSourceImageRead: an image read the file system does not answer
// is abandoned at the transfer bound; the pass ends, the image fails with
// an error naming the source, the other image is mirrored; the next pass
// reads nothing more from the hung source; once the read returns, the
// image is mirrored. On the old code the pass never ended.
func TestHungSourceImageRead(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	root := t.TempDir()
	atlas, cmsDir := filepath.Join(root, "atlas"), filepath.Join(root, "cms")
	a1 := w.publish(atlas, spec{vo: "atlas"})
	c1 := w.publish(cmsDir, spec{vo: "cms"})
	o := e.options(t, w, map[string][]string{atlas: {"atlas"}, cmsDir: {"cms"}})
	// the bound of a transfer: the healthy image's 64 KiB go well within it
	o.Sync.TransferSlack.Duration = 5 * time.Second
	o.ResumeAfter = -1 // one sync only: resume its own interrupted stage at once
	log, logs := captureLogger(t)
	o.Logger = log
	cms := dirSource(t, o, cmsDir)
	h := newHangingFS(t, func(op, name string) bool { return op == "read" && strings.HasSuffix(name, ".img") })
	cms.fsHook, cms.HungGrace = h.hook, 100*time.Millisecond
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := runBounded(t, s, ctx)
	if err != nil {
		t.Fatalf("pass with a hung image read: %v", err)
	}
	if im := e.get(t, a1.id); im.Status != StatusActive {
		t.Errorf("other source's image: status %s, want active", im.Status)
	}
	var detail string
	for _, oc := range r.Find(c1.id) {
		if oc.Action == ActionFailed {
			detail = oc.Detail
		}
	}
	if !strings.Contains(detail, cmsDir) || !strings.Contains(detail, "the file system did not answer within") || !strings.Contains(detail, "(a hung mount?)") {
		t.Errorf("hung image read: outcome detail %q", detail)
	}
	if h.blocked.Load() != 1 {
		t.Errorf("%d reads blocked, want 1 (no second attempt on the hung source)", h.blocked.Load())
	}
	if n := counterValue(s.m.HungFS); n != 1 {
		t.Errorf("hung_fs_total %v, want 1", n)
	}

	r, err = runBounded(t, s, ctx)
	if err != nil || r.SourceErrors != 1 {
		t.Fatalf("pass while still hung: err %v, %d source errors", err, r.SourceErrors)
	}
	if h.blocked.Load() != 1 {
		t.Errorf("%d reads blocked, want 1: a pass read the source still hung", h.blocked.Load())
	}
	if l := logs.lines("source listing failed; nothing of its VOs is retired this pass"); len(l) != 1 || !strings.Contains(l[0].attrs["err"], "still hung") {
		t.Errorf("pass while still hung logged %+v", l)
	}

	h.unblock()
	waitUnstuck(t, cms)
	r, err = runBounded(t, s, ctx)
	if err != nil || r.Errors != 0 {
		t.Fatalf("pass once the mount is back: err %v, report %+v", err, r)
	}
	if im := e.get(t, c1.id); im.Status != StatusActive {
		t.Errorf("image of the recovered source: status %s, want active", im.Status)
	}
}

// TestHungSourceCancel: cancelling a pass (SIGTERM) while an image read is
// blocked in the file system, with the transfer bound far off, ends the
// pass at once. On the old code it waited for the read.
func TestHungSourceCancel(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	root := t.TempDir()
	c1 := w.publish(root, spec{vo: "cms"})
	o := e.options(t, w, map[string][]string{root: {"cms"}})
	d := dirSource(t, o, root)
	h := newHangingFS(t, func(op, name string) bool { return op == "read" && strings.HasSuffix(name, ".img") })
	d.fsHook = h.hook
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-h.entered; cancel() }()
	r, err := runBounded(t, s, ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled pass: err %v", err)
	}
	if r != nil {
		for _, oc := range r.Find(c1.id) {
			if oc.Action == ActionMirrored {
				t.Errorf("image mirrored from a read that never returned")
			}
		}
	}
	h.unblock()
	waitUnstuck(t, d)
}
