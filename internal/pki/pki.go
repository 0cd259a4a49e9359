// Package pki issues the certificates and CRLs imagetrust needs: Registrar
// image certificates (`imagetrust register`), the demonstration PKI
// (`imagetrust pki init`) and, through internal/testpki, the PKI of the tests.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // RFC 5280 4.2.1.2 method (1) key identifier, not a signature
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// KeyType names a key algorithm and size.
type KeyType string

// Key types pki can generate.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA2048   KeyType = "rsa-2048"
	RSA3072   KeyType = "rsa-3072"
)

// NewKey generates a private key of the given type.
func NewKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case "", ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("unknown key type %q", kt)
}

// Template describes a certificate to issue. Zero fields get sensible defaults.
type Template struct {
	Subject   pkix.Name
	NotBefore time.Time
	NotAfter  time.Time
	IsCA      bool
	// MaxPathLen for CAs; -1 means unlimited.
	MaxPathLen int
	// URIs go into subjectAltName (an image certificate holds urn:uuid:<uuid>).
	URIs []string
	// KeyUsage overrides the default (CAs: certSign|crlSign; leaves: digitalSignature).
	KeyUsage x509.KeyUsage
	// SignatureAlgorithm overrides the issuer's default.
	SignatureAlgorithm x509.SignatureAlgorithm
	// CRLDistributionPoints are URLs placed in the certificate.
	CRLDistributionPoints []string
	// SerialNumber overrides the random serial.
	SerialNumber *big.Int
}

// RandomSerial returns a positive 128-bit random serial number.
func RandomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

// SubjectKeyID computes the RFC 5280 method (1) key identifier of a public key.
func SubjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.PublicKey.Bytes) //nolint:gosec // key identifier only
	return sum[:], nil
}

// Issue signs a certificate for pub. With issuer nil the certificate is
// self-signed by key (a root); otherwise key is the issuer's key.
func Issue(tmpl Template, pub crypto.PublicKey, issuer *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	serial := tmpl.SerialNumber
	if serial == nil {
		var err error
		if serial, err = RandomSerial(); err != nil {
			return nil, err
		}
	}
	nb, na := tmpl.NotBefore, tmpl.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = nb.Add(365 * 24 * time.Hour)
	}
	if !na.After(nb) {
		return nil, errors.New("notAfter must be after notBefore")
	}
	ski, err := SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	c := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               tmpl.Subject,
		NotBefore:             nb.UTC(),
		NotAfter:              na.UTC(),
		BasicConstraintsValid: true,
		IsCA:                  tmpl.IsCA,
		SubjectKeyId:          ski,
		SignatureAlgorithm:    tmpl.SignatureAlgorithm,
		CRLDistributionPoints: tmpl.CRLDistributionPoints,
	}
	if tmpl.IsCA {
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		c.MaxPathLen = tmpl.MaxPathLen
		c.MaxPathLenZero = tmpl.MaxPathLen == 0
		if tmpl.MaxPathLen < 0 {
			c.MaxPathLen = -1
		}
	} else {
		c.KeyUsage = x509.KeyUsageDigitalSignature
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	if tmpl.KeyUsage != 0 {
		c.KeyUsage = tmpl.KeyUsage
	}
	for _, u := range tmpl.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("subjectAltName URI %q: %w", u, err)
		}
		c.URIs = append(c.URIs, pu)
	}
	parent := c
	if issuer != nil {
		parent = issuer
	}
	der, err := x509.CreateCertificate(rand.Reader, c, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate %q: %w", tmpl.Subject.String(), err)
	}
	return x509.ParseCertificate(der)
}

// Revoked is one CRL entry to issue.
type Revoked struct {
	Serial *big.Int
	Time   time.Time
	// Reason is an RFC 5280 CRLReason code (0 unspecified, 1 keyCompromise,
	// 3 affiliationChanged, 4 superseded, 5 cessationOfOperation,
	// 6 certificateHold, 8 removeFromCRL); -1 omits the extension.
	Reason int
}

