package cms

import (
	"bytes"
	"crypto"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// Run the fuzz targets one at a time, e.g.
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 20s -fuzzminimizetime 1s ./internal/cms/
//
// -fuzzminimizetime matters for short runs: by default each input that adds
// coverage is minimized for up to 60s, and the run shows 0 execs meanwhile.

// fuzzSeeds returns a valid three-signer ECDSA bundle made now, and the
// seed and hostile corpus files. It generates no RSA key: under the fuzzer's
// coverage instrumentation that takes most of a short fuzzing run. RSA
// PKCS#1 v1.5 and PSS bundles come from testdata/seed (see TestWriteSeeds).
func fuzzSeeds(f *testing.F) (valid []byte, seeds [][]byte) {
	f.Helper()
	root := testpki.NewRoot(f, "Fuzz Root")
	var err error
	for i, kt := range []pki.KeyType{pki.ECDSAP256, pki.ECDSAP384, pki.ECDSAP256} {
		l := root.Leaf(testpki.Name(fmt.Sprintf("Signer %d", i)), testpki.WithKey(kt))
		opts := SignOptions{Hash: []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}[i]}
		if i == 0 {
			valid, err = Sign(descriptor, l.Cert, l.Key, opts)
		} else {
			valid, err = AddSigner(valid, descriptor, l.Cert, l.Key, opts)
		}
		if err != nil {
			f.Fatal(err)
		}
	}
	seeds = append(seeds, valid, pem.EncodeToMemory(&pem.Block{Type: "CMS", Bytes: valid}))
	files, err := filepath.Glob(filepath.Join("testdata", "hostile", "*"))
	if err != nil {
		f.Fatal(err)
	}
	more, err := filepath.Glob(filepath.Join("testdata", "seed", "*.p7s"))
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, more...)
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return valid, seeds
}

func FuzzParse(f *testing.F) {
	_, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := Parse(b)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("Parse error is a %T, not a *cms.Error: %v", err, err)
			}
			return
		}
		if n := len(sd.Signers); n < 1 || n > MaxSigners {
			t.Fatalf("%d signers accepted", n)
		}
		for i := range sd.Signers {
			s := &sd.Signers[i]
			if s.Certificate == nil {
				t.Fatal("signer without certificate")
			}
			if err := checkHash(s.Hash); err != nil {
				t.Fatalf("signer with refused hash: %v", err)
			}
			_ = s.Verify(descriptor)
		}
	})
}

func FuzzVerify(f *testing.F) {
	valid, seeds := fuzzSeeds(f)
	f.Add(valid, descriptor)
	f.Add(valid, []byte{})
	f.Add(valid, bytes.ToUpper(descriptor))
	for _, s := range seeds[1:] {
		f.Add(s, descriptor)
	}
	// The seed files sign seedContent, not descriptor.
	for _, s := range seeds[2:] {
		f.Add(s, seedContent)
	}
	f.Fuzz(func(t *testing.T, p7, content []byte) {
		sd, err := Parse(p7)
		if err != nil {
			return
		}
		for i := range sd.Signers {
			err := sd.Signers[i].Verify(content)
			if err == nil && bytes.Equal(p7, valid) && !bytes.Equal(content, descriptor) {
				t.Fatalf("signer %d verifies over other content %q", i, content)
			}
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("Verify error is a %T, not a *cms.Error: %v", err, err)
				}
			}
		}
	})
}

// seedContent is what the bundles in testdata/seed sign.
var seedContent = []byte("{\"uuid\":\"seed\"}\n")

// TestWriteSeeds rewrites testdata/seed when CMS_WRITE_SEEDS=1, and otherwise
// checks that the committed seeds still parse and verify. The seeds hold
// certificates and signatures only, never a key.
func TestWriteSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "seed")
	if os.Getenv("CMS_WRITE_SEEDS") == "1" {
		p := newTestPKI(t)
		pss, err := Sign(seedContent, p.creator.Cert, p.creator.Key, SignOptions{Hash: crypto.SHA384, PSS: true, Chain: p.creator.Chain})
		if err != nil {
			t.Fatal(err)
		}
		v15, err := Sign(seedContent, p.creator.Cert, p.creator.Key, SignOptions{Hash: crypto.SHA512})
		if err != nil {
			t.Fatal(err)
		}
		v15, err = AddSigner(v15, seedContent, p.image.Cert, p.image.Key, SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		testpki.WriteFile(t, dir, "rsa-pss-sha384.p7s", pss)
		testpki.WriteFile(t, dir, "rsa-v15-sha512-ecdsa-p384.p7s", v15)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.p7s"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seeds in %s (run with CMS_WRITE_SEEDS=1): %v", dir, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sd, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, s := range sd.Signers {
			if err := s.Verify(seedContent); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}
