package glancesync

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/imagetrust/imagetrust/validator"
)

// TestVerifyingReaderHoldsBackLastBytes: a consumer sees all the bytes (and
// EOF) only when they verify; otherwise it never receives the last byte.
func TestVerifyingReaderHoldsBackLastBytes(t *testing.T) {
	img := bytes.Repeat([]byte("imagetrust"), 300000)
	sum := sha512.Sum512(img)
	good := hex.EncodeToString(sum[:])
	flipped := append([]byte(nil), img...)
	flipped[len(flipped)-1] ^= 1
	for _, tc := range []struct {
		name   string
		src    io.Reader
		ok     bool
		reason string
	}{
		{"ok exact", bytes.NewReader(img), true, ""},
		{"ok one byte reads", iotest.OneByteReader(bytes.NewReader(img)), true, ""},
		{"fail last byte flipped", bytes.NewReader(flipped), false, validator.ReasonSHA512Mismatch},
		{"fail truncated", bytes.NewReader(img[:len(img)-1]), false, validator.ReasonSizeMismatch},
		{"fail padded", bytes.NewReader(append(append([]byte(nil), img...), 0)), false, validator.ReasonSizeMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vr := newVerifyingReader(tc.src, int64(len(img)), good)
			var got bytes.Buffer
			_, err := io.Copy(&got, vr)
			if tc.ok {
				if err != nil || !bytes.Equal(got.Bytes(), img) || !vr.verified() {
					t.Fatalf("err %v, %d bytes", err, got.Len())
				}
				return
			}
			var vf *validator.VerificationFailure
			if !errors.As(err, &vf) || !vf.Has(tc.reason) {
				t.Fatalf("err %v, want %s", err, tc.reason)
			}
			if got.Len() >= len(img) {
				t.Fatalf("the consumer received %d bytes of %d: the last bytes were not held back", got.Len(), len(img))
			}
		})
	}
}

func TestParseIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"ok minimal", `{"version":1,"bundles":[{"descriptor":"a.json"}]}`, true},
		{"fail version", `{"version":2,"bundles":[]}`, false},
		{"fail unknown key", `{"version":1,"bundles":[],"extra":1}`, false},
		{"fail no descriptor", `{"version":1,"bundles":[{"signature":"a.p7s"}]}`, false},
		{"fail trailing", `{"version":1,"bundles":[]} {}`, false},
		{"fail trailing brace", `{"version":1,"bundles":[]} }`, false},
		{"fail trailing bracket", `{"version":1,"bundles":[]}]`, false},
		{"ok trailing space", "{\"version\":1,\"bundles\":[]}\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseIndex([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestVerifyingReaderStateWhileRead: Go's HTTP transport may still be
// reading a request body (its write loop) when the request has already
// returned with an error, and the sync then asks the stream how far it got
// (streamErr). That read must be synchronised with Read: under -race this
// test, the caller's reads and Read's writes in two goroutines with nothing
// else ordering them, finds unsynchronised field reads (as
// TestFaultyLinkToGlance did in CI).
func TestVerifyingReaderStateWhileRead(t *testing.T) {
	img := bytes.Repeat([]byte("imagetrust"), 400000)
	sum := sha512.Sum512(img)
	vr := newVerifyingReader(iotest.HalfReader(bytes.NewReader(img)), int64(len(img)), hex.EncodeToString(sum[:]))
	done := make(chan error, 1)
	go func() {
		_, err := vr.WriteTo(io.Discard)
		done <- err
	}()
	// the request "returned" while the body is still being read
	for vr.state().n == 0 {
		runtime.Gosched()
	}
	err := streamErr(t.Context(), vr.state(), errors.New("connection reset by peer"))
	if !errors.Is(err, errGlanceBrokeOff) {
		t.Fatalf("mid-stream error %v, want it marked errGlanceBrokeOff", err)
	}
	if err := <-done; err != nil || !vr.verified() || vr.state().n != int64(len(img)) {
		t.Fatalf("stream: %v, verified %v, %d bytes", err, vr.verified(), vr.state().n)
	}
}
