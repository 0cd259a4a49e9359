package crl

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// The tests of this file each close a hole that mutation testing of the
// CRL core found: a single-point change of the decision code that no
// other test noticed (named in each test's comment).

// TestStaleBoundary: a CRL is stale only after its nextUpdate plus grace,
// not at that instant. Kills "now.After(next+grace)" ->
// "!now.Before(next+grace)" in CRL.Stale.
func TestStaleBoundary(t *testing.T) {
	ca := testpki.NewRoot(t, "Stale Boundary CA")
	next := t0.Add(24 * time.Hour)
	c, err := (&Index{}).AddList(mustList(t, ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0, NextUpdate: next})), ca.Cert, t0, "test")
	if err != nil {
		t.Fatal(err)
	}
	grace := time.Hour
	for _, tc := range []struct {
		name  string
		now   time.Time
		stale bool
	}{
		{"ok fresh at exactly nextUpdate", next, false},
		{"ok fresh at exactly nextUpdate plus grace", next.Add(grace), false},
		{"fail stale a second after nextUpdate plus grace", next.Add(grace + time.Second), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.Stale(tc.now, grace); got != tc.stale {
				t.Fatalf("Stale = %v, want %v", got, tc.stale)
			}
		})
	}
}

// TestPlanReactivatesOnlyDeactivated: a hold lifted on an image that is
// active again (an operator reactivated it) drops the hold's mark without
// a reactivation call. Kills "c.Reactivate = img.Status ==
// StatusDeactivated" -> "c.Reactivate = true".
func TestPlanReactivatesOnlyDeactivated(t *testing.T) {
	for _, status := range []string{StatusActive, "queued"} {
		img := Image{ID: "i", Status: status, Properties: map[string]string{PropGlobalValidity: StateHold, PropDeactivatedBy: DeactivatedByHold}}
		c := Plan(img, StateValid, nil, "hold lifted")
		if c == nil || c.Reactivate || len(c.Remove) != 1 || c.Remove[0] != PropDeactivatedBy {
			t.Fatalf("%s image: %+v", status, c)
		}
	}
}

// TestRecordRefsEdges: what RecordRefs refuses and how it links a chain
// entry to its issuer's. Kills dropping the lower-case serial test and
// dropping the "next entry is the issuer" test (which gave an entry the
// next role's issuer as its issuer's issuer, for Covering's re-key rule).
func TestRecordRefsEdges(t *testing.T) {
	props := func(cc ...ChainCert) map[string]string {
		b, _ := json.Marshal(cc)
		return map[string]string{PropNotBefore: t0.Format(time.RFC3339), PropChain: string(b)}
	}
	t.Run("fail an upper-case serial", func(t *testing.T) {
		if _, _, err := RecordRefs(props(ChainCert{Role: "image", Issuer: "CN=Reg", Serial: "0A"})); err == nil {
			t.Fatal("accepted")
		}
	})
	t.Run("ok issuer's issuer only where the next entry is the issuer", func(t *testing.T) {
		refs, _, err := RecordRefs(props(
			ChainCert{Role: "image", Issuer: "CN=Reg Sub", Serial: "a", AKI: "01"},
			ChainCert{Role: "image-ca", Issuer: "CN=Reg Root", Serial: "b", AKI: "02"},
			ChainCert{Role: "creator", Issuer: "CN=People", Serial: "c", AKI: "03"},
			ChainCert{Role: "approver", Issuer: "CN=People", Serial: "d", AKI: "03"},
		))
		if err != nil {
			t.Fatal(err)
		}
		if refs[0].IssuerIssuer != "CN=Reg Root" || string(refs[0].IssuerAKI) != "\x02" {
			t.Fatalf("image: issuer's issuer %q %x", refs[0].IssuerIssuer, refs[0].IssuerAKI)
		}
		for i := 1; i < len(refs); i++ {
			if refs[i].IssuerIssuer != "" || len(refs[i].IssuerAKI) != 0 {
				t.Fatalf("entry %d (%s) given the next entry's issuer %q %x", i, refs[i].Role, refs[i].IssuerIssuer, refs[i].IssuerAKI)
			}
		}
	})
}

// TestChainRefsNamesLinkCertificate: a self-issued link certificate
// within a chain (the old key of a CA certifying its new key) is named for
// the revocation check; only the self-issued root at the end is not.
// Kills dropping "i == len(chain)-1 &&" in ChainRefs (here, in the crl
// package; the validator's TestRevokedLinkCertificate kills it too).
func TestChainRefsNamesLinkCertificate(t *testing.T) {
	root := testpki.NewRoot(t, "Link Root")
	newKey := testpki.NewRoot(t, "Link Root")
	link := root.CrossSign(newKey)
	leaf := link.Leaf(testpki.Name("Linked Creator"), testpki.WithSerial(77))
	refs := ChainRefs([]*x509.Certificate{leaf.Cert, link.Cert, root.Cert}, RoleCreator)
	if len(refs) != 2 || refs[0].Serial.Cmp(big.NewInt(77)) != 0 || refs[1].Cert != link.Cert || refs[1].Role != RoleCA {
		t.Fatalf("refs %+v", refs)
	}
}

