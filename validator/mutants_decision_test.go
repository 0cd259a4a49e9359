package validator

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
)

// The tests of this file each close a hole that mutation testing of the
// trust core found: a single-point change of the decision code that no
// other test noticed (named in each test's comment).

// TestDecideBootCertificateBoundaries: DecideBoot judges the image
// certificate's validity as x509 does (and as Verify's check 5 does): from
// notBefore to notAfter inclusive. Kills the mutants "now.After(expiresAt)"
// -> "!now.Before(expiresAt)" and "now.Before(registeredAt)" ->
// "!now.After(registeredAt)".
func TestDecideBootCertificateBoundaries(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	pol := BootPolicy{MirrorProject: mirror}
	b := w.bundle(bundleOpts{})
	img := catalogImage(t, tr, b)
	nb, na := b.imageCert.NotBefore, b.imageCert.NotAfter
	for _, tc := range []struct {
		name    string
		now     time.Time
		allowed bool
		reason  string
	}{
		{"ok at exactly notBefore", nb, true, ""},
		{"fail a second before notBefore", nb.Add(-time.Second), false, DecisionNotYetValid},
		{"ok at exactly notAfter", na, true, ""},
		{"fail a second after notAfter", na.Add(time.Second), false, DecisionExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tr.DecideBoot(img, pol, tc.now)
			if d.Allowed != tc.allowed || (tc.reason != "" && !contains(d.Reasons, tc.reason)) {
				t.Fatalf("Allowed %v %v, want %v %q: %s", d.Allowed, d.Reasons, tc.allowed, tc.reason, d.Message)
			}
		})
	}
}

// TestDecideBootEdges: refusals whose reasons no other test pinned.
func TestDecideBootEdges(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	pol := BootPolicy{MirrorProject: mirror}
	b := w.bundle(bundleOpts{expires: testNow.AddDate(0, 0, 20)})
	expired := testNow.AddDate(0, 6, 0)
	for _, tc := range []struct {
		name   string
		edit   func(*CatalogImage)
		now    time.Time
		want   []string // every one among the reasons
		notes  bool     // notes expected
		policy *BootPolicy
	}{
		// mutant: the "props[PropRecordVersion] == \"\"" test dropped (the
		// image is then judged as a broken record, record-signature)
		{name: "fail mirror-project image without a record version: not in the catalogue",
			edit: func(c *CatalogImage) { delete(c.Properties, PropRecordVersion) }, want: []string{DecisionNotInCatalogue}},
		// mutant: "v != signedSHA512" -> "v != signedSHA512 && v != \"\""
		{name: "fail Glance hashes with sha512 but shows no value",
			edit: func(c *CatalogImage) { c.Properties["os_hash_algo"], c.Properties["os_hash_value"] = "sha512", "" },
			want: []string{DecisionRecordTampered}},
		// mutant: "local == LocalRunAnyway && global == GlobalValid" ->
		// "local == LocalRunAnyway": run-anyway is for an expired image
		// that is otherwise valid; on a held one the refusal names both
		// causes and notes no run-anyway
		{name: "fail expired and held with run-anyway: both reasons, no run-anyway note", now: expired,
			edit: func(c *CatalogImage) {
				c.Properties[PropGlobalValidity] = GlobalHold
				c.Properties[PropLocalValidity] = LocalRunAnyway
			}, want: []string{DecisionGlobalPrefix + GlobalHold, DecisionExpired}},
		// a record stripped from a catalogue image (by someone allowed to
		// write its properties) does not make it an unmanaged image that
		// the projects allowed those may boot
		{name: "fail mirror-project image without a record version, for a project allowed unmanaged images",
			edit: func(c *CatalogImage) { delete(c.Properties, PropRecordVersion) }, want: []string{DecisionNotInCatalogue},
			policy: &BootPolicy{MirrorProject: mirror, AllowUnmanaged: true}},
		{name: "fail expired and global validity missing with run-anyway", now: expired,
			edit: func(c *CatalogImage) {
				delete(c.Properties, PropGlobalValidity)
				c.Properties[PropLocalValidity] = LocalRunAnyway
			}, want: []string{DecisionGlobalPrefix + "missing", DecisionExpired}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := catalogImage(t, tr, b)
			tc.edit(&img)
			now := tc.now
			if now.IsZero() {
				now = testNow
			}
			policy := pol
			if tc.policy != nil {
				policy = *tc.policy
			}
			d := tr.DecideBoot(img, policy, now)
			if d.Allowed {
				t.Fatalf("allowed: %s", d.Message)
			}
			for _, r := range tc.want {
				if !contains(d.Reasons, r) {
					t.Fatalf("reasons %v lack %q", d.Reasons, r)
				}
			}
			if len(d.Notes) > 0 {
				t.Fatalf("a refusal carries notes %v", d.Notes)
			}
		})
	}
}

