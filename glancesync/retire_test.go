package glancesync

import (
	"path/filepath"
	"testing"
)

// TestEmptySourceRetiresNothing: a source that lists no bundle at all (an
// unmounted mount point, an emptied rsync target) retires nothing of its
// VOs; taking the source out of the configuration does. Against the real
// Glance.
func TestEmptySourceRetiresNothing(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	atlas := filepath.Join(t.TempDir(), "atlas")
	p := w.publish(atlas, spec{vo: "atlas", tag: "worker"})
	o := e.options(t, w, map[string][]string{atlas: {"atlas"}})
	if r := run(t, o); r.Errors != 0 {
		t.Fatalf("first pass: %+v", r.Outcomes)
	}
	if im := e.get(t, p.id); im.Status != StatusActive || im.Hidden {
		t.Fatalf("not mirrored: %s hidden %v", im.Status, im.Hidden)
	}
	removeBundle(t, p)
	r := run(t, o)
	for _, oc := range r.Outcomes {
		if oc.ID == p.id && oc.Action != ActionUnchanged {
			t.Fatalf("empty listing: %+v", oc)
		}
	}
	if im := e.get(t, p.id); im.Status != StatusActive || im.Hidden {
		t.Fatalf("retired on an empty listing: %s hidden %v", im.Status, im.Hidden)
	}
	o.Sources = nil
	run(t, o)
	if im := e.get(t, p.id); !im.Hidden {
		t.Fatalf("not retired once its VO has no source: %s hidden %v", im.Status, im.Hidden)
	}
}
