package glancesync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/imagetrust/imagetrust/validator"
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
	// Listings locate the signed listings of VOs (optional; at most
	// MaxIndexListings).
	Listings []IndexListing `json:"listings,omitempty"`
}

// IndexListing locates one VO's signed listing. Signature defaults to
// Document + ".p7s".
type IndexListing struct {
	Document  string `json:"document"`
	Signature string `json:"signature,omitempty"`
}

// MaxIndexListings bounds the listings an index may name.
const MaxIndexListings = 64

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
	// (not dec.More, which is false before a stray "}" or "]")
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
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
	if len(ix.Listings) > MaxIndexListings {
		return nil, fmt.Errorf("index: %d listings, more than the %d allowed", len(ix.Listings), MaxIndexListings)
	}
	for i, e := range ix.Listings {
		if e.Document == "" {
			return nil, fmt.Errorf("index: listings[%d]: no document", i)
		}
	}
	return &ix, nil
}

// MaxIndexRef is the longest descriptor or signature reference an index
// entry may hold (servers refuse longer request lines anyway); a longer
// one is skipped with ErrRefTooLong.
const MaxIndexRef = 8 << 10

// ErrRefTooLong marks an index entry whose reference is over MaxIndexRef.
var ErrRefTooLong = errors.New("index entry: reference too long")

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
	// Parallel is how many requests for descriptors and signatures a
	// listing makes at once (default DefaultIndexParallel; 1: one after
	// the other). The index itself is fetched first, alone.
	Parallel int
	// AllowPrivate lets the source's requests connect to loopback and
	// private addresses even when URL's host is not on one (see
	// netguard.go); link-local, metadata, unspecified and multicast
	// addresses are refused whatever it says.
	AllowPrivate bool

	guardOnce sync.Once
	guarded   *Fetcher // Fetcher's settings with the source's address policy

	mu sync.Mutex
	// known holds, by URL, the documents (index, descriptors,
	// signatures) the last listing fetched whole or reused, with their
	// validators, for conditional requests (see List)
	known map[string]*remembered
	// listings are the listing references of the last index listed
	// (Listings reads them)
	listings []listingRef
	// knownListings holds, by URL, the listings' documents and
	// signatures the last Listings fetched whole or reused, for
	// conditional requests (see Listings)
	knownListings map[string]*remembered
}

// listingRef is an index's listing entry, resolved (or why it is not).
type listingRef struct {
	doc, sig string
	err      error
}

// DefaultIndexParallel is the default of IndexSource.Parallel.
const DefaultIndexParallel = 8

// Name implements Source: the URL, its password (if any) masked.
func (s *IndexSource) Name() string {
	if u, err := url.Parse(s.URL); err == nil {
		return u.Redacted()
	}
	return s.URL
}

// VOs implements Source.
func (s *IndexSource) VOs() []string { return s.AllowedVOs }

// fetcher is Fetcher with the source's address policy, built on first use.
func (s *IndexSource) fetcher() *Fetcher {
	s.guardOnce.Do(func() { s.guarded = s.Fetcher.forSource(s.URL, s.AllowPrivate) })
	return s.guarded
}

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

