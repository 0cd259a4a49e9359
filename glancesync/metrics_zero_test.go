package glancesync

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
		"imagetrust_sync_images_refused_total": {"expired", "revoked", "sha512-mismatch", "creator-not-authorised", ReasonSquatted, ReasonUUIDImmutable},
		"imagetrust_sync_images_retired_total": {"hide", "delete", "deactivate", ActionAliasDelete},
	} {
		for _, l := range labels {
			if !have[name][l] {
				t.Errorf("%s{%q} is not exported at 0", name, l)
			}
		}
	}
}
