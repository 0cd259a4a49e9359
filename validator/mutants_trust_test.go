package validator

import (
	"crypto/x509"
	"testing"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestFinishExpiredOnly: ExpiredOnly is set exactly when the checks that
// count (all but an image check not run for want of bytes) hold no skip
// and no failure but an expiry past notAfter. It pins finish() across the
// removal of its anyFail flag (implied by the others: a result not valid
// with onlyExpiry still set has a failed, not skipped, check).
func TestFinishExpiredOnly(t *testing.T) {
	ok := func(n string) Check { return Check{Name: n, OK: true} }
	skip := func(n, reason string) Check { return Check{Name: n, Skipped: true, Reason: reason} }
	fail := func(n, reason string) Check { return Check{Name: n, Reason: reason} }
	noBytes := skip(CheckImage, ReasonNotChecked)
	for _, tc := range []struct {
		name               string
		checks             []Check
		valid, expiredOnly bool
	}{
		{"ok all passed", []Check{ok(CheckDescriptor), ok(CheckExpiry), noBytes}, true, false},
		{"ok expired only, no image bytes", []Check{ok(CheckDescriptor), fail(CheckExpiry, ReasonExpired), noBytes}, false, true},
		{"ok expired only, image checked", []Check{ok(CheckDescriptor), fail(CheckExpiry, ReasonExpired), ok(CheckImage)}, false, true},
		{"fail not yet valid", []Check{ok(CheckDescriptor), fail(CheckExpiry, ReasonNotYetValid), noBytes}, false, false},
		{"fail expired and revoked", []Check{fail(CheckExpiry, ReasonExpired), fail(CheckRevocation, ReasonRevoked)}, false, false},
		{"fail expired and a check skipped", []Check{fail(CheckExpiry, ReasonExpired), skip(CheckRevocation, ReasonPrerequisiteMissing)}, false, false},
		{"fail only a skipped check", []Check{ok(CheckDescriptor), skip(CheckRevocation, ReasonPrerequisiteMissing)}, false, false},
		{"fail image skipped for want of a descriptor", []Check{ok(CheckExpiry), skip(CheckImage, ReasonPrerequisiteMissing)}, false, false},
		{"fail no checks counted but a failure", []Check{fail(CheckImage, ReasonSHA512Mismatch)}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := (&Result{Checks: tc.checks}).finish()
			if r.Valid != tc.valid || r.ExpiredOnly != tc.expiredOnly {
				t.Fatalf("Valid %v ExpiredOnly %v, want %v %v", r.Valid, r.ExpiredOnly, tc.valid, tc.expiredOnly)
			}
		})
	}
}

// TestSubCACRLNoWarning: the CRL of a sub-CA no configured CA is (brought
// by signatures) is kept for chains without a warning: addCRL tries only
// the anchors of the CRL's issuer name. Kills dropping addCRL's
// "!crl.SameName(a.RawSubject, rl.RawIssuer)" skip (every anchor then
// refused it as wrong-issuer, which NewTrust warns of).
func TestSubCACRLNoWarning(t *testing.T) {
	w := newWorld(t)
	_, warns, err := NewTrust(TrustOptions{
		People: []*x509.Certificate{w.peopleRoot.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
		CRLs: [][]byte{revokeCRL(w.peopleSub, 3)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("warnings %q", warns)
	}
}

// TestLocalBlocksAgreesWithDecideBoot: LocalBlocks (what the image sync
// asks of imagetrust_local_validity) says "blocks" for exactly the values
// for which DecideBoot refuses an otherwise bootable image. Kills
// LocalBlocks -> "local == LocalBlacklist" (a typo'd flag then left an
// image the sync treats as bootable).
func TestLocalBlocksAgreesWithDecideBoot(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	b := w.bundle(bundleOpts{})
	for _, v := range []string{"", LocalRunAnyway, LocalBlacklist, "Blacklist", "blacklisted", "valid", "run_anyway", " "} {
		img := catalogImage(t, tr, b)
		if v != "" {
			img.Properties[PropLocalValidity] = v
		}
		d := tr.DecideBoot(img, BootPolicy{MirrorProject: mirror}, testNow)
		if LocalBlocks(v) == d.Allowed {
			t.Errorf("local validity %q: LocalBlocks %v, DecideBoot allowed %v %v", v, LocalBlocks(v), d.Allowed, d.Reasons)
		}
	}
}

// TestConfiguredLinkCertificateIsNoRoot: a configured CA certificate that
// is self-issued but not self-signed (a key rollover's link certificate,
// the old key certifying the new under the CA's name) is an intermediate,
// not a trust anchor: without the old root configured, nothing chains
// through it. Kills isSelfSigned's "&&" -> "||".
func TestConfiguredLinkCertificateIsNoRoot(t *testing.T) {
	w := newWorld(t)
	newKey := testpki.NewRoot(t, "People Root")
	link := w.peopleRoot.CrossSign(newKey)
	if isSelfSigned(link.Cert) {
		t.Fatal("the link certificate is self-signed")
	}
	w.creator = link.Leaf(testpki.Name("Alice Creator"), testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)))
	b := w.bundle(bundleOpts{})
	tr, _, err := NewTrust(TrustOptions{
		People: []*x509.Certificate{link.Cert, w.peopleSub.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert},
		VOs: w.trust().vos,
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := tr.Verify(b.input(testNow)).Check(CheckCreator); c.OK || c.Reason != ReasonCreatorUntrusted {
		t.Fatalf("creator under a configured link certificate, its root not configured: %+v", c)
	}
}

// TestSignerTimeSkippedWithoutApprover: with a signer missing, check 5
// is reported skipped, not passed for "creator and approver". Kills
// dropping the "creator == nil || approver == nil" branch of Verify.
func TestSignerTimeSkippedWithoutApprover(t *testing.T) {
	w := newWorld(t)
	r := w.trust().Verify(w.bundle(bundleOpts{noApprover: true}).input(testNow))
	if c := r.Check(CheckSignerTime); c.OK || !c.Skipped {
		t.Fatalf("signer-time check %+v, want skipped", c)
	}
}
