package validator

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestVerifyExtraSigners: a bundle with a third personal signer, or a
// second image certificate, is refused as unexpected-signer even when every
// signature is valid and every signer trusted.
func TestVerifyExtraSigners(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	third := w.peopleSub.Leaf(testpki.Name("Carol Third"), testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)))
	t.Run("fail three personal signers", func(t *testing.T) {
		b := w.bundle(bundleOpts{})
		sig, err := cms.AddSigner(b.sig, b.desc, third.Cert, third.Key, cms.SignOptions{Chain: third.Chain, SigningTime: testNow.AddDate(0, 0, -10)})
		if err != nil {
			t.Fatal(err)
		}
		b.sig = sig
		assertResult(t, tr.Verify(b.input(testNow)), false, failure{CheckRegistrar, ReasonExtraSigner})
	})
	t.Run("fail two image certificates", func(t *testing.T) {
		b := w.bundle(bundleOpts{})
		second := w.regRoot.Leaf(pkix.Name{CommonName: "image again " + b.d.UUID}, testpki.WithURIs("urn:uuid:"+b.d.UUID),
			testpki.WithValidity(testNow.AddDate(0, 0, -10), testNow.AddDate(0, 3, 0)))
		sig, err := cms.AddSigner(b.sig, b.desc, second.Cert, second.Key, cms.SignOptions{Chain: second.Chain, SigningTime: testNow.AddDate(0, 0, -10)})
		if err != nil {
			t.Fatal(err)
		}
		b.sig = sig
		assertResult(t, tr.Verify(b.input(testNow)), false, failure{CheckRegistrar, ReasonExtraSigner})
	})
}

// TestVerifyImageCertificateShape: the image certificate must be an
// end-entity certificate whose key usage (when present) allows
// digitalSignature, each condition on its own.
func TestVerifyImageCertificateShape(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	mk := func(uuid string, opts ...testpki.Option) *testpki.Leaf {
		opts = append(opts, testpki.WithURIs("urn:uuid:"+uuid), testpki.WithValidity(testNow.AddDate(0, 0, -10), testNow.AddDate(0, 3, 0)))
		return w.regRoot.Leaf(pkix.Name{CommonName: "image " + uuid}, opts...)
	}
	const u = "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f"
	set := func(d map[string]any) { d["uuid"] = u }
	t.Run("fail a CA certificate that may sign", func(t *testing.T) {
		ca := w.regRoot.Intermediate("image "+u, testpki.WithURIs("urn:uuid:"+u),
			testpki.WithKeyUsage(x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature))
		r := tr.Verify(w.bundle(bundleOpts{imageSigner: ca.AsLeaf(), mutateDesc: set}).input(testNow))
		assertResult(t, r, false, failure{CheckRegistrar, ReasonImageCertUntrusted})
	})
	t.Run("fail an end-entity certificate without digitalSignature", func(t *testing.T) {
		r := tr.Verify(w.bundle(bundleOpts{imageSigner: mk(u, testpki.WithKeyUsage(x509.KeyUsageKeyEncipherment)), mutateDesc: set}).input(testNow))
		assertResult(t, r, false, failure{CheckRegistrar, ReasonImageCertUntrusted})
	})
	t.Run("ok an end-entity certificate with digitalSignature", func(t *testing.T) {
		r := tr.Verify(w.bundle(bundleOpts{imageSigner: mk(u, testpki.WithKeyUsage(x509.KeyUsageDigitalSignature)), mutateDesc: set}).input(testNow))
		assertResult(t, r, true)
	})
}

// TestPersonalCACertificateThatMaySign: a CA certificate is refused as a
// creator's even when its key usage includes digitalSignature.
func TestPersonalCACertificateThatMaySign(t *testing.T) {
	w := newWorld(t)
	ca := w.peopleSub.Intermediate("Alice Creator", testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)),
		testpki.WithKeyUsage(x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature))
	w.creator = &testpki.Leaf{Cert: ca.Cert, Key: ca.Key, Chain: []*x509.Certificate{w.peopleSub.Cert}}
	r := w.trust().Verify(w.bundle(bundleOpts{}).input(testNow))
	assertResult(t, r, false, failure{CheckCreator, ReasonCreatorUntrusted})
}

