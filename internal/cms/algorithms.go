package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

// Object identifiers of content types, attributes and algorithms.
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}

	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	oidRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidMGF1            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidRSASSAPSS       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
)

// algorithmNames names algorithms we refuse, so errors say "MD5" rather than an OID.
var algorithmNames = map[string]string{
	"1.2.840.113549.2.2":        "MD2",
	"1.2.840.113549.2.5":        "MD5",
	"1.3.14.3.2.26":             "SHA-1",
	"2.16.840.1.101.3.4.2.4":    "SHA-224",
	"2.16.840.1.101.3.4.2.5":    "SHA-512/224",
	"2.16.840.1.101.3.4.2.6":    "SHA-512/256",
	"2.16.840.1.101.3.4.2.7":    "SHA3-224",
	"2.16.840.1.101.3.4.2.8":    "SHA3-256",
	"2.16.840.1.101.3.4.2.9":    "SHA3-384",
	"2.16.840.1.101.3.4.2.10":   "SHA3-512",
	"1.2.840.113549.1.1.2":      "md2WithRSAEncryption",
	"1.2.840.113549.1.1.4":      "md5WithRSAEncryption",
	"1.2.840.113549.1.1.5":      "sha1WithRSAEncryption",
	"1.2.840.113549.1.1.14":     "sha224WithRSAEncryption",
	"1.2.840.10045.4.1":         "ecdsa-with-SHA1",
	"1.2.840.10045.4.3.1":       "ecdsa-with-SHA224",
	"1.2.840.10040.4.3":         "dsa-with-sha1",
	"2.16.840.1.101.3.4.3.2":    "dsa-with-sha256",
	"1.3.101.112":               "Ed25519",
	"1.2.840.113549.1.1.10":     "RSASSA-PSS",
	"1.2.840.113549.1.1.1":      "rsaEncryption",
	"1.2.840.10045.2.1":         "id-ecPublicKey",
	"2.16.840.1.101.3.4.2.1":    "SHA-256",
	"2.16.840.1.101.3.4.2.2":    "SHA-384",
	"2.16.840.1.101.3.4.2.3":    "SHA-512",
	"1.2.840.113549.1.7.1":      "id-data",
	"1.2.840.113549.1.9.16.1.4": "id-ct-TSTInfo",
}

func algName(oid asn1.ObjectIdentifier) string {
	if n, ok := algorithmNames[oid.String()]; ok {
		return n + " (" + oid.String() + ")"
	}
	return oid.String()
}

// checkHash refuses every hash but SHA-256, SHA-384 and SHA-512.
func checkHash(h crypto.Hash) error {
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
		return nil
	}
	return fmt.Errorf("hash %v is not allowed (SHA-256, SHA-384 or SHA-512 only)", h)
}

func hashOID(h crypto.Hash) asn1.ObjectIdentifier {
	switch h {
	case crypto.SHA384:
		return oidSHA384
	case crypto.SHA512:
		return oidSHA512
	}
	return oidSHA256
}

// parseDigestAlgorithm maps a DigestAlgorithmIdentifier to an allowed hash.
// Parameters must be absent or NULL (RFC 5754 section 2).
func parseDigestAlgorithm(ai pkix.AlgorithmIdentifier) (crypto.Hash, error) {
	var h crypto.Hash
	switch {
	case ai.Algorithm.Equal(oidSHA256):
		h = crypto.SHA256
	case ai.Algorithm.Equal(oidSHA384):
		h = crypto.SHA384
	case ai.Algorithm.Equal(oidSHA512):
		h = crypto.SHA512
	default:
		return 0, fmt.Errorf("digest algorithm %s is not allowed (SHA-256, SHA-384 or SHA-512 only)", algName(ai.Algorithm))
	}
	if !nullOrAbsent(ai.Parameters) {
		return 0, fmt.Errorf("digest algorithm %s has unexpected parameters", algName(ai.Algorithm))
	}
	return h, nil
}

func nullOrAbsent(p asn1.RawValue) bool {
	if len(p.FullBytes) == 0 {
		return true
	}
	return p.Class == asn1.ClassUniversal && p.Tag == asn1.TagNull && !p.IsCompound && len(p.Bytes) == 0
}

