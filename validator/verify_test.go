package validator

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// failure is a check expected to fail with a reason.
type failure struct{ check, reason string }

func assertResult(t *testing.T, r *Result, wantValid bool, want ...failure) {
	t.Helper()
	if r.Valid != wantValid {
		t.Errorf("Valid = %v, want %v; checks: %+v", r.Valid, wantValid, r.Checks)
	}
	for _, f := range want {
		c := r.Check(f.check)
		if c.OK || c.Reason != f.reason {
			t.Errorf("check %s = ok:%v reason:%q detail:%q, want reason %q", f.check, c.OK, c.Reason, c.Detail, f.reason)
		}
	}
	if wantValid && r.Err() != nil {
		t.Errorf("Err() = %v for a valid result", r.Err())
	}
	if !wantValid {
		var vf *VerificationFailure
		if !errors.As(r.Err(), &vf) {
			t.Errorf("Err() = %v, want a *VerificationFailure", r.Err())
		}
	}
	// every check is reported, not only the first failure
	if len(r.Checks) != 9 {
		t.Errorf("got %d checks, want all 9: %+v", len(r.Checks), r.Checks)
	}
}

func TestVerifyTable(t *testing.T) {
	w := newWorld(t)
	mallory := testpki.NewRoot(t, "Rogue CA").Leaf(testpki.Name("Alice Creator"))
	stranger := w.peopleSub.Leaf(testpki.Name("Mallory Stranger"))
	creatorTwin := w.peopleSub.Leaf(testpki.Name("Alice Creator"))
	creatorCase := w.peopleSub.Leaf(pkix.Name{CommonName: "alice  creator", Organization: []string{"IMAGETRUST TEST"}})
	creatorKey := w.peopleSub.Leaf(testpki.Name("Bob Approver"), testpki.WithSigner(w.creator.Key))
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakRegSub := w.regRoot.Intermediate("Weak Registrar Sub CA", testpki.WithSigner(weak))
	weakPeopleSub := w.peopleRoot.Intermediate("Weak People CA", testpki.WithSigner(weak))
	weakCreator := weakPeopleSub.Leaf(testpki.Name("Alice Creator"), testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)))
	shortCreator := w.peopleSub.Leaf(testpki.Name("Alice Creator"), testpki.WithValidity(testNow.AddDate(-1, 0, 0), testNow.AddDate(0, 0, -20)))
	lateCreator := w.peopleSub.Leaf(testpki.Name("Alice Creator"), testpki.WithValidity(testNow.AddDate(-1, 0, 0), testNow.AddDate(0, 0, -5)))
	rsaCreator := w.peopleSub.Leaf(testpki.Name("Alice Creator"), testpki.WithKey(pki.RSA2048))
	p384Approver := w.peopleSub.Leaf(testpki.Name("Bob Approver"), testpki.WithKey(pki.ECDSAP384))
	tr := w.trust()

	type tc struct {
		name   string
		opts   bundleOpts
		mutate func(*bundle)
		now    time.Time
		valid  bool
		want   []failure
	}
	cases := []tc{
		{name: "ok ECDSA P-256 SHA-256", valid: true},
		{name: "ok RSA PKCS#1 v1.5 SHA-384 creator, P-384 approver", opts: bundleOpts{creator: rsaCreator, approver: p384Approver, hash: crypto.SHA384}, valid: true},
		{name: "ok RSA-PSS SHA-512 creator", opts: bundleOpts{creator: rsaCreator, hash: crypto.SHA512, pss: true}, valid: true},
		{name: "ok creator certificate expired after registration", opts: bundleOpts{creator: lateCreator}, valid: true},
		{name: "fail tampered descriptor byte", mutate: func(b *bundle) { b.desc = bytes.Replace(b.desc, []byte(`"worker"`), []byte(`"workex"`), 1) },
			want: []failure{{CheckSignatures, ReasonBadSignature}}},
		{name: "fail tampered image byte", mutate: func(b *bundle) { b.image[100] ^= 1 },
			want: []failure{{CheckImage, ReasonSHA512Mismatch}}},
		{name: "fail truncated image", mutate: func(b *bundle) { b.image = b.image[:len(b.image)-1] },
			want: []failure{{CheckImage, ReasonSizeMismatch}}},
		{name: "fail padded image", mutate: func(b *bundle) { b.image = append(b.image, 0) },
			want: []failure{{CheckImage, ReasonSizeMismatch}}},
		{name: "ok created within the skew after registration", opts: bundleOpts{mutateDesc: func(d map[string]any) {
			d["created"] = testNow.AddDate(0, 0, -10).Add(30 * time.Minute).Format(time.RFC3339)
		}}, valid: true},
		{name: "fail created years after registration", opts: bundleOpts{mutateDesc: func(d map[string]any) { d["created"] = "2062-06-01T00:00:00Z" }},
			want: []failure{{CheckRegistrar, ReasonCreatedAfterReg}}},
		{name: "fail sha512 of another image", opts: bundleOpts{mutateDesc: func(d map[string]any) { d["sha512"] = strings.Repeat("ab", 64) }},
			want: []failure{{CheckImage, ReasonSHA512Mismatch}}},
		{name: "fail no approver", opts: bundleOpts{noApprover: true},
			want: []failure{{CheckApprover, ReasonNoApprover}}},
		{name: "fail creator is approver", opts: bundleOpts{approver: creatorTwin},
			want: []failure{{CheckApprover, ReasonCreatorIsApprover}}},
		{name: "fail creator is approver (subject in other case and spacing)", opts: bundleOpts{approver: creatorCase},
			want: []failure{{CheckApprover, ReasonCreatorIsApprover}}},
		{name: "fail approver certificate on the creator's key", opts: bundleOpts{approver: creatorKey},
			want: []failure{{CheckApprover, ReasonCreatorIsApprover}}},
		{name: "fail creator not in the VO's list", opts: bundleOpts{creator: stranger},
			want: []failure{{CheckCreator, ReasonCreatorNotListed}}},
		{name: "fail approver of another VO", opts: bundleOpts{vo: "cms"},
			want: []failure{{CheckApprover, ReasonApproverNotListed}}},
		{name: "fail unknown VO", opts: bundleOpts{vo: "lhcb"},
			want: []failure{{CheckCreator, ReasonUnknownVO}}},
		{name: "fail signer from an untrusted CA", opts: bundleOpts{creator: mallory},
			want: []failure{{CheckCreator, ReasonCreatorUntrusted}}},
		{name: "fail image certificate from a people CA", opts: bundleOpts{regCA: w.peopleSub},
			want: []failure{{CheckRegistrar, ReasonImageCertPeopleCA}}},
		{name: "fail image certificate under a 1024-bit Registrar intermediate", opts: bundleOpts{regCA: weakRegSub},
			want: []failure{{CheckRegistrar, ReasonImageCertUntrusted}}},
		{name: "fail creator under a 1024-bit people intermediate", opts: bundleOpts{creator: weakCreator},
			want: []failure{{CheckCreator, ReasonCreatorUntrusted}}},
		{name: "fail image certificate from an unknown CA", opts: bundleOpts{regCA: testpki.NewRoot(t, "Rogue Registrar")},
			want: []failure{{CheckRegistrar, ReasonImageCertUntrusted}}},
		{name: "fail image certificate uuid is not the descriptor's", opts: bundleOpts{certUUID: "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f"},
			want: []failure{{CheckRegistrar, ReasonUUIDMismatch}}},
		{name: "fail image certificate is a CA", opts: bundleOpts{imageSigner: w.regRoot.Intermediate("sub", testpki.WithURIs("urn:uuid:0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f")).AsLeaf()},
			want: []failure{{CheckRegistrar, ReasonImageCertUntrusted}}},
		{name: "fail image certificate names two uuids", opts: bundleOpts{twoUUIDs: true},
			want: []failure{{CheckRegistrar, ReasonUUIDMismatch}}},
		{name: "fail not registered", opts: bundleOpts{noRegister: true},
			want: []failure{{CheckRegistrar, ReasonNoImageSigner}}},
		{name: "fail expired image certificate", opts: bundleOpts{expires: testNow.AddDate(0, 0, -1)},
			want: []failure{{CheckExpiry, ReasonExpired}}},
		{name: "fail not-yet-valid image certificate", opts: bundleOpts{regAt: testNow.AddDate(0, 0, 2)},
			want: []failure{{CheckExpiry, ReasonNotYetValid}}},
		{name: "fail creator certificate expired before registration", opts: bundleOpts{creator: shortCreator},
			want: []failure{{CheckSignerTime, ReasonSignerInvalidAtReg}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := w.bundle(c.opts)
			if c.mutate != nil {
				c.mutate(b)
			}
			now := c.now
			if now.IsZero() {
				now = testNow
			}
			r := tr.Verify(b.input(now))
			assertResult(t, r, c.valid, c.want...)
		})
	}
	t.Run("ok expired only is flagged ExpiredOnly", func(t *testing.T) {
		b := w.bundle(bundleOpts{expires: testNow.AddDate(0, 0, -1)})
		r := tr.Verify(b.input(testNow))
		if !r.ExpiredOnly || r.Valid {
			t.Fatalf("ExpiredOnly=%v Valid=%v", r.ExpiredOnly, r.Valid)
		}
	})
	t.Run("ok image check skipped without bytes", func(t *testing.T) {
		b := w.bundle(bundleOpts{})
		in := b.input(testNow)
		in.Image = nil
		r := tr.Verify(in)
		if !r.Valid || !r.Check(CheckImage).Skipped {
			t.Fatalf("Valid=%v image=%+v", r.Valid, r.Check(CheckImage))
		}
	})
}

