package cms

import (
	"crypto"
	"testing"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// descriptor is the content the tests sign: an image descriptor's bytes.
var descriptor = []byte(`{"uuid":"5b0e2c8e-7c1f-4d7e-9a43-0f0c2f6f9e11","vo":"atlas","tag":"el9","uri":"el9.qcow2","size":1024,"sha512":"00","disk_format":"qcow2","container_format":"bare","created":"2026-01-02T03:04:05Z"}` + "\n")

// testPKI is a root, an intermediate and three signers of different key types.
type testPKI struct {
	root, inter *testpki.CA
	creator     *testpki.Leaf // RSA 2048
	approver    *testpki.Leaf // ECDSA P-256
	image       *testpki.Leaf // ECDSA P-384
}

func newTestPKI(tb testing.TB) *testPKI {
	tb.Helper()
	root := testpki.NewRoot(tb, "Test Root")
	inter := root.Intermediate("Test Intermediate")
	return &testPKI{
		root:     root,
		inter:    inter,
		creator:  inter.Leaf(testpki.Name("Creator"), testpki.WithKey(pki.RSA2048)),
		approver: inter.Leaf(testpki.Name("Approver"), testpki.WithKey(pki.ECDSAP256)),
		image:    root.Leaf(testpki.Name("Image"), testpki.WithKey(pki.ECDSAP384)),
	}
}

// bundle3 signs descriptor three times: creator RSA-PSS SHA-512 (with the
// intermediate embedded), approver ECDSA P-256 SHA-256, image ECDSA P-384 SHA-384.
func (p *testPKI) bundle3(tb testing.TB) []byte {
	tb.Helper()
	der, err := Sign(descriptor, p.creator.Cert, p.creator.Key, SignOptions{Hash: crypto.SHA512, PSS: true, Chain: p.creator.Chain})
	if err != nil {
		tb.Fatalf("Sign: %v", err)
	}
	der, err = AddSigner(der, descriptor, p.approver.Cert, p.approver.Key, SignOptions{Chain: p.approver.Chain})
	if err != nil {
		tb.Fatalf("AddSigner approver: %v", err)
	}
	der, err = AddSigner(der, descriptor, p.image.Cert, p.image.Key, SignOptions{Hash: crypto.SHA384})
	if err != nil {
		tb.Fatalf("AddSigner image: %v", err)
	}
	return der
}
