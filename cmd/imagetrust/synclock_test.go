package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
		cmd.Env = append(os.Environ(), "OS_CLOUD=mirror", "OS_CLIENT_CONFIG_FILE="+c.CloudsYAML)
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
