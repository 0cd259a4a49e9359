package glancesync

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestOrphanedVOWarned: the images of a VO whose [vo] section was removed
// are neither retired nor touched (a section lost to a typo must not retire
// a VO), but every pass says so once: one WARN line naming the VOs and
// counts, and imagetrust_sync_orphaned_images{vo}. Against the real Glance.
func TestOrphanedVOWarned(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	root := t.TempDir()
	cmsDir, atlasDir := filepath.Join(root, "cms"), filepath.Join(root, "atlas")
	p := w.publish(cmsDir, spec{vo: "cms", tag: "orphan-" + uuid.NewString()[:8]})
	o := e.options(t, w, map[string][]string{cmsDir: {"cms"}})
	o.Sync.Retire = "keep"
	if r := run(t, o); r.Errors != 0 || e.get(t, p.id).Status != StatusActive {
		t.Fatalf("first pass: %+v", r.Outcomes)
	}
	before := e.get(t, p.id)

	// [vo.cms] and its source are gone; the retire policy would hide
	w.publish(atlasDir, spec{vo: "atlas", tag: "orphan-" + uuid.NewString()[:8]})
	o = e.options(t, w, map[string][]string{atlasDir: {"atlas"}})
	delete(o.VOs, "cms")
	o.Sync.Retire = "hide"
	log, logs := captureLogger(t)
	o.Logger, o.Metrics = log, NewMetrics(nil)
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for pass := 1; pass <= 2; pass++ {
		r, err := s.Run(t.Context())
		if err != nil || r.Errors != 0 {
			t.Fatalf("pass %d: %v %+v", pass, err, r.Outcomes)
		}
		if out := r.Find(p.id); len(out) != 0 {
			t.Fatalf("pass %d touched the orphaned image: %+v", pass, out)
		}
		lines := logs.lines(orphansMsg)
		if len(lines) != pass || lines[pass-1].level.String() != "WARN" || !strings.Contains(lines[pass-1].attrs["vos"], "cms=") {
			t.Fatalf("pass %d: orphan warnings %+v, want one a pass naming cms", pass, lines)
		}
		if n := metricValue(t, o.Metrics.Orphaned.WithLabelValues("cms")); n < 1 {
			t.Fatalf("pass %d: imagetrust_sync_orphaned_images{vo=cms} = %v", pass, n)
		}
	}
	after := e.get(t, p.id)
	if after.Status != StatusActive || after.Hidden || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("orphaned image changed: status %s hidden %v updated %s (was %s)", after.Status, after.Hidden, after.UpdatedAt, before.UpdatedAt)
	}
	// the section restored: no more warning for cms, the gauge drops it
	o.VOs = e.options(t, w, nil).VOs
	o.Logger, o.Metrics = log, NewMetrics(nil)
	if r := run(t, o); r.Errors != 0 {
		t.Fatalf("pass with the section back: %+v", r.Outcomes)
	}
	if lines := logs.lines(orphansMsg); len(lines) > 2 && strings.Contains(lines[len(lines)-1].attrs["vos"], "cms=") {
		t.Fatalf("cms still reported orphaned: %+v", lines[len(lines)-1])
	}
}
