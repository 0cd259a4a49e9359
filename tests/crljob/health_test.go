package crljob

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/testutil"
)

// TestDaemonHealthyDuringFirstRun: while the daemon's first run is still
// going (here a CRL source that takes its time to answer), /healthz says
// 200, and /metrics answers. On the old code /healthz was 503 until a
// first run had succeeded: a first run that takes longer than a liveness
// probe allows had the daemon restarted before it ever finished, and every
// restart paged.
func TestDaemonHealthyDuringFirstRun(t *testing.T) {
	s := newSite(t, "a")
	arrived := make(chan struct{}, 8)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.NotFound(w, r)
	}))
	defer slow.Close()
	defer close(release)

	addr, cfg := daemonConfig(t, s, "1h")
	// the run waits for the slow source a minute, not 5 s: it is still
	// going when /healthz is asked
	cfg = strings.Replace(cfg, `timeout = "5s"`, `timeout = "60s"`, 1) +
		"[[crl.source]]\nurl = \"" + slow.URL + "/slow.crl\"\n"
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := s.command(ctx, "crl", "--config", s.cfg)
	var out, errb testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	select {
	case <-arrived: // the first run is waiting for the slow source
	case <-ctx.Done():
		t.Fatalf("the slow source was never asked\nstderr:\n%s", errb.String())
	}
	var code int
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %v", err)
		}
	}
	if code != http.StatusOK {
		t.Errorf("/healthz during the first run: %d %q", code, body)
	}
	if strings.Contains(out.String(), "CRL run at") {
		t.Fatalf("the first run had ended: the test did not check /healthz during it\n%s", out.String())
	}
}
