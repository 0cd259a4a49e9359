package crl

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestWithheldDistributionPointCRL pins a limit docs/security-model.md
// states (Out of scope, "A withheld CRL of one distribution point"): for a
// CA that partitions its CRLs by distribution point, staleness is judged
// by the CA's newest CRL of the certificate's kind, whichever point it
// speaks for. Whoever withholds one point's CRLs while another's stay
// fresh keeps its last, stale CRL in use: a revocation published there
// since is not seen, and the staleness is not enforced. With the
// partition alone, or with complete CRLs, the withheld CRL goes stale.
func TestWithheldDistributionPointCRL(t *testing.T) {
	ca := testpki.NewRoot(t, "Partitioned CA")
	leaf := ca.Leaf(testpki.Name("Creator"))
	ref := ChainRefs([]*x509.Certificate{leaf.Cert, ca.Cert}, RoleCreator)[0]
	// point b's last CRL the site got, long past its nextUpdate (the
	// attacker withholds the later ones, which revoke the creator)
	withheld := mustList(t, ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-10 * 24 * time.Hour),
		NextUpdate: t0.Add(-9 * 24 * time.Hour), IDP: pki.IDPDistributionPoint("http://crl.example.org/b.crl")}))
	// point a's, fresh
	fresh := mustList(t, ca.CRL(pki.CRLTemplate{Number: 40, ThisUpdate: t0.Add(-time.Hour),
		NextUpdate: t0.Add(24 * time.Hour), IDP: pki.IDPDistributionPoint("http://crl.example.org/a.crl")}))
	complete := mustList(t, ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-10 * 24 * time.Hour),
		NextUpdate: t0.Add(-9 * 24 * time.Hour)}))
	index := func(ls ...*List) *Index {
		ix := &Index{}
		for _, l := range ls {
			if _, err := ix.AddList(l, ca.Cert, t0, "test"); err != nil {
				t.Fatal(err)
			}
		}
		return ix
	}
	ix := index(withheld, fresh)
	if len(ix.CRLs()) != 2 {
		t.Fatalf("%d CRLs, want both points'", len(ix.CRLs()))
	}
	if s := ix.StaleFor(ref, t0, 0); s != nil {
		t.Fatalf("the withheld point's staleness is enforced (%s): update the security model", s.Header.Number)
	}
	if !ix.CRLs()[0].Stale(t0, 0) && !ix.CRLs()[1].Stale(t0, 0) {
		t.Fatal("no CRL is stale: the case shows nothing")
	}
	if s := index(withheld).StaleFor(ref, t0, 0); s == nil {
		t.Fatal("the withheld point's CRL alone is not stale")
	}
	if s := index(complete).StaleFor(ref, t0, 0); s == nil {
		t.Fatal("a withheld complete CRL is not stale")
	}
}
