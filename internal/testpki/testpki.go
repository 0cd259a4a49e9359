// Package testpki builds throw-away PKIs for tests, in code, so that no key or
// certificate is ever committed and none can rot. Every helper fails the test
// on error instead of returning one.
package testpki

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
)

// CA is a certificate authority of a test PKI.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Parent is the issuing CA (nil for a root).
	Parent *CA
	tb     testing.TB
}

// Leaf is an end-entity certificate with its key.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain holds the intermediates between the leaf and its root (not the root).
	Chain []*x509.Certificate
}

// Option changes a certificate before it is issued.
type Option func(*options)

type options struct {
	tmpl    pki.Template
	kt      pki.KeyType
	key     crypto.Signer
	subject *pkix.Name
	notCA   bool
	noAKI   bool
}

// WithKey selects the key type (default ECDSA P-256, fast to generate).
func WithKey(kt pki.KeyType) Option { return func(o *options) { o.kt = kt } }

// WithSigner certifies an existing key rather than a new one (a second
// certificate for one key pair, a key of a type NewKey does not make).
func WithSigner(k crypto.Signer) Option { return func(o *options) { o.key = k } }

// WithValidity sets notBefore and notAfter.
func WithValidity(nb, na time.Time) Option {
	return func(o *options) { o.tmpl.NotBefore, o.tmpl.NotAfter = nb, na }
}

// WithSubject replaces the subject a CA would get from its common name
// (an empty one, one of other attributes).
func WithSubject(n pkix.Name) Option { return func(o *options) { o.subject = &n } }

// WithoutCA makes what NewRoot or Intermediate issues an end-entity
// certificate (basicConstraints CA:FALSE), to test that it is refused as
// a CA.
func WithoutCA() Option { return func(o *options) { o.notCA = true } }

// caSubject is the subject of a CA of common name cn, unless WithSubject.
func (o options) caSubject(cn string) pkix.Name {
	if o.subject != nil {
		return *o.subject
	}
	return Name(cn)
}

// WithSignatureAlgorithm sets the algorithm the issuer signs with.
func WithSignatureAlgorithm(a x509.SignatureAlgorithm) Option {
	return func(o *options) { o.tmpl.SignatureAlgorithm = a }
}

// WithURIs sets subjectAltName URIs.
func WithURIs(u ...string) Option { return func(o *options) { o.tmpl.URIs = u } }

// WithKeyUsage overrides the key usage.
func WithKeyUsage(ku x509.KeyUsage) Option { return func(o *options) { o.tmpl.KeyUsage = ku } }

// WithSerial sets the serial number.
func WithSerial(n int64) Option {
	return func(o *options) { o.tmpl.SerialNumber = big.NewInt(n) }
}

// WithCRLDP sets CRL distribution point URLs.
func WithCRLDP(u ...string) Option {
	return func(o *options) { o.tmpl.CRLDistributionPoints = u }
}

// WithoutAKI issues the certificate without an authorityKeyIdentifier
// (as some CAs did before RFC 5280 required it): x509.CreateCertificate,
// which takes it from the issuer's subjectKeyIdentifier, is given the
// issuer's certificate without one.
func WithoutAKI() Option { return func(o *options) { o.noAKI = true } }

// issuer is c, without its subjectKeyIdentifier under WithoutAKI.
func (o options) issuer(c *x509.Certificate) *x509.Certificate {
	if !o.noAKI {
		return c
	}
	cp := *c
	cp.SubjectKeyId = nil
	return &cp
}

// newKey is the key WithSigner gave, or a new one of the chosen type.
func (o options) newKey(tb testing.TB) crypto.Signer {
	if o.key != nil {
		return o.key
	}
	k, err := pki.NewKey(o.kt)
	if err != nil {
		tb.Fatalf("testpki: %v", err)
	}
	return k
}

func build(opts []Option) options {
	o := options{tmpl: pki.Template{MaxPathLen: -1}}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Name builds a subject with the given common name and organisation "imagetrust test".
func Name(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"imagetrust test"}}
}