func TestVerifyDescriptorCases(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	// A bundle signed over a malformed descriptor: signatures verify, the descriptor doesn't.
	cases := []struct {
		name string
		desc func(valid []byte) []byte
	}{
		{"fail duplicate key", func(v []byte) []byte {
			return bytes.Replace(v, []byte(`{"container_format"`), []byte(`{"vo":"cms","container_format"`), 1)
		}},
		{"fail unknown field", func(v []byte) []byte { return bytes.Replace(v, []byte(`{`), []byte(`{"sha521":"x",`), 1) }},
		{"fail non-canonical uuid", func(v []byte) []byte {
			d, _ := ParseDescriptor(v)
			return bytes.Replace(v, []byte(d.UUID), []byte(strings.ToUpper(d.UUID)), 1)
		}},
		{"fail trailing data", func(v []byte) []byte { return append(v, []byte(`{}`)...) }},
		{"fail not UTF-8", func(v []byte) []byte { return bytes.Replace(v, []byte(`"worker"`), []byte("\"work\xffr\""), 1) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := w.bundle(bundleOpts{})
			bad := c.desc(b.desc)
			if bytes.Equal(bad, b.desc) {
				t.Fatal("mutation did nothing")
			}
			// re-sign the bad bytes so only the descriptor check can catch it
			b2 := resign(t, w, bad)
			r := tr.Verify(Input{Descriptor: bad, Signature: b2, Image: bytes.NewReader(b.image), Now: testNow})
			assertResult(t, r, false, failure{CheckDescriptor, ReasonDescriptorInvalid})
		})
	}
}

