package validator

import (
	"encoding/asn1"
	"encoding/pem"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestTrustedCertificatePEM: a "TRUSTED CERTIFICATE" block (OpenSSL's
// `x509 -addtrust`: the certificate, then its X509_CERT_AUX trust
// settings) loads as its certificate; the trust settings are ignored.
func TestTrustedCertificatePEM(t *testing.T) {
	ca := testpki.NewRoot(t, "Trusted Block CA")
	aux, err := asn1.Marshal(struct {
		Trust []asn1.ObjectIdentifier
		Alias string `asn1:"utf8"`
	}{[]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 2}}, "Trusted Block CA"})
	if err != nil {
		t.Fatal(err)
	}
	block := func(rest []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "TRUSTED CERTIFICATE", Bytes: append(append([]byte{}, ca.Cert.Raw...), rest...)})
	}
	for _, c := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"ok certificate and trust settings", block(aux), true},
		{"ok certificate alone", block(nil), true},
		{"fail trailing data after the trust settings", block(append(append([]byte{}, aux...), 0x05, 0x00)), false},
		{"fail trailing data that is no trust settings", block([]byte{0x05, 0x00}), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, _, err := parseCACert(c.b, hashName(t, ca.Cert, ""), time.Now())
			if c.ok != (err == nil) || c.ok && !got.Equal(ca.Cert) {
				t.Errorf("parseCACert: %v", err)
			}
			certs, err := ParseCertificates(c.b)
			if c.ok != (err == nil) || c.ok && (len(certs) != 1 || !certs[0].Equal(ca.Cert)) {
				t.Errorf("ParseCertificates: %d certificates, %v", len(certs), err)
			}
		})
	}
}
