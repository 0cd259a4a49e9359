package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// resignWith re-signs a valid one-signer SignedData (SHA-256, signed
// attributes) with leaf's key, embedding leaf's certificate as the signer's:
// signatures no honest Sign call makes (weak keys).
func resignWith(t *testing.T, der []byte, leaf *testpki.Leaf, alg asn1.ObjectIdentifier) []byte {
	t.Helper()
	return crafted(t, der, func(sd *signedDataIn, si *signerInfo) {
		sd.Certificates = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: leaf.Cert.Raw}
		sid, err := asn1.Marshal(issuerAndSerial{Issuer: asn1.RawValue{FullBytes: leaf.Cert.RawIssuer}, Serial: leaf.Cert.SerialNumber})
		if err != nil {
			t.Fatal(err)
		}
		si.SID = asn1.RawValue{FullBytes: sid}
		si.SignatureAlgorithm = pkix.AlgorithmIdentifier{Algorithm: alg}
		attrs := append([]byte{0x31}, si.SignedAttrs.FullBytes[1:]...)
		sum := sha256.Sum256(attrs)
		var sig []byte
		switch k := leaf.Key.(type) {
		case *rsa.PrivateKey:
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
		case *ecdsa.PrivateKey:
			sig, err = ecdsa.SignASN1(rand.Reader, k, sum[:])
		}
		if err != nil {
			t.Fatal(err)
		}
		si.Signature = sig
	})
}

// TestWeakSignerKeysRefused: a signature made with an RSA key below
// MinRSABits or on an ECDSA curve other than P-256/384/521 is refused, by
// Parse or by Verify, however valid the signature itself is.
func TestWeakSignerKeysRefused(t *testing.T) {
	p := newTestPKI(t)
	rsaDER, err := Sign(descriptor, p.creator.Cert, p.creator.Key, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2047, err := rsa.GenerateKey(rand.Reader, 2047)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		key  crypto.Signer
		alg  asn1.ObjectIdentifier
		want string
	}{
		{"RSA 1024", rsa1024, oidSHA256WithRSA, "bit minimum"},
		{"RSA 2047", rsa2047, oidSHA256WithRSA, "bit minimum"},
		{"ECDSA P-224", p224, oidECDSAWithSHA256, "P-224"},
	} {
		t.Run(c.name, func(t *testing.T) {
			leaf := p.inter.Leaf(testpki.Name("Weak Signer"), testpki.WithSigner(c.key))
			sd, err := Parse(resignWith(t, rsaDER, leaf, c.alg))
			if err == nil {
				err = sd.Signers[0].Verify(descriptor)
			}
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a *cms.Error containing %q", err, c.want)
			}
			if err := CheckPublicKey(c.key.Public()); err == nil {
				t.Fatalf("CheckPublicKey accepts the %s key", c.name)
			}
		})
	}
	t.Run("ok the same re-signing with a P-256 key", func(t *testing.T) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		leaf := p.inter.Leaf(testpki.Name("Good Signer"), testpki.WithSigner(k))
		sd, err := Parse(resignWith(t, rsaDER, leaf, oidECDSAWithSHA256))
		if err != nil {
			t.Fatal(err)
		}
		if err := sd.Signers[0].Verify(descriptor); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSignerFoundByIssuerAndSerial: two embedded certificates with the same
// serial from different issuers; the signer is the one whose issuer the
// SignerInfo names, in either order of embedding.
func TestSignerFoundByIssuerAndSerial(t *testing.T) {
	p := newTestPKI(t)
	a := p.inter.Leaf(testpki.Name("Same Serial A"), testpki.WithSerial(4242))
	b := p.root.Leaf(testpki.Name("Same Serial B"), testpki.WithSerial(4242))
	for _, pair := range [][2]*testpki.Leaf{{a, b}, {b, a}} {
		signer, other := pair[0], pair[1]
		der, err := Sign(descriptor, signer.Cert, signer.Key, SignOptions{Chain: append([]*x509.Certificate{other.Cert}, other.Chain...)})
		if err != nil {
			t.Fatal(err)
		}
		sd, err := Parse(der)
		if err != nil {
			t.Fatal(err)
		}
		if got := sd.Signers[0].Certificate; !got.Equal(signer.Cert) {
			t.Fatalf("signer %q attributed to %q", signer.Cert.Subject, got.Subject)
		}
		if err := sd.Signers[0].Verify(descriptor); err != nil {
			t.Fatal(err)
		}
	}
}

// TestParseCraftedConformance: forms of ContentInfo, SignerInfo and
// algorithm identifiers that Parse refuses, each by its own check.
func TestParseCraftedConformance(t *testing.T) {
	p := newTestPKI(t)
	rsaDER, pssDER, ecDER := signedSamples(t, p)
	integer5 := asn1.RawValue{FullBytes: []byte{0x02, 0x01, 0x05}}
	pss := func(mgf asn1.ObjectIdentifier, salt int) asn1.RawValue {
		mgfParams, _ := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: oidSHA384})
		b, err := asn1.Marshal(pssParams{
			Hash:         pkix.AlgorithmIdentifier{Algorithm: oidSHA384},
			MGF:          pkix.AlgorithmIdentifier{Algorithm: mgf, Parameters: asn1.RawValue{FullBytes: mgfParams}},
			SaltLength:   salt,
			TrailerField: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	cases := []craftedCase{
		{"ok PSS as signed", pssDER, func(*signedDataIn, *signerInfo) {}, ""},
		{"fail encapsulated content type is not id-data", rsaDER, func(sd *signedDataIn, _ *signerInfo) {
			sd.EncapContentInfo.EContentType = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
		}, "is not id-data"},
		{"fail issuerAndSerialNumber with SignerInfo version 3", rsaDER, func(_ *signedDataIn, si *signerInfo) { si.Version = 3 }, "want 1"},
		{"fail subjectKeyIdentifier with SignerInfo version 1", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			si.SID = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: []byte{1, 2, 3, 4}}
			si.Version = 1
		}, "want 3"},
		{"fail empty subjectKeyIdentifier", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			si.SID = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: []byte{}}
			si.Version = 3
		}, "empty subjectKeyIdentifier"},
		{"fail digest algorithm with parameters", rsaDER, func(sd *signedDataIn, si *signerInfo) {
			sd.DigestAlgorithms[0].Parameters = integer5
			si.DigestAlgorithm.Parameters = integer5
		}, "unexpected parameters"},
		{"fail ECDSA signature hash differs from digest", ecDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Algorithm = oidECDSAWithSHA512
		}, "does not match digest algorithm"},
		{"fail ECDSA signature algorithm with parameters", ecDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = asn1.NullRawValue
		}, "unexpected parameters"},
		{"fail RSA PKCS#1 signature algorithm with parameters", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = integer5
		}, "unexpected parameters"},
		{"fail PSS with a mask generation function other than MGF1", pssDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = pss(asn1.ObjectIdentifier{1, 2, 3, 4}, 48)
		}, "MGF1 only"},
		{"fail PSS with a negative salt length (auto-detect)", pssDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = pss(oidMGF1, -1)
		}, "salt length"},
		{"fail PSS with a huge salt length", pssDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = pss(oidMGF1, 4096)
		}, "salt length"},
	}
	runCrafted(t, cases)
	t.Run("fail content type is not id-signedData", func(t *testing.T) {
		var ci contentInfo
		if _, err := asn1.Unmarshal(rsaDER, &ci); err != nil {
			t.Fatal(err)
		}
		ci.ContentType = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3} // envelopedData
		der, err := asn1.Marshal(ci)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(der)
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), "not id-signedData") {
			t.Fatalf("got %v, want a *cms.Error containing %q", err, "not id-signedData")
		}
	})
}