// resign signs arbitrary descriptor bytes as creator and approver, and
// registers them with a certificate for a fixed uuid.
func resign(t *testing.T, w *world, desc []byte) []byte {
	t.Helper()
	sig, err := cms.Sign(desc, w.creator.Cert, w.creator.Key, cms.SignOptions{Chain: w.creator.Chain})
	if err == nil {
		sig, err = cms.AddSigner(sig, desc, w.approver.Cert, w.approver.Key, cms.SignOptions{Chain: w.approver.Chain})
	}
	if err == nil {
		u := "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f"
		leaf := w.regRoot.Leaf(pkix.Name{CommonName: "image " + u}, testpki.WithURIs("urn:uuid:"+u), testpki.WithValidity(testNow.AddDate(0, 0, -1), testNow.AddDate(0, 1, 0)))
		sig, err = cms.AddSigner(sig, desc, leaf.Cert, leaf.Key, cms.SignOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestVerifySignatureFiles(t *testing.T) {
	w := newWorld(t)
	tr := w.trust()
	b := w.bundle(bundleOpts{})
	cases := map[string][]byte{
		"fail empty p7s":     {},
		"fail garbage p7s":   []byte("this is not CMS at all"),
		"fail huge p7s":      bytes.Repeat([]byte{0x30}, 4<<20),
		"fail truncated p7s": b.sig[:len(b.sig)/2],
	}
	for name, sig := range cases {
		t.Run(name, func(t *testing.T) {
			r := tr.Verify(Input{Descriptor: b.desc, Signature: sig, Image: bytes.NewReader(b.image), Now: testNow})
			assertResult(t, r, false, failure{CheckSignatures, ReasonCMSInvalid})
		})
	}
}

func TestVerifyRevocation(t *testing.T) {
	cases := []struct {
		name   string
		crl    func(w *world, b *bundle) []byte
		strict bool
		valid  bool
	}{
		{"ok empty CRLs", func(w *world, b *bundle) []byte { return revokeCRL(w.regRoot, 1) }, false, true},
		{"fail revoked image certificate", func(w *world, b *bundle) []byte {
			return revokeCRL(w.regRoot, 2, pki.Revoked{Serial: b.imageCert.SerialNumber, Reason: crl.ReasonSuperseded})
		}, false, false},
		{"fail revoked creator (keyCompromise after registration)", func(w *world, b *bundle) []byte {
			return revokeCRL(w.peopleSub, 2, pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -1), Reason: crl.ReasonKeyCompromise})
		}, false, false},
		{"fail revoked creator (affiliationChanged before registration)", func(w *world, b *bundle) []byte {
			return revokeCRL(w.peopleSub, 2, pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -30), Reason: crl.ReasonAffiliationChanged})
		}, false, false},
		{"ok creator left the VO after registration (affiliationChanged)", func(w *world, b *bundle) []byte {
			return revokeCRL(w.peopleSub, 2, pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -1), Reason: crl.ReasonAffiliationChanged})
		}, false, true},
		{"fail creator left the VO after registration, strict", func(w *world, b *bundle) []byte {
			return revokeCRL(w.peopleSub, 2, pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -1), Reason: crl.ReasonAffiliationChanged})
		}, true, false},
		{"fail revoked approver (unspecified)", func(w *world, b *bundle) []byte {
			return revokeCRL(w.peopleSub, 2, pki.Revoked{Serial: w.approver.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -1)})
		}, false, false},
		{"fail revoked intermediate CA", func(w *world, b *bundle) []byte {
			return revokeCRL(w.peopleRoot, 2, pki.Revoked{Serial: w.peopleSub.Cert.SerialNumber, Reason: crl.ReasonCACompromise})
		}, false, false},
		{"ok CRL signed by the wrong key is not used", func(w *world, b *bundle) []byte {
			// claims to be the people sub-CA's CRL, signed by another key with the same name
			fake := &testpki.CA{Cert: w.peopleSub.Cert, Key: testpki.NewRoot(w.t, "x").Key}
			der, err := pki.IssueCRL(pki.CRLTemplate{Number: 9, Entries: []pki.Revoked{{Serial: w.creator.Cert.SerialNumber, Reason: crl.ReasonKeyCompromise}}}, fake.Cert, fake.Key)
			if err != nil {
				w.t.Fatal(err)
			}
			return der
		}, false, true},
		{"ok another CA's CRL with the same serial doesn't match", func(w *world, b *bundle) []byte {
			return revokeCRL(w.peopleRoot, 2, pki.Revoked{Serial: w.creator.Cert.SerialNumber, Reason: crl.ReasonKeyCompromise})
		}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.strict = c.strict
			b := w.bundle(bundleOpts{})
			w.crls = [][]byte{c.crl(w, b)}
			r := w.trust().Verify(b.input(testNow))
			if c.valid {
				assertResult(t, r, true)
			} else {
				assertResult(t, r, false, failure{CheckRevocation, ReasonRevoked})
			}
		})
	}
}

func TestVerifyWeakDigestFromOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is required in CI")
		}
		t.Skip("openssl not installed")
	}
	w := newWorld(t)
	tr := w.trust()
	b := w.bundle(bundleOpts{})
	dir := t.TempDir()
	desc := testpki.WriteFile(t, dir, "d.json", b.desc)
	cert := testpki.WriteFile(t, dir, "c.pem", testpki.CertPEM(w.creator.Cert))
	key := testpki.WriteFile(t, dir, "c.key", testpki.KeyPEM(t, w.creator.Key))
	for _, md := range []string{"sha1", "md5"} {
		t.Run("fail "+md, func(t *testing.T) {
			out := filepath.Join(dir, md+".p7s")
			cmd := exec.Command("openssl", "cms", "-sign", "-binary", "-in", desc, "-signer", cert, "-inkey", key, "-md", md, "-outform", "DER", "-out", out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Skipf("openssl refuses to make a %s signature here: %s", md, msg)
			}
			sig, _ := os.ReadFile(out)
			r := tr.Verify(Input{Descriptor: b.desc, Signature: sig, Now: testNow})
			c := r.Check(CheckSignatures)
			if c.OK || !strings.Contains(strings.ReplaceAll(strings.ToLower(c.Detail), "-", ""), md) {
				t.Fatalf("signatures check = %+v, want a refusal naming %s", c, md)
			}
		})
	}
}

