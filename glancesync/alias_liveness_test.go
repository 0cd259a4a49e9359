package glancesync

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/validator"
)

// TestAliasLiveness: a tag gets its aliases (TAG, VO/TAG) only once an
// image of a valid bundle of it is active in Glance: not while its only
// image is queued because its bytes were refused, nor from an active image
// whose bundle has left the source. Against the real Glance (the tags are
// new each run: alias ids derive from the mirror project and the tag).
func TestAliasLiveness(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	aliasesOf := func(t *testing.T, alias string) int {
		t.Helper()
		ims, err := e.admin.List(ctx, e.project, map[string]string{validator.PropAlias: alias})
		if err != nil {
			t.Fatal(err)
		}
		return len(ims)
	}
	for _, tc := range []struct {
		name string
		// setup publishes into dir and runs passes; the pass after it
		// (aliases on) is judged
		setup func(t *testing.T, w *world, dir, tag string, o Options)
		want  int
	}{
		{name: "ok tag with an active image gets two aliases", want: 2,
			setup: func(t *testing.T, w *world, dir, tag string, o Options) {
				w.publish(dir, spec{vo: "atlas", tag: tag})
			}},
		{name: "fail tag whose only image's bytes were refused", want: 0,
			setup: func(t *testing.T, w *world, dir, tag string, o Options) {
				w.publish(dir, spec{vo: "atlas", tag: tag, tamperImage: true})
			}},
		{name: "fail tag whose only active image's bundle left, the new one's bytes refused", want: 0,
			setup: func(t *testing.T, w *world, dir, tag string, o Options) {
				old := w.publish(dir, spec{vo: "atlas", tag: tag})
				o.Sync.Aliases = new(bool)
				run(t, o)
				if im := e.get(t, old.id); im.Status != StatusActive {
					t.Fatalf("first image: %s", im.Status)
				}
				removeBundle(t, old)
				w.publish(dir, spec{vo: "atlas", tag: tag, tamperImage: true})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "atlas")
			tag := "live-" + uuid.NewString()[:8]
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Retire = "keep"
			tc.setup(t, w, dir, tag, o)
			r := run(t, o)
			if r.Errors != 0 {
				t.Fatalf("pass: %+v", r.Outcomes)
			}
			if got := aliasesOf(t, "atlas/"+tag); got != tc.want {
				t.Fatalf("aliases of atlas/%s: %d, want %d", tag, got, tc.want)
			}
		})
	}
}
