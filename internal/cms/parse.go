package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Limits on untrusted input.
const (
	// MaxInputSize is the largest DER or PEM input Parse accepts.
	MaxInputSize = 1 << 20
	// MaxSigners is the largest number of SignerInfos Parse accepts.
	MaxSigners = 16
	// MaxCertificates is the largest number of embedded certificates Parse accepts.
	MaxCertificates = 64
	// maxAttributes bounds the signed attributes of one SignerInfo.
	maxAttributes = 64
)

var errTooMany = errors.New("too many elements")

// SignedData is a parsed detached CMS SignedData.
type SignedData struct {
	// Certificates holds every embedded certificate, in encoding order.
	Certificates []*x509.Certificate
	// Signers holds one entry per SignerInfo, in encoding order (DER order,
	// not signing order).
	Signers []Signer
	// Raw is the DER of the whole ContentInfo.
	Raw []byte

	version    int
	digestAlg  [][]byte // DER of each digestAlgorithms entry
	digestOIDs []asn1.ObjectIdentifier
	rawCerts   [][]byte // DER of each certificate
	rawCRLs    []byte   // the whole [1] crls field, or nil
}

// Signer is one SignerInfo of a SignedData.
type Signer struct {
	// Certificate is the embedded certificate the SignerInfo's sid names
	// (issuerAndSerialNumber or subjectKeyIdentifier).
	Certificate *x509.Certificate
	// Hash is the digest algorithm.
	Hash crypto.Hash
	// SignatureAlgorithm is the scheme and hash, e.g. x509.SHA256WithRSA,
	// x509.SHA256WithRSAPSS, x509.ECDSAWithSHA384.
	SignatureAlgorithm x509.SignatureAlgorithm
	// SigningTime is the signingTime signed attribute, zero if absent.
	SigningTime time.Time
	// Raw is the DER of the SignerInfo.
	Raw []byte

	scheme        sigScheme
	version       int
	signature     []byte
	hasAttrs      bool
	signedAttrs   []byte // the signed attributes re-tagged as SET OF (what is signed)
	messageDigest []byte
	contentType   asn1.ObjectIdentifier
}

// Parse reads a detached SignedData from DER or PEM (labels "CMS" and
// "PKCS7"). It refuses inputs over MaxInputSize, BER indefinite lengths,
// trailing bytes, encapsulated content (unless empty), digest and signature
// algorithms other than SHA-256/384/512 with RSA PKCS#1 v1.5, RSASSA-PSS or
// ECDSA, more than MaxSigners signers, and signers whose certificate is not
// embedded. Every such refusal is a *Error. Parse checks no signature: call
// Signer.Verify.
func Parse(b []byte) (*SignedData, error) {
	if len(b) == 0 {
		return nil, fail("empty input", nil)
	}
	if len(b) > MaxInputSize {
		return nil, fail(fmt.Sprintf("input of %d bytes exceeds the %d byte limit", len(b), MaxInputSize), nil)
	}
	der, err := unPEM(b)
	if err != nil {
		return nil, err
	}
	if len(der) >= 2 && der[1] == 0x80 {
		return nil, fail("BER indefinite-length encoding is not supported (re-encode as DER: openssl cms -cmsout -inform PEM -outform DER)", nil)
	}
	var ci contentInfo
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil {
		return nil, fail("not a DER ContentInfo", err)
	}
	if len(rest) != 0 {
		return nil, fail(fmt.Sprintf("%d trailing bytes after the ContentInfo", len(rest)), nil)
	}
	if len(ci.Extra.FullBytes) != 0 {
		return nil, fail("unexpected extra element in ContentInfo", nil)
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fail("content type "+algName(ci.ContentType)+" is not id-signedData", nil)
	}
	var in signedDataIn
	if err := strictUnmarshal(ci.Content.Bytes, &in, func() []byte { return in.Extra.FullBytes }); err != nil {
		return nil, fail("malformed SignedData", err)
	}
	if len(in.EncapContentInfo.Extra.FullBytes) != 0 {
		return nil, fail("malformed SignedData: unexpected extra element in encapContentInfo", nil)
	}
	sd := &SignedData{Raw: der, version: in.Version}
	if err := sd.readHeader(&in); err != nil {
		return nil, err
	}
	if err := sd.readCertificates(in.Certificates); err != nil {
		return nil, err
	}
	if len(in.CRLs.FullBytes) != 0 {
		sd.rawCRLs = in.CRLs.FullBytes
	}
	if len(in.SignerInfos) == 0 {
		return nil, fail("no SignerInfo", nil)
	}
	if len(in.SignerInfos) > MaxSigners {
		return nil, fail(fmt.Sprintf("%d signers exceed the limit of %d", len(in.SignerInfos), MaxSigners), nil)
	}
	for i, raw := range in.SignerInfos {
		s, err := sd.readSigner(raw.FullBytes)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Reason = fmt.Sprintf("signer %d: %s", i, e.Reason)
			}
			return nil, err
		}
		sd.Signers = append(sd.Signers, *s)
	}
	return sd, nil
}