// TestVerifyRegistrarNamespace: an image certificate outside its Registrar
// CA's IGTF namespace is refused.
func TestVerifyRegistrarNamespace(t *testing.T) {
	w := newWorld(t)
	ns := namespacesOf(t, `TO Issuer "/O=imagetrust test/CN=Registrar CA" PERMIT Subject "/CN=registered .*"`+"\n")
	alice, _ := DNFromRaw(w.creator.Cert.RawSubject)
	bob, _ := DNFromRaw(w.approver.Cert.RawSubject)
	tr, _, err := NewTrust(TrustOptions{
		People:     []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert},
		Registrar:  []*x509.Certificate{w.regRoot.Cert},
		VOs:        map[string]*VOPolicy{"atlas": {Name: "atlas", Creators: []DN{alice}, Approvers: []DN{bob}}},
		Namespaces: ns,
	})
	if err != nil {
		t.Fatal(err)
	}
	// the fixture names image certificates "/CN=image <uuid>"
	assertResult(t, tr.Verify(w.bundle(bundleOpts{}).input(testNow)), false, failure{CheckRegistrar, ReasonOutsideNamespace})
	const u = "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f"
	inside := w.regRoot.Leaf(pkix.Name{CommonName: "registered " + u}, testpki.WithURIs("urn:uuid:"+u), testpki.WithValidity(testNow.AddDate(0, 0, -10), testNow.AddDate(0, 3, 0)))
	assertResult(t, tr.Verify(w.bundle(bundleOpts{imageSigner: inside, mutateDesc: func(d map[string]any) { d["uuid"] = u }}).input(testNow)), true)
}

// TestVerifyTimeBoundaries: the created skew is an hour; the image
// certificate is valid at exactly its notBefore and notAfter; a
// not-yet-valid image is not "expired only".
func TestVerifyTimeBoundaries(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	regAt := testNow.AddDate(0, 0, -10)
	t.Run("fail created two hours after registration", func(t *testing.T) {
		b := w.bundle(bundleOpts{mutateDesc: func(d map[string]any) { d["created"] = regAt.Add(2 * time.Hour).Format(time.RFC3339) }})
		assertResult(t, tr.Verify(b.input(testNow)), false, failure{CheckRegistrar, ReasonCreatedAfterReg})
	})
	t.Run("ok at exactly notAfter", func(t *testing.T) {
		b := w.bundle(bundleOpts{expires: testNow})
		assertResult(t, tr.Verify(b.input(testNow)), true)
	})
	t.Run("ok at exactly notBefore", func(t *testing.T) {
		b := w.bundle(bundleOpts{regAt: testNow, mutateDesc: func(d map[string]any) { d["created"] = testNow.Format(time.RFC3339) }})
		assertResult(t, tr.Verify(b.input(testNow)), true)
	})
	t.Run("fail not yet valid is not expired only", func(t *testing.T) {
		b := w.bundle(bundleOpts{regAt: testNow.AddDate(0, 0, 2)})
		r := tr.Verify(b.input(testNow))
		assertResult(t, r, false, failure{CheckExpiry, ReasonNotYetValid})
		if r.ExpiredOnly {
			t.Fatal("a not-yet-valid image is flagged ExpiredOnly (run-anyway would apply to it)")
		}
	})
}

// TestNewTrustRefusesNonCA: an end-entity certificate configured as a
// people or Registrar CA is refused.
func TestNewTrustRefusesNonCA(t *testing.T) {
	w := newWorld(t)
	if _, _, err := NewTrust(TrustOptions{People: []*x509.Certificate{w.peopleRoot.Cert, w.creator.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert}}); err == nil {
		t.Error("a personal certificate accepted as a people CA")
	}
	img := w.regRoot.Leaf(pkix.Name{CommonName: "image"})
	if _, _, err := NewTrust(TrustOptions{People: []*x509.Certificate{w.peopleRoot.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert, img.Cert}}); err == nil {
		t.Error("an image certificate accepted as a Registrar CA")
	}
}

// TestParseDescriptorLimits: size must be positive; a descriptor over
// MaxDescriptorSize is refused before it is parsed.
func TestParseDescriptorLimits(t *testing.T) {
	w := newWorld(t)
	zero := w.bundle(bundleOpts{mutateDesc: func(d map[string]any) { d["size"] = 0 }})
	if _, err := ParseDescriptor(zero.desc); err == nil || !strings.Contains(err.Error(), "size") {
		t.Errorf("size 0: %v", err)
	}
	ok := w.bundle(bundleOpts{})
	var m map[string]any
	if err := json.Unmarshal(ok.desc, &m); err != nil {
		t.Fatal(err)
	}
	m["description"] = strings.Repeat("x", MaxDescriptorSize)
	big, _ := json.Marshal(m)
	if _, err := ParseDescriptor(big); err == nil || !strings.Contains(err.Error(), "allowed") {
		t.Errorf("%d bytes: %v", len(big), err)
	}
	padded := append(bytes.Clone(ok.desc), bytes.Repeat([]byte(" "), MaxDescriptorSize)...)
	if _, err := ParseDescriptor(padded); err == nil || !strings.Contains(err.Error(), "allowed") {
		t.Errorf("%d bytes of whitespace-padded descriptor: %v", len(padded), err)
	}
}

