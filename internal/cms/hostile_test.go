package cms

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseHostileFiles(t *testing.T) {
	cases := []struct {
		name, file, want string
	}{
		{"fail empty", "empty.p7s", "empty input"},
		{"fail garbage", "garbage.p7s", "not a DER ContentInfo"},
		{"fail truncated", "truncated.p7s", "not a DER ContentInfo"},
		{"fail streamed BER from openssl -stream", "indefinite.pem", "indefinite-length"},
		{"fail BER header", "berheader.p7s", "indefinite-length"},
		{"fail trailing bytes", "trailing.p7s", "trailing bytes"},
		{"fail PEM label", "wronglabel.pem", "not CMS or PKCS7"},
		{"fail huge length field", "hugelength.p7s", "not a DER ContentInfo"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "hostile", c.file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(b)
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a *cms.Error containing %q", err, c.want)
			}
		})
	}
}

func TestParseEveryTruncationAndSize(t *testing.T) {
	p := newTestPKI(t)
	der := p.bundle3(t)
	for n := 0; n < len(der); n++ {
		if _, err := Parse(der[:n]); err == nil {
			t.Fatalf("a truncation to %d of %d bytes parses", n, len(der))
		}
	}
	huge := make([]byte, MaxInputSize+1)
	copy(huge, der)
	if _, err := Parse(huge); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("huge input: got %v", err)
	}
}

// crafted re-encodes a valid one-signer SignedData after letting mutate
// change its parts, to build inputs no honest signer makes.
func crafted(t *testing.T, der []byte, mutate func(sd *signedDataIn, si *signerInfo)) []byte {
	t.Helper()
	var ci contentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		t.Fatal(err)
	}
	var sd signedDataIn
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatal(err)
	}
	var si signerInfo
	if _, err := asn1.Unmarshal(sd.SignerInfos[0].FullBytes, &si); err != nil {
		t.Fatal(err)
	}
	mutate(&sd, &si)
	siDER, err := asn1.Marshal(si)
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.SignerInfos) > 0 {
		sd.SignerInfos[0] = asn1.RawValue{FullBytes: siDER}
	}
	body, err := asn1.Marshal(sd)
	if err != nil {
		t.Fatal(err)
	}
	ci.Content = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: body}
	out, err := asn1.Marshal(ci)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// setAttrs lets edit replace a SignerInfo's signed attributes (each a DER Attribute).
func setAttrs(t *testing.T, si *signerInfo, edit func(attrs [][]byte) [][]byte) {
	t.Helper()
	elems, err := splitElements(si.SignedAttrs.Bytes, 100)
	if err != nil {
		t.Fatal(err)
	}
	var attrs [][]byte
	for _, e := range elems {
		attrs = append(attrs, e.FullBytes)
	}
	si.SignedAttrs = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: bytes.Join(edit(attrs), nil)}
}

