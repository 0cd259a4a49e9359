package validator

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"
)

// hashBufSize is the read size of the streaming hash: large enough that the
// system call cost vanishes beside SHA-512, small enough for constant memory.
const hashBufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, hashBufSize); return &b }}

// ImageHasher hashes image bytes as they stream past, counting them. It is an
// io.Writer, so one pass can feed it and an upload at once (io.MultiWriter or
// io.TeeReader).
type ImageHasher struct {
	h hash.Hash
	n int64
}

// NewImageHasher returns a hasher for SHA-512.
func NewImageHasher() *ImageHasher { return &ImageHasher{h: sha512.New()} }

// Write implements io.Writer.
func (h *ImageHasher) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.h.Write(p)
}

// Size returns the bytes hashed so far.
func (h *ImageHasher) Size() int64 { return h.n }

// Sum returns the hex SHA-512 so far.
func (h *ImageHasher) Sum() string { return hex.EncodeToString(h.h.Sum(nil)) }

// Check compares what was hashed with the descriptor's size and sha512. It
// returns a *VerificationFailure on mismatch.
func (h *ImageHasher) Check(size int64, sha512hex string) error {
	if h.n != size {
		return NewVerificationFailure(ReasonSizeMismatch, fmt.Errorf("image is %d bytes, descriptor says %d", h.n, size))
	}
	want, err := hex.DecodeString(sha512hex)
	if err != nil || !bytes.Equal(h.h.Sum(nil), want) {
		return NewVerificationFailure(ReasonSHA512Mismatch, fmt.Errorf("image sha512 %s does not match the descriptor's", h.Sum()[:16]+"…"))
	}
	return nil
}

// CheckImageBytes reads r once, in constant memory, and checks its size and
// sha512. It stops reading one byte past size, so a padded or endless stream
// fails fast. Read errors are returned wrapped (not as VerificationFailure).
func CheckImageBytes(r io.Reader, size int64, sha512hex string) error {
	h := NewImageHasher()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if _, err := io.CopyBuffer(h, io.LimitReader(r, size+1), *bp); err != nil {
		return fmt.Errorf("read image: %w", err)
	}
	return h.Check(size, sha512hex)
}
