package glancesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// A directory source's file system may hang: a read, open or getdents on
// an NFS hard mount whose server is gone, or on a CVMFS repository whose
// FUSE client stopped answering, blocks in the kernel and cannot be
// interrupted from Go. Every such call of a DirSource therefore runs in a
// goroutine of its own that the pass waits for only as long as the call's
// bound (the listing's ListingLimits.Time, an image's transfer bound) or
// its context: past that, the goroutine is abandoned (it cannot be
// killed), the operation fails with ErrHungFS, and the source is marked
// hung until the goroutine returns. While it is, every operation on the
// source fails at once as still hung, so that abandoned goroutines do not
// pile up pass after pass.

// ErrHungFS marks an operation on a directory source's file system that
// did not return within its bound, or that was not started because an
// earlier one on the same source has still not returned: a hung mount.
var ErrHungFS = errors.New("hung file system")

// HungError is an operation on a directory source abandoned, or not
// started, because its file system did not answer. errors.Is(err,
// ErrHungFS) holds.
type HungError struct {
	// Source is the source (its root directory).
	Source string
	// Op is what was abandoned ("listing", "reading image PATH", ...).
	Op string
	// Within is how long the operation was waited for.
	Within time.Duration
	// Still: not started, an earlier operation (Earlier, started Since)
	// has not returned yet.
	Still   bool
	Earlier string
	Since   time.Time
	// Cancelled: abandoned because the pass was cancelled (the daemon
	// stopping), not for its bound; Cause is the context's error.
	Cancelled bool
	Cause     error
}

// Unwrap is the context's error of an operation abandoned on cancel.
func (e *HungError) Unwrap() error { return e.Cause }

func (e *HungError) Error() string {
	switch {
	case e.Still:
		return fmt.Sprintf("source %s: still hung: %s, abandoned since %s, has not returned (a hung mount?); nothing is tried on the source until it does",
			e.Source, e.Earlier, e.Since.UTC().Format(time.RFC3339))
	case e.Cancelled:
		return fmt.Sprintf("source %s: %s: abandoned on cancel after %s without an answer from the file system (a hung mount?)", e.Source, e.Op, roundWait(e.Within))
	}
	return fmt.Sprintf("source %s: %s: the file system did not answer within %s (a hung mount?); the operation is abandoned and nothing more is tried on the source until it returns",
		e.Source, e.Op, roundWait(e.Within))
}

// Is makes every HungError an ErrHungFS.
func (e *HungError) Is(target error) bool { return target == ErrHungFS }