// TestVerifyPSSDeclaredSaltLength: an RSASSA-PSS signature verifies only
// with the salt length its parameters declare (RFC 4055 3.1). The
// signatureAlgorithm is not covered by the signature, so anyone can
// rewrite it: a salt length of 0 is Go's rsa.PSSSaltLengthAuto, which
// would accept any salt, and is refused, as -1 (hash length) is.
func TestVerifyPSSDeclaredSaltLength(t *testing.T) {
	p := newTestPKI(t)
	_, pssDER, _ := signedSamples(t, p) // SHA-384, salt 48
	withSalt := func(salt int) []byte {
		return crafted(t, pssDER, func(_ *signedDataIn, si *signerInfo) {
			mgfParams, _ := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: oidSHA384})
			b, err := asn1.Marshal(pssParams{
				Hash:         pkix.AlgorithmIdentifier{Algorithm: oidSHA384},
				MGF:          pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mgfParams}},
				SaltLength:   salt,
				TrailerField: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			si.SignatureAlgorithm.Parameters = asn1.RawValue{FullBytes: b}
		})
	}
	verify := func(der []byte) error {
		sd, err := Parse(der)
		if err != nil {
			return err
		}
		return sd.Signers[0].Verify(descriptor)
	}
	if err := verify(withSalt(48)); err != nil {
		t.Fatalf("salt 48 as signed: %v", err)
	}
	for _, salt := range []int{0, 32, 20} {
		if err := verify(withSalt(salt)); err == nil {
			t.Errorf("a signature with salt 48 verified under declared salt length %d", salt)
		}
	}
}
