package glancesync

import (
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/pki"
)

// TestRevokedBundleLogLevel: a revoked bundle left in a source is routine
// (`sync --once` does not exit 4 for it): logged at WARN the first time a
// Syncer lists it, then at INFO, not at ERROR on every pass; a refusal that
// matters (an untrusted signer) stays ERROR on every pass. Against the real
// Glance (the passes are whole ones).
func TestRevokedBundleLogLevel(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	revoked := w.publish(dir, spec{vo: "atlas", tag: "revoked-" + uuid.NewString()[:8]})
	untrusted := w.publish(dir, spec{vo: "atlas", tag: "revoked-" + uuid.NewString()[:8], untrusted: true})
	crl := w.regRoot.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: w.now.Add(-time.Minute), NextUpdate: w.now.Add(24 * time.Hour),
		Entries: []pki.Revoked{{Serial: new(big.Int).Set(revoked.imageCert.SerialNumber), Time: w.now.Add(-10 * time.Minute), Reason: 1}}})
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Trust = w.trustWith([][]byte{crl})
	o.Sync.Retire = "keep"
	log, logs := captureLogger(t)
	o.Logger = log
	levels := func(id string) []string {
		var out []string
		for _, l := range logs.lines("bundle refused") {
			if l.attrs["image"] == id {
				out = append(out, l.level.String())
			}
		}
		return out
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for pass := 1; pass <= 3; pass++ {
		if pass == 3 {
			// another process (a cron run of --once): WARN once again
			if s, err = New(o); err != nil {
				t.Fatal(err)
			}
		}
		r, err := s.Run(t.Context())
		if err != nil || r.Errors != 0 {
			t.Fatalf("pass %d: %v %+v", pass, err, r.Outcomes)
		}
		if out := r.Find(revoked.id); len(out) != 1 || out[0].Reason != "revoked" {
			t.Fatalf("pass %d: revoked bundle %+v", pass, out)
		}
	}
	if got, want := strings.Join(levels(revoked.id), " "), "WARN INFO WARN"; got != want {
		t.Errorf("revoked bundle logged at %s, want %s", got, want)
	}
	if got, want := strings.Join(levels(untrusted.id), " "), "ERROR ERROR ERROR"; got != want {
		t.Errorf("untrusted bundle logged at %s, want %s", got, want)
	}
}
