package cms

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"testing"
)

// BenchmarkParseVerify3 parses a three-signer bundle (RSA-PSS 2048 SHA-512,
// ECDSA P-256 SHA-256, ECDSA P-384 SHA-384) and verifies every signer.
// Compare with BenchmarkBaselineSignatures3, the bare public-key operations
// of the same three signatures, run in the same invocation:
//
//	go test -run '^$' -bench 'ParseVerify3|BaselineSignatures3' ./internal/cms/
func BenchmarkParseVerify3(b *testing.B) {
	der := newTestPKI(b).bundle3(b)
	b.ReportAllocs()
	for b.Loop() {
		sd, err := Parse(der)
		if err != nil {
			b.Fatal(err)
		}
		for i := range sd.Signers {
			if err := sd.Signers[i].Verify(descriptor); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkBaselineSignatures3 is the floor for BenchmarkParseVerify3: the
// three signature verifications alone over precomputed digests.
func BenchmarkBaselineSignatures3(b *testing.B) {
	der := newTestPKI(b).bundle3(b)
	sd, err := Parse(der)
	if err != nil {
		b.Fatal(err)
	}
	type op struct {
		s      *Signer
		digest []byte
	}
	var ops []op
	for i := range sd.Signers {
		s := &sd.Signers[i]
		ops = append(ops, op{s, hashOf(s.Hash, s.signedAttrs)})
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, o := range ops {
			var ok bool
			switch k := o.s.Certificate.PublicKey.(type) {
			case *rsa.PublicKey:
				ok = rsa.VerifyPSS(k, o.s.Hash, o.digest, o.s.signature, &rsa.PSSOptions{SaltLength: o.s.scheme.salt, Hash: o.s.Hash}) == nil
			case *ecdsa.PublicKey:
				ok = ecdsa.VerifyASN1(k, o.digest, o.s.signature)
			}
			if !ok {
				b.Fatal("baseline verification failed")
			}
		}
	}
}
