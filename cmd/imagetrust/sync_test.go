package main

import (
	"testing"

	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/validator"
)

func TestRefusedBundles(t *testing.T) {
	out := func(action, reason string) glancesync.Outcome {
		return glancesync.Outcome{ID: "x", Action: action, Reason: reason}
	}
	for _, tc := range []struct {
		name string
		outs []glancesync.Outcome
		want int
	}{
		{"ok nothing refused", []glancesync.Outcome{out(glancesync.ActionMirrored, ""), out(glancesync.ActionUnchanged, "")}, 0},
		{"ok only expired or revoked", []glancesync.Outcome{out(glancesync.ActionRefused, validator.ReasonExpired), out(glancesync.ActionRefused, validator.ReasonRevoked)}, 0},
		{"fail tampered", []glancesync.Outcome{out(glancesync.ActionRefused, validator.ReasonExpired), out(glancesync.ActionRefused, validator.ReasonSizeMismatch)}, 1},
		{"fail squatted and revoked", []glancesync.Outcome{out(glancesync.ActionRefused, glancesync.ReasonSquatted), out(glancesync.ActionRefused, validator.ReasonCreatorNotListed)}, 2},
		{"fail unreadable bundle", []glancesync.Outcome{out(glancesync.ActionSkipped, glancesync.ReasonUnreadable)}, 1},
		{"ok skipped while in flight", []glancesync.Outcome{out(glancesync.ActionSkipped, ""), out(glancesync.ActionElsewhere, "")}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := refusedBundles(&glancesync.Report{Outcomes: tc.outs}); got != tc.want {
				t.Fatalf("refusedBundles = %d, want %d", got, tc.want)
			}
		})
	}
}
