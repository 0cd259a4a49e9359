package main

import (
	"io"
	"log/slog"
	"testing"

	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/config"
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
		{"fail uuid squatted (the owner's bound bundle over another VO's squat)", []glancesync.Outcome{out(glancesync.ActionSquatDeactivate, glancesync.ReasonUUIDSquatted), out(glancesync.ActionRefused, glancesync.ReasonUUIDSquatted)}, 1},
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

// TestFetcherOptionsFromConfig: the sources' HTTP settings come from the
// configuration, sync.transfer_max_resumes included, with the documented
// default when it is unset.
func TestFetcherOptionsFromConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		want int
	}{
		{"ok default", "", config.DefaultTransferMaxResumes},
		{"ok set", "[sync]\ntransfer_max_resumes = 3", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.toml))
			if err != nil {
				t.Fatal(err)
			}
			o := fetcherOptions(cfg, nil)
			if o.MaxResumes != tc.want || o.Retries != cfg.Sync.Retries || o.DownloadTimeout != cfg.Sync.DownloadTimeout.Duration {
				t.Fatalf("options %+v, want MaxResumes %d and the configured retries and timeout", o, tc.want)
			}
		})
	}
}

// TestSyncPassDone: the sync daemon's /healthz (and last_success) counts a
// pass that ran to its end with every source listed as successful, even
// when operations failed on some images (logged, counted in
// imagetrust_sync_failing_images, retried by the next pass); a pass that
// could not list a source is not. Before, any error of a pass failed it,
// so one image failing on every pass made /healthz 503.
func TestSyncPassDone(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name string
		r    glancesync.Report
		want bool
	}{
		{"ok clean", glancesync.Report{}, true},
		{"ok one image failing", glancesync.Report{Errors: 3, Failed: []string{"0b8f6f5e-1c57-4b32-9b0b-3a1e0c3f6a11"}}, true},
		{"fail a source not listed", glancesync.Report{Errors: 1, SourceErrors: 1}, false},
		{"fail a source not listed and an image failing", glancesync.Report{Errors: 2, SourceErrors: 1, Failed: []string{"x"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := syncPassDone(log, &tc.r); got != tc.want {
				t.Fatalf("syncPassDone = %v, want %v", got, tc.want)
			}
		})
	}
}
