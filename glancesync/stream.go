package glancesync

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/imagetrust/imagetrust/validator"
)

// verifyingReader streams image bytes to Glance while hashing them, and
// holds back the last bytes until size and sha512 are checked: when the
// source ends short, runs long, or hashes wrong, it returns an error instead
// of the final bytes, so the HTTP request breaks off before Glance has the
// whole image (Glance then returns the image to queued and drops the partial
// data). A complete upload therefore only ever carries verified bytes.
type verifyingReader struct {
	src    io.Reader
	h      *validator.ImageHasher
	size   int64
	sha512 string
	n      int64
	done   bool
	// failure is the verification failure, if the bytes did not match.
	failure error
	// readErr is the error reading the source, if that broke the stream.
	readErr error
	// progress, when set, is told of bytes handed on.
	progress func(int)

	// mu guards shared, the state as Read last left it, for the caller:
	// the fields above belong to the goroutine that calls Read, and Go's
	// HTTP transport may still be reading the body (its write loop) when
	// the request has already returned with an error.
	mu     sync.Mutex
	shared streamState
}

// streamState is what a verifyingReader has done so far.
type streamState struct {
	// n is how many bytes were read from the source.
	n int64
	// done: every byte read and checked.
	done bool
	// failure is the verification failure, if the bytes did not match.
	failure error
	// readErr is the error reading the source, if that broke the stream.
	readErr error
}

// state is the state as Read last left it; safe to call from any
// goroutine, while Read runs too.
func (v *verifyingReader) state() streamState {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.shared
}

// publish copies the Read goroutine's fields to shared.
func (v *verifyingReader) publish() {
	v.mu.Lock()
	v.shared = streamState{n: v.n, done: v.done, failure: v.failure, readErr: v.readErr}
	v.mu.Unlock()
}

func newVerifyingReader(src io.Reader, size int64, sha512hex string) *verifyingReader {
	return &verifyingReader{src: src, h: validator.NewImageHasher(), size: size, sha512: sha512hex}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	defer v.publish()
	if v.failure != nil {
		return 0, v.failure
	}
	if v.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	remaining := v.size - v.n
	if remaining < int64(len(p)) {
		p = p[:remaining]
	}
	k := 0
	var err error
	if len(p) > 0 {
		k, err = v.src.Read(p)
		_, _ = v.h.Write(p[:k])
		v.n += int64(k)
	}
	if v.n == v.size {
		// The last bytes are in p[:k]: check before handing them on.
		var probe [1]byte
		m, perr := io.ReadFull(v.src, probe[:])
		switch {
		case m > 0:
			v.failure = validator.NewVerificationFailure(validator.ReasonSizeMismatch, fmt.Errorf("image is longer than the descriptor's %d bytes", v.size))
			return 0, v.failure
		case perr != nil && !errors.Is(perr, io.EOF):
			v.readErr = fmt.Errorf("read image: %w", perr)
			return 0, v.readErr
		}
		if cerr := v.h.Check(v.size, v.sha512); cerr != nil {
			v.failure = cerr
			return 0, cerr
		}
		v.done = true
		v.report(k)
		return k, nil
	}
	if errors.Is(err, io.EOF) {
		v.failure = validator.NewVerificationFailure(validator.ReasonSizeMismatch, fmt.Errorf("%w: image ended after %d bytes, descriptor says %d", ErrImageShort, v.n, v.size))
		return 0, v.failure
	}
	if err != nil {
		v.readErr = fmt.Errorf("read image: %w", err)
		return 0, v.readErr
	}
	v.report(k)
	return k, nil
}

func (v *verifyingReader) report(k int) {
	if v.progress != nil && k > 0 {
		v.progress(k)
	}
}

// ErrImageShort marks an image whose bytes ended before the descriptor's
// size: still being copied into the source (cp writes the image last), or a
// connection cut. Nothing of it is kept in Glance (the unfinished stream
// never completes), so the sync leaves the image queued and tries again
// rather than deleting it and spending its uuid.
var ErrImageShort = errors.New("image shorter than its descriptor says")

// verified reports whether every byte was read and matched.
func (v *verifyingReader) verified() bool {
	st := v.state()
	return st.done && st.failure == nil
}

// copyBufSize is the chunk size handed to the HTTP client: large enough that
// per-chunk costs vanish beside SHA-512, small enough for constant memory.
const copyBufSize = 1 << 20

// WriteTo lets io.Copy (and so the HTTP client) move 1 MiB at a time.
func (v *verifyingReader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, copyBufSize)
	var total int64
	for {
		n, err := v.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
