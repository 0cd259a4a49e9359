package validator

import (
	"crypto/x509"
	"encoding/base64"
	"slices"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestCRLJobAgreesOnChains: the CRL job's chain check (crl.Anchors, built
// from Trust.Anchors as cmd/imagetrust builds it) refuses a record exactly
// when Verify refuses one of its signers' chains (creator-untrusted,
// approver-untrusted, image-cert-untrusted, image-cert-from-people-ca), so
// that the catalogue's flag and the proxy agree on which records lead to
// the site's trust.
func TestCRLJobAgreesOnChains(t *testing.T) {
	w := newWorld(t)
	otherPeople := testpki.NewRoot(t, "Other People Root")
	otherReg := testpki.NewRoot(t, "Other Registrar CA")
	regSub := w.regRoot.Intermediate("Registrar Issuing CA")
	rogueCreator := otherPeople.Intermediate("People Issuing CA").Leaf(testpki.Name("Alice Creator"),
		testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)))
	expired := w.peopleSub.Leaf(testpki.Name("Alice Creator"), testpki.WithValidity(testNow.AddDate(-2, 0, 0), testNow.AddDate(-1, 0, 0)))
	chainReasons := []string{ReasonCreatorUntrusted, ReasonApproverUntrusted, ReasonImageCertUntrusted, ReasonImageCertPeopleCA}

	peopleAll := []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert}
	for _, tc := range []struct {
		name              string
		people, registrar []*x509.Certificate
		b                 bundleOpts
		untrusted         bool
	}{
		{"ok the site's trust", peopleAll, []*x509.Certificate{w.regRoot.Cert}, bundleOpts{}, false},
		{"ok people root only, its intermediate embedded", peopleAll[:1], []*x509.Certificate{w.regRoot.Cert}, bundleOpts{}, false},
		{"ok Registrar intermediate embedded", peopleAll, []*x509.Certificate{w.regRoot.Cert}, bundleOpts{regCA: regSub}, false},
		{"ok creator expired at registration (another check)", peopleAll, []*x509.Certificate{w.regRoot.Cert}, bundleOpts{creator: expired}, false},
		{"fail Registrar CA removed", peopleAll, []*x509.Certificate{otherReg.Cert}, bundleOpts{}, true},
		{"fail only the Registrar intermediate configured", peopleAll, []*x509.Certificate{regSub.Cert}, bundleOpts{regCA: regSub}, true},
		{"fail people CAs removed", []*x509.Certificate{otherPeople.Cert}, []*x509.Certificate{w.regRoot.Cert}, bundleOpts{}, true},
		{"fail creator of an untrusted CA", peopleAll, []*x509.Certificate{w.regRoot.Cert}, bundleOpts{creator: rogueCreator}, true},
		{"fail image certificate of a people CA", peopleAll, []*x509.Certificate{w.regRoot.Cert}, bundleOpts{regCA: w.peopleSub}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, _, err := NewTrust(TrustOptions{People: tc.people, Registrar: tc.registrar})
			if err != nil {
				t.Fatal(err)
			}
			b := w.bundle(tc.b)
			r := tr.Verify(b.input(w.now))
			var refused []string
			for _, c := range r.Failed() {
				if slices.Contains(chainReasons, c.Reason) {
					refused = append(refused, c.Name+": "+c.Reason+" ("+c.Detail+")")
				}
			}
			a, err := crl.NewAnchors(tr.Anchors())
			if err != nil {
				t.Fatal(err)
			}
			jobErr := a.CheckRecord(map[string]string{crl.PropSignature: base64.StdEncoding.EncodeToString(b.sig)})
			if (len(refused) > 0) != tc.untrusted || (jobErr != nil) != tc.untrusted {
				t.Fatalf("verifier refuses chains: %q; CRL job: %v; want untrusted %v", refused, jobErr, tc.untrusted)
			}
		})
	}
}
