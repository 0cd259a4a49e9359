package glancesync

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestStorageQuota: an image larger than what the mirror project's Glance
// storage quota (user_storage_quota, here 1 MB on a stack of the test's
// own) leaves is never active, and the pass says why at once:
//   - upload: Glance answers the PUT with 413 and (Zed) leaves the image
//     saving without data; the pass reports the quota, without trying again
//     or waiting for the image to leave saving (it did wait ImportTimeout,
//     30 minutes by default, then said only "stuck saving");
//   - import: the stage is not counted, the import fails and Glance leaves
//     the image importing with os_glance_failed_import; the pass reports the
//     failed import, naming the quota among the causes.
//
// Either stuck image is then reclaimed (deleted, its uuid spent) once
// stale_after has passed on Glance's clock, which stamps updated_at, and
// not before, even when this host's clock is hours fast: the only test of
// that path.
func TestStorageQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack of its own")
	}
	c := ostest.StartPrivate(t, ostest.Options{GlanceStorageQuota: "1MB"})
	e := newEnvOn(t, c)
	w := newWorld(t)
	for _, tc := range []struct {
		ingest, status, detail string
	}{
		{"upload", StatusSaving, "transfer: Glance refused the image data with 413: the mirror project's storage quota"},
		{"import", StatusImporting, "import: Glance's import into store(s) fs failed (glance-api's log says why: a full store, or the mirror project's storage quota"},
	} {
		t.Run("fail over quota by "+tc.ingest, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "atlas")
			p := w.publish(dir, spec{vo: "atlas", tag: "quota-" + tc.ingest, size: 2 << 20})
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Ingest, o.Sync.Retire = tc.ingest, "keep"
			r := run(t, o)
			im := e.get(t, p.id)
			outs := r.Find(p.id)
			if r.Errors != 1 || len(outs) != 1 || outs[0].Action != ActionFailed || !strings.Contains(outs[0].Detail, tc.detail) {
				t.Fatalf("%d errors, outcomes %+v; want one failure saying %q", r.Errors, outs, tc.detail)
			}
			if im.Status != tc.status {
				t.Fatalf("image %s, want %s (never active)", im.Status, tc.status)
			}

			// A later pass leaves the stuck image alone until stale_after
			// (2h here) has passed since Glance last wrote it; then it
			// reclaims it (deletes it: the uuid is spent for good), and
			// the pass after says so.
			restore := busyWait
			busyWait = 0 // what the image is waited for does not matter here
			t.Cleanup(func() { busyWait = restore })
			o.Sync.StaleAfter.Duration = 2 * time.Hour
			for _, ahead := range []time.Duration{0, 3 * time.Hour} {
				// ahead: this host's clock 3 h fast; the age is Glance's
				o.Now = func() time.Time { return time.Now().Add(ahead) }
				r = run(t, o)
				if outs := r.Find(p.id); len(outs) != 1 || outs[0].Action == ActionDeleted {
					t.Fatalf("fail reclaimed before stale_after (this host's clock %s ahead): %+v", ahead, outs)
				}
				if im := e.get(t, p.id); im.Status != tc.status {
					t.Fatalf("image %s after a pass before stale_after, want %s", im.Status, tc.status)
				}
			}
			o.Now = time.Now
			o.Sync.StaleAfter.Duration = 2 * time.Second
			time.Sleep(3 * time.Second) // past stale_after on Glance's clock (updated_at is to the second)
			r = run(t, o)
			if outs := r.Find(p.id); len(outs) != 1 || outs[0].Action != ActionDeleted || outs[0].Reason != ReasonStaleReclaimed ||
				!strings.Contains(outs[0].Detail, "stuck "+tc.status+" since") {
				t.Fatalf("ok reclaimed after stale_after: %+v", outs)
			}
			r = run(t, o)
			if outs := r.Find(p.id); len(outs) != 1 || outs[0].Reason != ReasonIDDeleted {
				t.Fatalf("the pass after the reclaim: %+v, want %s", outs, ReasonIDDeleted)
			}
		})
	}
}