// List implements Source. The index is fetched first; then the
// descriptors and signatures it names, Parallel requests at a time, each
// signature once its descriptor has arrived. The result is the one
// fetching them one after the other in index order gives (the bundles in
// index order, the same skips and errors, each distinct URL fetched once,
// ErrListingTooLarge when more than Limits.Bytes are read, ctx.Err() when
// ctx ends first), whatever order the requests complete in. Past the byte
// limit no request starts; those in flight finish, so at most Parallel
// documents (each within its own size limit) are read beyond it.
//
// Conditional requests: List remembers, by URL, each document (index,
// descriptor, signature) it got whole, in a 200 answer within the
// document's size limit, when the answer carried a validator it can rely
// on: a strong ETag, or a Last-Modified at least a second before the
// answer's Date (weak ETags, and a Last-Modified within the second the
// document was served, could hide a change). The next listing asks for it
// with If-None-Match / If-Modified-Since. A 304 whose validators agree with
// the remembered ones (an ETag, if the 304 has one, equal to the one
// remembered; likewise its Last-Modified) reuses the remembered bytes; a
// 304 that does not agree is not trusted and the document is fetched again
// whole, without conditions; a 304 to a request without conditions
// (nothing remembered) is an error, as is any status but 200 and 304.
//
// An error stays an error: a document that cannot be fetched (a failed
// request, an error status, a document over its limit) is never replaced
// by its remembered bytes, which would serve stale bytes as fresh and hide
// a source's outage; the bundle is skipped (or the listing fails, for the
// index) as without memory, so nothing of the source's VOs is retired
// that pass, and the document is forgotten.
//
// What is remembered is bounded: after a listing, exactly the documents it
// fetched whole or reused (at most the index and 2 × Limits.Bundles
// documents, of at most Limits.Bytes together, plus the documents in
// flight when that limit was crossed); a document no longer listed is
// forgotten. A listing that fails on the index itself (unreachable,
// unparsable, over the limits) forgets nothing but the index (when it
// could not be fetched), so that the listing after an outage of the index
// makes conditional requests for the descriptors and signatures. While it
// runs, a listing holds what the last one remembered and what it fetches:
// at most twice that bound. Remembered bytes count towards Limits.Bytes
// exactly as fetched ones, so whether a listing is over its limits does
// not depend on what was remembered.
//
// Nothing is trusted for being remembered: every bundle listed is
// verified again by the pass. The bundles' Descriptor and Signature may
// share their bytes with what is remembered and must not be modified.
//
// A listing that takes longer than Limits.Time fails as over its limits.
func (s *IndexSource) List(ctx context.Context) ([]*Bundle, map[string]error, error) {
	lim := s.Limits.orDefaults()
	return withinTime(ctx, s.Name(), lim, func(ctx context.Context) ([]*Bundle, map[string]error, error) {
		return s.list(ctx, lim)
	})
}

