package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

func TestRoundTrip(t *testing.T) {
	p := newTestPKI(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	first, err := Sign(descriptor, p.creator.Cert, p.creator.Key, SignOptions{Hash: crypto.SHA512, PSS: true, Chain: p.creator.Chain, SigningTime: at})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	second, err := AddSigner(first, descriptor, p.approver.Cert, p.approver.Key, SignOptions{Chain: p.approver.Chain})
	if err != nil {
		t.Fatalf("AddSigner: %v", err)
	}
	third, err := AddSigner(second, descriptor, p.image.Cert, p.image.Key, SignOptions{Hash: crypto.SHA384})
	if err != nil {
		t.Fatalf("AddSigner: %v", err)
	}
	sd, err := Parse(third)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !bytes.Equal(sd.Raw, third) {
		t.Error("Raw differs from the input")
	}
	// creator, intermediate (once, though both creator and approver embed it), approver, image
	if len(sd.Certificates) != 4 {
		t.Errorf("got %d certificates, want 4", len(sd.Certificates))
	}
	want := map[string]struct {
		hash crypto.Hash
		alg  x509.SignatureAlgorithm
	}{
		"Creator":  {crypto.SHA512, x509.SHA512WithRSAPSS},
		"Approver": {crypto.SHA256, x509.ECDSAWithSHA256},
		"Image":    {crypto.SHA384, x509.ECDSAWithSHA384},
	}
	if len(sd.Signers) != 3 {
		t.Fatalf("got %d signers, want 3", len(sd.Signers))
	}
	for i := range sd.Signers {
		s := &sd.Signers[i]
		cn := s.Certificate.Subject.CommonName
		w, ok := want[cn]
		if !ok {
			t.Fatalf("unexpected signer %q", cn)
		}
		delete(want, cn)
		if s.Hash != w.hash || s.SignatureAlgorithm != w.alg {
			t.Errorf("%s: hash %v alg %v, want %v %v", cn, s.Hash, s.SignatureAlgorithm, w.hash, w.alg)
		}
		if s.SigningTime.IsZero() {
			t.Errorf("%s: no signing time", cn)
		}
		if cn == "Creator" && !s.SigningTime.Equal(at) {
			t.Errorf("creator signing time %v, want %v", s.SigningTime, at)
		}
		if err := s.Verify(descriptor); err != nil {
			t.Errorf("%s: Verify: %v", cn, err)
		}
	}
	// Earlier SignerInfos are kept byte for byte.
	sd1, err := Parse(first)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(third, sd1.Signers[0].Raw) {
		t.Error("the creator's SignerInfo changed")
	}
}

func TestPEMAndRSAv15(t *testing.T) {
	p := newTestPKI(t)
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		der, err := Sign(descriptor, p.creator.Cert, p.creator.Key, SignOptions{Hash: h})
		if err != nil {
			t.Fatal(err)
		}
		for _, label := range []string{"CMS", "PKCS7"} {
			in := "\n" + string(pem.EncodeToMemory(&pem.Block{Type: label, Bytes: der})) + "\n"
			sd, err := Parse([]byte(in))
			if err != nil {
				t.Fatalf("Parse %s: %v", label, err)
			}
			if err := sd.Signers[0].Verify(descriptor); err != nil {
				t.Errorf("%v %s: %v", h, label, err)
			}
		}
	}
}

func TestVerifyFailures(t *testing.T) {
	p := newTestPKI(t)
	der := p.bundle3(t)
	tamperedContent := bytes.Replace(descriptor, []byte("atlas"), []byte("atlaz"), 1)
	sd, err := Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sd.Signers {
		err := s.Verify(tamperedContent)
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(e.Reason, "message digest mismatch") {
			t.Errorf("%s: tampered content: got %v", s.Certificate.Subject.CommonName, err)
		}
	}
	// Flip one byte of each signature value: the last byte of each signature
	// OCTET STRING is the last byte of its SignerInfo (no unsigned attributes).
	for i, s := range sd.Signers {
		bad := bytes.Clone(der)
		off := bytes.Index(bad, s.Raw) + len(s.Raw) - 1
		bad[off] ^= 0x01
		sd2, err := Parse(bad)
		if err != nil {
			t.Fatalf("signer %d: Parse of tampered signature: %v", i, err)
		}
		for j, s2 := range sd2.Signers {
			err := s2.Verify(descriptor)
			var e *Error
			switch {
			case bytes.Equal(s2.Raw, sd.Signers[j].Raw) && err != nil:
				t.Errorf("untouched signer %d fails: %v", j, err)
			case !bytes.Equal(s2.Raw, sd.Signers[j].Raw) && (!errors.As(err, &e) || e.Reason != "signature invalid"):
				t.Errorf("tampered signer %d: got %v", j, err)
			}
		}
	}
	// A signed attribute changed (the signing time) breaks the signature.
	bad := bytes.Clone(der)
	s0 := sd.Signers[0]
	idx := bytes.Index(s0.Raw, []byte{0x17, 0x0d}) // UTCTime
	if idx < 0 {
		t.Fatal("no UTCTime in the SignerInfo")
	}
	off := bytes.Index(bad, s0.Raw) + idx + 3
	bad[off] = '0' + (bad[off]-'0'+1)%10
	sd3, err := Parse(bad)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sd3.Signers {
		if s.Certificate.Equal(s0.Certificate) {
			if err := s.Verify(descriptor); err == nil {
				t.Error("tampered signing time verifies")
			}
		}
	}
}

func TestSignRefusals(t *testing.T) {
	p := newTestPKI(t)
	other := p.inter.Leaf(testpki.Name("Other"), testpki.WithKey(pki.ECDSAP256))
	der, err := Sign(descriptor, p.creator.Cert, p.creator.Key, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"fail SHA-1", func() error {
			_, err := Sign(descriptor, p.creator.Cert, p.creator.Key, SignOptions{Hash: crypto.SHA1})
			return err
		}, "not allowed"},
		{"fail MD5", func() error {
			_, err := Sign(descriptor, p.creator.Cert, p.creator.Key, SignOptions{Hash: crypto.MD5})
			return err
		}, "not allowed"},
		{"fail PSS with ECDSA", func() error {
			_, err := Sign(descriptor, p.approver.Cert, p.approver.Key, SignOptions{PSS: true})
			return err
		}, "PSS needs an RSA key"},
		{"fail key does not match certificate", func() error {
			_, err := Sign(descriptor, p.approver.Cert, other.Key, SignOptions{})
			return err
		}, "does not match"},
		{"fail same signer twice", func() error {
			_, err := AddSigner(der, descriptor, p.creator.Cert, p.creator.Key, SignOptions{})
			return err
		}, "already signed"},
		{"fail add over other content", func() error {
			_, err := AddSigner(der, []byte("other"), p.approver.Cert, p.approver.Key, SignOptions{})
			return err
		}, "message digest mismatch"},
		{"ok add", func() error {
			_, err := AddSigner(der, descriptor, p.approver.Cert, p.approver.Key, SignOptions{})
			return err
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.run()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