// NewRoot makes a self-signed root CA.
func NewRoot(tb testing.TB, cn string, opts ...Option) *CA {
	tb.Helper()
	o := build(opts)
	key := o.newKey(tb)
	o.tmpl.Subject = o.caSubject(cn)
	o.tmpl.IsCA = !o.notCA
	if o.tmpl.NotBefore.IsZero() {
		o.tmpl.NotBefore = time.Now().Add(-10 * 365 * 24 * time.Hour)
		o.tmpl.NotAfter = time.Now().Add(20 * 365 * 24 * time.Hour)
	}
	cert, err := pki.Issue(o.tmpl, key.Public(), nil, key)
	if err != nil {
		tb.Fatalf("testpki: %v", err)
	}
	return &CA{Cert: cert, Key: key, tb: tb}
}

// Intermediate issues a subordinate CA.
func (ca *CA) Intermediate(cn string, opts ...Option) *CA {
	ca.tb.Helper()
	o := build(opts)
	key := o.newKey(ca.tb)
	o.tmpl.Subject = o.caSubject(cn)
	o.tmpl.IsCA = !o.notCA
	if o.tmpl.NotBefore.IsZero() {
		o.tmpl.NotBefore = ca.Cert.NotBefore
		o.tmpl.NotAfter = ca.Cert.NotAfter
	}
	cert, err := pki.Issue(o.tmpl, key.Public(), o.issuer(ca.Cert), ca.Key)
	if err != nil {
		ca.tb.Fatalf("testpki: %v", err)
	}
	return &CA{Cert: cert, Key: key, Parent: ca, tb: ca.tb}
}

// CrossSign issues a certificate for other's name and key signed by ca (a
// cross-certificate): the CA it returns signs with other's key, and chains
// to ca's root.
func (ca *CA) CrossSign(other *CA) *CA {
	ca.tb.Helper()
	c := other.Cert
	cert, err := pki.Issue(pki.Template{Subject: c.Subject, NotBefore: c.NotBefore, NotAfter: c.NotAfter, IsCA: true, MaxPathLen: -1},
		other.Key.Public(), ca.Cert, ca.Key)
	if err != nil {
		ca.tb.Fatalf("testpki: %v", err)
	}
	return &CA{Cert: cert, Key: other.Key, Parent: ca, tb: ca.tb}
}

// chain returns the CA and its parents up to, not including, the root.
func (ca *CA) chain() []*x509.Certificate {
	var out []*x509.Certificate
	for c := ca; c != nil && c.Parent != nil; c = c.Parent {
		out = append(out, c.Cert)
	}
	return out
}

// Leaf issues an end-entity certificate with the given subject.
func (ca *CA) Leaf(subject pkix.Name, opts ...Option) *Leaf {
	ca.tb.Helper()
	o := build(opts)
	key := o.newKey(ca.tb)
	o.tmpl.Subject = subject
	if o.tmpl.NotBefore.IsZero() {
		o.tmpl.NotBefore = time.Now().Add(-365 * 24 * time.Hour)
		o.tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	cert, err := pki.Issue(o.tmpl, key.Public(), o.issuer(ca.Cert), ca.Key)
	if err != nil {
		ca.tb.Fatalf("testpki: %v", err)
	}
	return &Leaf{Cert: cert, Key: key, Chain: ca.chain()}
}

// CRL issues a CRL signed by this CA.
func (ca *CA) CRL(t pki.CRLTemplate) []byte {
	ca.tb.Helper()
	der, err := pki.IssueCRL(t, ca.Cert, ca.Key)
	if err != nil {
		ca.tb.Fatalf("testpki: %v", err)
	}
	return der
}

// Pool returns a pool holding the given certificates.
func Pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// CertPEM encodes certificates as PEM.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a private key as PKCS#8 PEM.
func KeyPEM(tb testing.TB, k crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatalf("testpki: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFile writes b to dir/name and returns the path.
func WriteFile(tb testing.TB, dir, name string, b []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		tb.Fatalf("testpki: %v", err)
	}
	return p
}

// AsLeaf returns a CA as a Leaf (to test that a CA certificate is refused
// where an end-entity one is expected).
func (ca *CA) AsLeaf() *Leaf {
	var chain []*x509.Certificate
	if ca.Parent != nil {
		chain = ca.Parent.chain()
	}
	return &Leaf{Cert: ca.Cert, Key: ca.Key, Chain: chain}
}
