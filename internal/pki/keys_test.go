package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

func TestParsePrivateKeyForms(t *testing.T) {
	ec, err := NewKey(ECDSAP384)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := NewKey(RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := x509.MarshalECPrivateKey(ec.(*ecdsa.PrivateKey))
	pkcs1 := x509.MarshalPKCS1PrivateKey(rk.(*rsa.PrivateKey))
	pkcs8, _ := EncodeKeyPEM(ec)
	cases := map[string][]byte{
		"ok SEC1":   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"ok PKCS#1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs1}),
		"ok PKCS#8": pkcs8,
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePrivateKey(b, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	for name, b := range map[string][]byte{
		"fail empty":                        nil,
		"fail garbage":                      []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"fail encrypted without passphrase": pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePrivateKey(b, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
