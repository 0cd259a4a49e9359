package glancesync

import (
	"maps"
	"slices"
	"strings"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// The site's image property policy: which of a descriptor's free-form
// properties (its "properties", which Nova and Cinder act on at every
// boot: CPU pinning, placement traits, volume types ...) a VO may set in
// this site's Glance. sync.image_properties, or the VO's
// vo.NAME.image_properties, lists their patterns (config.ImagePropertyPatterns;
// default config.DefaultImageProperties). A property no pattern matches is
// not copied into a new image (createSpec), and is removed from a mirrored
// image that carries it with the descriptor's value (compareRecord,
// repairRecord); a property the policy allows that the image lacks is
// written back. The catalogue record is the same either way: it holds the
// whole signed descriptor, and neither the proxy (validator.DecideBoot)
// nor the CRL job reads the free-form properties.

// propPatterns are the image_properties patterns of VO vo.
func (s *Syncer) propPatterns(vo string) []string {
	return config.ImagePropertyPatterns(s.o.Sync, s.o.VOs[vo])
}

// allowedProps returns the free-form properties of d the site's policy
// lets into Glance, and the names of those it refuses, sorted.
func (s *Syncer) allowedProps(d *validator.Descriptor) (allowed map[string]string, refused []string) {
	pats := s.propPatterns(d.VO)
	allowed = make(map[string]string, len(d.Properties))
	for k, v := range d.Properties {
		if config.PropertyAllowed(pats, k) {
			allowed[k] = v
		} else {
			refused = append(refused, k)
		}
	}
	slices.Sort(refused)
	return allowed, refused
}

// propDrift compares the free-form properties of im with those of d under
// the site's policy: drop are the refused ones im carries with d's value
// (a value of another is an operator's, and left alone), restore the
// allowed ones im lacks (those with an empty value aside), each sorted.
// A property d does not name is never either.
func (s *Syncer) propDrift(im *Image, d *validator.Descriptor) (drop, restore []string) {
	allowed, refused := s.allowedProps(d)
	for _, k := range refused {
		if v, ok := im.Props[k]; ok && v == d.Properties[k] {
			drop = append(drop, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(allowed)) {
		if _, ok := im.Props[k]; !ok && allowed[k] != "" {
			restore = append(restore, k)
		}
	}
	return drop, restore
}

// noteDropped logs, once per bundle in this process, the names (never the
// values) of its free-form properties the site's policy keeps out of
// Glance.
func (s *Syncer) noteDropped(it *item, refused []string) {
	if len(refused) == 0 {
		return
	}
	s.mu.Lock()
	seen := s.droppedSeen[it.desc.UUID]
	s.droppedSeen[it.desc.UUID] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn(droppedLogMsg,
			"image", it.desc.UUID, "vo", it.desc.VO, "tag", it.desc.Tag, "properties", refused)
	}
}

// droppedLogMsg is noteDropped's WARN.
const droppedLogMsg = "descriptor properties refused by the site's image_properties are kept out of Glance (the image is mirrored without them)"

// droppedDetail is the outcome detail of a bundle whose refused free-form
// properties are kept out of Glance ("" when none is).
func droppedDetail(refused []string) string {
	if len(refused) == 0 {
		return ""
	}
	return "descriptor properties not in Glance (refused by image_properties): " + strings.Join(refused, ", ")
}

// withDropped appends the detail of the bundle's refused properties to
// detail, noting them (noteDropped).
func (s *Syncer) withDropped(it *item, detail string) string {
	_, refused := s.allowedProps(it.desc)
	s.noteDropped(it, refused)
	dd := droppedDetail(refused)
	switch {
	case dd == "":
		return detail
	case detail == "":
		return dd
	}
	return detail + "; " + dd
}
