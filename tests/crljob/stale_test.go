package crljob

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/pki"
)

// TestStaleCRLExit: a run that uses a stale CRL (past nextUpdate) is done,
// makes the images that depend on it unknown, and exits 4, so that a cron
// job sees what the daemon's metrics show; a fresh CRL makes the images
// valid again and the exit 0. (crl --once exited 0 with a stale CRL: a
// cron user learned of it only from boots refused.)
func TestStaleCRLExit(t *testing.T) {
	s := newSite(t, "a")
	regCA := readCert(t, filepath.Join(s.dir, "pki/registrar-ca.pem"))
	regKey, err := pki.ReadPrivateKey(filepath.Join(s.dir, "pki/registrar-ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	issue := func(number int64, this, next time.Time) []byte {
		b, err := pki.IssueCRL(pki.CRLTemplate{Number: number, ThisUpdate: this, NextUpdate: next}, regCA, regKey)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s.crls.serve("/registrar-ca.crl", issue(5, now.Add(-3*time.Hour), now.Add(-time.Hour)))
	rep := s.crlRun(4)
	stale := false
	for _, c := range rep.CRLs {
		stale = stale || strings.Contains(c.Issuer, "Registrar") && c.Number == "5" && c.Stale
	}
	if ch := change(rep, s.ids["a"]); !stale || ch == nil || ch.To != crl.StateUnknown {
		t.Fatalf("fail stale CRL in use: want it stale and image a unknown: %+v", rep)
	}
	code, out, errs := s.run("crl", "--config", s.cfg, "--once")
	if code != 4 || !strings.Contains(out, "STALE") || !strings.Contains(errs, "crl run used stale CRLs") {
		t.Fatalf("fail stale CRL, human report: exit %d\n%s%s", code, out, errs)
	}
	s.crls.serve("/registrar-ca.crl", issue(6, now.Add(-time.Minute), now.AddDate(0, 0, 7)))
	rep = s.crlRun(0)
	if ch := change(rep, s.ids["a"]); ch == nil || ch.To != crl.StateValid {
		t.Fatalf("ok fresh CRL: want image a valid again: %+v", rep)
	}
}
