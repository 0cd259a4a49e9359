package glancesync

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

// withListen adds sync.listen to a configuration written by writeConfig.
func withListen(t *testing.T, cfg, addr string) {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("[sync]\n"), []byte(fmt.Sprintf("[sync]\nlisten = %q\n", addr)), 1)
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func httpGet(url string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDaemonSIGTERMAbortsTransfer runs `imagetrust sync` as a daemon, sends
// SIGTERM while an image is being staged: the daemon stops promptly and
// cleanly, and the image is not active (Glance returns it to queued, and the
// next run stages it again; deleting it would spend its uuid for ever).
func TestDaemonSIGTERMAbortsTransfer(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(dir, spec{vo: "atlas", tag: "term-" + uuid.NewString()[:8], size: 8 << 20})
	writeIndex(t, dir, p)
	srv := newSlowServer(t, dir)
	srv.slow.Store(true)
	cfg := writeConfig(t, w, t.TempDir(), srv.srv.URL+"/index.json", certPEMOf(srv))
	addr := testutil.FreeAddr(t)
	withListen(t, cfg, addr)

	ctx, cancel := untilTestDeadline(t) // the test's deadline, not a guess of how long
	defer cancel()
	cmd := e.command(t, ctx, cfg)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ctx, e, p.id, StatusUploading, out.String)
	if code, body := httpGet("http://" + addr + "/metrics"); code != 200 || !strings.Contains(body, "imagetrust_sync_") {
		t.Errorf("/metrics: %d %.200s", code, body)
	}
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	t.Logf("the daemon stopped %s after SIGTERM (%v)", time.Since(start).Round(time.Millisecond), err)
	if err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, out.String())
	}
	if code, _ := httpGet("http://" + addr + "/healthz"); code != 0 {
		t.Errorf("/healthz still answers after shutdown: %d", code)
	}
	// Glance notices the broken-off stage when it gets to it (the wait
	// ends with the test's context)
	st := waitNotBusy(t, ctx, e, p.id, out.String).Status
	if st == StatusActive {
		t.Fatalf("image active after an aborted transfer")
	}
	t.Logf("after SIGTERM the image is %s", st)
}

// TestDaemonSIGHUPReloads starts the daemon with a configuration whose source
// may not publish for the bundle's VO, then allows it and sends SIGHUP: the
// reloaded daemon mirrors the image without a restart, and /healthz answers.
func TestDaemonSIGHUPReloads(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(dir, spec{vo: "cms", tag: "hup-" + uuid.NewString()[:8]})
	writeIndex(t, dir, p)
	srv := newSlowServer(t, dir)
	cfg := writeConfig(t, w, t.TempDir(), srv.srv.URL+"/index.json", certPEMOf(srv))
	addr := testutil.FreeAddr(t)
	withListen(t, cfg, addr)
	b, _ := os.ReadFile(cfg)
	b = bytes.Replace(b, []byte(`interval = "1h"`), []byte(`interval = "2s"`), 1)
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := untilTestDeadline(t) // the test's deadline, not a guess of how long
	defer cancel()
	cmd := e.command(t, ctx, cfg)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	// the first pass refuses the bundle: vo cms is not allowed for the
	// source (the waits here end with the test's context, not a guess of
	// how long a loaded machine takes)
	for !strings.Contains(out.String(), ReasonVONotAllowed) {
		if ctx.Err() != nil {
			t.Fatalf("no refusal logged:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := e.admin.Get(ctx, p.id); err == nil {
		t.Fatal("a bundle of a VO the source may not publish for was mirrored")
	}
	metricsShow := func(what, want string) {
		t.Helper()
		for ; ; time.Sleep(100 * time.Millisecond) {
			if _, m := httpGet("http://" + addr + "/metrics"); strings.Contains(m, want) {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: the metrics lack %q:\n%s", what, want, out.String())
			}
		}
	}
	metricsShow("at start", "imagetrust_config_last_reload_successful 1")
	// a broken file: the configuration in effect stays, the metrics say so
	if err := os.WriteFile(cfg, append(bytes.Clone(b), "\nbogus_key = 1\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	metricsShow("after a broken file", "imagetrust_config_last_reload_successful 0")
	// the good file allows the VO, and moves the listener, which waits for
	// a restart: the reload says so, and the old address still answers
	b = bytes.Replace(b, []byte(`vos = ["atlas"]`), []byte(`vos = ["atlas", "cms"]`), 1)
	b = bytes.Replace(b, []byte(addr), []byte(testutil.FreeAddr(t)), 1)
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitStatus(t, ctx, e, p.id, StatusActive, out.String)
	metricsShow("after the good file", "imagetrust_config_last_reload_successful 1")
	metricsShow("the trust store's stale CRLs", "imagetrust_trust_stale_crls 0")
	if !strings.Contains(out.String(), "sync.listen") {
		t.Errorf("the reload does not name sync.listen as waiting for a restart:\n%s", out.String())
	}
	if code, _ := httpGet("http://" + addr + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
}

func certPEMOf(s *slowServer) []byte { return testpki.CertPEM(s.srv.Certificate()) }