// TestIDPExplicitFalse: an issuingDistributionPoint that spells out
// onlyContainsUserCerts FALSE (BER's explicit default) scopes nothing: the
// CRL is complete and speaks for CA certificates too. Kills idpOnly
// reading any one-byte boolean as TRUE.
func TestIDPExplicitFalse(t *testing.T) {
	root := testpki.NewRoot(t, "IDP False Root")
	ca := root.Intermediate("IDP False CA")
	sub := ca.Intermediate("IDP False Sub CA")
	ix := &Index{}
	if _, err := ix.AddList(mustList(t, ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0, IDP: []byte{0x30, 0x03, 0x81, 0x01, 0x00}})), ca.Cert, t0, "test"); err != nil {
		t.Fatal(err)
	}
	if !ix.HasCRLFor(sub.Cert) {
		t.Fatal("a CRL with onlyContainsUserCerts FALSE does not speak for a CA certificate")
	}
}

// TestCheckNumberWithoutNumber: a CRL without a number is left to
// AddList's refusal (ReasonParse), whatever number was seen before: the
// job calls CheckNumber on a fetched CRL before adding it. Kills dropping
// CheckNumber's "h.Number == nil" (a nil dereference).
func TestCheckNumberWithoutNumber(t *testing.T) {
	if err := CheckNumber(&x509.RevocationList{}, big.NewInt(5), [32]byte{1}, [32]byte{2}); err != nil {
		t.Fatal(err)
	}
}

// TestCoveringRekeyGuards: a CRL of another key of a certificate's issuer
// name speaks for it only when that key's CA certificate was issued under
// the same issuer name and key identifier as the issuer's own, and is not
// self-issued (rekeyOf). Kills dropping either guard of rekeyOf.
func TestCoveringRekeyGuards(t *testing.T) {
	revokes := func(t *testing.T, cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate, serial int64) bool {
		t.Helper()
		der, err := pki.IssueCRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0, NextUpdate: t0.Add(24 * time.Hour),
			Entries: []pki.Revoked{{Serial: big.NewInt(serial), Time: t0.Add(-time.Hour), Reason: ReasonKeyCompromise}}}, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		ix := &Index{}
		if _, err := ix.AddList(mustList(t, der), cert, t0.Add(time.Hour), "test"); err != nil {
			t.Fatal(err)
		}
		return ix.CheckChain(chain, RoleImage, t0.Add(-24*time.Hour), false) != nil
	}
	parent := testpki.NewRoot(t, "Guard Parent")
	issuer := parent.Intermediate("Guard CA")
	leaf := issuer.Leaf(testpki.Name("Guarded"), testpki.WithSerial(9))
	chain := []*x509.Certificate{leaf.Cert, issuer.Cert, parent.Cert}

	t.Run("ok control: the CA re-keyed by the same parent speaks for it", func(t *testing.T) {
		rekeyed := parent.Intermediate("Guard CA")
		if !revokes(t, rekeyed.Cert, rekeyed.Key, chain, 9) {
			t.Fatal("the re-keyed CA's CRL does not revoke")
		}
	})
	t.Run("fail a namesake under another parent name with the parent's key identifier", func(t *testing.T) {
		other := testpki.NewRoot(t, "Other Guard Parent")
		forged := *other.Cert
		forged.SubjectKeyId = parent.Cert.SubjectKeyId // its AKI: the real parent's
		key, err := pki.NewKey("")
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.Issue(pki.Template{Subject: issuer.Cert.Subject, NotBefore: issuer.Cert.NotBefore, NotAfter: issuer.Cert.NotAfter, IsCA: true, MaxPathLen: -1}, key.Public(), &forged, other.Key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.AuthorityKeyId, parent.Cert.SubjectKeyId) {
			t.Fatal("setup: the namesake's AKI is not the parent's key identifier")
		}
		if revokes(t, c, key, chain, 9) {
			t.Fatal("a namesake under another parent name revokes")
		}
	})
	t.Run("fail a self-issued CA certificate of another key", func(t *testing.T) {
		// the issuer is a link certificate (the old root's key certifying a
		// new key under the root's name, with the old key's identifier as
		// its AKI, which x509.CreateCertificate leaves out of a self-issued
		// certificate unless the template sets it); another link
		// certificate of the old root, for a third key, is self-issued
		// with the same AKI
		old := testpki.NewRoot(t, "Link Guard Root")
		linkTo := func(nu *testpki.CA) *x509.Certificate {
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: old.Cert.Subject,
				NotBefore: old.Cert.NotBefore, NotAfter: old.Cert.NotAfter, IsCA: true, BasicConstraintsValid: true,
				KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: nu.Cert.SubjectKeyId, AuthorityKeyId: old.Cert.SubjectKeyId}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, old.Cert, nu.Key.Public(), old.Key)
			if err != nil {
				t.Fatal(err)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		nu, third := testpki.NewRoot(t, "Link Guard Root"), testpki.NewRoot(t, "Link Guard Root")
		link, thirdLink := linkTo(nu), linkTo(third)
		linked := nu.Leaf(testpki.Name("Linked"), testpki.WithSerial(10))
		if !bytes.Equal(thirdLink.AuthorityKeyId, old.Cert.SubjectKeyId) || !bytes.Equal(linked.Cert.AuthorityKeyId, link.SubjectKeyId) {
			t.Fatal("setup: key identifiers")
		}
		if revokes(t, thirdLink, third.Key, []*x509.Certificate{linked.Cert, link, old.Cert}, 10) {
			t.Fatal("a self-issued certificate of another key speaks for the link certificate's")
		}
	})
}
