package glancesync

import (
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/validator"
)

// TestDuplicateUUIDFirstListedWins: two validly signed bundles with one
// uuid (a publisher's mistake, or a registrar's): the first listed is
// mirrored, the other refused as a duplicate, in every pass; which one ends
// in Glance never depends on which transfer starts first. Against the real
// Glance.
func TestDuplicateUUIDFirstListedWins(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	id := uuid.NewString()
	first := w.publish(dir, spec{vo: "atlas", tag: "dup-a", id: id, name: "a-first"})
	w.publish(dir, spec{vo: "atlas", tag: "dup-b", id: id, name: "b-second", size: 96 << 10})
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Aliases = new(bool)
	for pass := 1; pass <= 2; pass++ {
		r := run(t, o)
		dup := 0
		for _, oc := range r.Find(id) {
			if oc.Action == ActionRefused {
				if oc.Reason != ReasonDuplicateUUID || oc.Location == "" || filepath.Base(oc.Location) != "b-second.json" && filepath.Base(oc.Location) != "b-second" {
					t.Errorf("pass %d: refusal %+v, want %s of b-second", pass, oc, ReasonDuplicateUUID)
				}
				dup++
			}
		}
		if dup != 1 {
			t.Fatalf("pass %d: %d duplicate refusals: %+v", pass, dup, r.Find(id))
		}
		im := e.get(t, id)
		if im.Status != StatusActive || im.Props[validator.PropTag] != "dup-a" || im.Size != int64(len(first.image)) {
			t.Fatalf("pass %d: image %s tag %s size %d, want the first bundle's", pass, im.Status, im.Props[validator.PropTag], im.Size)
		}
	}
}
