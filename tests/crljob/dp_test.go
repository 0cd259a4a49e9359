package crljob

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/pki"
)

// TestWithheldDistributionPoint: the people CA partitions its CRLs by
// distribution point (each CRL's issuingDistributionPoint names a.crl or
// b.crl); image "a" is signed by a creator naming a.crl, image "b" by one
// (the same DN, another key) naming b.crl. With a's CRL fresh and b's
// withheld (its last one stale), the CRL job, reading each creator's
// points from the record's signature in the real Glance, makes "b"
// unknown (crl.stale = "refuse") and leaves "a" valid; b's fresh CRL makes
// "b" valid again. Before, b's staleness was judged by a's fresh CRL and
// "b" stayed valid.
func TestWithheldDistributionPoint(t *testing.T) {
	s := newSite(t)
	base := s.crls.srv.URL
	dpA, dpB := base+"/people-a.crl", base+"/people-b.crl"
	p := func(f string) string { return filepath.Join(s.dir, "pki", f) }
	peopleCA := readCert(t, p("people-ca.pem"))
	peopleKey, err := pki.ReadPrivateKey(p("people-ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	creator := readCert(t, p("creator.pem"))
	for name, dp := range map[string]string{"creator-a": dpA, "creator-b": dpB} {
		k, err := pki.NewKey(pki.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.Issue(pki.Template{Subject: creator.Subject, NotBefore: creator.NotBefore, NotAfter: creator.NotAfter,
			CRLDistributionPoints: []string{dp}}, k.Public(), peopleCA, peopleKey)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := pki.EncodeKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p(name+".pem"), pki.EncodeCertPEM(c), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p(name+".key"), kp, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.publishWith("a", 0, "--cert", "pki/creator-a.pem", "--key", "pki/creator-a.key")
	s.publishWith("b", 1, "--cert", "pki/creator-b.pem", "--key", "pki/creator-b.key")
	s.mustRun("sync", "--config", s.cfg, "--once")
	for _, n := range []string{"a", "b"} {
		if im := s.image(n); im.Status != "active" || im.Properties[crl.PropGlobalValidity] != crl.StateValid {
			t.Fatalf("after sync, image %s is %s/%s", n, im.Status, im.Properties[crl.PropGlobalValidity])
		}
	}
	now := time.Now()
	part := func(number int64, dp string, this, next time.Time) []byte {
		b, err := pki.IssueCRL(pki.CRLTemplate{Number: number, ThisUpdate: this, NextUpdate: next, IDP: pki.IDPDistributionPoint(dp)}, peopleCA, peopleKey)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// the people CA publishes partitions only: its two points are the
	// sources, in place of pki init's complete people-ca.crl
	s.setConfig(func(c string) string {
		c = strings.Replace(c, "url = \""+base+"/people-ca.crl\"", "url = \""+dpA+"\"", 1)
		if !strings.Contains(c, dpA) {
			t.Fatalf("no people-ca.crl source in\n%s", c)
		}
		return c + "[[crl.source]]\nurl = \"" + dpB + "\"\n"
	})
	s.crls.serve("/people-a.crl", part(10, dpA, now.Add(-time.Hour), now.AddDate(0, 0, 7)))
	s.crls.serve("/people-b.crl", part(3, dpB, now.Add(-10*24*time.Hour), now.Add(-9*24*time.Hour)))
	rep := s.crlRun(4)
	if ch := change(rep, s.ids["b"]); ch == nil || ch.To != crl.StateUnknown {
		t.Fatalf("fail b's point withheld: want image b unknown: %+v", rep)
	}
	if ch := change(rep, s.ids["a"]); ch != nil {
		t.Fatalf("ok a's point fresh: want image a unchanged: %+v", ch)
	}
	if im := s.image("a"); im.Properties[crl.PropGlobalValidity] != crl.StateValid {
		t.Fatalf("image a is %s", im.Properties[crl.PropGlobalValidity])
	}
	s.crls.serve("/people-b.crl", part(4, dpB, now.Add(-time.Minute), now.AddDate(0, 0, 7)))
	rep = s.crlRun(0)
	if ch := change(rep, s.ids["b"]); ch == nil || ch.To != crl.StateValid {
		t.Fatalf("ok b's fresh CRL: want image b valid again: %+v", rep)
	}
}
