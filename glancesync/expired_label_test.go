package glancesync

import (
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/imagetrust/imagetrust/validator"
)

// TestExpiredOnlyLabel: a bundle whose only failure is its image
// certificate's expiry is refused as "expired" (routine: INFO, and
// `sync --once` does not exit 4 for it); a bundle that is expired and
// fails another check, or fails another check only, is refused by that
// check, never as "expired" (it would hide a tampered or untrusted bundle
// among routine expiries). The outcome and the metric carry the label.
// (No Glance: judging and refusing never ask it.)
func TestExpiredOnlyLabel(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		name    string
		sp      spec
		expired bool
	}{
		{"ok expired only", spec{expired: true}, true},
		{"fail expired and untrusted", spec{expired: true, untrusted: true}, false},
		{"fail expired and no approver", spec{expired: true, noApprover: true}, false},
		{"fail untrusted", spec{untrusted: true}, false},
		{"fail tampered descriptor", spec{tamperDesc: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "atlas")
			if tc.sp.expired {
				// created before its (expired) certificate's registration
				tc.sp.created = w.now.AddDate(0, -3, 0)
			}
			w.publish(dir, tc.sp)
			bundles, _, err := (&DirSource{Root: dir, AllowedVOs: []string{"atlas"}}).List(t.Context())
			if err != nil || len(bundles) != 1 {
				t.Fatalf("listed %d: %v", len(bundles), err)
			}
			s, err := New(Options{Trust: w.trust(), Glance: &memGlance{}, MirrorProject: "mirror"})
			if err != nil {
				t.Fatal(err)
			}
			it := s.judge(bundles[0], w.now)
			if it.refused == "" {
				t.Fatal("bundle not refused")
			}
			if (it.refused == validator.ReasonExpired) != tc.expired {
				t.Fatalf("refused as %q (%s); expired only: %v", it.refused, it.detail, tc.expired)
			}
			if tc.expired != (it.result != nil && it.result.ExpiredOnly) {
				t.Fatalf("the fixture no longer spoils as the case says: ExpiredOnly %v", it.result != nil && it.result.ExpiredOnly)
			}
			rp := &reporter{}
			s.refuse(it, rp)
			if len(rp.r.Outcomes) != 1 || rp.r.Outcomes[0].Reason != it.refused || rp.r.Outcomes[0].Action != ActionRefused {
				t.Fatalf("outcome %+v", rp.r.Outcomes)
			}
			var m dto.Metric
			if err := s.m.Refused.WithLabelValues(validator.ReasonExpired).Write(&m); err != nil {
				t.Fatal(err)
			}
			if n := m.GetCounter().GetValue(); (n == 1) != tc.expired {
				t.Fatalf("images_refused_total{reason=expired} = %v", n)
			}
		})
	}
}
