package glancesync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRefusedBytesLeftQueued: one wrong serving of an image's bytes (a
// flipped byte: a stale or hostile mirror) must not spend its uuid. Against
// the real Glance, in both ingest modes: the stream breaks off, Glance
// returns the image to queued without data, and the sync leaves it so,
// refused; a pass within the back-off does not download it again; the
// back-off grows with each refusal; once the right bytes are served, a pass
// after the back-off mirrors it.
func TestRefusedBytesLeftQueued(t *testing.T) {
	e := newEnv(t)
	for _, ingest := range []string{"import", "upload"} {
		t.Run("ok "+ingest, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "atlas")
			p := w.publish(dir, spec{vo: "atlas", tag: "flip-" + ingest, size: 3 << 20, tamperImage: true})
			img := filepath.Join(p.dir, p.name+".img")
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Ingest = ingest
			o.Sync.Retire = "keep"
			// the sync's clock runs ahead of the real one on demand, so
			// that the back-off can be tested without waiting for it
			const resume = time.Minute
			o.ResumeAfter = resume
			var ahead time.Duration
			o.Now = func() time.Time { return time.Now().Add(ahead) }
			s, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			pass := func(n int, wantAction string, wantTransfer bool) {
				t.Helper()
				e.counter.reset()
				r, err := s.Run(t.Context())
				if err != nil || r.Errors != 0 {
					t.Fatalf("pass %d: %v, %+v", n, err, r.Outcomes)
				}
				var got []string
				for _, out := range r.Find(p.id) {
					got = append(got, out.Action+" "+out.Reason+" "+out.Detail)
				}
				if !strings.HasPrefix(strings.Join(got, "|"), wantAction) {
					t.Fatalf("pass %d: outcomes %q, want %s", n, got, wantAction)
				}
				e.counter.mu.Lock()
				log := e.counter.log
				e.counter.mu.Unlock()
				if sent := strings.Contains(log, p.id+"/stage") || strings.Contains(log, p.id+"/file"); sent != wantTransfer {
					t.Fatalf("pass %d: transfer %v, want %v:\n%s", n, sent, wantTransfer, log)
				}
				im := e.get(t, p.id)
				if wantAction == ActionMirrored {
					if im.Status != StatusActive || im.Size != int64(len(p.image)) {
						t.Fatalf("pass %d: %s size %d", n, im.Status, im.Size)
					}
					return
				}
				// Glance puts the image back to queued when its handler of
				// the broken-off stream returns, which on a loaded machine
				// may be after the pass: wait for it, bounded by the test's
				// context, not a guess of how long (the sync itself never
				// counts on it; see settled)
				wctx, wcancel := untilTestDeadline(t)
				defer wcancel()
				im = waitNotBusy(t, wctx, e, p.id, func() string { return "" })
				if im.Status != StatusQueued || im.Size != 0 {
					t.Fatalf("pass %d: the refused image is %s with size %d, want queued without data", n, im.Status, im.Size)
				}
				for _, d := range []string{"images", "staging"} {
					if left, _ := filepath.Glob(filepath.Join(e.cloud.StateDir, "glance", d, p.id+"*")); len(left) != 0 {
						t.Fatalf("pass %d: data left in Glance's store: %v", n, left)
					}
				}
			}
			pass(1, ActionRefused+" sha512-mismatch", true)
			pass(2, ActionRefused+" sha512-mismatch", false) // within the back-off
			ahead += resume + time.Second
			pass(3, ActionRefused+" sha512-mismatch", true) // second refusal: back-off doubles
			if l, _ := s.leftSince(p.id); l.wait != 2*resume {
				t.Fatalf("back-off after two refusals: %s, want %s", l.wait, 2*resume)
			}
			if err := os.WriteFile(img, p.image, 0o644); err != nil {
				t.Fatal(err)
			}
			ahead += resume + time.Second
			pass(4, ActionRefused+" sha512-mismatch", false) // still within the doubled back-off
			ahead += resume
			pass(5, ActionMirrored, true)
		})
	}
}
