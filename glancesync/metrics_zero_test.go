package glancesync

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/internal/config"
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

// TestListingFailureLabels: imagetrust_sync_listing_failure{vo,reason}
// has a series at 0 for every reason of every VO with listing = "signed"
// from the start (none for the other VOs: bounded by the configuration
// times validator.ListingReasons), 1 for the reason of a VO that failed in
// the last pass and 0 again once it passes; a Syncer made on the same
// metrics after a reload that takes a VO's signed listings away drops its
// series, and keeps the values of the VOs still signed.
func TestListingFailureLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	syncer := func(signed ...string) *Syncer {
		vos := map[string]config.VO{"atlas": {}, "cms": {}, "lhcb": {}}
		for _, v := range signed {
			vos[v] = config.VO{Listing: "signed"}
		}
		s := &Syncer{o: Options{VOs: vos}, m: m}
		s.labelListingVOs()
		return s
	}
	// series returns the values by "vo/reason"
	series := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "imagetrust_sync_listing_failure" {
				continue
			}
			for _, s := range mf.GetMetric() {
				l := map[string]string{}
				for _, p := range s.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				out[l["vo"]+"/"+l["reason"]] = s.GetGauge().GetValue()
			}
		}
		return out
	}
	check := func(step string, vos []string, ones ...string) {
		t.Helper()
		got := series()
		if len(got) != len(vos)*len(validator.ListingReasons) {
			t.Errorf("%s: %d series, want %d (%v)", step, len(got), len(vos)*len(validator.ListingReasons), got)
		}
		for _, v := range vos {
			for _, r := range validator.ListingReasons {
				want := 0.0
				if slices.Contains(ones, v+"/"+r) {
					want = 1
				}
				if val, ok := got[v+"/"+r]; !ok || val != want {
					t.Errorf("%s: %s/%s = %v (exported %v), want %v", step, v, r, val, ok, want)
				}
			}
		}
	}
	s := syncer("atlas", "cms")
	check("at start", []string{"atlas", "cms"})
	s.setListingFailures([]ListingProblem{{VO: "atlas", Reason: validator.ListingExpired}})
	check("atlas expired", []string{"atlas", "cms"}, "atlas/"+validator.ListingExpired)
	s.setListingFailures([]ListingProblem{{VO: "cms", Reason: validator.ListingBadSignature}})
	check("atlas valid again, cms forged", []string{"atlas", "cms"}, "cms/"+validator.ListingBadSignature)
	syncer("cms", "lhcb")
	check("after a reload", []string{"cms", "lhcb"}, "cms/"+validator.ListingBadSignature)
}
