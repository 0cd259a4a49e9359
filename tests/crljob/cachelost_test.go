package crljob

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
)

func warnedOf(rep *crl.Report, parts ...string) bool {
	for _, w := range rep.Warnings {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestCacheLost: the day-2 review's case. The Registrar CA's CRL 2
// revokes b; its genuine CRL 1, replayed, is refused as rollback with the
// cache (crl.cache_dir) and, once the cache is removed, still refused: b
// records the number, CA and scope of the CRL that flagged it. A run
// without a cached baseline warns of it. Then the CA's real newer CRL is
// accepted and flags c.
func TestCacheLost(t *testing.T) {
	s := newSite(t, "a", "b", "c")
	crlFile := filepath.Join(s.dir, "pki/registrar-ca.crl")
	crl1, err := os.ReadFile(crlFile)
	if err != nil {
		t.Fatal(err)
	}
	rep := s.crlRun(0)
	if !warnedOf(rep, "first CRL seen for CA", "Registrar CA", "no rollback baseline") || !warnedOf(rep, "first CRL seen for CA", "people CA") {
		t.Fatalf("first run: warnings %q", rep.Warnings)
	}

	s.revoke("registrar-ca", "--cert", "images/b.json.crt", "--reason", "keyCompromise")
	rep = s.crlRun(0)
	b := s.image("b")
	if b.Status != "deactivated" || b.Properties[crl.PropRevCRLNumber] != "2" || b.Properties[crl.PropRevCRLScope] == "" || len(rep.Warnings) != 0 {
		t.Fatalf("b after CRL 2: %s %v, warnings %q", b.Status, b.Properties, rep.Warnings)
	}

	s.crls.serve("/registrar-ca.crl", crl1)
	defer s.crls.serve("/registrar-ca.crl", nil)
	rep = s.crlRun(4)
	if !refusedWith(rep, crl.ReasonRollback) {
		t.Fatalf("CRL 1 with the cache: %+v", rep.Refused)
	}

	cache := filepath.Join(s.dir, "crl-cache")
	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	before := s.snapshot()
	w0 := s.glanceWrites()
	rep = s.crlRun(4)
	if len(rep.Refused) != 1 || rep.Refused[0].Reason != crl.ReasonRollback || !strings.Contains(rep.Refused[0].Error, s.ids["b"]) ||
		!strings.Contains(rep.Refused[0].Error, cache+" was lost") {
		t.Fatalf("CRL 1 without the cache: refused %+v", rep.Refused)
	}
	for _, c := range rep.CRLs {
		if strings.Contains(c.Issuer, "Registrar") {
			t.Fatalf("a Registrar CRL in use: %+v", rep.CRLs)
		}
	}
	if !warnedOf(rep, "first CRL seen for CA", "people CA", cache+" was lost") {
		t.Errorf("warnings %q", rep.Warnings)
	}
	s.unchanged(before, "a", "b", "c")
	if w := s.glanceWrites(); w != w0 {
		t.Errorf("Glance logged %d writes", w-w0)
	}
	// the refused CRL became no baseline: the human report says so too
	code, out, _ := s.run("crl", "--config", s.cfg, "--once")
	if code != 4 || !strings.Contains(out, "rollback:") || !strings.Contains(out, "recorded on catalogue image "+s.ids["b"]) {
		t.Errorf("human report: exit %d\n%s", code, out)
	}

	// the CA's newer CRL (3, revoking c too) is accepted, with a warning
	// naming the floor, and flags c
	s.revoke("registrar-ca", "--cert", "images/c.json.crt", "--reason", "keyCompromise")
	s.crls.serve("/registrar-ca.crl", nil)
	rep = s.crlRun(0)
	if c := s.image("c"); c.Status != "deactivated" || c.Properties[crl.PropRevCRLNumber] != "3" {
		t.Fatalf("c after CRL 3: %s %v", c.Status, c.Properties)
	}
	if !warnedOf(rep, "first CRL seen for CA", "Registrar CA", "CRL number 2, recorded on catalogue image "+s.ids["b"]) {
		t.Errorf("warnings %q", rep.Warnings)
	}
	if rep = s.crlRun(0); len(rep.Warnings) != 0 || len(rep.Refused) != 0 {
		t.Errorf("rerun: warnings %q, refused %+v", rep.Warnings, rep.Refused)
	}
}
