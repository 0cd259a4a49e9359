package main

import (
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/cms"
)

// TestSignerRole: the creator is the signer that signed first, the
// approver the other; with no, equal or one missing signing time, with
// other than two signers or with an index out of range, "signer", and
// never a panic (signerRole guards its own indexing instead of relying on
// readSignature's count).
func TestSignerRole(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ts ...time.Time) []cms.Signer {
		out := make([]cms.Signer, len(ts))
		for i, x := range ts {
			out[i].SigningTime = x
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		signers []cms.Signer
		i       int
		want    string
	}{
		{"ok first signed first", at(t0, t0.Add(time.Second)), 0, "creator"},
		{"ok second signed first", at(t0, t0.Add(time.Second)), 1, "approver"},
		{"ok set order is not signing order", at(t0.Add(time.Second), t0), 1, "creator"},
		{"ok same time", at(t0, t0), 0, "signer"},
		{"ok one time missing", at(t0, time.Time{}), 0, "signer"},
		{"fail no signer", nil, 0, "signer"},
		{"fail one signer", at(t0), 0, "signer"},
		{"fail three signers, last", at(t0, t0.Add(time.Second), t0.Add(2*time.Second)), 2, "signer"},
		{"fail three signers, first", at(t0, t0.Add(time.Second), t0.Add(2*time.Second)), 0, "signer"},
		{"fail negative index", at(t0, t0.Add(time.Second)), -1, "signer"},
		{"fail index past two", at(t0, t0.Add(time.Second)), 2, "signer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := signerRole(tc.signers, tc.i); got != tc.want {
				t.Errorf("signerRole(%d signers, %d) = %q, want %q", len(tc.signers), tc.i, got, tc.want)
			}
		})
	}
}
