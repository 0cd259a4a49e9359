package testpki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/imagetrust/imagetrust/internal/pki"
)

// CRLWithoutNextUpdate issues a CRL signed by this CA with nextUpdate left
// out (optional in RFC 5280's syntax, required of conforming issuers by
// 5.1.2.5): for tests of how such a CRL is judged. No product code issues
// one, so this lives here and not in internal/pki.
func (ca *CA) CRLWithoutNextUpdate(t pki.CRLTemplate) []byte {
	ca.tb.Helper()
	der, err := withoutNextUpdate(ca.CRL(t), ca.Key)
	if err != nil {
		ca.tb.Fatalf("testpki: %v", err)
	}
	return der
}

// certList is a CertificateList (RFC 5280 5.1) with its parts raw.
type certList struct {
	TBS asn1.RawValue
	Alg asn1.RawValue
	Sig asn1.BitString
}

// withoutNextUpdate re-signs a CRL with nextUpdate left out of its
// tbsCertList (RFC 5280 5.1: version, signature, issuer, thisUpdate,
// nextUpdate OPTIONAL, ...), with the same signature algorithm.
func withoutNextUpdate(der []byte, key crypto.Signer) ([]byte, error) {
	var outer certList
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return nil, err
	}
	var fields []asn1.RawValue
	for rest := outer.TBS.Bytes; len(rest) > 0; {
		var f asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &f); err != nil {
			return nil, err
		}
		fields = append(fields, f)
	}
	// version, signature, issuer, thisUpdate, then nextUpdate: a time
	if len(fields) < 5 || fields[4].Class != asn1.ClassUniversal || (fields[4].Tag != asn1.TagUTCTime && fields[4].Tag != asn1.TagGeneralizedTime) {
		return nil, errors.New("testpki: CRL without the expected nextUpdate")
	}
	var body []byte
	for i, f := range fields {
		if i != 4 {
			body = append(body, f.FullBytes...)
		}
	}
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if err != nil {
		return nil, err
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, err
	}
	var h crypto.Hash
	switch rl.SignatureAlgorithm {
	case x509.SHA256WithRSA, x509.ECDSAWithSHA256:
		h = crypto.SHA256
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512:
		h = crypto.SHA512
	case x509.PureEd25519:
	default:
		return nil, fmt.Errorf("testpki: re-signing a CRL with %s", rl.SignatureAlgorithm)
	}
	msg := tbs
	if h != 0 {
		d := h.New()
		d.Write(tbs)
		msg = d.Sum(nil)
	}
	sig, err := key.Sign(rand.Reader, msg, h)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(certList{asn1.RawValue{FullBytes: tbs}, asn1.RawValue{FullBytes: outer.Alg.FullBytes}, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
}
