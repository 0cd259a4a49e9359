package glancesync

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRetireEdges: what retiring may and may not touch. Only the newest
// active image of a valid bundle supersedes the others of its tag: a newer
// image whose bytes were refused (queued), or whose bundle no longer
// verifies, hides nothing, so a boot by tag finds the current one. An image
// whose bytes were refused but whose bundle is still listed is not retired
// (under retire = delete that would spend its uuid). An image servers use
// is deactivated and hidden, never deleted. Against the real Glance.
func TestRetireEdges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// run publishes into dir, runs the passes and checks Glance
		run func(t *testing.T, w *world, dir string, o Options)
	}{
		{name: "ok newer image whose bytes were refused hides nothing", run: func(t *testing.T, w *world, dir string, o Options) {
			cur := w.publish(dir, spec{vo: "atlas", tag: "queued-newer", created: w.now.Add(-2 * time.Hour)})
			run(t, o)
			bad := w.publish(dir, spec{vo: "atlas", tag: "queued-newer", created: w.now.Add(-time.Hour), tamperImage: true})
			run(t, o)
			if im := e.get(t, bad.id); im.Status != StatusQueued {
				t.Fatalf("newer image with refused bytes: %s", im.Status)
			}
			if im := e.get(t, cur.id); im.Hidden || im.Status != StatusActive {
				t.Fatalf("current image hidden by a queued newer one: %s hidden %v", im.Status, im.Hidden)
			}
		}},
		{name: "ok current image visible again when the newer bundle stops verifying", run: func(t *testing.T, w *world, dir string, o Options) {
			cur := w.publish(dir, spec{vo: "atlas", tag: "broken-newer", created: w.now.Add(-2 * time.Hour)})
			newer := w.publish(dir, spec{vo: "atlas", tag: "broken-newer", created: w.now.Add(-time.Hour)})
			run(t, o)
			if !e.get(t, cur.id).Hidden {
				t.Fatal("older image not hidden by the newer")
			}
			// the newer bundle's descriptor is edited at the source: it
			// still names its uuid, VO and tag, and no longer verifies
			edited := strings.Replace(string(newer.desc), `"os_version":"9"`, `"os_version":"10"`, 1)
			if edited == string(newer.desc) {
				t.Fatalf("descriptor not edited: %s", newer.desc)
			}
			if err := os.WriteFile(filepath.Join(dir, newer.name+".json"), []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			r := run(t, o)
			refused := false
			for _, oc := range r.Find(newer.id) {
				refused = refused || oc.Action == ActionRefused
			}
			if !refused {
				t.Fatalf("edited bundle not refused: %+v", r.Find(newer.id))
			}
			if im := e.get(t, cur.id); im.Hidden || im.Status != StatusActive {
				t.Fatalf("current image still hidden by an image whose bundle does not verify: %s hidden %v", im.Status, im.Hidden)
			}
		}},
		{name: "ok image whose bytes were refused is kept queued under retire = delete", run: func(t *testing.T, w *world, dir string, o Options) {
			o.Sync.Retire = "delete"
			w.publish(dir, spec{vo: "atlas", tag: "kept"})
			bad := w.publish(dir, spec{vo: "atlas", tag: "kept-queued", tamperImage: true})
			o.ResumeAfter = time.Hour
			for pass := 0; pass < 2; pass++ {
				run(t, o)
				if im, err := e.admin.Get(ctx, bad.id); err != nil || im.Status != StatusQueued {
					t.Fatalf("pass %d: listed bundle's queued image: %v %+v", pass, err, im)
				}
			}
		}},
		{name: "fail image servers use that left is never deleted", run: func(t *testing.T, w *world, dir string, o Options) {
			o.Sync.Retire = "delete"
			o.Servers = usedByServers{}
			w.publish(dir, spec{vo: "atlas", tag: "stays"})
			gone := w.publish(dir, spec{vo: "atlas", tag: "used"})
			run(t, o)
			removeBundle(t, gone)
			run(t, o)
			im, err := e.admin.Get(ctx, gone.id)
			if err != nil || im.Status != StatusDeactivated || !im.Hidden {
				t.Fatalf("retired image in use: %v %+v", err, im)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "atlas")
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Aliases = new(bool)
			tc.run(t, w, dir, o)
		})
	}
}