// CRLTemplate describes a CRL to issue.
type CRLTemplate struct {
	Number int64
	// NumberBig, when set, is the CRL number instead of Number (any size up
	// to RFC 5280's 20 octets).
	NumberBig  *big.Int
	ThisUpdate time.Time
	NextUpdate time.Time
	Entries    []Revoked
	// DeltaOf, when non-zero, marks the CRL as a delta CRL of that base number.
	DeltaOf int64
	// IDP, when set, is the DER value of a critical issuingDistributionPoint
	// extension (a CRL of one scope; IDPOnlyCACerts, IDPOnlyUserCerts).
	IDP []byte
	// NoNextUpdate leaves nextUpdate out (optional in RFC 5280's syntax,
	// required of conforming issuers by 5.1.2.5): tests of how such a CRL
	// is judged.
	NoNextUpdate bool
}

// IDPOnlyUserCerts and IDPOnlyCACerts are issuingDistributionPoint values
// that scope a CRL to end-entity or to CA certificates (RFC 5280 5.2.5).
var (
	IDPOnlyUserCerts = []byte{0x30, 0x03, 0x81, 0x01, 0xff}
	IDPOnlyCACerts   = []byte{0x30, 0x03, 0x82, 0x01, 0xff}
)

// IDPDistributionPoint is an issuingDistributionPoint value that names one
// URI as its distribution point (fullName), for a CRL partitioned by
// distribution point: it speaks only for the certificates of that point.
// uri is short (under 100 bytes: one-byte DER lengths).
func IDPDistributionPoint(uri string) []byte {
	u := append([]byte{0x86, byte(len(uri))}, uri...)
	full := append([]byte{0xa0, byte(len(u))}, u...)
	dp := append([]byte{0xa0, byte(len(full))}, full...)
	return append([]byte{0x30, byte(len(dp))}, dp...)
}

// IssueCRL signs a CRL with the CA's key. It returns DER.
func IssueCRL(t CRLTemplate, ca *x509.Certificate, key crypto.Signer) ([]byte, error) {
	tu, nu := t.ThisUpdate, t.NextUpdate
	if tu.IsZero() {
		tu = time.Now().Add(-time.Minute)
	}
	if nu.IsZero() {
		nu = tu.Add(7 * 24 * time.Hour)
	}
	num := big.NewInt(t.Number)
	if t.NumberBig != nil {
		num = t.NumberBig
	}
	rl := &x509.RevocationList{
		Number:     num,
		ThisUpdate: tu.UTC(),
		NextUpdate: nu.UTC(),
	}
	for _, e := range t.Entries {
		rt := e.Time
		if rt.IsZero() {
			rt = tu
		}
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber:   e.Serial,
			RevocationTime: rt.UTC(),
			ReasonCode:     max(e.Reason, 0),
		})
		if e.Reason < 0 {
			rl.RevokedCertificateEntries[len(rl.RevokedCertificateEntries)-1].ReasonCode = 0
		}
	}
	if t.DeltaOf != 0 {
		v, err := asn1.Marshal(big.NewInt(t.DeltaOf))
		if err != nil {
			return nil, err
		}
		rl.ExtraExtensions = append(rl.ExtraExtensions, pkix.Extension{
			Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: v,
		})
	}
	if t.IDP != nil {
		rl.ExtraExtensions = append(rl.ExtraExtensions, pkix.Extension{
			Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: t.IDP,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, ca, key)
	if err != nil || !t.NoNextUpdate {
		return der, err
	}
	return withoutNextUpdate(der, key)
}

// withoutNextUpdate re-signs a CRL with nextUpdate left out of its
// tbsCertList (RFC 5280 5.1: version, signature, issuer, thisUpdate,
// nextUpdate OPTIONAL, ...), with the same signature algorithm.
func withoutNextUpdate(der []byte, key crypto.Signer) ([]byte, error) {
	var outer struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}
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
		return nil, errors.New("pki: CRL without the expected nextUpdate")
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
		return nil, fmt.Errorf("pki: re-signing a CRL with %s", rl.SignatureAlgorithm)
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
	return asn1.Marshal(struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, asn1.RawValue{FullBytes: outer.Alg.FullBytes}, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
}
