package glancesync

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/uuid"
)

// TestOneFailingImagePassComplete: an image whose source does not serve
// its bytes fails on every pass (a transfer error, retried by the next
// pass), and the pass is still complete (Report.Complete), sets
// imagetrust_sync_last_success_timestamp_seconds and counts the image in
// imagetrust_sync_failing_images: the daemon's /healthz stays healthy
// while the other images are mirrored. A source that cannot be listed
// makes the pass incomplete: last_success does not move. Once the bytes
// are served the image is mirrored and failing_images is 0 again. Against
// the real Glance.
func TestOneFailingImagePassComplete(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	tag := "health-" + uuid.NewString()[:8]
	good := w.publish(dir, spec{vo: "atlas", tag: tag + "-good"})
	bad := w.publish(dir, spec{vo: "atlas", tag: tag + "-bad"})
	img := filepath.Join(bad.dir, bad.name+".img")
	if err := os.Rename(img, img+".away"); err != nil {
		t.Fatal(err)
	}
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "keep"
	o.ResumeAfter = -1 // one sync only: resume its queued image at once
	o.Metrics = NewMetrics(nil)
	for pass := 1; pass <= 2; pass++ {
		o.Metrics.LastSuccess.Set(0)
		r := run(t, o)
		if r.Errors == 0 || !slices.Equal(r.Failed, []string{bad.id}) || r.SourceErrors != 0 || !r.Complete() {
			t.Fatalf("pass %d: errors %d, failed %v, source errors %d, complete %v; want the bad image alone failed, the pass complete", pass, r.Errors, r.Failed, r.SourceErrors, r.Complete())
		}
		if n := metricValue(t, o.Metrics.FailingImages); n != 1 {
			t.Errorf("pass %d: failing_images = %v, want 1", pass, n)
		}
		if n := metricValue(t, o.Metrics.LastSuccess); n == 0 {
			t.Errorf("pass %d: last_success not set by a complete pass with one image failing", pass)
		}
		if im := e.get(t, good.id); im.Status != StatusActive {
			t.Fatalf("pass %d: the good image is %s", pass, im.Status)
		}
	}

	// a source that cannot be listed: the pass is incomplete
	broken := filepath.Join(t.TempDir(), "cms")
	if err := os.WriteFile(broken, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	ob := e.options(t, w, map[string][]string{dir: {"atlas"}, broken: {"cms"}})
	ob.Sync.Retire = "keep"
	ob.Metrics = NewMetrics(nil)
	r := run(t, ob)
	if r.SourceErrors != 1 || r.Complete() {
		t.Fatalf("a source not listed: source errors %d, complete %v; want 1, incomplete", r.SourceErrors, r.Complete())
	}
	if n := metricValue(t, ob.Metrics.LastSuccess); n != 0 {
		t.Errorf("last_success set (%v) by a pass that could not list a source", n)
	}

	// served again: mirrored, nothing failing
	if err := os.Rename(img+".away", img); err != nil {
		t.Fatal(err)
	}
	r = run(t, o)
	if r.Errors != 0 || len(r.Failed) != 0 || !r.Complete() {
		t.Fatalf("bytes served again: errors %d, failed %v, complete %v", r.Errors, r.Failed, r.Complete())
	}
	if n := metricValue(t, o.Metrics.FailingImages); n != 0 {
		t.Errorf("failing_images = %v after a pass without failures, want 0", n)
	}
	if im := e.get(t, bad.id); im.Status != StatusActive {
		t.Errorf("the image served again is %s, want active", im.Status)
	}
}