func attrOf(t *testing.T, oid asn1.ObjectIdentifier, v any) []byte {
	t.Helper()
	vb, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := asn1.Marshal(attribute{Type: oid, Values: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: vb}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCrafted(t *testing.T) {
	p := newTestPKI(t)
	rsaDER, pssDER, ecDER := signedSamples(t, p)
	sha1 := asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	md5 := asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
	pss := func(hash, mgfHash asn1.ObjectIdentifier, trailer int) asn1.RawValue {
		mgfParams, _ := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: mgfHash})
		b, err := asn1.Marshal(pssParams{
			Hash:         pkix.AlgorithmIdentifier{Algorithm: hash},
			MGF:          pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mgfParams}},
			SaltLength:   48,
			TrailerField: trailer,
		})
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	cases := []craftedCase{
		{"ok unchanged", rsaDER, func(*signedDataIn, *signerInfo) {}, ""},
		{"fail SHA-1 digest", rsaDER, func(sd *signedDataIn, si *signerInfo) {
			sd.DigestAlgorithms[0].Algorithm = sha1
			si.DigestAlgorithm.Algorithm = sha1
		}, "SHA-1"},
		{"fail MD5 digest in signer only", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			si.DigestAlgorithm.Algorithm = md5
		}, "MD5"},
		{"fail sha1WithRSAEncryption", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Algorithm = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
		}, "sha1WithRSAEncryption"},
		{"fail ecdsa-with-SHA1", ecDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Algorithm = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
		}, "ecdsa-with-SHA1"},
		{"fail signature hash differs from digest", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Algorithm = oidSHA512WithRSA
		}, "does not match digest algorithm"},
		{"fail ECDSA algorithm with RSA key", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm = pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256}
		}, "needs an ECDSA key"},
		{"ok rsaEncryption as signature algorithm", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm = pkix.AlgorithmIdentifier{Algorithm: oidRSAEncryption, Parameters: asn1.NullRawValue}
		}, ""},
		{"fail PSS without parameters", pssDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = asn1.RawValue{}
		}, "default SHA-1"},
		{"fail PSS MGF1 hash mismatch", pssDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = pss(oidSHA384, oidSHA256, 1)
		}, "MGF1 hash"},
		{"fail PSS hash mismatch", pssDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = pss(oidSHA512, oidSHA512, 1)
		}, "RSASSA-PSS hash"},
		{"fail PSS with SHA-1 MGF", pssDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = pss(oidSHA384, sha1, 1)
		}, "SHA-1"},
		{"fail PSS trailer field", pssDER, func(_ *signedDataIn, si *signerInfo) {
			si.SignatureAlgorithm.Parameters = pss(oidSHA384, oidSHA384, 2)
		}, "trailer field"},
		{"fail signer certificate not embedded", rsaDER, func(sd *signedDataIn, _ *signerInfo) {
			sd.Certificates = asn1.RawValue{}
		}, "not embedded"},
		{"fail certificate of another signer", rsaDER, func(sd *signedDataIn, _ *signerInfo) {
			sd.Certificates = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: p.approver.Cert.Raw}
		}, "not embedded"},
		{"fail too many signers", rsaDER, func(sd *signedDataIn, _ *signerInfo) {
			for len(sd.SignerInfos) <= MaxSigners {
				sd.SignerInfos = append(sd.SignerInfos, sd.SignerInfos[0])
			}
		}, "exceed the limit"},
		{"fail no signers", rsaDER, func(sd *signedDataIn, _ *signerInfo) {
			sd.SignerInfos = nil
		}, "no SignerInfo"},
		{"fail encapsulated content", rsaDER, func(sd *signedDataIn, _ *signerInfo) {
			inner, _ := asn1.Marshal(descriptor)
			sd.EncapContentInfo.EContent = asn1.RawValue{FullBytes: mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner})}
		}, "detached"},
		{"ok empty encapsulated content", rsaDER, func(sd *signedDataIn, _ *signerInfo) {
			sd.EncapContentInfo.EContent = asn1.RawValue{FullBytes: []byte{0xa0, 0x02, 0x04, 0x00}}
		}, ""},
		{"fail extra element in SignerInfo", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			si.Extra = asn1.RawValue{FullBytes: []byte{0x05, 0x00}}
		}, "extra element"},
		{"fail extra element in SignedData", rsaDER, func(sd *signedDataIn, _ *signerInfo) {
			sd.Extra = asn1.RawValue{FullBytes: []byte{0x05, 0x00}}
		}, "extra element"},
		{"fail extra element in encapContentInfo", rsaDER, func(sd *signedDataIn, _ *signerInfo) {
			sd.EncapContentInfo.Extra = asn1.RawValue{FullBytes: []byte{0x04, 0x01, 0x41}}
		}, "extra element"},
		{"fail version 2", rsaDER, func(sd *signedDataIn, _ *signerInfo) { sd.Version = 2 }, "version 2"},
		{"fail missing messageDigest", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			setAttrs(t, si, func(a [][]byte) [][]byte {
				return [][]byte{attrOf(t, oidContentType, oidData)}
			})
		}, "lack messageDigest"},
		{"fail missing contentType", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			ct, _ := asn1.Marshal(oidContentType)
			setAttrs(t, si, func(a [][]byte) [][]byte {
				return slices.DeleteFunc(a, func(b []byte) bool { return bytes.Contains(b, ct) })
			})
		}, "lack contentType"},
		{"fail duplicate attribute", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			setAttrs(t, si, func(a [][]byte) [][]byte { return append(a, attrOf(t, oidContentType, oidData)) })
		}, "appears twice"},
		{"fail two messageDigest values", rsaDER, func(_ *signedDataIn, si *signerInfo) {
			one, _ := asn1.Marshal([]byte{1})
			two, _ := asn1.Marshal([]byte{2})
			b, _ := asn1.Marshal(attribute{Type: oidMessageDigest, Values: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: append(one, two...)}})
			setAttrs(t, si, func(a [][]byte) [][]byte { return [][]byte{attrOf(t, oidContentType, oidData), b} })
		}, "more than one value"},
	}
	runCrafted(t, cases)
}

func TestVerifyContentTypeNotData(t *testing.T) {
	p := newTestPKI(t)
	der, err := Sign(descriptor, p.approver.Cert, p.approver.Key, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := crafted(t, der, func(_ *signedDataIn, si *signerInfo) {
		setAttrs(t, si, func(a [][]byte) [][]byte {
			for i := range a {
				if bytes.Contains(a[i], []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03}) {
					a[i] = attrOf(t, oidContentType, oidSignedData)
				}
			}
			return a
		})
	})
	sd, err := Parse(bad)
	if err != nil {
		t.Fatal(err)
	}
	err = sd.Signers[0].Verify(descriptor)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Reason, "not id-data") {
		t.Fatalf("got %v", err)
	}
}

func TestVerifyZeroSigner(t *testing.T) {
	var s Signer
	if err := s.Verify(descriptor); err == nil {
		t.Fatal("a zero Signer verifies")
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// craftedCase is a SignedData made by mutating a valid one (crafted), and
// the refusal Parse must give ("" for none).
type craftedCase struct {
	name   string
	der    []byte
	mutate func(sd *signedDataIn, si *signerInfo)
	want   string // "" means Parse succeeds
}

// runCrafted runs each case as a subtest: Parse accepts it, or refuses it
// with a *cms.Error that says c.want.
func runCrafted(t *testing.T, cases []craftedCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(crafted(t, c.der, c.mutate))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a *cms.Error containing %q", err, c.want)
			}
		})
	}
}

// signedSamples are valid signatures of descriptor to craft from: the
// creator's RSA PKCS#1 v1.5 and RSA-PSS (SHA-384), and the approver's ECDSA.
func signedSamples(t *testing.T, p *testPKI) (rsaDER, pssDER, ecDER []byte) {
	t.Helper()
	var err error
	if rsaDER, err = Sign(descriptor, p.creator.Cert, p.creator.Key, SignOptions{}); err != nil {
		t.Fatal(err)
	}
	if pssDER, err = Sign(descriptor, p.creator.Cert, p.creator.Key, SignOptions{PSS: true, Hash: crypto.SHA384}); err != nil {
		t.Fatal(err)
	}
	if ecDER, err = Sign(descriptor, p.approver.Cert, p.approver.Key, SignOptions{}); err != nil {
		t.Fatal(err)
	}
	return rsaDER, pssDER, ecDER
}