func roundWait(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// DefaultHungGrace is how long, once an operation's bound has passed, a
// directory source still waits for it before taking its file system for
// hung (DirSource.HungGrace): a listing checks its bound between reads, so
// one that is merely slow returns within moments of it.
const DefaultHungGrace = 5 * time.Second

// stuckOps are the abandoned operations not yet returned, by source root
// (absolute): kept across the DirSources of one root, so that a reload
// (SIGHUP builds new sources) does not start another operation on a
// source still hung.
var stuckOps = struct {
	sync.Mutex
	m map[string]*stuck
}{m: map[string]*stuck{}}

// stuck are a source's abandoned operations.
type stuck struct {
	n     int       // how many have not returned
	op    string    // the first of them
	since time.Time // when it was abandoned
}

// StuckOperations is how many operations on directory sources were
// abandoned on a hung file system and have not returned yet (their
// goroutines are still blocked in the kernel).
func StuckOperations() int {
	stuckOps.Lock()
	defer stuckOps.Unlock()
	n := 0
	for _, s := range stuckOps.m {
		n += s.n
	}
	return n
}

// StuckSources describes, for each directory source with an operation
// abandoned on a hung file system and not returned yet, the source and
// the operation, sorted: what a stopping sync leaves behind.
func StuckSources() []string {
	stuckOps.Lock()
	defer stuckOps.Unlock()
	var out []string
	for root, s := range stuckOps.m {
		out = append(out, fmt.Sprintf("%s (%s, abandoned since %s)", root, s.op, s.since.UTC().Format(time.RFC3339)))
	}
	sort.Strings(out)
	return out
}

func (d *DirSource) stuckKey() string {
	if abs, err := filepath.Abs(d.Root); err == nil {
		return abs
	}
	return d.Root
}

// stillHung is the HungError of a source with an abandoned operation not
// yet returned, or nil.
func (d *DirSource) stillHung() error {
	stuckOps.Lock()
	defer stuckOps.Unlock()
	if s := stuckOps.m[d.stuckKey()]; s != nil {
		return &HungError{Source: d.Root, Still: true, Earlier: s.op, Since: s.since}
	}
	return nil
}

// guard runs call (an operation on the source's file system, op naming it)
// in a goroutine of its own and waits for it until ctx ends or, when
// bound > 0, bound has passed, then for the grace: a call that has not
// returned by then is abandoned (left running, the source marked hung
// until it returns) and guard returns a *HungError. A call that returns
// in time has its own error returned. A source still hung is not called.
func (d *DirSource) guard(ctx context.Context, op string, bound time.Duration, call func() error) error {
	if err := d.stillHung(); err != nil {
		return err
	}
	return d.run(ctx, op, bound, call)
}

// run is guard without the check that the source is not still hung.
func (d *DirSource) run(ctx context.Context, op string, bound time.Duration, call func() error) error {
	start := time.Now()
	var (
		mu        sync.Mutex
		finished  bool
		abandoned bool
		result    error
	)
	done := make(chan struct{})
	key := d.stuckKey()
	go func() {
		err := call()
		mu.Lock()
		defer mu.Unlock()
		finished, result = true, err
		if abandoned {
			stuckOps.Lock()
			if s := stuckOps.m[key]; s != nil {
				if s.n--; s.n <= 0 {
					delete(stuckOps.m, key)
				}
			}
			stuckOps.Unlock()
		}
		close(done)
	}()
	var timeout <-chan time.Time
	if bound > 0 {
		t := time.NewTimer(bound)
		defer t.Stop()
		timeout = t.C
	}
	cancelled := false
	ctxDone := ctx.Done()
	select {
	case <-done:
		return result
	case <-timeout:
	case <-ctxDone:
		cancelled = !errors.Is(ctx.Err(), context.DeadlineExceeded)
		ctxDone = nil // done already: not a reason to cut the grace short
	}
	// a bound passed: a call merely slow returns within the grace; on
	// cancel (the daemon stopping) a call that answers returns at once
	grace := d.HungGrace
	if grace <= 0 {
		grace = DefaultHungGrace
	}
	if cancelled {
		grace = min(grace, cancelGrace)
	}
	g := time.NewTimer(grace)
	defer g.Stop()
	select {
	case <-done:
		return result
	case <-g.C:
	case <-ctxDone:
		// the pass ended (or its deadline) during the grace
		cancelled = !errors.Is(ctx.Err(), context.DeadlineExceeded)
	}
	within := time.Since(start)
	if bound > 0 && !cancelled {
		within = bound
	}
	mu.Lock()
	defer mu.Unlock()
	if finished {
		return result
	}
	abandoned = true
	stuckOps.Lock()
	if s := stuckOps.m[key]; s != nil {
		s.n++
	} else {
		stuckOps.m[key] = &stuck{n: 1, op: op, since: time.Now()}
	}
	stuckOps.Unlock()
	he := &HungError{Source: d.Root, Op: op, Within: within, Cancelled: cancelled}
	if cancelled {
		he.Cause = ctx.Err()
	}
	return he
}

// cancelGrace is how long, on cancel, an operation is still waited for
// before it is abandoned: the daemon stops within its shutdown bound
// whatever the file system does.
const cancelGrace = 200 * time.Millisecond

// guardedFile reads and closes an image file of a directory source through
// guard: a read the file system does not answer is abandoned when ctx
// (the transfer's, bounded by the transfer bound) ends.
type guardedFile struct {
	d    *DirSource
	ctx  context.Context
	f    io.ReadCloser
	path string
	// readOp names a read of it ("reading image PATH"), made once: Read
	// runs for every buffer of the image
	readOp string
	// buf is what the read goroutine reads into: an abandoned read may
	// write into it later, so it is never the caller's slice.
	buf []byte
	// mu guards err: Go's HTTP transport may still be in Read (its write
	// loop) when the request has returned and the caller closes the file.
	mu sync.Mutex
	// err, once set, is returned by every Read: the source's goroutine
	// may still be in f.Read.
	err error
}

func (g *guardedFile) broken() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *guardedFile) Read(p []byte) (int, error) {
	if err := g.broken(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if cap(g.buf) < len(p) {
		g.buf = make([]byte, len(p))
	}
	buf := g.buf[:len(p)]
	var n int
	err := g.d.guard(g.ctx, g.readOp, 0, func() error {
		var rerr error
		n, rerr = g.f.Read(buf)
		return rerr
	})
	if errors.Is(err, ErrHungFS) {
		g.mu.Lock()
		g.err = err
		g.mu.Unlock()
		return 0, err
	}
	copy(p, buf[:n])
	return n, err
}

// Close closes the file, without waiting when a read of it was abandoned
// (closing it may wait for that read, or for the file system).
func (g *guardedFile) Close() error {
	if g.broken() != nil || g.ctx.Err() != nil {
		go func() { _ = g.f.Close() }() // read-only: nothing lost
		return nil
	}
	err := g.d.run(g.ctx, "closing image "+g.path, 0, g.f.Close)
	if errors.Is(err, ErrHungFS) {
		return nil // the read is done: a close the file system holds up loses nothing
	}
	return err
}