// TestDecideBootSignedPropertiesTampered: every property derived from the
// signed bundle is compared, not only some: a changed chain (what the CRL
// job matches revocations against) or notBefore (its registration time)
// is refused like a changed notAfter.
func TestDecideBootSignedPropertiesTampered(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	b := w.bundle(bundleOpts{})
	for _, k := range []string{PropUUID, PropVO, PropTag, PropURI, PropCreated, PropSHA512, PropSize,
		PropImageSerial, PropImageIssuer, PropImageNotBefore, PropImageNotAfter, PropImageFingerprint,
		PropCreatorSubject, PropCreatorIssuer, PropCreatorSerial,
		PropApproverSubject, PropApproverIssuer, PropApproverSerial, PropChain} {
		t.Run(k, func(t *testing.T) {
			img := catalogImage(t, tr, b)
			if k == PropChain {
				img.Properties[k] = "[]"
			} else {
				img.Properties[k] += "0"
			}
			d := tr.DecideBoot(img, BootPolicy{MirrorProject: mirror}, testNow)
			if d.Allowed || !contains(d.Reasons, DecisionRecordTampered) {
				t.Fatalf("edited %s: %+v", k, d)
			}
		})
	}
}

// TestDecideBootNotYetValid: an image whose certificate starts later than
// now may not boot yet.
func TestDecideBootNotYetValid(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	b := w.bundle(bundleOpts{regAt: testNow.AddDate(0, 0, 2), mutateDesc: func(d map[string]any) { d["created"] = testNow.Format(time.RFC3339) }})
	img := catalogImage(t, tr, b)
	d := tr.DecideBoot(img, BootPolicy{MirrorProject: mirror}, testNow)
	if d.Allowed || !contains(d.Reasons, DecisionNotYetValid) {
		t.Fatalf("not yet valid: %+v", d)
	}
	if d := tr.DecideBoot(img, BootPolicy{MirrorProject: mirror}, testNow.AddDate(0, 0, 3)); !d.Allowed {
		t.Fatalf("valid later: %+v", d)
	}
}

// TestDecideTagIgnoresUnmanagedEvenWhenAllowed: a project allowed to boot
// unmanaged images still gets only catalogue images for a tag; a newer
// snapshot carrying copied properties is never chosen.
func TestDecideTagIgnoresUnmanagedEvenWhenAllowed(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	good := catalogImage(t, tr, w.bundle(bundleOpts{}))
	snap := CatalogImage{ID: "ffffffff-0000-4000-8000-000000000000", Owner: "user-project", Status: "active", Properties: map[string]string{}}
	for k, v := range good.Properties {
		snap.Properties[k] = v
	}
	pol := BootPolicy{MirrorProject: mirror, AllowUnmanaged: true}
	d, _ := tr.DecideTag([]CatalogImage{snap, good}, pol, testNow)
	if !d.Allowed || d.ImageID != good.ID {
		t.Fatalf("tag resolved to %s (%v), want the catalogue image %s", d.ImageID, d.Notes, good.ID)
	}
	// the catalogue image blacklisted: the tag has no bootable image, and
	// the snapshot is not a fallback
	good.Properties[PropLocalValidity] = LocalBlacklist
	d, _ = tr.DecideTag([]CatalogImage{snap, good}, pol, testNow)
	if d.Allowed {
		t.Fatalf("tag resolved to the unmanaged %s (%v): %s", d.ImageID, d.Notes, d.Message)
	}
	d, _ = tr.DecideTag([]CatalogImage{snap}, pol, testNow)
	if d.Allowed {
		t.Fatalf("tag resolved to the unmanaged %s (%v): %s", d.ImageID, d.Notes, d.Message)
	}
}

// TestDecideBootRecordCacheKeyedOnBoth: the verdict cache tells (descriptor,
// signature) pairs apart even when their concatenations are equal.
func TestDecideBootRecordCacheKeyedOnBoth(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	img := catalogImage(t, tr, w.bundle(bundleOpts{}))
	if d := tr.DecideBoot(img, BootPolicy{MirrorProject: mirror}, testNow); !d.Allowed {
		t.Fatal(d.Message)
	}
	desc, sig, err := RecordBundle(img.Properties)
	if err != nil {
		t.Fatal(err)
	}
	shifted := CatalogImage{ID: img.ID, Owner: img.Owner, Status: img.Status, Properties: map[string]string{}}
	for k, v := range img.Properties {
		shifted.Properties[k] = v
	}
	rec, _ := RecordProperties(&Result{Descriptor: &Descriptor{}, Image: &Signer{Certificate: &x509.Certificate{}}, Creator: &Signer{Certificate: &x509.Certificate{}}, Approver: &Signer{Certificate: &x509.Certificate{}}}, append(bytes.Clone(desc), sig[0]), sig[1:])
	shifted.Properties[PropDescriptor], shifted.Properties[PropSignature] = rec[PropDescriptor], rec[PropSignature]
	if d := tr.DecideBoot(shifted, BootPolicy{MirrorProject: mirror}, testNow); d.Allowed {
		t.Fatalf("a record whose descriptor has a trailing byte and whose signature is cut short boots: %s", d.Message)
	}
}
