package crl

import (
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