func (s *IndexSource) list(ctx context.Context, lim ListingLimits) ([]*Bundle, map[string]error, error) {
	base, err := url.Parse(s.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("source: index URL does not parse: %w", err)
	}
	if base.User != nil {
		// they would be in every log line, report and error naming the
		// index, its descriptors and images (internal/config refuses them)
		return nil, nil, fmt.Errorf("source %s: %w", base.Redacted(), ErrCredentialsInURL)
	}
	s.mu.Lock()
	known := s.known // read only: a listing replaces it whole
	s.mu.Unlock()
	b, keep, _, err := s.fetcher().getSmallIf(ctx, s.URL, MaxIndexSize, known[s.URL])
	// Past the index's checks the listing replaces what is remembered with
	// what it fetches or reuses; a listing that fails them (the index
	// unreachable, unparsable or over the limits) only remembers the
	// index as just fetched (or forgets it), the descriptors and
	// signatures staying remembered for the listing after the outage.
	indexOnly := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		m := make(map[string]*remembered, len(s.known)+1)
		for u, r := range s.known {
			m[u] = r
		}
		delete(m, s.URL)
		if keep != nil {
			m[s.URL] = keep
		}
		s.known = m
	}
	if err != nil {
		indexOnly()
		return nil, nil, fmt.Errorf("source %s: %w", s.URL, err)
	}
	fresh := map[string]*remembered{}
	if keep != nil {
		fresh[s.URL] = keep
	}
	ix, err := ParseIndex(b)
	if err != nil {
		indexOnly()
		return nil, nil, fmt.Errorf("source %s: %w", s.URL, err)
	}
	var refs []listingRef
	for _, e := range ix.Listings {
		if n := max(len(e.Document), len(e.Signature)); n > MaxIndexRef {
			refs = append(refs, listingRef{doc: capText(maskedRef(e.Document), maxErrText), err: fmt.Errorf("%w: %d bytes, limit %d", ErrRefTooLong, n, MaxIndexRef)})
			continue
		}
		du, err := resolveRef(base, e.Document)
		if err != nil {
			refs = append(refs, listingRef{doc: maskedRef(e.Document), err: err})
			continue
		}
		sigRef := e.Signature
		if sigRef == "" {
			sigRef = e.Document + ".p7s"
		}
		su, err := resolveRef(base, sigRef)
		if err != nil {
			refs = append(refs, listingRef{doc: du.String(), err: err})
			continue
		}
		refs = append(refs, listingRef{doc: du.String(), sig: su.String()})
	}
	s.mu.Lock()
	s.listings = refs
	s.mu.Unlock()
	if len(ix.Bundles) > lim.Bundles {
		indexOnly()
		return nil, nil, fmt.Errorf("source %s: %w: the index lists %d bundles, the limit is %d", s.URL, ErrListingTooLarge, len(ix.Bundles), lim.Bundles)
	}
	// the bytes of every document count, read or reused
	read := int64(len(b))
	if read > lim.Bytes {
		indexOnly()
		return nil, nil, fmt.Errorf("source %s: %w: the index alone is %d bytes, the limit is %d", s.URL, ErrListingTooLarge, read, lim.Bytes)
	}
	tooLarge := func() error {
		return fmt.Errorf("source %s: %w: more than %d bytes of index, descriptors and signatures", s.URL, ErrListingTooLarge, lim.Bytes)
	}
	// The plan: the index's entries in order, each resolved (or its
	// skip), the same bundle named twice dropped. Each distinct URL is one
	// docFetch, fetched once however many entries name it (with the limit
	// of its first use in index order).
	var plan []planned
	docs := map[string]*docFetch{}
	doc := func(u string, limit int64) *docFetch {
		d := docs[u]
		if d == nil {
			d = &docFetch{url: u, limit: limit}
			docs[u] = d
		}
		return d
	}
	listed := map[string]bool{} // descriptor URL + "\n" + signature URL
	for _, e := range ix.Bundles {
		if n := max(len(e.Descriptor), len(e.Signature)); n > MaxIndexRef {
			// it would be every log line, outcome and error naming the
			// bundle: named by its first bytes only
			plan = append(plan, planned{skip: capText(maskedRef(e.Descriptor), maxErrText), err: fmt.Errorf("%w: %d bytes, limit %d", ErrRefTooLong, n, MaxIndexRef)})
			continue
		}
		du, err := resolveRef(base, e.Descriptor)
		if err != nil {
			plan = append(plan, planned{skip: maskedRef(e.Descriptor), err: err})
			continue
		}
		sigRef := e.Signature
		if sigRef == "" {
			sigRef = e.Descriptor + ".p7s"
		}
		su, err := resolveRef(base, sigRef)
		if err != nil {
			plan = append(plan, planned{skip: maskedRef(e.Descriptor), err: err})
			continue
		}
		if listed[du.String()+"\n"+su.String()] {
			continue // the same bundle named twice
		}
		listed[du.String()+"\n"+su.String()] = true
		plan = append(plan, planned{loc: du.String(), desc: doc(du.String(), MaxDescriptorSize), sig: doc(su.String(), MaxSignatureSize)})
	}
	over := s.fetchAll(ctx, plan, known, read, lim.Bytes)
	for _, d := range docs {
		if d.keep != nil {
			fresh[d.url] = d.keep
		}
	}
	s.mu.Lock()
	s.known = fresh
	s.mu.Unlock()
	if over {
		return nil, nil, tooLarge()
	}
	// Every document the sequential order would have fetched is fetched
	// (or the context ended); their bytes are within the limit. The
	// bundles and skips are assembled in index order, as before.
	unfetched := func(d *docFetch) error {
		if err := ctx.Err(); err != nil {
			return err // the only way to leave a document unfetched
		}
		return fmt.Errorf("source %s: listing stopped before %s was fetched", s.URL, d.url)
	}
	var out []*Bundle
	skipped := map[string]error{}
	for _, p := range plan {
		if p.desc == nil {
			skipped[p.skip] = p.err
			continue
		}
		if !p.desc.done {
			return nil, nil, unfetched(p.desc)
		}
		err := p.desc.err
		if err == nil {
			if !p.sig.done {
				return nil, nil, unfetched(p.sig)
			}
			if err = p.sig.err; err != nil {
				err = fmt.Errorf("signature: %w", err)
			} else {
				out = append(out, &Bundle{Source: s.URL, Location: p.loc, Descriptor: p.desc.b, Signature: p.sig.b, VOs: s.AllowedVOs, opener: s})
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			skipped[p.loc] = err
		}
	}
	return out, skipped, nil
}

// planned is one entry of an index: a bundle's descriptor and signature
// to fetch, or a skip (an entry whose references do not resolve).
type planned struct {
	loc       string // the descriptor URL
	desc, sig *docFetch
	skip      string // the masked reference skipped, when desc is nil
	err       error
}

// docFetch is one distinct URL of a listing, fetched once.
type docFetch struct {
	url   string
	limit int64
	once  sync.Once
	// set inside once: done when the document was requested (b or err
	// then hold the outcome); not done when the listing stopped first
	done bool
	b    []byte
	err  error
	keep *remembered // what to remember of the document for the next listing
}

