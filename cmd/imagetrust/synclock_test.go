package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestSyncLockOneAtATime: a `sync --once` started while another sync (the
// daemon) runs on the host refuses, exit 1, naming sync.lock_file and the
// holder's pid; a --dry-run, which writes nothing, still runs; once the
// daemon is gone the next --once runs. Real processes (the built binary)
// against the real Keystone and Glance. Before sync.lock_file, the second
// sync ran beside the first.
func TestSyncLockOneAtATime(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	bin := filepath.Join(t.TempDir(), "imagetrust")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	trust, err := os.ReadFile(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// no source and retire = "keep": the passes write nothing
	cfg := filepath.Join(dir, "pki", "sync.toml")
	if err := os.WriteFile(cfg, append(trust, "\n[sync]\nretire = \"keep\"\nlock_file = \"sync.lock\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, "pki", "sync.lock")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	command := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, append([]string{"sync", "--config", cfg}, args...)...)
		cmd.Env = ownMirrorEnv(t, c)
		return cmd
	}
	run := func(args ...string) (int, string) {
		t.Helper()
		cmd := command(args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), errb.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, errb.String()
	}

	daemon := command()
	var derr bytes.Buffer
	daemon.Stderr = &derr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = daemon.Wait(); close(exited) }()
	stop := func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		<-exited
	}
	defer stop()
	pid := strconv.Itoa(daemon.Process.Pid)
	for {
		b, _ := os.ReadFile(lock)
		if strings.TrimSpace(string(b)) == pid {
			break
		}
		select {
		case <-exited:
			t.Fatalf("the daemon exited:\n%s", derr.String())
		case <-ctx.Done():
			t.Fatalf("the daemon never took the lock:\n%s", derr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}

	code, stderr := run("--once")
	if code != exitInvalid || !strings.Contains(stderr, lock) || !strings.Contains(stderr, "pid "+pid) ||
		!strings.Contains(stderr, "another imagetrust sync") {
		t.Fatalf("second sync: exit %d, want %d naming %s and pid %s:\n%s", code, exitInvalid, lock, pid, stderr)
	}
	if code, stderr := run("--dry-run"); code != exitOK {
		t.Fatalf("dry run beside the daemon: exit %d\n%s", code, stderr)
	}
	stop()
	if code, stderr := run("--once"); code != exitOK {
		t.Fatalf("sync once the daemon is gone: exit %d\n%s\ndaemon:\n%s", code, stderr, derr.String())
	}
	if b, _ := os.ReadFile(lock); strings.TrimSpace(string(b)) == pid {
		t.Fatalf("the lock file still names the daemon: %q", b)
	}
}

// TestSyncLockFile: a lock file that can't be created (its directory
// missing) is an error naming it (sync exits 2 for it); a second lock of a
// held file, even from one process, fails naming the holder's pid.
func TestSyncLockFile(t *testing.T) {
	_, err := lockSync(filepath.Join(t.TempDir(), "missing", "sync.lock"))
	if err == nil || !strings.Contains(err.Error(), "missing/sync.lock") {
		t.Fatalf("err %v", err)
	}
	p := filepath.Join(t.TempDir(), "sync.lock")
	old := syscall.Umask(0o077) // a root cron run's umask
	f, err := lockSync(p)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("lock file made under umask 077: %v %v, want mode 0644 (the service user must open it)", fi.Mode(), err)
	}
	if _, err := lockSync(p); err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock in one process: %v", err)
	}
}

// TestSyncLockBeforeKeystone: the lock is taken before authenticating. A
// `sync --once` beside a sync holding sync.lock_file exits 1 saying so, and
// one whose lock file can't be made exits 2 naming sync.lock_file, both
// without a request to Keystone: before, each authenticated first, and a
// Keystone outage hid either behind "authentication failed". The Keystone
// here is a counter that answers 503: no real one is needed to show that
// it is never asked.
func TestSyncLockBeforeKeystone(t *testing.T) {
	var asked atomic.Int32
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		asked.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer ks.Close()
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	trust, err := os.ReadFile(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"OS_AUTH_URL": ks.URL + "/v3", "OS_USERNAME": "mirror", "OS_PASSWORD": "x",
		"OS_PROJECT_NAME": "mirror", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"}
	sync := func(lockFile string) (int, string) {
		cfg := filepath.Join(dir, "pki", "sync.toml")
		if err := os.WriteFile(cfg, append(trust, "\n[sync]\nretire = \"keep\"\nlock_file = \""+lockFile+"\"\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := run(context.Background(), &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
			getenv: func(k string) string { return vars[k] }}, []string{"sync", "--once", "--config", cfg})
		return code, errb.String()
	}

	held := filepath.Join(dir, "held.lock")
	f, err := lockSync(held)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if code, stderr := sync(held); code != exitInvalid || !strings.Contains(stderr, "another imagetrust sync") {
		t.Fatalf("beside a held lock: exit %d, want %d saying another sync holds it:\n%s", code, exitInvalid, stderr)
	}
	if code, stderr := sync(filepath.Join(dir, "missing", "sync.lock")); code != exitUsage || !strings.Contains(stderr, "sync.lock_file") {
		t.Fatalf("lock file in a missing directory: exit %d, want %d naming sync.lock_file:\n%s", code, exitUsage, stderr)
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("Keystone was asked %d times before the lock was taken", n)
	}
}

// lockFileIn gives dir's pki/imagetrust.toml a sync.lock_file in dir: the
// default, /var/lib/imagetrust/sync.lock, exists only where imagetrust is
// installed, and the sync takes its lock before it authenticates.
func lockFileIn(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "pki", "imagetrust.toml")
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "\n[sync]\nlock_file = %q\n", filepath.Join(dir, "sync.lock")); err != nil {
		t.Fatal(err)
	}
}

