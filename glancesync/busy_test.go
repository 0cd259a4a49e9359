package glancesync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

// TestBusyImageNotWaitedFor: an image found saving when a pass begins (an
// upload by another sync, or one Glance lost: glance-api killed
// mid-upload leaves the image saving for ever) is waited for only briefly
// (busyWait), not for ImportTimeout; once it has been busy for longer than
// an import may take, the pass says so as an error. Against the real
// Glance: the upload is one the test holds open.
func TestBusyImageNotWaitedFor(t *testing.T) {
	old := busyWait
	busyWait = time.Second
	t.Cleanup(func() { busyWait = old })
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(dir, spec{vo: "atlas", tag: "busy"})
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "keep"
	o.Sync.Ingest = "upload"

	// the image as the sync creates it, its upload held open: it must
	// outlive run's 5 minutes (were it to end first, a pass that waited
	// for it would find it queued again and pass)
	holdTransfer(t, e, o, p.id)

	t.Run("ok busy elsewhere, briefly waited for", func(t *testing.T) {
		o := o
		// a pass that waited for ImportTimeout, not busyWait, would
		// outlive run's 5 minutes and fail there: no time is measured
		o.ImportTimeout = 30 * time.Minute
		r := run(t, o)
		out := r.Find(p.id)
		if r.Errors != 0 || len(out) != 1 || out[0].Action != ActionElsewhere {
			t.Fatalf("errors %d, outcome %+v; want in-flight-elsewhere", r.Errors, out)
		}
	})
	t.Run("fail busy for longer than an import may take", func(t *testing.T) {
		o := o
		o.ImportTimeout = time.Second
		time.Sleep(2 * time.Second)
		r := run(t, o)
		out := r.Find(p.id)
		if r.Errors == 0 || len(out) != 1 || out[0].Action != ActionFailed {
			t.Fatalf("errors %d, outcome %+v; want a failure", r.Errors, out)
		}
	})
}

// holdTransfer creates the image of o's one bundle as the sync would and
// holds its data transfer open, 64 KiB in, until the test ends (10 minutes
// at most, longer than run's 5), when Glance fails it and the image is
// queued again: with o.Sync.Ingest "import" a stage (the image uploading),
// else an upload (the image saving).
func holdTransfer(t *testing.T, e *env, o Options, id string) {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	bundles, _, err := o.Sources[0].List(ctx)
	if err != nil || len(bundles) != 1 {
		t.Fatalf("listing: %v %d", err, len(bundles))
	}
	it := s.judge(bundles[0], time.Now())
	if it.refused != "" {
		t.Fatal(it.refused, it.detail)
	}
	if _, err := e.glance.Create(ctx, s.createSpec(it)); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	held := StatusSaving
	if o.Sync.Ingest == "import" {
		held = StatusUploading
		go func() { done <- e.glance.Stage(ctx, id, pr) }()
	} else {
		go func() { done <- e.glance.Upload(ctx, id, pr, "") }()
	}
	t.Cleanup(func() {
		pw.CloseWithError(errors.New("test over")) // Glance fails the transfer: queued again
		<-done
	})
	if _, err := pw.Write(bytes.Repeat([]byte("x"), 64<<10)); err != nil {
		t.Fatal(err)
	}
	for e.get(t, id).Status != held {
		time.Sleep(100 * time.Millisecond)
	}
}

// TestImportFailure: Glance (Zed) marks an import that failed in every
// store by os_glance_failed_import with os_glance_importing_to_stores
// empty, and leaves the image importing (seen with a full store); the sync
// reads that as a failed import rather than one still running. (A real
// store cannot be filled on the shared test stack: the marks are the ones
// glance/async_/flows/api_image_import.py writes.)
func TestImportFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status string
		props  map[string]string
		failed bool
	}{
		{"ok importing", StatusImporting, map[string]string{"os_glance_importing_to_stores": "fs"}, false},
		{"ok one store failed, another still importing", StatusImporting, map[string]string{"os_glance_importing_to_stores": "fs2", "os_glance_failed_import": "fs"}, false},
		{"ok active after a failure in an optional store", StatusActive, map[string]string{"os_glance_failed_import": "fs"}, false},
		{"fail every store failed", StatusImporting, map[string]string{"os_glance_importing_to_stores": "", "os_glance_failed_import": "fs"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := importFailure(&Image{Status: tc.status, Props: tc.props})
			if (f != "") != tc.failed {
				t.Fatalf("importFailure = %q, want failed %v", f, tc.failed)
			}
		})
	}
}

// lockedAfterActive is the real Glance, except that the first polls that
// find an image active also show Glance's import lock still held
// (os_glance_import_task), as Zed's import task does for a moment after
// it makes the image active.
type lockedAfterActive struct {
	Glance
	mu    sync.Mutex
	polls int // left to show the lock on
}

func (g *lockedAfterActive) Get(ctx context.Context, id string) (*Image, error) {
	im, err := g.Glance.Get(ctx, id)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil && im.Status == StatusActive && g.polls > 0 {
		g.polls--
		im.Props[importLock] = "task"
	}
	return im, err
}

// TestImportLockWaitedFor: an image Glance made active while its import
// task still holds it is not taken as imported until the lock is gone: the
// task's last steps save the whole image as they read it, and the
// os_hidden=false the sync writes next was lost (seen in `make demo`: the
// catalogue image stayed hidden and a boot by tag found nothing). Against
// the real Glance, the lock shown by a wrapper for three polls.
func TestImportLockWaitedFor(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(dir, spec{vo: "atlas", tag: "locked"})
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "keep"
	o.Sync.Ingest = "import"
	g := &lockedAfterActive{Glance: e.glance, polls: 3}
	o.Glance = g
	r := run(t, o)
	if r.Errors != 0 {
		t.Fatalf("pass: %+v", r.Find(p.id))
	}
	if g.polls != 0 {
		t.Fatalf("the pass went on with the import lock held (%d polls left)", g.polls)
	}
	if im := e.get(t, p.id); im.Status != StatusActive || im.Hidden {
		t.Fatalf("image %s hidden %v", im.Status, im.Hidden)
	}
}
