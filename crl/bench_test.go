package crl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const benchEntries = 1_000_000

// benchCRL returns a CRL of a million entries and its CA, generated once
// (a few seconds) and cached in the temporary directory across runs.
// Serial numbers are 16 bytes: 8 random bytes then the entry number.
func benchCRL(b *testing.B) (der []byte, ca *x509.Certificate) {
	b.Helper()
	dir := filepath.Join(os.TempDir(), "imagetrust-crl-bench")
	crlPath, caPath := filepath.Join(dir, "1M.crl"), filepath.Join(dir, "ca.der")
	if d, err := os.ReadFile(crlPath); err == nil {
		if c, err := os.ReadFile(caPath); err == nil {
			if ca, err := x509.ParseCertificate(c); err == nil {
				return d, ca
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Bench CA", Organization: []string{"imagetrust test"}},
		NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: []byte{1, 2, 3, 4}}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: t0.AddDate(0, 0, 7)}
	rl.RevokedCertificateEntries = make([]x509.RevocationListEntry, benchEntries)
	for i := range rl.RevokedCertificateEntries {
		rl.RevokedCertificateEntries[i] = x509.RevocationListEntry{SerialNumber: benchSerial(i), RevocationTime: t0.Add(-time.Duration(i) * time.Second), ReasonCode: 1 + i%5}
	}
	der, err = x509.CreateRevocationList(rand.Reader, rl, ca, key)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err == nil {
		_ = os.WriteFile(caPath, caDER, 0o600)
		_ = os.WriteFile(crlPath+".tmp", der, 0o600)
		_ = os.Rename(crlPath+".tmp", crlPath)
	}
	return der, ca
}

// benchSerial is a deterministic 16-byte serial: a fixed pseudo-random
// prefix from i, then i.
func benchSerial(i int) *big.Int {
	var s [16]byte
	binary.BigEndian.PutUint64(s[:8], uint64(i)*0x9E3779B97F4A7C15|1<<62)
	binary.BigEndian.PutUint64(s[8:], uint64(i))
	return new(big.Int).SetBytes(s[:])
}

// BenchmarkIntake1M: one op parses and verifies a CRL of 1,000,000 entries,
// indexes it, and checks 100,000 image records (image, creator and approver
// certificates and an intermediate, 4 lookups each, 1% revoked). It reports
// the ratio of its time to `openssl crl -inform DER -noout` on the same file,
// measured in the same run (goal: x-openssl <= 2).
func BenchmarkIntake1M(b *testing.B) {
	der, ca := benchCRL(b)
	const images = 100_000
	refs := make([][]Ref, images)
	issuer := ca.Subject.String()
	for i := range refs {
		serial := func(k int) *big.Int {
			if i%100 == 0 && k == 0 {
				return benchSerial(i * 7) // in the CRL
			}
			return big.NewInt(int64(i*4 + k + 1)) // not in it
		}
		refs[i] = []Ref{
			{Role: RoleImage, Issuer: issuer, Serial: serial(0), AKI: ca.SubjectKeyId},
			{Role: RoleCreator, Issuer: issuer, Serial: serial(1)},
			{Role: RoleApprover, Issuer: issuer, Serial: serial(2)},
			{Role: RoleCA, Issuer: issuer, Serial: serial(3)},
		}
	}
	opensslNs := timeOpenSSL(b, der)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		l, err := ParseList(der)
		if err != nil {
			b.Fatal(err)
		}
		ix := &Index{}
		if _, err := ix.AddList(l, ca, t0.Add(time.Hour), "bench"); err != nil {
			b.Fatal(err)
		}
		revoked := 0
		for _, r := range refs {
			if ix.Check(r, t0, false) != nil {
				revoked++
			}
		}
		if revoked != images/100 {
			b.Fatalf("%d revoked, want %d", revoked, images/100)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if opensslNs > 0 && b.N > 0 {
		b.ReportMetric(float64(opensslNs), "openssl-ns")
		b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N)/float64(opensslNs), "x-openssl")
	}
}

// timeOpenSSL returns the best of three wall times of `openssl crl -inform
// DER -noout` on der, or 0 (and a log line) when openssl is missing.
func timeOpenSSL(b *testing.B, der []byte) int64 {
	path, err := exec.LookPath("openssl")
	if err != nil {
		b.Log("openssl not found: no x-openssl ratio")
		return 0
	}
	f := filepath.Join(b.TempDir(), "bench.crl")
	if err := os.WriteFile(f, der, 0o600); err != nil {
		b.Fatal(err)
	}
	var best time.Duration
	for range 3 {
		t := time.Now()
		if out, err := exec.Command(path, "crl", "-inform", "DER", "-noout", "-in", f).CombinedOutput(); err != nil {
			b.Fatalf("openssl crl: %v: %s", err, out)
		}
		if d := time.Since(t); best == 0 || d < best {
			best = d
		}
	}
	return best.Nanoseconds()
}
