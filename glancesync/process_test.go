package glancesync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// imagetrustBinary is the command under test (ostest.Binary; set
// IMAGETRUST_TEST_BINARY to use a prebuilt one).
func imagetrustBinary(t testing.TB) string { return ostest.Binary(t) }

// slowServer serves a directory over TLS; while slow is set it sends image
// bodies 256 KiB at a time with pauses.
type slowServer struct {
	srv  *httptest.Server
	slow atomic.Bool
}

func newSlowServer(t testing.TB, dir string) *slowServer {
	s := &slowServer{}
	fsrv := http.FileServer(http.Dir(dir))
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.slow.Load() || !strings.HasSuffix(r.URL.Path, ".img") {
			fsrv.ServeHTTP(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		for i := 0; i < len(b); i += 256 << 10 {
			end := min(i+256<<10, len(b))
			if _, err := w.Write(b[i:end]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// waitStatus waits until the image is in status, failing the test with the
// child's output when ctx ends first.
func waitStatus(t testing.TB, ctx context.Context, e *env, id, status string, output func() string) {
	t.Helper()
	for {
		im, err := e.admin.Get(ctx, id)
		if err == nil && im.Status == status {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("image %s never became %s:\n%s", id, status, output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitNotBusy waits until Glance shows the image no longer busy with a
// stream (uploading, saving, importing: imageBusy), as after a stream
// broken off, and returns it; it fails the test with output() when ctx ends
// first. A loaded glance-api may take long to notice a broken-off stream:
// the wait is bounded by the test's context, not by a guess of how long.
func waitNotBusy(t testing.TB, ctx context.Context, e *env, id string, output func() string) *Image {
	t.Helper()
	for {
		im, err := e.admin.Get(ctx, id)
		if err == nil && !imageBusy(im) {
			return im
		}
		if ctx.Err() != nil {
			t.Fatalf("image %s still busy with a stream (last read: %+v, %v):\n%s", id, im, err, output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// untilTestDeadline is the test's context, ended a little before go test's
// -timeout would stop the binary (when one is set), so that a wait bounded
// by it fails with its own message.
func untilTestDeadline(t *testing.T) (context.Context, context.CancelFunc) {
	d, ok := t.Deadline()
	if !ok {
		return context.WithCancel(t.Context())
	}
	grace := min(30*time.Second, time.Until(d)/10)
	return context.WithDeadline(t.Context(), d.Add(-grace))
}

// writeIndex writes index.json listing the bundles.
func writeIndex(t testing.TB, dir string, ps ...*published) {
	ix := Index{Version: IndexVersion}
	for _, p := range ps {
		ix.Bundles = append(ix.Bundles, IndexBundle{Descriptor: p.name + ".json"})
	}
	b, _ := json.Marshal(ix)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeConfig writes an imagetrust.toml for the binary.
func writeConfig(t testing.TB, w *world, dir, source string, caPEM []byte) string {
	people := testpki.WriteFile(t, dir, "people.pem", testpki.CertPEM(w.peopleRoot.Cert))
	reg := testpki.WriteFile(t, dir, "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	ca := testpki.WriteFile(t, dir, "https-ca.pem", caPEM)
	var vo strings.Builder
	for _, v := range testVOs {
		fmt.Fprintf(&vo, "[vo.%s]\ncreators = [%q]\napprovers = [%q]\nvisibility = \"shared\"\n", v, w.creator.Cert.Subject.String(), w.approver.Cert.Subject.String())
	}
	cfg := fmt.Sprintf(`[trust]
ca_files = [%q]
registrar_ca_files = [%q]
%s
[sync]
interval = "1h"
parallel = 2
lock_file = "sync.lock"
ca_file = %q
retries = 3
[[sync.source]]
url = %q
vos = ["atlas"]
`, people, reg, vo.String(), ca, source)
	return testpki.WriteFile(t, dir, "imagetrust.toml", []byte(cfg))
}

// setIngest sets sync.ingest in the configuration file cfg.
func setIngest(t testing.TB, cfg, ingest string) {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("[sync]\n"), []byte("[sync]\ningest = \""+ingest+"\"\n"), 1)
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *env) command(t testing.TB, ctx context.Context, cfg string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, imagetrustBinary(t), append([]string{"sync", "--config", cfg}, args...)...)
	cmd.Env = e.mirrorEnv()
	return cmd
}

// TestKill9MidUploadThenRerun kills the sync binary with SIGKILL while
// Glance is receiving the image (the stage with sync.ingest = "import", the
// PUT /file with "upload"), then reruns it: the image converges to active,
// verified, with no stuck image left, and is never active in between.
func TestKill9MidUploadThenRerun(t *testing.T) {
	for _, tc := range []struct{ ingest, receiving string }{
		{"import", StatusUploading},
		{"upload", StatusSaving},
	} {
		t.Run("ok "+tc.ingest, func(t *testing.T) { testKill9MidUpload(t, tc.ingest, tc.receiving) })
	}
}

func testKill9MidUpload(t *testing.T, ingest, receiving string) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	tag := "kill9-" + uuid.NewString()[:8]
	p := w.publish(dir, spec{vo: "atlas", tag: tag, size: 8 << 20})
	writeIndex(t, dir, p)
	srv := newSlowServer(t, dir)
	srv.slow.Store(true)
	caPEM := testpki.CertPEM(srv.srv.Certificate())
	cfg := writeConfig(t, w, t.TempDir(), srv.srv.URL+"/index.json", caPEM)
	setIngest(t, cfg, ingest)

	ctx, cancel := untilTestDeadline(t) // the test's deadline, not a guess of how long
	defer cancel()
	cmd := e.command(t, ctx, cfg, "--once")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ctx, e, p.id, receiving, out.String)
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	// Glance notices the broken stream and returns the image to queued
	// (when it gets to it: the wait ends with the test's context)
	st := waitNotBusy(t, ctx, e, p.id, out.String).Status
	t.Logf("after kill -9 the image is %s", st)
	if st != StatusQueued {
		t.Fatalf("image %s after an interrupted transfer, want queued", st)
	}

	srv.slow.Store(false)
	out.Reset()
	cmd = e.command(t, ctx, cfg, "--once", "--resume-after=-1s")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("rerun: %v\n%s", err, out.String())
	}
	im := e.get(t, p.id)
	if im.Status != StatusActive || im.Props["os_hash_value"] != im.Props["imagetrust_sha512"] {
		t.Fatalf("after rerun: %s %v", im.Status, im.Props["os_hash_value"])
	}
	all, err := e.admin.List(ctx, e.project, map[string]string{"imagetrust_tag": tag})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Errorf("%d images with tag %s, want 1", len(all), tag)
	}

	// --dry-run prints the plan and writes nothing.
	before := e.counter.reset()
	out.Reset()
	cmd = e.command(t, ctx, cfg, "--dry-run")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}
	if !strings.Contains(stdout.String(), "unchanged  "+p.id) {
		t.Errorf("dry-run plan:\n%s", stdout.String())
	}
	_ = before
}
