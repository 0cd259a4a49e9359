package glancesync

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// goneBeforeWrite is the sync's Glance with the image id deleted (by the
// admin, in the real Glance) just before the sync's first Patch or
// Deactivate of it: an image deleted after the pass listed it (an
// operator, another sync, the CRL job).
type goneBeforeWrite struct {
	Glance
	t     *testing.T
	admin Glance
	id    string
	done  atomic.Bool
}

func (g *goneBeforeWrite) drop(id string) {
	if id == g.id && g.done.CompareAndSwap(false, true) {
		if err := g.admin.Delete(context.Background(), id); err != nil {
			g.t.Errorf("deleting %s before the sync's write: %v", id, err)
		}
	}
}

func (g *goneBeforeWrite) Patch(ctx context.Context, id string, ops []PatchOp) error {
	g.drop(id)
	return g.Glance.Patch(ctx, id, ops)
}

func (g *goneBeforeWrite) Deactivate(ctx context.Context, id string) error {
	g.drop(id)
	return g.Glance.Deactivate(ctx, id)
}

// TestRetireOfImageGoneMeanwhileIsNoError: an image the pass retires that
// was deleted between the pass's listing and its write (Glance's 404 to
// the PATCH that hides it under retire = hide, to the deactivation under
// retire = delete without Nova) is not an error of the pass: no failed
// outcome, no error counted, a WARN line and a skipped outcome; the image
// is gone from Glance. Before, the PATCH's 404 was logged at ERROR ("patch
// failed"), counted in imagetrust_sync_errors_total and Report.Failed (a
// --once run exited 1), as was the deactivation's. Against the real
// Glance; the deletion is made in it between the listing and the write.
func TestRetireOfImageGoneMeanwhileIsNoError(t *testing.T) {
	for _, retire := range []string{"hide", "delete"} {
		t.Run(retire, func(t *testing.T) {
			e := newEnv(t)
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "atlas")
			tag := "gone-" + retire
			old := w.publish(dir, spec{vo: "atlas", tag: tag + "-old"})
			w.publish(dir, spec{vo: "atlas", tag: tag, created: w.now.Add(-2 * time.Hour)})
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Retire = retire
			if r := run(t, o); r.Errors != 0 {
				t.Fatalf("pass 1: %d errors", r.Errors)
			}
			removeBundle(t, old)
			logger, logs := captureLogger(t)
			o.Logger = logger
			g := &goneBeforeWrite{Glance: o.Glance, t: t, admin: e.admin, id: old.id}
			o.Glance = g
			r := run(t, o)
			if !g.done.Load() {
				t.Fatalf("the pass wrote nothing to %s: outcomes %+v", old.id, r.Find(old.id))
			}
			if r.Errors != 0 || slices.Contains(r.Failed, old.id) {
				t.Errorf("pass 2: %d errors, failed %v; want none", r.Errors, r.Failed)
			}
			skipped := false
			for _, out := range r.Find(old.id) {
				if out.Action == ActionFailed {
					t.Errorf("failed outcome %+v", out)
				}
				skipped = skipped || out.Action == ActionSkipped
			}
			if !skipped {
				t.Errorf("outcomes %+v, want a skipped one (gone since the listing)", r.Find(old.id))
			}
			logs.mu.Lock()
			defer logs.mu.Unlock()
			warned := false
			for _, rec := range logs.recs {
				if rec.level >= slog.LevelError {
					t.Errorf("logged at %v: %s %v", rec.level, rec.msg, rec.attrs)
				}
				warned = warned || (rec.level == slog.LevelWarn && rec.attrs["image"] == old.id)
			}
			if !warned {
				t.Error("no WARN line about the image gone")
			}
		})
	}
}
