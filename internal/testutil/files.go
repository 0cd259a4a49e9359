package testutil

import (
	"crypto/x509"
	"os"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
)

// ReadCRL reads and parses the CRL (PEM or DER) at path, failing the test
// when it can't.
func ReadCRL(t testing.TB, path string) *x509.RevocationList {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := crl.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rl
}
