package glancesync

import (
	"context"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/config"
)

// TestUnverifiedImageNotUnhidden: an active image of the mirror whose
// bundle is still listed but no longer verifies is not treated as current:
// a pass neither unhides it nor sets its VO's visibility (a hidden image
// would otherwise come back into users' listings, and a boot by tag, on a
// bundle the site no longer trusts). Against the real Glance: the image is
// mirrored (its VO private), an operator hides it and shares it, then the bundle
// fails verification, by expiry (the sync's clock past the image
// certificate's notAfter) or by trust (the creator's CA taken out).
func TestUnverifiedImageNotUnhidden(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name  string
		spoil func(o *Options, w *world)
	}{
		{"ok expired since", func(o *Options, w *world) {
			o.Now = func() time.Time { return time.Now().AddDate(0, 4, 0) }
		}},
		{"ok no longer trusted", func(o *Options, w *world) {
			o.Trust = newWorld(t).trust()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := t.TempDir()
			p := w.publish(dir, spec{vo: "atlas", tag: "unverified"})
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Aliases = new(bool)
			// a private VO: the operator's change below (to shared) leaves
			// an image whose members the sync can still list
			o.VOs = map[string]config.VO{"atlas": {Visibility: "private"}}
			if r := run(t, o); r.Errors != 0 || e.get(t, p.id).Hidden || e.get(t, p.id).Visibility != "private" {
				t.Fatalf("first pass: %+v, image %+v", r.Outcomes, e.get(t, p.id))
			}
			if err := e.admin.Patch(t.Context(), p.id, []PatchOp{{Name: "os_hidden", Value: true}, {Name: "visibility", Value: "shared"}}); err != nil {
				t.Fatal(err)
			}
			// an image of a VO the other tests' configurations share
			// (atlas) with another visibility: not left in the shared stack
			t.Cleanup(func() { _ = e.admin.Delete(context.Background(), p.id) })
			tc.spoil(&o, w)
			r := run(t, o)
			if r.Errors != 0 {
				t.Fatalf("pass: %d errors: %+v", r.Errors, r.Outcomes)
			}
			for _, out := range r.Find(p.id) {
				if out.Action != ActionRefused {
					t.Errorf("outcome %+v for an image whose bundle no longer verifies", out)
				}
			}
			if im := e.get(t, p.id); !im.Hidden || im.Visibility != "shared" || im.Status != StatusActive {
				t.Fatalf("image hidden %v visibility %s status %s; want it left hidden, shared, active", im.Hidden, im.Visibility, im.Status)
			}
		})
	}
}