// sigKind is the signature scheme of a SignerInfo.
type sigKind int

const (
	sigRSAPKCS1 sigKind = iota + 1
	sigRSAPSS
	sigECDSA
)

// pssParams is RSASSA-PSS-params (RFC 4055 section 3.1).
type pssParams struct {
	Hash         pkix.AlgorithmIdentifier `asn1:"explicit,tag:0,optional"`
	MGF          pkix.AlgorithmIdentifier `asn1:"explicit,tag:1,optional"`
	SaltLength   int                      `asn1:"explicit,tag:2,optional,default:20"`
	TrailerField int                      `asn1:"explicit,tag:3,optional,default:1"`
	Extra        asn1.RawValue            `asn1:"optional"`
}

// sigScheme is what a SignerInfo's signatureAlgorithm means once checked
// against its digestAlgorithm and the signer's public key.
type sigScheme struct {
	kind    sigKind
	salt    int // RSASSA-PSS salt length
	x509Alg x509.SignatureAlgorithm
}

// parseSignatureAlgorithm checks a SignerInfo's signatureAlgorithm against the
// SignerInfo's digest algorithm h and the certificate's public key.
func parseSignatureAlgorithm(ai pkix.AlgorithmIdentifier, h crypto.Hash, pub crypto.PublicKey) (sigScheme, error) {
	oid := ai.Algorithm
	var s sigScheme
	switch {
	case oid.Equal(oidRSAEncryption):
		s.kind = sigRSAPKCS1
	case oid.Equal(oidSHA256WithRSA), oid.Equal(oidSHA384WithRSA), oid.Equal(oidSHA512WithRSA):
		s.kind = sigRSAPKCS1
		if want := rsaOIDHash(oid); want != h {
			return s, fmt.Errorf("signature algorithm %s does not match digest algorithm %v", algName(oid), h)
		}
	case oid.Equal(oidECPublicKey):
		s.kind = sigECDSA
	case oid.Equal(oidECDSAWithSHA256), oid.Equal(oidECDSAWithSHA384), oid.Equal(oidECDSAWithSHA512):
		s.kind = sigECDSA
		if want := ecdsaOIDHash(oid); want != h {
			return s, fmt.Errorf("signature algorithm %s does not match digest algorithm %v", algName(oid), h)
		}
	case oid.Equal(oidRSASSAPSS):
		s.kind = sigRSAPSS
		salt, err := parsePSSParams(ai.Parameters, h)
		if err != nil {
			return s, err
		}
		s.salt = salt
	default:
		return s, fmt.Errorf("signature algorithm %s is not allowed", algName(oid))
	}
	switch s.kind {
	case sigRSAPKCS1, sigRSAPSS:
		if s.kind == sigRSAPKCS1 && !nullOrAbsent(ai.Parameters) {
			return s, fmt.Errorf("signature algorithm %s has unexpected parameters", algName(oid))
		}
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return s, fmt.Errorf("signature algorithm %s needs an RSA key, the certificate holds %T", algName(oid), pub)
		}
	case sigECDSA:
		if len(ai.Parameters.FullBytes) != 0 {
			return s, fmt.Errorf("signature algorithm %s has unexpected parameters", algName(oid))
		}
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return s, fmt.Errorf("signature algorithm %s needs an ECDSA key, the certificate holds %T", algName(oid), pub)
		}
		if err := checkCurve(k); err != nil {
			return s, err
		}
	}
	s.x509Alg = x509Algorithm(s.kind, h)
	return s, nil
}

func checkCurve(k *ecdsa.PublicKey) error {
	switch k.Curve {
	case elliptic.P256(), elliptic.P384(), elliptic.P521():
		return nil
	}
	return fmt.Errorf("ECDSA curve %s is not allowed (P-256, P-384 or P-521 only)", k.Curve.Params().Name)
}

func rsaOIDHash(oid asn1.ObjectIdentifier) crypto.Hash {
	switch {
	case oid.Equal(oidSHA384WithRSA):
		return crypto.SHA384
	case oid.Equal(oidSHA512WithRSA):
		return crypto.SHA512
	}
	return crypto.SHA256
}

