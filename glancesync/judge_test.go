package glancesync

import (
	"context"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
)

// TestJudgeAllIsJudgeInOrder: judging a source's bundles in parallel gives
// every bundle, in the listing's order, the verdict judging them one after
// the other gives. (No Glance: judging never asks it.)
func TestJudgeAllIsJudgeInOrder(t *testing.T) {
	// parallel whatever the machine (-cpu 1, GOMAXPROCS=1): judgeAll
	// takes its workers from GOMAXPROCS
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	for i, sp := range []spec{{}, {expired: true}, {untrusted: true}, {tamperDesc: true}, {noApprover: true}, {wrongSHA: true}, {vo: "cms"}, {}, {}, {expired: true}} {
		sp.tag = "t" + string(rune('a'+i))
		w.publish(dir, sp)
	}
	src := &DirSource{Root: dir, AllowedVOs: []string{"atlas"}}
	bundles, _, err := src.List(context.Background())
	if err != nil || len(bundles) != 10 {
		t.Fatalf("listed %d: %v", len(bundles), err)
	}
	o := Options{Trust: w.trust(), Glance: &memGlance{}, MirrorProject: "mirror"}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	got := s.judgeAll(bundles, w.now)
	refused := 0
	for i, b := range bundles {
		want := s.judge(b, w.now)
		if got[i].b != b || !reflect.DeepEqual(got[i], want) {
			t.Fatalf("bundle %d (%s): parallel verdict %q %q, sequential %q %q", i, b.Location, got[i].refused, got[i].detail, want.refused, want.detail)
		}
		if want.refused != "" {
			refused++
		}
	}
	if refused != 6 { // wrongSHA is a matter of the bytes, not judged here
		t.Fatalf("%d refused, want 6 (the fixture no longer spoils what it should)", refused)
	}
}