// unPEM returns b itself if it is not PEM, else the DER inside its one block.
func unPEM(b []byte) ([]byte, error) {
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return b, nil
	}
	block, rest := pem.Decode(trimmed)
	if block == nil {
		return nil, fail("malformed PEM", nil)
	}
	if block.Type != "CMS" && block.Type != "PKCS7" {
		return nil, fail(fmt.Sprintf("PEM label %q is not CMS or PKCS7", block.Type), nil)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fail("data after the PEM block", nil)
	}
	if len(block.Bytes) == 0 {
		return nil, fail("empty PEM block", nil)
	}
	return block.Bytes, nil
}

func (sd *SignedData) readHeader(in *signedDataIn) error {
	switch in.Version {
	case 1, 3:
	default:
		return fail(fmt.Sprintf("SignedData version %d is not supported (1 or 3)", in.Version), nil)
	}
	if len(in.DigestAlgorithms) > MaxSigners {
		return fail("too many digest algorithms", nil)
	}
	for _, ai := range in.DigestAlgorithms {
		if _, err := parseDigestAlgorithm(ai); err != nil {
			return fail("refused digest algorithm", err)
		}
		der, err := asn1.Marshal(ai)
		if err != nil {
			return fail("malformed digest algorithm", err)
		}
		sd.digestAlg = append(sd.digestAlg, der)
		sd.digestOIDs = append(sd.digestOIDs, ai.Algorithm)
	}
	ec := in.EncapContentInfo
	if !ec.EContentType.Equal(oidData) {
		return fail("encapsulated content type "+algName(ec.EContentType)+" is not id-data", nil)
	}
	if len(ec.EContent.FullBytes) != 0 {
		// encoding/asn1 hands over the explicit [0] wrapper itself: an empty
		// eContent is exactly [0] { OCTET STRING (0 bytes) }.
		if !bytes.Equal(ec.EContent.Bytes, []byte{asn1.TagOctetString, 0}) {
			return fail("encapsulated content is present: the signature must be detached", nil)
		}
	}
	return nil
}

func (sd *SignedData) readCertificates(field asn1.RawValue) error {
	if len(field.FullBytes) == 0 {
		return nil
	}
	if !field.IsCompound {
		return fail("malformed certificates field", nil)
	}
	elems, err := splitElements(field.Bytes, MaxCertificates)
	if errors.Is(err, errTooMany) {
		return fail(fmt.Sprintf("more than %d certificates", MaxCertificates), nil)
	}
	if err != nil {
		return fail("malformed certificates field", err)
	}
	for i, e := range elems {
		if e.Class != asn1.ClassUniversal || e.Tag != asn1.TagSequence {
			return fail(fmt.Sprintf("certificate %d: only X.509 certificates are supported", i), nil)
		}
		c, err := x509.ParseCertificate(e.FullBytes)
		if err != nil {
			return fail(fmt.Sprintf("certificate %d", i), err)
		}
		sd.Certificates = append(sd.Certificates, c)
		sd.rawCerts = append(sd.rawCerts, e.FullBytes)
	}
	return nil
}

