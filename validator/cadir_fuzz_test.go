package validator

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// FuzzParseCACert: a <hash>.N file of a CA directory never panics the
// trust loader, and what it accepts is one CA certificate (CA:TRUE,
// keyCertSign if it has a key usage, a non-empty subject) filed under its
// own subject hash. The seeds are the hostile directory's
// (TestLoadTrustHostileCADir).
func FuzzParseCACert(f *testing.F) {
	good := testpki.NewRoot(f, "Fuzz CA")
	hash := hashName(f, good.Cert, "")
	pemOf := testpki.CertPEM
	notCA := testpki.NewRoot(f, "Fuzz CA", testpki.WithoutCA())
	noSign := testpki.NewRoot(f, "Fuzz CA", testpki.WithKeyUsage(x509.KeyUsageDigitalSignature))
	empty := testpki.NewRoot(f, "", testpki.WithSubject(pkix.Name{}))
	other := testpki.NewRoot(f, "Other CA")
	for _, seed := range [][]byte{
		pemOf(good.Cert),
		append(pemOf(good.Cert), "trailing text\n"...),
		append(pemOf(good.Cert), "-----BEGIN CERTIFICATE-----\nnot base64 !!\n"...),
		append([]byte("subject= /O=imagetrust test/CN=Fuzz CA\n"), pemOf(good.Cert)...),
		pemOf(good.Cert, other.Cert),
		good.Cert.Raw,
		nil,
		[]byte("   \n"),
		pemOf(notCA.Cert),
		pemOf(noSign.Cert),
		pemOf(empty.Cert),
		pemOf(other.Cert),
		bytes.ReplaceAll(pemOf(good.Cert), []byte("CERTIFICATE"), []byte("TRUSTED CERTIFICATE")),
		// the certificate and X509_CERT_AUX trust settings (a SEQUENCE of
		// one SEQUENCE OF OID), as `openssl x509 -addtrust` writes them
		pem.EncodeToMemory(&pem.Block{Type: "TRUSTED CERTIFICATE", Bytes: append(append([]byte{}, good.Cert.Raw...), 0x30, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02)}),
	} {
		f.Add(seed)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		c, _, err := parseCACert(b, hash, now)
		if err != nil {
			return
		}
		dn, derr := DNFromRaw(c.RawSubject)
		if derr != nil || len(dn) == 0 || !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Fatalf("accepted %q: CA %v, key usage %#x", c.Subject, c.IsCA, int(c.KeyUsage))
		}
		if h, old, _ := subjectHashes(c.RawSubject); h != hash && old != hash {
			t.Fatalf("accepted %q, whose hashes are %s and %s, under %s", c.Subject, h, old, hash)
		}
	})
}

// FuzzSubjectHashes: hashing any name never panics, and a name that
// encoding/asn1 reads as a Name hashes.
func FuzzSubjectHashes(f *testing.F) {
	for _, n := range []pkix.Name{{}, testpki.Name("Fuzz CA"), {ExtraNames: []pkix.AttributeTypeAndValue{{Type: []int{2, 5, 4, 3}, Value: asn1BMP("É Z")}}}} {
		raw, err := asn1MarshalName(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, old, err := subjectHashes(raw)
		if err == nil && (len(h) != 8 || len(old) != 8) {
			t.Fatalf("hashes %q %q", h, old)
		}
	})
}
