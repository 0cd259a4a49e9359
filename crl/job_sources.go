package crl

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/imagetrust/imagetrust/internal/fsutil"
)

// Source is one CRL location: exactly one of URL, File and Dir. Dir is an
// IGTF CA directory: every <hash>.r0 CRL in it is read, and its <hash>.0
// CA certificates join the job's CAs.
type Source struct {
	URL  string
	File string
	Dir  string
}

// String names the source in reports.
func (s Source) String() string {
	switch {
	case s.URL != "":
		return s.URL
	case s.File != "":
		return s.File
	}
	return s.Dir
}

// fetched is one CRL's bytes from a source (nil when not modified).
type fetched struct {
	name string // URL or file path
	body []byte
	// notModified: HTTP 304, the cached CRL of this URL stands.
	notModified bool
	err         error
}

// httpState is what the job remembers of a URL for conditional requests.
type httpState struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	// CA is the cache name (see cacheName) of the CA whose CRL the URL served last.
	CA string `json:"ca,omitempty"`
}

// readLimited reads r up to MaxSize bytes, refusing more.
func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxSize)
	}
	return b, nil
}

// readFileLimited reads a regular file (following symbolic links) of at
// most MaxSize bytes, without blocking on a FIFO (fsutil.ReadRegular): a
// FIFO named <hash>.r0 in an IGTF directory must not hang the job.
func readFileLimited(path string) ([]byte, error) {
	b, err := fsutil.ReadRegular(path, MaxSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// fetchURL GETs a CRL with If-None-Match/If-Modified-Since from st; a 304
// keeps the cached CRL.
func fetchURL(ctx context.Context, c *retryablehttp.Client, url string, st httpState, conditional bool) (fetched, httpState) {
	f := fetched{name: url}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		f.err = err
		return f, st
	}
	if conditional {
		if st.ETag != "" {
			req.Header.Set("If-None-Match", st.ETag)
		}
		if st.LastModified != "" {
			req.Header.Set("If-Modified-Since", st.LastModified)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		f.err = err
		return f, st
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		if !conditional {
			f.err = errors.New("HTTP 304 to an unconditional request")
			return f, st
		}
		f.notModified = true
		return f, st
	case http.StatusOK:
	default:
		f.err = fmt.Errorf("HTTP %d", resp.StatusCode)
		return f, st
	}
	f.body, f.err = readLimited(resp.Body)
	if f.err == nil {
		st = httpState{ETag: resp.Header.Get("ETag"), LastModified: lastModified(resp.Header)}
	}
	return f, st
}

// lastModified is an answer's Last-Modified, or "" unless it is at least a
// second before the answer's Date. HTTP dates have whole seconds: a CRL
// replaced within the second it was served (a revocation published right
// after a scheduled CRL) keeps the Last-Modified of the one served, and an
// If-Modified-Since with it would be answered 304 run after run, the
// revocation unseen until the CRL changed once more.
func lastModified(h http.Header) string {
	lm := h.Get("Last-Modified")
	t, err1 := http.ParseTime(lm)
	d, err2 := http.ParseTime(h.Get("Date"))
	if err1 != nil || err2 != nil || d.Sub(t) < time.Second {
		return ""
	}
	return lm
}

// igtfCRLs lists the <hash>.rN CRL files of an IGTF directory, sorted.
func igtfCRLs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if i := strings.LastIndexByte(n, '.'); i > 0 && len(n) > i+2 && n[i+1] == 'r' && isDigits(n[i+2:]) && !e.IsDir() {
			out = append(out, filepath.Join(dir, n))
		}
	}
	sort.Strings(out)
	return out, nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// LoadCAs reads CA certificates: PEM bundles from files, and the <hash>.N
// certificates of IGTF directories. Certificates that are not CAs are
// skipped. A file of a directory that cannot be read (a dangling symlink,
// a loop, a FIFO, no permission) or holds a certificate that does not
// parse is skipped too: the CAs are those whose CRLs are accepted, and one
// bad file must not stop the job (the services' trust loader warns of it,
// validator.LoadTrust). A listed file that fails, or a directory that cannot
// be listed, is an error.
func LoadCAs(files, dirs []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	add := func(path string) error {
		b, err := readFileLimited(path)
		if err != nil {
			return fmt.Errorf("CA file: %w", err)
		}
		var cas []*x509.Certificate
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				out = append(out, cas...) // all of the file's, or none
				return nil
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return fmt.Errorf("CA file %s: %w", path, err)
			}
			if c.IsCA {
				cas = append(cas, c)
			}
		}
	}
	for _, f := range files {
		if err := add(f); err != nil {
			return nil, err
		}
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("CA directory: %w", err)
		}
		for _, e := range ents {
			n := e.Name()
			if i := strings.LastIndexByte(n, '.'); i > 0 && isDigits(n[i+1:]) && !e.IsDir() {
				_ = add(filepath.Join(d, n)) // a bad file is skipped (see above)
			}
		}
	}
	return out, nil
}
