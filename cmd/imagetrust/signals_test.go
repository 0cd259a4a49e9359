package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestCRLOnceClosedStdout: `imagetrust crl --once --report-json | head -1`
// (here: a stdout pipe whose reader is gone before the report is written)
// exits with the run's own status, the same as with a stdout that reads
// everything, and says on stderr that the report was not written; it is
// not killed by SIGPIPE (exit 141 in a shell, whatever the run's outcome).
// The built binary against the real Keystone and Glance, in a project of
// its own. Before, the process died of SIGPIPE once the run was done.
func TestCRLOnceClosedStdout(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	path, _ := daemonConfig(t)
	p := ownMirror(t, c)
	env := append(os.Environ(), p.Env()...)
	args := []string{"crl", "--config", path, "--once", "--report-json"}

	var out, errs bytes.Buffer
	cmd := exec.Command(ostest.Binary(t), args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &errs
	_ = cmd.Run()
	want := cmd.ProcessState.ExitCode()
	if want < 0 || out.Len() == 0 {
		t.Fatalf("crl --once --report-json: exit %d, %d bytes of report:\n%s", want, out.Len(), errs.String())
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close() // the reader gone, as head's after its first line
	errs.Reset()
	cmd = exec.Command(ostest.Binary(t), args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, w, &errs
	_ = cmd.Run()
	_ = w.Close()
	st := cmd.ProcessState
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("crl --once --report-json with its stdout closed: killed by %v, want exit %d:\n%s", ws.Signal(), want, errs.String())
	}
	if st.ExitCode() != want {
		t.Errorf("crl --once --report-json with its stdout closed: exit %d, want %d (as with a stdout read to the end):\n%s", st.ExitCode(), want, errs.String())
	}
	if !strings.Contains(errs.String(), "run report not written in full") {
		t.Errorf("no word on stderr of the report not written:\n%s", errs.String())
	}
}

// TestDaemonIgnoresSIGUSR1: a daemon (the built binary: the CRL job)
// sent SIGUSR1 (logrotate's habit, to reopen a log file) goes on, a WARN
// saying it is ignored and why, and SIGTERM still ends it with 0. Against
// the real Keystone and Glance, in a project of its own. Before, Go's
// runtime ignored the signal too (it never killed the process), without a
// word: fails there for the missing line only.
func TestDaemonIgnoresSIGUSR1(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	path, _ := daemonConfig(t)
	p := ownMirror(t, c)
	d := startDaemon(t, "crl", append(os.Environ(), p.Env()...), "crl", "--config", path)
	d.waitLine(t, "authenticated")
	if err := d.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	d.waitLine(t, "level=WARN", "SIGUSR1 ignored")
	if code := d.stop(t); code != exitOK {
		t.Errorf("exit %d after SIGTERM, want 0:\n%s", code, d.logs.String())
	}
}

// TestDaemonClosedStderrDies: a daemon (the built binary: the CRL job and
// the sync, without --once, and the proxy) whose stderr has lost its reader dies of
// SIGPIPE at its next log line, as Go's default has it, so that systemd
// restarts it with a working log; it does not go on deciding with its log
// (the proxy's audit lines) lost, as a run that ends does
// (TestCRLOnceClosedStdout). Against the real Keystone and Glance, in a
// project of its own. The two-minute wait only turns a daemon that goes on
// into a failure rather than a hang.
func TestDaemonClosedStderrDies(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	path, _ := daemonConfig(t)
	proxyCfg, _ := proxyConfig(t, filepath.Dir(filepath.Dir(path)), "upstream = \"http://127.0.0.1:9/v2.1\"\n")
	for _, cmdName := range []string{"crl", "sync", "proxy"} {
		t.Run("ok "+cmdName, func(t *testing.T) {
			p := ownMirror(t, c)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			_ = r.Close()
			cfg := path
			if cmdName == "proxy" {
				cfg = proxyCfg
			}
			cmd := exec.Command(ostest.Binary(t), cmdName, "--config", cfg)
			cmd.Env, cmd.Stdout, cmd.Stderr = append(os.Environ(), p.Env()...), io.Discard, w
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			_ = w.Close()
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("%s: still running two minutes on with its stderr closed", cmdName)
			}
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGPIPE {
				t.Fatalf("%s with its stderr closed: %v, want killed by SIGPIPE", cmdName, cmd.ProcessState)
			}
		})
	}
}
