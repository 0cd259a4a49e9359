package glancesync

import "github.com/imagetrust/imagetrust/validator"

// countUnbound counts the mirror project's active catalogue images whose
// record's signed descriptor does not bind the uuid to the VO (no
// uuid_seed; validator.Descriptor.Bound): the images a site would stop
// booting by turning trust.require_bound_uuids on (the gate re-verifies
// the record with it), an image squatting another VO's uuid among them.
// A record that does not decode is not counted: the gate refuses it
// already. Each record is parsed on every pass; a catalogue holds a few
// thousand images at most, and a descriptor is a few hundred bytes.
func (s *Syncer) countUnbound(ours []*Image) int {
	n := 0
	for _, im := range ours {
		if im.Owner != "" && im.Owner != s.o.MirrorProject {
			continue
		}
		if im.Status != StatusActive || im.Props[validator.PropAlias] != "" || im.Props[validator.PropUUID] == "" {
			continue
		}
		desc, _, err := validator.RecordBundle(im.Props)
		if err != nil {
			continue
		}
		d, err := validator.ParseDescriptor(desc)
		if err != nil || d.Bound() {
			continue
		}
		n++
	}
	return n
}
