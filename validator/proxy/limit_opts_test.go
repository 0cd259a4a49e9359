package proxy

import (
	"io"
	"log/slog"
	"net/url"
	"testing"
)

// TestMaxGatedPerProjectOption: Options.MaxGatedPerProject is at most
// MaxGated. A value over it (an operator's way of saying "no per-project
// bound", max_gated_per_project = 64 with the default 16 slots) is
// MaxGated, not the default half: the old code gave such a value the
// default (8 of 16), the opposite of what was asked.
func TestMaxGatedPerProjectOption(t *testing.T) {
	u, _ := url.Parse("http://nova.invalid/v2.1")
	for _, c := range []struct{ maxGated, perProject, want int }{
		{16, 0, 8}, {16, 5, 5}, {16, 16, 16}, {16, 64, 16}, {1, 0, 1}, {4, 5, 4},
	} {
		p, err := New(Options{Upstream: u, Lookup: newMemGlance(), Decider: nobodyDecides{}, MirrorProject: mirrorProject,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxGated: c.maxGated, MaxGatedPerProject: c.perProject})
		if err != nil {
			t.Fatal(err)
		}
		if p.limit.perProject != c.want {
			t.Errorf("MaxGated %d, MaxGatedPerProject %d: per project %d, want %d", c.maxGated, c.perProject, p.limit.perProject, c.want)
		}
	}
}
