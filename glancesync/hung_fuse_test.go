package glancesync

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The FUSE file system of these tests is served by a child process (this
// test binary run again, see serveHangingFUSE), never by the test process
// itself: a request the file system holds blocks the client's thread in
// the kernel, and once a request has been sent to the server the kernel
// waits for its answer uninterruptibly, even for a killed process. Were
// the server in the test process, a test process killed while a request is
// held (go test -timeout, ^C, a CI job's kill) would be waiting on itself
// and stay in state D for good, its mount with it. Served from a child:
// the kill makes the kernel send the child an INTERRUPT for each held
// request, which the child answers (EINTR); the test process exits, the
// child sees its stdin close, answers everything, unmounts and exits; a
// child that dies instead closes /dev/fuse, which aborts the connection
// (every request fails ENOTCONN). The test process's clean-up unmounts
// lazily on every path as well, and the child answers every request by
// itself after a watchdog well below the test timeout.

const (
	// envFUSEServe: "<dir>\n<mount point>\n<watchdog>": run as the
	// FUSE server of a loopback of dir at the mount point
	envFUSEServe = "IMAGETRUST_TEST_FUSE_SERVE"
	// fuseWatchdog: after this the server answers every request held, so
	// a test that fails by blocking (the old code) fails instead of
	// hanging; below go test's default -timeout of 10 minutes
	fuseWatchdog = 90 * time.Second
)

// fuseHang is the server side: a FUSE file system (a loopback of a
// directory) that stops answering while hung: its OPENDIR or READ requests
// are held until it is released, so the kernel calls of a client
// (getdents' open, read) block in the kernel as on a CVMFS repository
// whose FUSE client is stuck.
type fuseHang struct {
	// hungDirs, hungReads: the OPENDIR, the READ requests are held
	hungDirs, hungReads atomic.Bool
	mu                  sync.Mutex
	gate                chan struct{} // closed to release the held requests
	held                atomic.Int32  // requests held so far
	// stop, closed by the watchdog or at the end, answers every request
	stop     chan struct{}
	stopOnce sync.Once
}

// wait holds a request while hung, until it is released, stopped, or
// interrupted by the kernel (its client was killed: ctx is go-fuse's
// request context, done on the FUSE INTERRUPT).
func (h *fuseHang) wait(ctx context.Context, hung *atomic.Bool) syscall.Errno {
	if !hung.Load() {
		return 0
	}
	h.mu.Lock()
	gate := h.gate
	h.mu.Unlock()
	h.held.Add(1)
	select {
	case <-gate:
	case <-h.stop:
	case <-ctx.Done():
		return syscall.EINTR
	}
	return 0
}

func (h *fuseHang) unblock() {
	h.hungDirs.Store(false)
	h.hungReads.Store(false)
	h.mu.Lock()
	close(h.gate)
	h.gate = make(chan struct{})
	h.mu.Unlock()
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
	if errno := n.h.wait(ctx, &n.h.hungDirs); errno != 0 {
		return nil, 0, errno
	}
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
	if errno := f.h.wait(ctx, &f.h.hungReads); errno != 0 {
		return nil, errno
	}
	return f.fh.(fs.FileReader).Read(ctx, dest, off)
}

func (f *hangFile) Release(ctx context.Context) syscall.Errno {
	return f.fh.(fs.FileReleaser).Release(ctx)
}

// serveHangingFUSE is the child process (TestMain runs it when
// envFUSEServe is set): it mounts, says "mounted" (or "error: ...") on
// stdout, then obeys one command a line from stdin, answering each with a
// line: "hang-reads", "hang-dirs", "release" ("ok"), "held" (the number of
// requests held so far). At the end of stdin (the test is done, or its
// process is gone) it answers every request, unmounts and exits.
func serveHangingFUSE(spec string) int {
	parts := strings.Split(spec, "\n")
	if len(parts) != 3 {
		fmt.Printf("error: bad %s %q\n", envFUSEServe, spec)
		return 2
	}
	dir, mnt := parts[0], parts[1]
	watchdog, err := time.ParseDuration(parts[2])
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 2
	}
	lr, err := fs.NewLoopbackRoot(dir)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 2
	}
	h := &fuseHang{gate: make(chan struct{}), stop: make(chan struct{})}
	stop := func() { h.stopOnce.Do(func() { close(h.stop) }) }
	time.AfterFunc(watchdog, stop)
	root := &hangNode{LoopbackNode: lr.(*fs.LoopbackNode), h: h}
	srv, err := fs.Mount(mnt, root, &fs.Options{MountOptions: fuse.MountOptions{DirectMount: true, FsName: "imagetrust-hung-test", Name: "hungtest"}})
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 3
	}
	defer func() {
		stop()
		if err := srv.Unmount(); err != nil {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	}()
	fmt.Println("mounted")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "hang-reads":
			h.hungReads.Store(true)
		case "hang-dirs":
			h.hungDirs.Store(true)
		case "release":
			h.unblock()
		case "held":
			fmt.Println(h.held.Load())
			continue
		default:
			fmt.Printf("error: unknown command %q\n", in.Text())
			continue
		}
		fmt.Println("ok")
	}
	return 0
}