// fetchAll fetches the descriptors and signatures of plan, at most
// s.Parallel requests at a time: each worker takes the next entry in
// index order and fetches its descriptor and then, if that succeeded, its
// signature, exactly the documents a sequential pass would fetch, each
// with a conditional request when known remembers it. read is
// the bytes already read (the index); once the bytes read exceed limit, no
// further request starts, and fetchAll returns true when it returns (the
// requests in flight then finish: at most Parallel documents, each within
// its own size limit, are read past the listing's limit). It also stops
// starting requests when ctx ends. It returns after every worker has.
func (s *IndexSource) fetchAll(ctx context.Context, plan []planned, known map[string]*remembered, read, limit int64) (over bool) {
	par := s.Parallel
	if par <= 0 {
		par = DefaultIndexParallel
	}
	var total atomic.Int64
	total.Store(read)
	var stop atomic.Bool
	fetch := func(d *docFetch) bool {
		if stop.Load() || ctx.Err() != nil {
			return false
		}
		d.once.Do(func() {
			if stop.Load() || ctx.Err() != nil {
				return
			}
			var n int64
			d.b, d.keep, n, d.err = s.fetcher().getSmallIf(ctx, d.url, d.limit, known[d.url])
			d.done = true
			// a document counts with its bytes, read or reused, and a
			// refused one with what was read of it (an index of
			// oversize documents must not read without bound)
			if total.Add(max(int64(len(d.b)), n)) > limit {
				stop.Store(true)
			}
		})
		return d.done
	}
	parallel(par, len(plan), func(i int) bool {
		p := plan[i]
		if p.desc == nil {
			return true
		}
		if !fetch(p.desc) {
			return false
		}
		return p.desc.err != nil || fetch(p.sig)
	})
	return total.Load() > limit
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
	rc, err := s.fetcher().OpenURL(ctx, u.String())
	return rc, u.String(), err
}

// Listings implements ListingSource: the listings the last index listed
// names, each fetched (document and signature, by the source's fetcher,
// with its address policy, within validator.MaxListingSize and
// MaxSignatureSize) and read as the VO its document names.
//
// Conditional requests, as List makes them for the index, descriptors
// and signatures (same validators, same rules; an error is never replaced
// by remembered bytes): Listings remembers the document and signature of
// the first listing in index order of each VO the source may publish for,
// when both were fetched and the document parses, and asks for them next
// time with If-None-Match / If-Modified-Since; a 304 that agrees reuses
// the bytes read before, which the pass verifies again as any listing.
// What is remembered is what the last call fetched or reused, at most one
// pair per VO of the source; the rest is forgotten. A second reading
// (ListingDoc.again, a torn pair) is made without conditions.
func (s *IndexSource) Listings(ctx context.Context) []ListingDoc {
	s.mu.Lock()
	refs, known := s.listings, s.knownListings
	s.mu.Unlock()
	fresh := map[string]*remembered{}
	kept := map[string]bool{} // the VOs a pair is remembered of
	var out []ListingDoc
	for _, r := range refs {
		d, keepDoc, keepSig := s.fetchListing(ctx, r, known)
		if r.err == nil {
			d.again = func(ctx context.Context) ListingDoc {
				d, _, _ := s.fetchListing(ctx, r, nil)
				return d
			}
		}
		if d.Err == nil && slices.Contains(s.AllowedVOs, d.VO) && !kept[d.VO] {
			kept[d.VO] = true
			if keepDoc != nil {
				fresh[r.doc] = keepDoc
			}
			if keepSig != nil {
				fresh[r.sig] = keepSig
			}
		}
		out = append(out, d)
	}
	s.mu.Lock()
	s.knownListings = fresh
	s.mu.Unlock()
	return out
}

// fetchListing fetches the listing r locates (Listings), with conditional
// requests for what known remembers, and returns what to remember of its
// document and signature (nil: nothing).
func (s *IndexSource) fetchListing(ctx context.Context, r listingRef, known map[string]*remembered) (d ListingDoc, keepDoc, keepSig *remembered) {
	d = ListingDoc{Location: r.doc, Err: r.err}
	if d.Err == nil {
		d.Document, keepDoc, _, d.Err = s.fetcher().getSmallIf(ctx, r.doc, validator.MaxListingSize, known[r.doc])
	}
	if d.Err == nil {
		if d.Signature, keepSig, _, d.Err = s.fetcher().getSmallIf(ctx, r.sig, MaxSignatureSize, known[r.sig]); d.Err != nil {
			d.Err = fmt.Errorf("signature: %w", d.Err)
		}
	}
	if d.Err == nil {
		// the VO it stands for is the one it names (VerifyListing
		// checks it against that VO's signers)
		l, err := validator.ParseListing(d.Document)
		if err != nil {
			d.Err = err
		} else {
			d.VO = l.VO
		}
	}
	return d, keepDoc, keepSig
}
