package glancesync

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fuseHang is a FUSE file system (a loopback of a directory) that stops
// answering while hung: its OPENDIR or READ requests are held until it is
// released, so the kernel calls of a client (getdents' open, read) block
// in the kernel as on a CVMFS repository whose FUSE client is stuck.
type fuseHang struct {
	// hungDirs, hungReads: the OPENDIR, the READ requests are held
	hungDirs, hungReads atomic.Bool
	gate                chan struct{}
	release             sync.Once
	held                atomic.Int32 // requests held
	// stop, closed by a watchdog or the test's end, answers every request:
	// a request still held when the test process exits would leave it
	// in state D for good (the file system's server is in the process),
	// so a test that fails by blocking (the old code) gets its answer
	// after minutes and fails instead of hanging the test run
	stop     chan struct{}
	stopOnce sync.Once
}

func (h *fuseHang) wait(hung *atomic.Bool) {
	if hung.Load() {
		h.held.Add(1)
		select {
		case <-h.gate:
		case <-h.stop:
		}
	}
}

func (h *fuseHang) unblock() {
	h.hungDirs.Store(false)
	h.hungReads.Store(false)
	h.release.Do(func() { close(h.gate) })
}

type hangNode struct {
	*fs.LoopbackNode
	h *fuseHang
}

// WrapChild makes every node of the tree a hangNode.
func (n *hangNode) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &hangNode{LoopbackNode: ops.(*fs.LoopbackNode), h: n.h}
}

func (n *hangNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.h.wait(&n.h.hungDirs)
	return n.LoopbackNode.OpendirHandle(ctx, flags)
}

func (n *hangNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, ff, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return fh, ff, errno
	}
	return &hangFile{fh: fh, h: n.h}, ff | fuse.FOPEN_DIRECT_IO, 0
}

type hangFile struct {
	fh fs.FileHandle
	h  *fuseHang
}

func (f *hangFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.h.wait(&f.h.hungReads)
	return f.fh.(fs.FileReader).Read(ctx, dest, off)
}

func (f *hangFile) Release(ctx context.Context) syscall.Errno {
	return f.fh.(fs.FileReleaser).Release(ctx)
}

// mountHanging mounts dir through a fuseHang at a new directory, or skips
// the test where FUSE cannot be mounted (no /dev/fuse, not root).
func mountHanging(t *testing.T, dir string) (string, *fuseHang) {
	t.Helper()
	lr, err := fs.NewLoopbackRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := &fuseHang{gate: make(chan struct{}), stop: make(chan struct{})}
	stop := func() { h.stopOnce.Do(func() { close(h.stop) }) }
	watchdog := time.AfterFunc(2*time.Minute, stop)
	root := &hangNode{LoopbackNode: lr.(*fs.LoopbackNode), h: h}
	mnt := t.TempDir()
	srv, err := fs.Mount(mnt, root, &fs.Options{MountOptions: fuse.MountOptions{DirectMount: true, FsName: "imagetrust-hung-test", Name: "hungtest"}})
	if err != nil {
		t.Skipf("cannot mount a FUSE file system here (needs /dev/fuse and root): %v", err)
	}
	t.Cleanup(func() {
		watchdog.Stop()
		stop()
		if err := srv.Unmount(); err != nil {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	return mnt, h
}

// TestDirSourceHungFUSE: on a real FUSE mount that stops answering (the
// calls block in the kernel, not in Go), an image read and a listing are
// abandoned within their bounds with errors that name the source; while
// the abandoned call has not returned, the source is not called into
// again; once the file system answers, it lists and reads again. On the
// old code List and the read blocked until the file system answered.
func TestDirSourceHungFUSE(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(dir, spec{vo: "cms"})
	mnt, h := mountHanging(t, dir)
	d := &DirSource{Root: mnt, AllowedVOs: []string{"cms"}, Limits: ListingLimits{Time: 200 * time.Millisecond}, HungGrace: 100 * time.Millisecond}
	bundles, _, err := d.List(context.Background())
	if err != nil || len(bundles) != 1 {
		t.Fatalf("listing the FUSE mount: %d bundles, err %v", len(bundles), err)
	}

	// the image's read hangs in the kernel
	h.hungReads.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rc, where, err := bundles[0].OpenImage(ctx, p.name+".img")
	if err != nil {
		t.Fatalf("open %s: %v", where, err)
	}
	_, err = io.ReadAll(rc)
	_ = rc.Close()
	if !errors.Is(err, ErrHungFS) || !strings.Contains(err.Error(), mnt) || !strings.Contains(err.Error(), "the file system did not answer within") {
		t.Fatalf("read on the hung FUSE mount: err %v", err)
	}
	held := h.held.Load()
	if held < 1 {
		t.Fatalf("no request held by the FUSE file system: the read did not reach the kernel")
	}
	_, _, err = d.List(context.Background())
	if !errors.Is(err, ErrHungFS) || !strings.Contains(err.Error(), "still hung") {
		t.Fatalf("listing while the read is stuck: err %v", err)
	}
	if h.held.Load() != held {
		t.Errorf("%d requests held, want %d: a listing called into the hung file system", h.held.Load(), held)
	}
	h.unblock()
	waitUnstuck(t, d)

	// now the listing hangs (its open of the directory)
	h.gate, h.release = make(chan struct{}), sync.Once{}
	h.hungDirs.Store(true)
	_, _, err = d.List(context.Background())
	if !errors.Is(err, ErrHungFS) || !strings.Contains(err.Error(), "listing: the file system did not answer within 200ms (a hung mount?)") {
		t.Fatalf("listing on the hung FUSE mount: err %v", err)
	}
	h.unblock()
	waitUnstuck(t, d)
	if bundles, _, err = d.List(context.Background()); err != nil || len(bundles) != 1 {
		t.Fatalf("listing once the FUSE mount answers: %d bundles, err %v", len(bundles), err)
	}
	rc, _, err = bundles[0].OpenImage(context.Background(), p.name+".img")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || len(b) != len(p.image) {
		t.Fatalf("reading the image once the FUSE mount answers: %d bytes, err %v", len(b), err)
	}
}
