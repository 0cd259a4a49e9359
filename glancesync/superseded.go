package glancesync

import (
	"github.com/imagetrust/imagetrust/validator"
)

// currentImages returns, per VO/tag, the item of the newest image of the
// catalogue that a boot by tag resolves to today: active, carrying the
// record of a bundle listed and valid this pass, not blocked by a local
// flag (the rule of reconcile's newest), newest by its signed created time
// (newerItem).
func (s *Syncer) currentImages(items []*item, byID map[string]*Image) map[string]*item {
	cur := map[string]*item{}
	for _, it := range items {
		if it.refused != "" {
			continue
		}
		im := byID[it.desc.UUID]
		if im == nil || im.Status != StatusActive || !s.sameRecord(im, it) || validator.LocalBlocks(im.Props[validator.PropLocalValidity]) {
			continue
		}
		k := it.desc.VO + "/" + it.desc.Tag
		if c := cur[k]; c == nil || newerItem(it, c) {
			cur[k] = it
		}
	}
	return cur
}

// retiredAway reports, under retire = "delete", whether a bundle with no
// image in Glance is superseded in its tag by a current image (and
// names it): its image was retired (deleted, its uuid spent for good) or
// would be the pass it is made. Creating it again is impossible (Glance
// answers 409 for a deleted id) and pointless; publishers keep old
// bundles in their sources, so this is routine, not a refusal.
func (s *Syncer) retiredAway(it *item, current map[string]*item) (string, bool) {
	if s.o.Sync.Retire != "delete" {
		return "", false
	}
	c := current[it.desc.VO+"/"+it.desc.Tag]
	if c == nil || newerItem(it, c) {
		return "", false
	}
	return c.desc.UUID, true
}

// newerItem orders the bundles of one tag as a boot by tag orders their
// images (validator.Trust.DecideTag): by the signed descriptor's created
// time, to the fraction of a second it gives (imagetrust_created keeps
// whole seconds only), then by uuid.
func newerItem(a, b *item) bool {
	if ta, tb := a.desc.CreatedTime, b.desc.CreatedTime; !ta.Equal(tb) {
		return ta.After(tb)
	}
	return a.desc.UUID > b.desc.UUID
}
