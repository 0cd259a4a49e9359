package glancesync

import (
	"github.com/imagetrust/imagetrust/validator"
)

// currentImages returns, per VO/tag, the newest image of the catalogue
// that a boot by tag resolves to today: active, carrying the record of a
// bundle listed and valid this pass, not blocked by a local flag (the
// rule of reconcile's newest).
func (s *Syncer) currentImages(items []*item, byID map[string]*Image) map[string]*Image {
	cur := map[string]*Image{}
	for _, it := range items {
		if it.refused != "" {
			continue
		}
		im := byID[it.desc.UUID]
		if im == nil || im.Status != StatusActive || !s.sameRecord(im, it) || validator.LocalBlocks(im.Props[validator.PropLocalValidity]) {
			continue
		}
		k := it.desc.VO + "/" + it.desc.Tag
		if c := cur[k]; c == nil || newer(im, c) {
			cur[k] = im
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
func (s *Syncer) retiredAway(it *item, current map[string]*Image) (string, bool) {
	if s.o.Sync.Retire != "delete" {
		return "", false
	}
	c := current[it.desc.VO+"/"+it.desc.Tag]
	if c == nil {
		return "", false
	}
	tc := imageCreated(c)
	if it.desc.CreatedTime.After(tc) || (it.desc.CreatedTime.Equal(tc) && it.desc.UUID > c.ID) {
		return "", false
	}
	return c.ID, true
}
