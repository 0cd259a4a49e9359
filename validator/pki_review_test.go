package validator

import (
	"bytes"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestRequireCRLRekeyedCA: a people CA re-keyed under its own name (an
// IGTF rollover: the old and the new certificate both in the trust store)
// has a CRL for each key; a CRL of the new key is not one of the old key
// (the revocation lookup, crl.Index.Covering, matches the certificate's
// authorityKeyIdentifier to the CRL signer's subjectKeyIdentifier, so it
// would never look in it). With require_crl, a creator issued under the
// old key is refused while only the new key's CRL is loaded, as the CRL
// job refuses it (crl.Index.CoveringScope), not accepted with no CRL that
// could ever revoke it.
func TestRequireCRLRekeyedCA(t *testing.T) {
	w := newWorld(t)
	b := w.bundle(bundleOpts{})
	rekeyed := w.peopleRoot.Intermediate("People Issuing CA") // same name, new key
	if !bytes.Equal(rekeyed.Cert.RawSubject, w.peopleSub.Cert.RawSubject) {
		t.Fatal("the re-keyed CA has another name")
	}
	fresh := func(ca *testpki.CA) []byte {
		return ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)})
	}
	vos := w.trust().vos
	trust := func(crls ...[]byte) *Trust {
		// the trust store holds both certificates of the re-keyed CA
		tr, _, err := NewTrust(TrustOptions{
			People: []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert, rekeyed.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
			CRLs: crls, VOs: vos, RequireCRL: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	t.Run("fail only the new key's CRL", func(t *testing.T) {
		r := trust(fresh(w.peopleRoot), fresh(rekeyed), fresh(w.regRoot)).Verify(b.input(testNow))
		if r.Valid || r.Check(CheckRevocation).Reason != ReasonRevocationUnknown || !strings.Contains(r.Check(CheckRevocation).Detail, "no CRL loaded") {
			t.Fatalf("valid %v, revocation check %+v", r.Valid, r.Check(CheckRevocation))
		}
	})
	t.Run("ok the old key's CRL", func(t *testing.T) {
		r := trust(fresh(w.peopleRoot), fresh(w.peopleSub), fresh(w.regRoot)).Verify(b.input(testNow))
		if !r.Valid {
			t.Fatal(r.Err())
		}
	})
}
