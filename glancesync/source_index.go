package glancesync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// IndexVersion is the only version of the index document (docs/formats-index.md).
const IndexVersion = 1

// Index is the JSON document an HTTPS source serves:
//
//	{"version":1,"bundles":[{"descriptor":"a/x.json","signature":"a/x.json.p7s"}]}
//
// Relative URLs are resolved against the index URL.
type Index struct {
	Version int           `json:"version"`
	Bundles []IndexBundle `json:"bundles"`
}

// IndexBundle locates one bundle. Signature defaults to Descriptor + ".p7s".
type IndexBundle struct {
	Descriptor string `json:"descriptor"`
	Signature  string `json:"signature,omitempty"`
}

// ParseIndex decodes an index document strictly (unknown keys refused).
func ParseIndex(b []byte) (*Index, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ix Index
	if err := dec.Decode(&ix); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("index: trailing data")
	}
	if ix.Version != IndexVersion {
		return nil, fmt.Errorf("index: version %d not supported (want %d)", ix.Version, IndexVersion)
	}
	for i, e := range ix.Bundles {
		if e.Descriptor == "" {
			return nil, fmt.Errorf("index: bundles[%d]: no descriptor", i)
		}
	}
	return &ix, nil
}

// ErrCredentialsInURL refuses an index URL with user:password@: the URL
// appears in logs, reports and errors.
var ErrCredentialsInURL = errors.New("credentials (user:password@) in an index URL are refused: they would appear in logs and reports")

// IndexSource is an HTTPS index of bundles.
type IndexSource struct {
	URL        string
	AllowedVOs []string
	Fetcher    *Fetcher
	// Limits bound one listing (zero fields: the defaults).
	Limits ListingLimits
}

// Name implements Source: the URL, its password (if any) masked.
func (s *IndexSource) Name() string {
	if u, err := url.Parse(s.URL); err == nil {
		return u.Redacted()
	}
	return s.URL
}

// VOs implements Source.
func (s *IndexSource) VOs() []string { return s.AllowedVOs }

func resolveRef(base *url.URL, ref string) (*url.URL, error) {
	u, err := url.Parse(ref)
	if err != nil {
		// url.Error would repeat ref whole, user information included
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%q does not parse as a URL: %w", maskedRef(ref), err)
	}
	r := base.ResolveReference(u)
	if r.User != nil {
		// the URL would be in logs, reports, errors and the image's
		// imagetrust_uri; refused like credentials in the index URL itself
		return nil, fmt.Errorf("%s: %w", masked(r), ErrCredentialsInURL)
	}
	switch strings.ToLower(r.Scheme) {
	case "https", "http":
		return r, nil
	}
	return nil, fmt.Errorf("%q: only http(s) URLs are allowed from an index", masked(r))
}

// masked is u for logs and errors: any user information (a password, or a
// token passed as the user name, which url.URL.Redacted would keep) replaced
// by "xxxxx".
func masked(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	c.User = url.User("xxxxx")
	return c.String()
}

// maskedRef is an index reference for logs and errors, any user information
// in it masked, whether it parses or not.
func maskedRef(ref string) string {
	if u, err := url.Parse(ref); err == nil {
		if u.User == nil {
			return ref
		}
		return masked(u)
	}
	// unparsable: mask whatever stands where user information would
	if i := strings.Index(ref, "//"); i >= 0 {
		rest := ref[i+2:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			return ref[:i+2] + "xxxxx" + rest[at:]
		}
	}
	return ref
}

// List implements Source.
func (s *IndexSource) List(ctx context.Context) ([]*Bundle, map[string]error, error) {
	base, err := url.Parse(s.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("source: index URL does not parse: %w", err)
	}
	if base.User != nil {
		// they would be in every log line, report and error naming the
		// index, its descriptors and images (internal/config refuses them)
		return nil, nil, fmt.Errorf("source %s: %w", base.Redacted(), ErrCredentialsInURL)
	}
	b, err := s.Fetcher.GetSmall(ctx, s.URL, MaxIndexSize)
	if err != nil {
		return nil, nil, fmt.Errorf("source %s: %w", s.URL, err)
	}
	ix, err := ParseIndex(b)
	if err != nil {
		return nil, nil, fmt.Errorf("source %s: %w", s.URL, err)
	}
	lim := s.Limits.orDefaults()
	if len(ix.Bundles) > lim.Bundles {
		return nil, nil, fmt.Errorf("source %s: %w: the index lists %d bundles, the limit is %d", s.URL, ErrListingTooLarge, len(ix.Bundles), lim.Bundles)
	}
	read := int64(len(b))
	if read > lim.Bytes {
		return nil, nil, fmt.Errorf("source %s: %w: the index alone is %d bytes, the limit is %d", s.URL, ErrListingTooLarge, read, lim.Bytes)
	}
	// each distinct URL is fetched once, however many entries name it
	type doc struct {
		b   []byte
		err error
	}
	docs := map[string]doc{}
	get := func(u string, limit int64) ([]byte, error) {
		if d, ok := docs[u]; ok {
			return d.b, d.err
		}
		b, err := s.Fetcher.GetSmall(ctx, u, limit)
		read += int64(len(b))
		docs[u] = doc{b, err}
		return b, err
	}
	var out []*Bundle
	skipped := map[string]error{}
	listed := map[string]bool{} // descriptor URL + "\n" + signature URL
	for _, e := range ix.Bundles {
		du, err := resolveRef(base, e.Descriptor)
		if err != nil {
			skipped[maskedRef(e.Descriptor)] = err
			continue
		}
		sigRef := e.Signature
		if sigRef == "" {
			sigRef = e.Descriptor + ".p7s"
		}
		su, err := resolveRef(base, sigRef)
		if err != nil {
			skipped[maskedRef(e.Descriptor)] = err
			continue
		}
		if listed[du.String()+"\n"+su.String()] {
			continue // the same bundle named twice
		}
		listed[du.String()+"\n"+su.String()] = true
		desc, err := get(du.String(), MaxDescriptorSize)
		if err == nil {
			var sig []byte
			sig, err = get(su.String(), MaxSignatureSize)
			if err != nil {
				err = fmt.Errorf("signature: %w", err)
			}
			if err == nil {
				out = append(out, &Bundle{Source: s.URL, Location: du.String(), Descriptor: desc, Signature: sig, VOs: s.AllowedVOs, opener: s})
			}
		}
		if read > lim.Bytes {
			return nil, nil, fmt.Errorf("source %s: %w: more than %d bytes of index, descriptors and signatures", s.URL, ErrListingTooLarge, lim.Bytes)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			skipped[du.String()] = err
		}
	}
	return out, skipped, nil
}

func (s *IndexSource) openImage(ctx context.Context, b *Bundle, uri string) (io.ReadCloser, string, error) {
	base, err := url.Parse(b.Location)
	if err != nil {
		return nil, "", err
	}
	u, err := resolveRef(base, uri)
	if err != nil {
		return nil, "", fmt.Errorf("uri: %w", err)
	}
	rc, err := s.Fetcher.OpenURL(ctx, u.String())
	return rc, u.String(), err
}