// TestRevokedByAnchorCRLBesideSubCACRL: a revocation the trust store's CA
// CRLs prove stands when the chain also brings a sub-CA whose own CRL
// (kept for chains, chainIndex) lists nothing: the sub-CA's index is
// searched only while nothing is found. Kills the mutant that drops the
// "if rev != nil { break }" of checkChain (the sub-CA's empty answer then
// overwrote the revocation).
func TestRevokedByAnchorCRLBesideSubCACRL(t *testing.T) {
	w := newWorld(t)
	w.rootsOnly = true // the signatures bring the People Issuing CA
	b := w.bundle(bundleOpts{})
	subCRL := revokeCRL(w.peopleSub, 3) // lists nothing
	for _, tc := range []struct {
		name  string
		crls  [][]byte
		valid bool
	}{
		{"ok the sub-CA's CRL alone, nothing revoked", [][]byte{subCRL}, true},
		{"fail the root's CRL revokes the sub-CA", [][]byte{revokeCRL(w.peopleRoot, 5, pki.Revoked{Serial: w.peopleSub.Cert.SerialNumber, Reason: 2}), subCRL}, false},
		{"fail the root's CRL revokes the sub-CA, CRLs in the other order", [][]byte{subCRL, revokeCRL(w.peopleRoot, 5, pki.Revoked{Serial: w.peopleSub.Cert.SerialNumber, Reason: 2})}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.crls = tc.crls
			r := w.trust().Verify(b.input(testNow))
			if tc.valid {
				assertResult(t, r, true)
				return
			}
			assertResult(t, r, false, failure{CheckRevocation, ReasonRevoked})
		})
	}
}

// TestOlderCRLOfLoadedCANoWarning: a CRL older than one of its CA already
// loaded (rollback refused by the index) is no warning and loses nothing,
// whatever the order the CRLs come in. Kills the mutant that drops
// addCRL's "ce.Reason == crl.ReasonRollback" acceptance.
func TestOlderCRLOfLoadedCANoWarning(t *testing.T) {
	w := newWorld(t)
	b := w.bundle(bundleOpts{})
	newer := revokeCRL(w.regRoot, 5, pki.Revoked{Serial: b.imageCert.SerialNumber, Reason: 1})
	older := revokeCRL(w.regRoot, 4)
	for _, tc := range []struct {
		name string
		crls [][]byte
	}{
		{"fail revoked, newer CRL first", [][]byte{newer, older}},
		{"fail revoked, older CRL first", [][]byte{older, newer}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, warns, err := NewTrust(TrustOptions{
				People: []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert}, CRLs: tc.crls,
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 0 {
				t.Fatalf("warnings %q", warns)
			}
			w.crls = tc.crls
			assertResult(t, w.trust().Verify(b.input(testNow)), false, failure{CheckRevocation, ReasonRevoked})
		})
	}
}

// TestRevocationSkippedWithoutChains: when no chain verified, the
// revocation check is reported skipped, not passed "in 0 chains". Kills
// the mutant "checked == 0" -> "checked < 0" of checkRevocation.
func TestRevocationSkippedWithoutChains(t *testing.T) {
	w := newWorld(t)
	other := newWorld(t) // another PKI, none of whose CAs w trusts
	b := other.bundle(bundleOpts{})
	r := w.trust().Verify(b.input(testNow))
	if r.Valid {
		t.Fatal("a bundle of an untrusted PKI is valid")
	}
	if c := r.Check(CheckRevocation); c.OK || !c.Skipped {
		t.Fatalf("revocation check %+v, want skipped", c)
	}
}
