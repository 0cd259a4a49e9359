package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"
)

// SignOptions chooses how Sign and AddSigner sign.
type SignOptions struct {
	// Hash is SHA-256 (the default when zero), SHA-384 or SHA-512; anything
	// else is refused.
	Hash crypto.Hash
	// PSS selects RSASSA-PSS (salt length = hash length, MGF1 with the same
	// hash) instead of PKCS#1 v1.5. RSA keys only.
	PSS bool
	// Chain holds extra certificates (intermediates) to embed.
	Chain []*x509.Certificate
	// SigningTime goes into the signingTime signed attribute; time.Now() when zero.
	SigningTime time.Time
}

// Sign makes a new detached SignedData over content with one SignerInfo
// (issuerAndSerialNumber sid; signed attributes contentType id-data,
// messageDigest and signingTime), embedding cert and opts.Chain. key must
// be a crypto.Signer whose public key is cert's, an *rsa.PublicKey of at least
// MinRSABits bits or an *ecdsa.PublicKey on P-256, P-384 or P-521. It returns DER.
func Sign(content []byte, cert *x509.Certificate, key crypto.Signer, opts SignOptions) ([]byte, error) {
	si, h, err := newSignerInfo(content, cert, key, opts)
	if err != nil {
		return nil, err
	}
	sd := &SignedData{version: 1}
	return sd.encode(si, h, cert, opts.Chain)
}

// AddSigner adds a SignerInfo to an existing detached SignedData (DER or PEM),
// as `openssl cms -resign` does. It first parses p7 and verifies every
// existing signer over content (signatures only, no chains), refuses a
// certificate that already signed, then appends the new SignerInfo, the new
// digest algorithm and the new certificates (no duplicates). Existing
// SignerInfos, certificates and CRLs are copied byte for byte; SET OF values
// are written in DER order. It returns DER.
func AddSigner(p7 []byte, content []byte, cert *x509.Certificate, key crypto.Signer, opts SignOptions) ([]byte, error) {
	sd, err := Parse(p7)
	if err != nil {
		return nil, err
	}
	if cert == nil {
		return nil, errors.New("cms: no certificate")
	}
	for i := range sd.Signers {
		s := &sd.Signers[i]
		if err := s.Verify(content); err != nil {
			return nil, fmt.Errorf("cms: existing signer %q: %w", s.Certificate.Subject, err)
		}
		if s.Certificate.Equal(cert) {
			return nil, fmt.Errorf("cms: %q has already signed", cert.Subject)
		}
	}
	if len(sd.Signers) >= MaxSigners {
		return nil, fmt.Errorf("cms: already %d signers, the limit", len(sd.Signers))
	}
	si, h, err := newSignerInfo(content, cert, key, opts)
	if err != nil {
		return nil, err
	}
	return sd.encode(si, h, cert, opts.Chain)
}

// encode writes sd with the extra SignerInfo si (hash h) and certificates.
func (sd *SignedData) encode(si []byte, h crypto.Hash, cert *x509.Certificate, chain []*x509.Certificate) ([]byte, error) {
	dig, err := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: hashOID(h)})
	if err != nil {
		return nil, err
	}
	digests := sd.digestAlg
	if !slices.ContainsFunc(sd.digestOIDs, hashOID(h).Equal) {
		digests = append(digests, dig)
	}
	certs := sd.rawCerts
	for _, c := range append([]*x509.Certificate{cert}, chain...) {
		if c != nil && !containsBytes(certs, c.Raw) {
			certs = append(certs, c.Raw)
		}
	}
	infos := [][]byte{si}
	for _, s := range sd.Signers {
		infos = append(infos, s.Raw)
	}
	if len(certs) > MaxCertificates {
		return nil, fmt.Errorf("cms: %d certificates exceed the limit of %d", len(certs), MaxCertificates)
	}
	out := signedDataOut{Version: sd.version}
	if out.Version < 1 {
		out.Version = 1
	}
	for _, s := range sd.Signers {
		if s.version == 3 {
			out.Version = 3
		}
	}
	if out.DigestAlgorithms.FullBytes, err = derSetOf(asn1.ClassUniversal, asn1.TagSet, digests); err != nil {
		return nil, err
	}
	if out.EncapContentInfo.FullBytes, err = asn1.Marshal(struct{ T asn1.ObjectIdentifier }{oidData}); err != nil {
		return nil, err
	}
	if out.Certificates.FullBytes, err = derSetOf(asn1.ClassContextSpecific, 0, certs); err != nil {
		return nil, err
	}
	out.CRLs.FullBytes = sd.rawCRLs
	if out.SignerInfos.FullBytes, err = derSetOf(asn1.ClassUniversal, asn1.TagSet, infos); err != nil {
		return nil, err
	}
	body, err := asn1.Marshal(out)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(contentInfo{
		ContentType: oidSignedData,
		Content:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: body},
	})
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

