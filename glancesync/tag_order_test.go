package glancesync

import (
	"maps"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// TestTagOrderWithinASecond: the image the sync takes for the newest of a
// tag (currentImages: the one reconcile keeps current, and under retire =
// delete the one that keeps an older bundle whose image is gone from being
// mirrored again, retiredAway) is the one a boot by tag resolves to
// (validator.Trust.DecideTag), also for two images created within one
// second, whose descriptors' fractions of a second decide. No OpenStack.
func TestTagOrderWithinASecond(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	base := w.now.Add(-time.Hour).Truncate(time.Second)
	const lo, hi = "00000000-0000-4000-8000-000000000001", "ffffffff-ffff-4fff-bfff-ffffffffffff"
	const mirror = "mirror-project"
	cases := []struct {
		name       string
		loAt, hiAt time.Duration // each one's created, into the second
	}{
		{"ok lower id created later in the second", 900 * time.Millisecond, 100 * time.Millisecond},
		{"ok higher id created later in the second", 100 * time.Millisecond, 900 * time.Millisecond},
		{"ok same instant: the higher id", 500 * time.Millisecond, 500 * time.Millisecond},
		{"ok whole seconds apart", 0, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			pubs := []*published{
				w.publish(dir, spec{id: lo, created: base.Add(c.loAt), createdNano: true, size: 1}),
				w.publish(dir, spec{id: hi, created: base.Add(c.hiAt), createdNano: true, size: 1}),
			}
			s := &Syncer{o: Options{Trust: tr, MirrorProject: mirror, Sync: config.Sync{Retire: "delete"}}}
			var items []*item
			byID := map[string]*Image{}
			var cands []validator.CatalogImage
			for _, p := range pubs {
				it := s.judge(&Bundle{Location: p.dir, Descriptor: p.desc, Signature: p.sig, VOs: []string{p.vo}}, w.now)
				if it.refused != "" {
					t.Fatalf("bundle %s refused: %s: %s", p.id, it.refused, it.detail)
				}
				items = append(items, it)
				props := maps.Clone(it.record)
				byID[p.id] = &Image{ID: p.id, Status: StatusActive, Owner: mirror, Visibility: "shared", Props: props}
				cands = append(cands, validator.CatalogImage{ID: p.id, Owner: mirror, Status: "active", Properties: props})
			}
			d, _ := tr.DecideTag(cands, validator.BootPolicy{MirrorProject: mirror}, w.now)
			if !d.Allowed {
				t.Fatalf("no image of the tag may boot: %s", d.Message)
			}
			if got := currentID(s.currentImages(items, byID)["atlas/worker"]); got != d.ImageID {
				t.Errorf("the sync's newest image is %s, a boot by tag resolves to %s", got, d.ImageID)
			}
			// under retire = delete, each bundle whose image is gone while
			// the other's is current: only the older one is not mirrored again
			for _, it := range items {
				others := maps.Clone(byID)
				delete(others, it.desc.UUID)
				by, superseded := s.retiredAway(it, s.currentImages(items, others))
				if want := it.desc.UUID != d.ImageID; superseded != want {
					t.Errorf("bundle %s (created %s): superseded %v (by %q), want %v: a boot by tag resolves to %s",
						it.desc.UUID, it.desc.Created, superseded, by, want, d.ImageID)
				}
			}
		})
	}
}

// currentID is the image id of an entry of currentImages ("none": nil).
func currentID(cur any) string {
	switch c := cur.(type) {
	case *item:
		if c != nil {
			return c.desc.UUID
		}
	case *Image:
		if c != nil {
			return c.ID
		}
	}
	return "none"
}
