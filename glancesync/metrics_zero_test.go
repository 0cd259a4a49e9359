package glancesync

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/validator"
)

// TestMetricsStartAtZero: every reason and retire action is exported at 0
// before its first event, so that an alert on increase() sees the first
// refusal (a series that appears already at 1 has no increase).
func TestMetricsStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if have[mf.GetName()] == nil {
					have[mf.GetName()] = map[string]bool{}
				}
				have[mf.GetName()][l.GetValue()] = m.GetCounter().GetValue() == 0
			}
		}
	}
	for name, labels := range map[string][]string{
		"imagetrust_sync_images_refused_total": {"expired", "revoked", "sha512-mismatch", "creator-not-authorised", ReasonSquatted, ReasonUUIDImmutable, ReasonUUIDSquatted},
		"imagetrust_sync_images_retired_total": {"hide", "delete", "deactivate", ActionAliasDelete},
	} {
		for _, l := range labels {
			if !have[name][l] {
				t.Errorf("%s{%q} is not exported at 0", name, l)
			}
		}
	}
}

// TestOrphanedVOLabelsBounded: imagetrust_sync_orphaned_images{vo} takes
// its VOs from a Glance property that anyone in the mirror project can
// write. Hundreds of made-up or very long VOs make at most maxOrphanVOs+1
// series (the rest counted under OrphanVOOther) and a log line of bounded
// length, and the images are all counted. On the old code every VO, of
// any length, was a series and a part of the log line.
func TestOrphanedVOLabelsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	log, logs := captureLogger(t)
	s := &Syncer{o: Options{MirrorProject: "mirror"}, log: log, m: NewMetrics(reg)}
	var ours []*Image
	for i := range 300 {
		vo := fmt.Sprintf("vo-%03d", i)
		if i%3 == 0 {
			vo += strings.Repeat("x", 4096)
		}
		ours = append(ours, &Image{ID: fmt.Sprint(i), Owner: "mirror", Props: map[string]string{
			validator.PropVO: vo, validator.PropUUID: fmt.Sprint(i)}})
	}
	s.warnOrphans(ours)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series, total := 0, 0.0
	for _, mf := range mfs {
		if mf.GetName() != "imagetrust_sync_orphaned_images" {
			continue
		}
		for _, m := range mf.GetMetric() {
			series++
			total += m.GetGauge().GetValue()
			if v := m.GetLabel()[0].GetValue(); len(v) > maxOrphanVOLen {
				t.Errorf("a label of %d bytes", len(v))
			}
		}
	}
	if series > maxOrphanVOs+1 || total != 300 {
		t.Errorf("%d series counting %v images, want at most %d counting 300", series, total, maxOrphanVOs+1)
	}
	lines := logs.lines(orphansMsg)
	if len(lines) != 1 || len(lines[0].attrs["vos"]) > (maxOrphanVOs+1)*(maxOrphanVOLen+8) || lines[0].attrs["images"] != "300" {
		t.Errorf("log line: %d lines, vos of %d bytes, images %q", len(lines), len(lines[0].attrs["vos"]), lines[0].attrs["images"])
	}
}
