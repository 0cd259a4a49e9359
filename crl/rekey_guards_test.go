package crl

import (
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestRekeyReleaseGuards: the guards of rekeyReleases, each the one
// thing that keeps a hold no CRL of the held certificate's CA released
// (mutants an outside review found surviving: each test fails with its
// guard removed). The verifier's lookup (Index.Check on the certificates)
// and the CRL job (Judge on the catalogue record) are asked alike.
func TestRekeyReleaseGuards(t *testing.T) {
	hold := pki.Revoked{Serial: big.NewInt(11), Time: t0.Add(-2 * time.Hour), Reason: ReasonCertificateHold}
	reg := t0.AddDate(0, -1, 0)
	fresh := func(ca *testpki.CA) signedCRL {
		return signedCRL{ca.Cert, ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour)})}
	}
	// check asks the verifier's lookup and the job's verdict, which must
	// both keep the hold
	check := func(t *testing.T, w *holdWorld, img Image, leaf *testpki.Leaf, crls ...signedCRL) {
		t.Helper()
		ix, _ := rekeyIndex(t, t0, append([]signedCRL{fresh(w.regRoot), fresh(w.igtfRoot), fresh(w.people)}, crls...)...)
		refs := ChainRefs([]*x509.Certificate{leaf.Cert, w.registrar.Cert, w.regRoot.Cert}, RoleImage)
		if r := ix.Check(refs, reg, false); r == nil || !r.Hold() {
			t.Fatalf("verifier: revocation %+v, want the hold", r)
		}
		if s, _, why := Judge(ix, img, Policy{}, t0); s != StateHold {
			t.Fatalf("CRL job: %s (%s)", s, why)
		}
	}

	// ownKeyOrRekey's len(r.AKI) > 0: a certificate without an authority
	// key identifier is covered by every CRL of its issuer's name, and
	// which key issued it is not known: the re-key's CRL lifts no hold of
	// it (with the guard gone, rekeyOf takes the old CA itself for a
	// re-key, since it was certified by the issuer's issuer)
	t.Run("fail a certificate without an authority key identifier: the re-key's later complete CRL leaves the old key's hold", func(t *testing.T) {
		w := newHoldWorld(t)
		leaf := w.registrar.Leaf(testpki.Name("Image"), testpki.WithSerial(11), testpki.WithoutAKI())
		img := withoutImageAKI(t, w.img)
		rekeyed := w.regRoot.Intermediate("Hold Registrar CA")
		old := signedCRL{w.registrar.Cert, w.registrar.CRL(pki.CRLTemplate{Number: 5, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), Entries: []pki.Revoked{hold}})}
		newer := signedCRL{rekeyed.Cert, rekeyed.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Minute), NextUpdate: t0.Add(7 * 24 * time.Hour)})}
		check(t, w, img, leaf, old, newer)
		// and the hold the job recorded, once the old key's CRL is gone
		// (holdKept)
		w.img = img
		roots := map[*testpki.CA][][]byte{w.regRoot: {fresh(w.regRoot).der}, w.igtfRoot: {fresh(w.igtfRoot).der}, w.people: {fresh(w.people).der}}
		roots[w.registrar] = [][]byte{old.der}
		if s := w.judgeWith(t, roots); s != StateHold {
			t.Fatalf("hold not imposed: %s", s)
		}
		delete(roots, w.registrar)
		roots[rekeyed] = [][]byte{newer.der}
		if s := w.judgeWith(t, roots); s != StateHold {
			t.Fatalf("recorded hold lifted: %s", s)
		}
	})

	// rekeyReleases' own first check (c signed by the certificate's
	// issuer's key or its re-key): a CA of the name without a
	// subjectKeyIdentifier, certified elsewhere, covers the certificate
	// (Covering cannot tell it apart) and its hold stands; the
	// certificate's own CA's later complete CRL does not speak for that
	// CA's hold
	t.Run("fail a namesake without a subject key identifier: the issuer's later complete CRL leaves its hold", func(t *testing.T) {
		w := newHoldWorld(t)
		leaf := w.registrar.Leaf(testpki.Name("Image"), testpki.WithSerial(11))
		twin := testpki.NewRoot(t, "Hold Registrar Root").Intermediate("Hold Registrar CA")
		// (x509.CreateCertificate gives every CA a subjectKeyIdentifier: the
		// index is given the certificate as parsed without one, as an old
		// CA's reads)
		noSKI := *twin.Cert
		noSKI.SubjectKeyId = nil
		held := signedCRL{&noSKI, twin.CRL(pki.CRLTemplate{Number: 5, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), Entries: []pki.Revoked{hold}})}
		own := signedCRL{w.registrar.Cert, w.registrar.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Minute), NextUpdate: t0.Add(7 * 24 * time.Hour)})}
		check(t, w, w.img, leaf, held, own)
	})

	// rekeyReleases' o.Future: a re-key's CRL dated ahead of the clock
	// (kept by the verifier, Index.KeepFuture) outranks no CRL dated in
	// time, so lifts no hold of the old key's
	t.Run("fail the re-key's complete CRL dated a day ahead leaves the old key's hold", func(t *testing.T) {
		w := newHoldWorld(t)
		leaf := w.registrar.Leaf(testpki.Name("Image"), testpki.WithSerial(11))
		rekeyed := w.regRoot.Intermediate("Hold Registrar CA")
		old := signedCRL{w.registrar.Cert, w.registrar.CRL(pki.CRLTemplate{Number: 5, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), Entries: []pki.Revoked{hold}})}
		ahead := signedCRL{rekeyed.Cert, rekeyed.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(24 * time.Hour), NextUpdate: t0.Add(8 * 24 * time.Hour)})}
		check(t, w, w.img, leaf, old, ahead)
		// the same CRL dated in time lifts it (the guard is what keeps it)
		ix, _ := rekeyIndex(t, t0.Add(25*time.Hour), fresh(w.regRoot), fresh(w.igtfRoot), fresh(w.people), old, ahead)
		if r := ix.Check(ChainRefs([]*x509.Certificate{leaf.Cert, w.registrar.Cert, w.regRoot.Cert}, RoleImage), reg, false); r != nil {
			t.Fatalf("dated in time: revocation %+v", r)
		}
	})
}