func (sd *SignedData) readSigner(raw []byte) (*Signer, error) {
	var si signerInfo
	if err := strictUnmarshal(raw, &si, func() []byte { return si.Extra.FullBytes }); err != nil {
		return nil, fail("malformed SignerInfo", err)
	}
	s := &Signer{Raw: raw, version: si.Version, signature: si.Signature}
	var err error
	if s.Certificate, err = sd.findSigner(si.Version, si.SID); err != nil {
		return nil, err
	}
	if s.Hash, err = parseDigestAlgorithm(si.DigestAlgorithm); err != nil {
		return nil, fail("refused digest algorithm", err)
	}
	if s.scheme, err = parseSignatureAlgorithm(si.SignatureAlgorithm, s.Hash, s.Certificate.PublicKey); err != nil {
		return nil, fail("refused signature algorithm", err)
	}
	s.SignatureAlgorithm = s.scheme.x509Alg
	if len(si.Signature) == 0 {
		return nil, fail("empty signature", nil)
	}
	if len(si.SignedAttrs.FullBytes) != 0 {
		if err := s.readSignedAttrs(si.SignedAttrs); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// findSigner returns the embedded certificate the sid names.
func (sd *SignedData) findSigner(version int, sid asn1.RawValue) (*x509.Certificate, error) {
	switch {
	case sid.Class == asn1.ClassUniversal && sid.Tag == asn1.TagSequence && sid.IsCompound:
		if version != 1 {
			return nil, fail(fmt.Sprintf("SignerInfo version %d with issuerAndSerialNumber (want 1)", version), nil)
		}
		var ias issuerAndSerial
		if err := strictUnmarshal(sid.FullBytes, &ias, func() []byte { return ias.Extra.FullBytes }); err != nil {
			return nil, fail("malformed issuerAndSerialNumber", err)
		}
		for _, c := range sd.Certificates {
			if bytes.Equal(c.RawIssuer, ias.Issuer.FullBytes) && c.SerialNumber.Cmp(ias.Serial) == 0 {
				return c, nil
			}
		}
		return nil, fail(fmt.Sprintf("signer certificate (serial %x) is not embedded", ias.Serial), nil)
	case sid.Class == asn1.ClassContextSpecific && sid.Tag == 0 && !sid.IsCompound:
		if version != 3 {
			return nil, fail(fmt.Sprintf("SignerInfo version %d with subjectKeyIdentifier (want 3)", version), nil)
		}
		if len(sid.Bytes) == 0 {
			return nil, fail("empty subjectKeyIdentifier", nil)
		}
		for _, c := range sd.Certificates {
			if bytes.Equal(c.SubjectKeyId, sid.Bytes) {
				return c, nil
			}
		}
		return nil, fail(fmt.Sprintf("signer certificate (subject key id %x) is not embedded", sid.Bytes), nil)
	}
	return nil, fail("malformed SignerIdentifier", nil)
}

// readSignedAttrs reads contentType, messageDigest and signingTime, and keeps
// the attributes' encoding re-tagged as SET OF, which is what was signed
// (RFC 5652 section 5.4).
func (s *Signer) readSignedAttrs(field asn1.RawValue) error {
	if !field.IsCompound || len(field.Bytes) == 0 {
		return fail("malformed or empty signed attributes", nil)
	}
	elems, err := splitElements(field.Bytes, maxAttributes)
	if err != nil {
		return fail("malformed signed attributes", err)
	}
	seen := map[string]bool{}
	for _, e := range elems {
		var a attribute
		if err := strictUnmarshal(e.FullBytes, &a, func() []byte { return a.Extra.FullBytes }); err != nil {
			return fail("malformed signed attribute", err)
		}
		key := a.Type.String()
		if seen[key] {
			return fail("signed attribute "+key+" appears twice", nil)
		}
		seen[key] = true
		var target any
		switch {
		case a.Type.Equal(oidContentType):
			target = &s.contentType
		case a.Type.Equal(oidMessageDigest):
			target = &s.messageDigest
		case a.Type.Equal(oidSigningTime):
			target = &s.SigningTime
		default:
			continue
		}
		if err := singleValue(a.Values.Bytes, target); err != nil {
			return fail("signed attribute "+key, err)
		}
	}
	if !seen[oidContentType.String()] {
		return fail("signed attributes lack contentType", nil)
	}
	if !seen[oidMessageDigest.String()] {
		return fail("signed attributes lack messageDigest", nil)
	}
	s.hasAttrs = true
	s.signedAttrs = append([]byte{0x31}, field.FullBytes[1:]...)
	return nil
}

// singleValue decodes the only value of an attribute's SET.
func singleValue(set []byte, target any) error {
	rest, err := asn1.Unmarshal(set, target)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("more than one value")
	}
	return nil
}