// newSignerInfo signs content and returns the DER SignerInfo and its hash.
func newSignerInfo(content []byte, cert *x509.Certificate, key crypto.Signer, opts SignOptions) ([]byte, crypto.Hash, error) {
	if cert == nil || key == nil {
		return nil, 0, errors.New("cms: certificate and key are required")
	}
	h := opts.Hash
	if h == 0 {
		h = crypto.SHA256
	}
	if err := checkHash(h); err != nil {
		return nil, 0, fmt.Errorf("cms: %w", err)
	}
	pub := key.Public()
	if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(cert.PublicKey) {
		return nil, 0, errors.New("cms: the key does not match the certificate")
	}
	sigAlg, signerOpts, err := signatureAlgorithmFor(pub, h, opts.PSS)
	if err != nil {
		return nil, 0, err
	}
	attrs, err := signedAttributes(content, h, opts.SigningTime)
	if err != nil {
		return nil, 0, err
	}
	sig, err := key.Sign(rand.Reader, hashOf(h, attrs), signerOpts)
	if err != nil {
		return nil, 0, fmt.Errorf("cms: signing: %w", err)
	}
	sid, err := asn1.Marshal(issuerAndSerial{Issuer: asn1.RawValue{FullBytes: cert.RawIssuer}, Serial: cert.SerialNumber})
	if err != nil {
		return nil, 0, err
	}
	attrs[0] = 0xA0 // [0] IMPLICIT SignedAttributes
	si, err := asn1.Marshal(signerInfo{
		Version:            1,
		SID:                asn1.RawValue{FullBytes: sid},
		DigestAlgorithm:    pkix.AlgorithmIdentifier{Algorithm: hashOID(h)},
		SignedAttrs:        asn1.RawValue{FullBytes: attrs},
		SignatureAlgorithm: sigAlg,
		Signature:          sig,
	})
	if err != nil {
		return nil, 0, err
	}
	return si, h, nil
}

// signatureAlgorithmFor picks the signatureAlgorithm identifier and the
// crypto.SignerOpts for a public key.
func signatureAlgorithmFor(pub crypto.PublicKey, h crypto.Hash, pss bool) (pkix.AlgorithmIdentifier, crypto.SignerOpts, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return pkix.AlgorithmIdentifier{}, nil, fmt.Errorf("cms: RSA key of %d bits is below the %d bit minimum", k.N.BitLen(), MinRSABits)
		}
		if pss {
			params, err := marshalPSSParams(h)
			if err != nil {
				return pkix.AlgorithmIdentifier{}, nil, err
			}
			return pkix.AlgorithmIdentifier{Algorithm: oidRSASSAPSS, Parameters: asn1.RawValue{FullBytes: params}},
				&rsa.PSSOptions{SaltLength: h.Size(), Hash: h}, nil
		}
		oid := map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA256: oidSHA256WithRSA, crypto.SHA384: oidSHA384WithRSA, crypto.SHA512: oidSHA512WithRSA}[h]
		return pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue}, h, nil
	case *ecdsa.PublicKey:
		if pss {
			return pkix.AlgorithmIdentifier{}, nil, errors.New("cms: PSS needs an RSA key")
		}
		if err := checkCurve(k); err != nil {
			return pkix.AlgorithmIdentifier{}, nil, fmt.Errorf("cms: %w", err)
		}
		oid := map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA256: oidECDSAWithSHA256, crypto.SHA384: oidECDSAWithSHA384, crypto.SHA512: oidECDSAWithSHA512}[h]
		return pkix.AlgorithmIdentifier{Algorithm: oid}, h, nil
	}
	return pkix.AlgorithmIdentifier{}, nil, fmt.Errorf("cms: unsupported key type %T (RSA or ECDSA only)", pub)
}

// marshalPSSParams encodes RSASSA-PSS-params for hash h, MGF1 with h and a
// salt of h's size.
func marshalPSSParams(h crypto.Hash) ([]byte, error) {
	hashAlg := pkix.AlgorithmIdentifier{Algorithm: hashOID(h), Parameters: asn1.NullRawValue}
	mgfParams, err := asn1.Marshal(hashAlg)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(pssParams{
		Hash:         hashAlg,
		MGF:          pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mgfParams}},
		SaltLength:   h.Size(),
		TrailerField: 1,
	})
}

// signedAttributes returns the DER SET OF the contentType, signingTime and
// messageDigest attributes: the bytes that are signed.
func signedAttributes(content []byte, h crypto.Hash, at time.Time) ([]byte, error) {
	if at.IsZero() {
		at = time.Now()
	}
	at = at.UTC().Truncate(time.Second)
	values := []struct {
		oid asn1.ObjectIdentifier
		v   any
	}{
		{oidContentType, oidData},
		{oidSigningTime, at},
		{oidMessageDigest, hashOf(h, content)},
	}
	var attrs [][]byte
	for _, a := range values {
		v, err := asn1.Marshal(a.v)
		if err != nil {
			return nil, fmt.Errorf("cms: signed attribute %s: %w", a.oid, err)
		}
		der, err := asn1.Marshal(attribute{Type: a.oid, Values: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: v}})
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, der)
	}
	return derSetOf(asn1.ClassUniversal, asn1.TagSet, attrs)
}