func TestNewTrustRefusesSharedAnchor(t *testing.T) {
	ca := testpki.NewRoot(t, "Both")
	if _, _, err := NewTrust(TrustOptions{People: []*x509.Certificate{ca.Cert}, Registrar: []*x509.Certificate{ca.Cert}}); err == nil {
		t.Fatal("a CA on both sides was accepted")
	}
}

// TestVerifyRevocationByBroughtIntermediate: the trust holds the people
// root only; the issuing CA of the creator and approver comes with the
// signature. A CRL of that CA, among the trust's CRLs, is still used for
// chains through it (and counts for require_crl); one that claims its name
// but another key signed is not.
func TestVerifyRevocationByBroughtIntermediate(t *testing.T) {
	other := testpki.NewRoot(t, "People Issuing CA") // same name, another key
	cases := []struct {
		name       string
		crls       func(w *world) [][]byte
		requireCRL bool
		valid      bool
	}{
		{"ok no CRL", func(w *world) [][]byte { return nil }, false, true},
		{"ok empty CRL of the brought CA", func(w *world) [][]byte { return [][]byte{revokeCRL(w.peopleSub, 1)} }, false, true},
		{"fail creator revoked by the brought CA", func(w *world) [][]byte {
			return [][]byte{revokeCRL(w.peopleSub, 2, pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, 0, -1), Reason: crl.ReasonKeyCompromise})}
		}, false, false},
		{"ok same name, other key: not used", func(w *world) [][]byte {
			return [][]byte{revokeCRL(other, 2, pki.Revoked{Serial: w.creator.Cert.SerialNumber, Reason: crl.ReasonKeyCompromise})}
		}, false, true},
		{"ok require_crl met by the brought CA's CRL", func(w *world) [][]byte {
			return [][]byte{revokeCRL(w.peopleSub, 1), revokeCRL(w.peopleRoot, 1), revokeCRL(w.regRoot, 1)}
		}, true, true},
		{"fail require_crl without the brought CA's CRL", func(w *world) [][]byte {
			return [][]byte{revokeCRL(w.peopleRoot, 1), revokeCRL(w.regRoot, 1)}
		}, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.rootsOnly, w.requireCRL = true, c.requireCRL
			w.crls = c.crls(w)
			b := w.bundle(bundleOpts{})
			r := w.trust().Verify(b.input(testNow))
			if c.valid {
				assertResult(t, r, true)
				return
			}
			if c := r.Check(CheckRevocation); r.Valid || c.OK {
				t.Fatalf("valid, or revocation passed: %+v", r.Checks)
			} else {
				t.Logf("refused: %s: %s", c.Reason, c.Detail)
			}
		})
	}
}
