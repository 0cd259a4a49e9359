package crljob

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/glance"
)

// TestRevocationRacesConcurrentWrite: Glance saves whole images with no
// compare-and-swap, so a write of another client that overlaps the CRL
// job's revocation (the sync's, an operator's) can undo the flag or the
// deactivation without an error. Against the real Glance: while `crl
// --once` revokes image b, two writers PATCH another property of b back to
// back for a window (IMAGETRUST_RACE_WINDOW_MS, 1500 by default) from the
// job's start. The job must end with b deactivated and revoked, or report
// the lost write and exit 4; an exit 0 with b not revoked is the silent
// loss the job used to have. IMAGETRUST_RACE_ITERATIONS (default 4) sets
// how often; with IMAGETRUST_TEST_BINARY an older binary can be measured
// the same way (the log line counts each outcome).
func TestRevocationRacesConcurrentWrite(t *testing.T) {
	iterations := envInt("IMAGETRUST_RACE_ITERATIONS", 4)
	window := time.Duration(envInt("IMAGETRUST_RACE_WINDOW_MS", 1500)) * time.Millisecond
	s := newSite(t, "b")
	s.revoke("registrar-ca", "--cert", "images/b.json.crt", "--reason", "keyCompromise")
	id := s.ids["b"]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	var held, reported, silent, racedWrites, rewrites int
	for i := 0; i < iterations; i++ {
		s.resetValid(ctx, "b")
		var stop atomic.Bool
		var wg sync.WaitGroup
		var n atomic.Int32
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; !stop.Load(); k++ {
					// the sync's or an operator's write of another key
					r := glance.PatchProperties(ctx, s.img, id, nil, map[string]string{"x_race_" + strconv.Itoa(w): strconv.Itoa(i*100000 + k)}, nil)
					if r.Err != nil {
						t.Errorf("concurrent writer: %v", r.Err)
						return
					}
					n.Add(1)
				}
			}()
		}
		timer := time.AfterFunc(window, func() { stop.Store(true) })
		code, out, errs := s.run("crl", "--config", s.cfg, "--once", "--report-json")
		timer.Stop()
		stop.Store(true)
		wg.Wait()
		racedWrites += int(n.Load())
		// the job's log: each change it found undone and wrote again
		rewrites += strings.Count(errs, "write lost to a concurrent Glance write: writing it again")
		var rep crl.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("report: %v\n%s\n%s", err, out, errs)
		}
		// after the writers stopped: what the job left
		time.Sleep(500 * time.Millisecond)
		b := s.image("b")
		ok := b.Status == "deactivated" && b.Properties[crl.PropGlobalValidity] == crl.StateRevoked
		lostReported := false
		for _, l := range rep.LostWrites {
			lostReported = lostReported || l.ImageID == id
		}
		switch {
		case ok && code == 0:
			held++
		case lostReported && code == 4:
			reported++
			t.Logf("iteration %d: lost write reported (exit 4): %+v", i, rep.LostWrites)
		default:
			silent++
			t.Errorf("iteration %d: exit %d, image b %s, global validity %q, lost writes %+v: the revocation was lost silently\n%s",
				i, code, b.Status, b.Properties[crl.PropGlobalValidity], rep.LostWrites, lastLines(errs, 8))
		}
	}
	t.Logf("%d iterations (%d concurrent PATCHes over %v windows): %d revoked and deactivated, %d lost and reported (exit 4), %d lost silently; the job found its write undone and wrote it again %d times",
		iterations, racedWrites, window, held, reported, silent, rewrites)
}

// resetValid makes the named image active and valid again, as before the
// revocation (what the job then revokes once more).
func (s *site) resetValid(ctx context.Context, name string) {
	s.t.Helper()
	id := s.ids[name]
	im := s.image(name)
	if im.Status == "deactivated" {
		if err := glance.Reactivate(ctx, s.img, id).ExtractErr(); err != nil {
			s.t.Fatalf("reactivate: %v", err)
		}
	}
	var drop []string
	for k := range im.Properties {
		if strings.HasPrefix(k, "imagetrust_revocation_") || strings.HasPrefix(k, "imagetrust_revoked_") || k == crl.PropDeactivatedBy {
			drop = append(drop, k)
		}
	}
	if r := glance.PatchProperties(ctx, s.img, id, s.image(name).Properties, map[string]string{crl.PropGlobalValidity: crl.StateValid}, drop); r.Err != nil {
		s.t.Fatalf("reset: %v", r.Err)
	}
	time.Sleep(300 * time.Millisecond)
	if im := s.image(name); im.Status != "active" || im.Properties[crl.PropGlobalValidity] != crl.StateValid {
		s.t.Fatalf("reset: %s %q", im.Status, im.Properties[crl.PropGlobalValidity])
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