func ecdsaOIDHash(oid asn1.ObjectIdentifier) crypto.Hash {
	switch {
	case oid.Equal(oidECDSAWithSHA384):
		return crypto.SHA384
	case oid.Equal(oidECDSAWithSHA512):
		return crypto.SHA512
	}
	return crypto.SHA256
}

// parsePSSParams checks RSASSA-PSS-params: the hash and the MGF1 hash must both
// be h, the trailer field 1. It returns the salt length.
func parsePSSParams(p asn1.RawValue, h crypto.Hash) (int, error) {
	if len(p.FullBytes) == 0 {
		return 0, errors.New("RSASSA-PSS without parameters (default SHA-1) is not allowed")
	}
	var pp pssParams
	if err := strictUnmarshal(p.FullBytes, &pp, func() []byte { return pp.Extra.FullBytes }); err != nil {
		return 0, fmt.Errorf("RSASSA-PSS parameters: %w", err)
	}
	if len(pp.Hash.Algorithm) == 0 {
		return 0, errors.New("RSASSA-PSS with the default hash SHA-1 is not allowed")
	}
	ph, err := parseDigestAlgorithm(pp.Hash)
	if err != nil {
		return 0, fmt.Errorf("RSASSA-PSS: %w", err)
	}
	if ph != h {
		return 0, fmt.Errorf("RSASSA-PSS hash %v does not match digest algorithm %v", ph, h)
	}
	if len(pp.MGF.Algorithm) == 0 {
		return 0, errors.New("RSASSA-PSS with the default mask generation MGF1-SHA-1 is not allowed")
	}
	if !pp.MGF.Algorithm.Equal(oidMGF1) {
		return 0, fmt.Errorf("RSASSA-PSS mask generation function %s is not allowed (MGF1 only)", algName(pp.MGF.Algorithm))
	}
	var mgfHash pkix.AlgorithmIdentifier
	rest, err := asn1.Unmarshal(pp.MGF.Parameters.FullBytes, &mgfHash)
	if err != nil {
		return 0, fmt.Errorf("RSASSA-PSS MGF1 parameters: %w", err)
	}
	if len(rest) != 0 {
		return 0, errors.New("RSASSA-PSS MGF1 parameters: trailing bytes")
	}
	mh, err := parseDigestAlgorithm(mgfHash)
	if err != nil {
		return 0, fmt.Errorf("RSASSA-PSS MGF1: %w", err)
	}
	if mh != h {
		return 0, fmt.Errorf("RSASSA-PSS MGF1 hash %v does not match digest algorithm %v", mh, h)
	}
	if pp.TrailerField != 1 {
		return 0, fmt.Errorf("RSASSA-PSS trailer field %d is not allowed (1 only)", pp.TrailerField)
	}
	if pp.SaltLength < 0 || pp.SaltLength > 1024 {
		return 0, fmt.Errorf("RSASSA-PSS salt length %d is out of range", pp.SaltLength)
	}
	if pp.SaltLength == 0 {
		// crypto/rsa reads 0 as "any salt length" (PSSSaltLengthAuto), so
		// a signature could not be held to it; nobody signs without salt
		return 0, errors.New("RSASSA-PSS salt length 0 is not supported (sign with a salt: imagetrust uses the digest's length)")
	}
	return pp.SaltLength, nil
}

// x509Algorithm names a scheme and hash as crypto/x509 does.
func x509Algorithm(k sigKind, h crypto.Hash) x509.SignatureAlgorithm {
	table := map[sigKind][3]x509.SignatureAlgorithm{
		sigRSAPKCS1: {x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA},
		sigRSAPSS:   {x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS},
		sigECDSA:    {x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512},
	}
	i := 0
	switch h {
	case crypto.SHA384:
		i = 1
	case crypto.SHA512:
		i = 2
	}
	return table[k][i]
}

// CheckPublicKey says why a certificate's public key is too weak for
// imagetrust, or nil: RSA below MinRSABits, an ECDSA curve other than
// P-256, P-384 or P-521; Ed25519 is accepted. The verifier applies it to
// every CA of a chain, as Verify does to signers.
func CheckPublicKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("RSA key of %d bits is below the %d bit minimum", k.N.BitLen(), MinRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		return checkCurve(k)
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("public key of type %T is not allowed", pub)
}
