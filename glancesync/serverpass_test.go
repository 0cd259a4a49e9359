package glancesync

import (
	"context"
	"sync/atomic"
	"testing"
)

// passServers counts the passes it is told of (ServerPass).
type passServers struct {
	unusedServers
	began atomic.Int32
}

func (p *passServers) BeginPass(context.Context) { p.began.Add(1) }

// TestServerPassBegun: a ServerChecker that is a ServerPass is told of
// each pass under retire = delete (the cmd's Nova check reads the catalog
// again then, while it has no compute service), and not under another
// policy, nor in a dry run (which asks no Nova). In memory: no OpenStack.
// Before, nothing told it: a compute service registered after the start
// was not used until a restart.
func TestServerPassBegun(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		retire string
		dry    bool
		want   int32
	}{{"delete", false, 2}, {"delete", true, 0}, {"hide", false, 0}, {"keep", false, 0}} {
		ps := &passServers{}
		o := Options{Trust: w.trust(), Glance: newMemGlance(), MirrorProject: "mirror", Servers: ps, DryRun: tc.dry}
		o.Sync.Retire = tc.retire
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := s.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if got := ps.began.Load(); got != tc.want {
			t.Errorf("retire = %s dry run %v: told of %d passes, want %d", tc.retire, tc.dry, got, tc.want)
		}
	}
}
