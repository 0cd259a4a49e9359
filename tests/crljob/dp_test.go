package crljob

import (
	"crypto"
	"crypto/x509"
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
	pc := newPartitionedCA(t, s)
	dpA, dpB := pc.dpA, pc.dpB
	pc.creatorAt("creator-a", dpA)
	pc.creatorAt("creator-b", dpB)
	s.publishWith("a", 0, "--cert", "pki/creator-a.pem", "--key", "pki/creator-a.key")
	s.publishWith("b", 1, "--cert", "pki/creator-b.pem", "--key", "pki/creator-b.key")
	s.mustRun("sync", "--config", s.cfg, "--once")
	for _, n := range []string{"a", "b"} {
		if im := s.image(n); im.Status != "active" || im.Properties[crl.PropGlobalValidity] != crl.StateValid {
			t.Fatalf("after sync, image %s is %s/%s", n, im.Status, im.Properties[crl.PropGlobalValidity])
		}
	}
	now := time.Now()
	part := pc.serveWithheldB(now)
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

// partitionedCA is pki init's people CA publishing its CRLs in two
// partitions, a.crl and b.crl, served by the site's CRL server.
type partitionedCA struct {
	t        *testing.T
	s        *site
	dpA, dpB string
	ca       *x509.Certificate
	key      crypto.Signer
	creator  *x509.Certificate // pki init's creator
}

func newPartitionedCA(t *testing.T, s *site) *partitionedCA {
	t.Helper()
	base := s.crls.srv.URL
	pc := &partitionedCA{t: t, s: s, dpA: base + "/people-a.crl", dpB: base + "/people-b.crl"}
	pc.ca = readCert(t, pc.path("people-ca.pem"))
	key, err := pki.ReadPrivateKey(pc.path("people-ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pc.key = key
	pc.creator = readCert(t, pc.path("creator.pem"))
	return pc
}

func (pc *partitionedCA) path(f string) string { return filepath.Join(pc.s.dir, "pki", f) }

// creatorAt issues a certificate of pki init's creator's DN, with a key of
// its own, naming distribution point dp, as pki/NAME.pem and pki/NAME.key.
func (pc *partitionedCA) creatorAt(name, dp string) *x509.Certificate {
	t := pc.t
	t.Helper()
	k, err := pki.NewKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.Issue(pki.Template{Subject: pc.creator.Subject, NotBefore: pc.creator.NotBefore, NotAfter: pc.creator.NotAfter,
		CRLDistributionPoints: []string{dp}}, k.Public(), pc.ca, pc.key)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.EncodeKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pc.path(name+".pem"), pki.EncodeCertPEM(c), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pc.path(name+".key"), kp, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// serveWithheldB makes the two partitions the CRL job's sources, in place
// of pki init's complete people-ca.crl, and serves a.crl fresh and b.crl
// stale (its newer CRLs withheld). It returns the maker of a partition's
// CRL, numbered number, from this to next.
func (pc *partitionedCA) serveWithheldB(now time.Time) (part func(number int64, dp string, this, next time.Time) []byte) {
	t := pc.t
	t.Helper()
	part = func(number int64, dp string, this, next time.Time) []byte {
		b, err := pki.IssueCRL(pki.CRLTemplate{Number: number, ThisUpdate: this, NextUpdate: next, IDP: pki.IDPDistributionPoint(dp)}, pc.ca, pc.key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	base := pc.s.crls.srv.URL
	pc.s.setConfig(func(c string) string {
		c = strings.Replace(c, "url = \""+base+"/people-ca.crl\"", "url = \""+pc.dpA+"\"", 1)
		if !strings.Contains(c, pc.dpA) {
			t.Fatalf("no people-ca.crl source in\n%s", c)
		}
		return c + "[[crl.source]]\nurl = \"" + pc.dpB + "\"\n"
	})
	pc.s.crls.serve("/people-a.crl", part(10, pc.dpA, now.Add(-time.Hour), now.AddDate(0, 0, 7)))
	pc.s.crls.serve("/people-b.crl", part(3, pc.dpB, now.Add(-10*24*time.Hour), now.Add(-9*24*time.Hour)))
	return part
}
