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
	return x509.CreateRevocationList(rand.Reader, rl, ca, key)
}
