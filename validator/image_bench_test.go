package validator

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// benchImage writes a 1 GiB file once per benchmark run and returns its
// path and sha512.
func benchImage(b *testing.B, size int64) (string, string) {
	b.Helper()
	p := filepath.Join(b.TempDir(), "image.raw")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	h := sha512.New()
	w := io.MultiWriter(f, h)
	for n := int64(0); n < size; n += int64(len(block)) {
		block[0]++ // no two blocks alike
		if _, err := w.Write(block); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

// BenchmarkCheckImage1GiB hashes a 1 GiB image the way verify does and, in
// the same run, times `sha512sum` on the same (page-cached) file. The metric
// x-sha512sum is our throughput over sha512sum's (goal: at least 0.9).
func BenchmarkCheckImage1GiB(b *testing.B) {
	const size = 1 << 30
	p, sum := benchImage(b, size)
	sha512sum, err := exec.LookPath("sha512sum")
	if err != nil {
		b.Skip("sha512sum not installed")
	}
	// warm the page cache for both
	if err := exec.Command(sha512sum, p).Run(); err != nil {
		b.Fatal(err)
	}
	var ours, theirs time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := CheckImageBytes(f, size, sum); err != nil {
			b.Fatal(err)
		}
		_ = f.Close()
		ours += time.Since(start)

		b.StopTimer()
		start = time.Now()
		if err := exec.Command(sha512sum, p).Run(); err != nil {
			b.Fatal(err)
		}
		theirs += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "x-sha512sum")
	b.ReportMetric(float64(size)*float64(b.N)/theirs.Seconds()/1e6, "sha512sum-MB/s")
}
