package glancesync

import (
	"fmt"
	"slices"
	"strings"

	"github.com/imagetrust/imagetrust/validator"
)

// warnOrphans reports, once per pass, the mirror project's catalogue images
// whose VO has no [vo] section: the sync only considers configured VOs, so
// it never retires them, and the proxy refuses them (unknown-vo), yet they
// stay listed. They are left alone on purpose: a section removed by mistake
// (a typo, a bad merge) must not retire a VO. The operator retires a VO by
// taking its sources out first, letting a pass retire its images, and only
// then its section (docs/glancesync.md, "Removing a VO"). It returns the
// count by VO, and sets imagetrust_sync_orphaned_images{vo} to it.
func (s *Syncer) warnOrphans(ours []*Image) map[string]int {
	byVO := map[string]int{}
	aliases := 0
	for _, im := range ours {
		if im.Owner != "" && im.Owner != s.o.MirrorProject {
			continue
		}
		if a := im.Props[validator.PropAlias]; a != "" {
			if vo, _, ok := strings.Cut(a, "/"); ok && !s.configured(vo) {
				aliases++
			}
			continue
		}
		vo := im.Props[validator.PropVO]
		if im.Props[validator.PropUUID] == "" || vo == "" || s.configured(vo) {
			continue
		}
		byVO[vo]++
	}
	s.m.Orphaned.Reset()
	if len(byVO) == 0 {
		return byVO
	}
	names := make([]string, 0, len(byVO))
	for vo := range byVO {
		names = append(names, vo)
	}
	slices.Sort(names)
	vos := make([]string, 0, min(len(names), maxOrphanVOs+1))
	n, other := 0, 0
	for i, vo := range names {
		c := byVO[vo]
		n += c
		// the VO is a Glance property anyone in the mirror project can
		// write: as a label and in the log line, a bounded few; the rest,
		// names over maxOrphanVOLen bytes and one spelled like
		// OrphanVOOther are counted under OrphanVOOther
		if i >= maxOrphanVOs || len(vo) > maxOrphanVOLen || vo == OrphanVOOther {
			other += c
			continue
		}
		s.m.Orphaned.WithLabelValues(vo).Set(float64(c))
		vos = append(vos, fmt.Sprintf("%s=%d", vo, c))
	}
	if other > 0 {
		s.m.Orphaned.WithLabelValues(OrphanVOOther).Set(float64(other))
		vos = append(vos, fmt.Sprintf("%s=%d", OrphanVOOther, other))
	}
	s.log.Warn(orphansMsg, "vos", strings.Join(vos, " "), "images", n, "aliases", aliases)
	return byVO
}

// The orphaned_images{vo} series are at most maxOrphanVOs VOs (the first
// by name) whose name is at most maxOrphanVOLen bytes long, and
// OrphanVOOther for the images of the rest.
const (
	maxOrphanVOs   = 20
	maxOrphanVOLen = 64
	OrphanVOOther  = "(other)"
)

// orphansMsg is warnOrphans' log line.
const orphansMsg = "catalogue images of VOs without a [vo] section: the sync neither updates nor retires them, and the proxy refuses them (unknown-vo); to retire a VO, restore its section, remove its sources and let a pass retire its images, then remove the section (docs/glancesync.md, \"Removing a VO\")"