// TestSyncRemovesStaleOutageTemps: `sync` removes, once it holds
// sync.lock_file, the temporary files of the record of Nova's outage
// (".sync.nova-down.tmp-DIGITS", fsutil.WriteFileAtomic's) an hour old or
// more, which a sync killed mid-write leaves; a newer one, another name,
// and any while another sync holds the lock, stay. Before, nothing
// removed them. Keystone here is a closed port: the run fails to
// authenticate after the lock (exit 1), which is all it needs.
func TestSyncRemovesStaleOutageTemps(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	trust, err := os.ReadFile(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	ks := httptest.NewServer(http.NotFoundHandler())
	ks.Close() // nothing listens there any more
	vars := map[string]string{"OS_AUTH_URL": ks.URL + "/v3", "OS_USERNAME": "mirror", "OS_PASSWORD": "x",
		"OS_PROJECT_NAME": "mirror", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"}
	lockFile := filepath.Join(dir, "sync.lock")
	cfg := filepath.Join(dir, "pki", "sync.toml")
	if err := os.WriteFile(cfg, append(trust, "\n[sync]\nretire = \"delete\"\nlock_file = \""+lockFile+"\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	sync := func() (int, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
			getenv: func(k string) string { return vars[k] }}, []string{"sync", "--once", "--config", cfg})
		return code, errb.String()
	}
	old := time.Now().Add(-2 * time.Hour)
	file := func(name string, mtime time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("2026-11-27T12:00:00Z\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := file(".sync.nova-down.tmp-3141592", old)
	fresh := file(".sync.nova-down.tmp-2718281", time.Now())
	other := file(".sync.nova-down.tmp-31x", old)
	// the accepted listing serials (sync.listings) are written the same way
	staleListings := file(".sync.listings.tmp-1618033", old)
	freshListings := file(".sync.listings.tmp-1414213", time.Now())

	// another sync holds the lock: nothing removed
	held, err := lockSync(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	if code, stderr := sync(); code != exitInvalid {
		t.Fatalf("beside a held lock: exit %d:\n%s", code, stderr)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("removed while another sync holds the lock: %v", err)
	}
	held.Close()

	code, stderr := sync()
	if code != exitInvalid {
		t.Fatalf("sync --once, Keystone a closed port: exit %d, want %d:\n%s", code, exitInvalid, stderr)
	}
	for _, p := range []string{stale, staleListings} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after the sync: %v\n%s", p, err, stderr)
		}
		if !strings.Contains(stderr, "removed a temporary file a killed sync left") || !strings.Contains(stderr, p) {
			t.Errorf("no INFO line naming %s:\n%s", p, stderr)
		}
	}
	for _, p := range []string{fresh, other, freshListings} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}
