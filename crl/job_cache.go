package crl

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/imagetrust/imagetrust/internal/fsutil"
)

// The cache directory holds, per CA and CRL scope, the last accepted CRL
// (<key>.crl, DER) and its state (<key>.json: number, fingerprint, source),
// per CA the issuingDistributionPoint values of its cached CRLs that have one
// (<key>.scopes, hex), plus http.json (ETag/Last-Modified per URL). <key> is
// the hex SHA-256 of the CA's raw subject and public key, followed for a CRL
// with an issuingDistributionPoint by that value (scopeKey). Every file is written
// atomically.

type cacheState struct {
	Number      string `json:"number"`
	Fingerprint string `json:"sha256"`
	Source      string `json:"source"`
	Issuer      string `json:"issuer"`
}

func cacheName(ca string) string {
	s := sha256.Sum256([]byte(ca))
	return hex.EncodeToString(s[:])
}

type diskCache struct{ dir string }

func (d diskCache) crlPath(ca string) string    { return filepath.Join(d.dir, cacheName(ca)+".crl") }
func (d diskCache) statePath(ca string) string  { return filepath.Join(d.dir, cacheName(ca)+".json") }
func (d diskCache) scopesPath(ca string) string { return filepath.Join(d.dir, cacheName(ca)+".scopes") }

// load returns the cached CRL and state of a CA (nil, nil when none).
func (d diskCache) load(ca string) ([]byte, *cacheState, error) {
	if d.dir == "" {
		return nil, nil, nil
	}
	b, err := os.ReadFile(d.statePath(ca))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("crl cache: %w", err)
	}
	var st cacheState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, nil, fmt.Errorf("crl cache %s: %w", d.statePath(ca), err)
	}
	der, err := readFileLimited(d.crlPath(ca))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("crl cache: %w", err)
	}
	return der, &st, nil
}

// store writes the CRL first, then its state: a crash between them leaves a
// newer CRL with an older state, which the next load re-verifies and accepts.
func (d diskCache) store(ca string, c *CRL) error {
	if d.dir == "" {
		return nil
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return fmt.Errorf("crl cache: %w", err)
	}
	if err := fsutil.WriteFileAtomic(d.crlPath(ca), c.DER(), 0o600); err != nil {
		return fmt.Errorf("crl cache: %w", err)
	}
	sum := c.Fingerprint()
	st, _ := json.MarshalIndent(cacheState{Number: c.Header.Number.String(), Fingerprint: hex.EncodeToString(sum[:]),
		Source: c.Source, Issuer: c.Header.Issuer.String()}, "", "  ")
	if err := fsutil.WriteFileAtomic(d.statePath(ca), st, 0o600); err != nil {
		return fmt.Errorf("crl cache: %w", err)
	}
	return nil
}

// scopes returns the issuingDistributionPoint values of the CRLs with one
// cached for a CA (key: caKey), in the order they were first stored.
func (d diskCache) scopes(ca string) []string {
	if d.dir == "" {
		return nil
	}
	b, err := os.ReadFile(d.scopesPath(ca))
	if err != nil {
		return nil
	}
	var hexed []string
	_ = json.Unmarshal(b, &hexed) // a damaged file only loses the scoped baselines
	var out []string
	for _, h := range hexed {
		if v, err := hex.DecodeString(h); err == nil && len(v) > 0 {
			out = append(out, string(v))
		}
	}
	return out
}

// addScope records that a CRL with the issuingDistributionPoint value idp is
// cached for a CA, so that the next run loads it.
func (d diskCache) addScope(ca, idp string) error {
	if d.dir == "" {
		return nil
	}
	have := d.scopes(ca)
	if slices.Contains(have, idp) {
		return nil
	}
	hexed := []string{}
	for _, v := range append(have, idp) {
		hexed = append(hexed, hex.EncodeToString([]byte(v)))
	}
	b, _ := json.MarshalIndent(hexed, "", "  ")
	if err := fsutil.WriteFileAtomic(d.scopesPath(ca), b, 0o600); err != nil {
		return fmt.Errorf("crl cache: %w", err)
	}
	return nil
}

func (d diskCache) loadHTTP() map[string]httpState {
	m := map[string]httpState{}
	if d.dir == "" {
		return m
	}
	if b, err := os.ReadFile(filepath.Join(d.dir, "http.json")); err == nil {
		_ = json.Unmarshal(b, &m) // a damaged file only costs unconditional requests
	}
	return m
}

func (d diskCache) storeHTTP(m map[string]httpState) error {
	if d.dir == "" {
		return nil
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return fmt.Errorf("crl cache: %w", err)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return fsutil.WriteFileAtomic(filepath.Join(d.dir, "http.json"), b, 0o600)
}