// hangCtl is the test's end of a serveHangingFUSE child.
type hangCtl struct {
	t    *testing.T
	mu   sync.Mutex
	in   io.WriteCloser
	out  *bufio.Scanner
	cmd  *exec.Cmd
	mnt  string
	done chan struct{} // closed when the child has exited
}

func (c *hangCtl) do(command string) string {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintln(c.in, command); err != nil {
		c.t.Fatalf("FUSE server: %s: %v", command, err)
	}
	if !c.out.Scan() {
		c.t.Fatalf("FUSE server: %s: no answer (%v)", command, c.out.Err())
	}
	return c.out.Text()
}

func (c *hangCtl) hangReads() { c.do("hang-reads") }
func (c *hangCtl) hangDirs()  { c.do("hang-dirs") }
func (c *hangCtl) unblock()   { c.do("release") }

func (c *hangCtl) held() int {
	c.t.Helper()
	n, err := strconv.Atoi(c.do("held"))
	if err != nil {
		c.t.Fatalf("FUSE server: held: %v", err)
	}
	return n
}

// fuseMountable says why FUSE cannot be mounted here, or "".
func fuseMountable() string {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "no /dev/fuse"
	}
	if os.Geteuid() != 0 {
		return "not root"
	}
	return ""
}

// mountHanging mounts dir through a fuseHang served by a child process at
// a new directory, or skips the test where FUSE cannot be mounted (no
// /dev/fuse, not root). Where there is a /dev/fuse and the test runs as
// root, failing to mount fails the test under IMAGETRUST_OPENSTACK_STRICT=1
// (CI: the test must run there, not skip).
func mountHanging(t *testing.T, dir string) (string, *hangCtl) {
	t.Helper()
	if why := fuseMountable(); why != "" {
		t.Skipf("cannot mount a FUSE file system here: %s", why)
	}
	mnt := t.TempDir()
	watchdog := fuseWatchdog
	if d, ok := t.Deadline(); ok && time.Until(d)/2 < watchdog {
		watchdog = max(time.Until(d)/2, time.Second)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envFUSEServe+"="+dir+"\n"+mnt+"\n"+watchdog.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outr, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &hangCtl{t: t, in: in, out: bufio.NewScanner(outr), cmd: cmd, mnt: mnt, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	// registered after t.TempDir, so it runs before the directory's removal
	t.Cleanup(func() {
		// answer everything and let the child unmount and exit; a child
		// that does not is killed (its /dev/fuse closes: the connection
		// is aborted); the mount point is detached either way
		_ = in.Close()
		select {
		case <-c.done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-c.done
		}
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Errorf("unmounting %s: %v", mnt, err)
		}
	})
	if !c.out.Scan() {
		t.Fatalf("FUSE server: no word from the child (%v)", c.out.Err())
	}
	if got := c.out.Text(); got != "mounted" {
		if os.Getenv("IMAGETRUST_OPENSTACK_STRICT") == "1" {
			t.Fatalf("cannot mount a FUSE file system although /dev/fuse exists and the test runs as root: %s", got)
		}
		t.Skipf("cannot mount a FUSE file system here: %s", got)
	}
	return mnt, c
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
	h.hangReads()
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
	held := h.held()
	if held < 1 {
		t.Fatalf("no request held by the FUSE file system: the read did not reach the kernel")
	}
	_, _, err = d.List(context.Background())
	if !errors.Is(err, ErrHungFS) || !strings.Contains(err.Error(), "still hung") {
		t.Fatalf("listing while the read is stuck: err %v", err)
	}
	if h.held() != held {
		t.Errorf("%d requests held, want %d: a listing called into the hung file system", h.held(), held)
	}
	h.unblock()
	waitUnstuck(t, d)

	// now the listing hangs (its open of the directory)
	h.hangDirs()
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

const envFUSEVictim = "IMAGETRUST_TEST_FUSE_VICTIM"

// TestHungFUSEKilledClient: a test process killed while the FUSE file
// system holds one of its reads exits, and the file system's server
// unmounts and exits after it: nothing is left in state D, nothing stays
// mounted. The test runs itself again as the victim (envFUSEVictim),
// which mounts, blocks a read in the kernel and says so; it is then
// SIGKILLed. On the old code (the server in the test process) the victim
// never exited: its thread waited for an answer from the server that had
// died with it.
func TestHungFUSEKilledClient(t *testing.T) {
	if os.Getenv(envFUSEVictim) != "" {
		fuseVictim(t)
		return
	}
	if why := fuseMountable(); why != "" {
		t.Skipf("cannot mount a FUSE file system here: %s", why)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHungFUSEKilledClient$", "-test.v")
	cmd.Env = append(os.Environ(), envFUSEVictim+"=1")
	cmd.Stderr = os.Stderr
	outr, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var server int
	var mnt string
	out := bufio.NewScanner(outr)
	var said []string
	for out.Scan() {
		said = append(said, out.Text())
		if _, err := fmt.Sscanf(out.Text(), "HELD %d %s", &server, &mnt); err == nil {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, outr); _ = cmd.Wait(); close(exited) }()
	if mnt == "" {
		<-exited
		all := strings.Join(said, "\n")
		if strings.Contains(all, "--- SKIP") && os.Getenv("IMAGETRUST_OPENSTACK_STRICT") != "1" {
			t.Skipf("the victim skipped:\n%s", all)
		}
		t.Fatalf("the victim did not get a read held:\n%s", all)
	}
	defer func() { _ = os.RemoveAll(filepath.Dir(mnt)) }()
	t.Logf("killing the test process while the FUSE server %d holds its read on %s", server, mnt)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// not a timing: a bound on a wait that on the old code never ends,
	// after which the connection is aborted so that nothing stays wedged
	select {
	case <-exited:
	case <-time.After(time.Minute):
		_ = syscall.Unmount(mnt, syscall.MNT_FORCE) // aborts the FUSE connection
		<-exited
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Fatalf("the test process killed while its read was held did not exit (state D) until its FUSE connection was aborted")
	}
	for i := 0; ; i++ {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", server))
		if err != nil || strings.Contains(string(st), ") Z ") {
			break // gone, or a zombie not yet reaped by init
		}
		if i > 6000 {
			_ = syscall.Kill(server, syscall.SIGKILL)
			t.Fatalf("the FUSE server %d did not exit a minute after its client did", server)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), " "+mnt+" ") {
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Fatalf("%s still mounted after its server exited", mnt)
	}
}

// fuseVictim: the process TestHungFUSEKilledClient kills.
func fuseVictim(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt, h := mountHanging(t, dir)
	h.hangReads()
	go func() { _, _ = os.ReadFile(filepath.Join(mnt, "f")) }()
	for i := 0; h.held() < 1; i++ {
		if i > 6000 {
			t.Fatal("the read was not held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("HELD %d %s\n", h.cmd.Process.Pid, mnt)
	select {} // killed here
}
