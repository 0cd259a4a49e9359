package glancesync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Size limits of the small documents a source serves.
const (
	MaxDescriptorSize = 1 << 20
	MaxSignatureSize  = 1 << 20
	MaxIndexSize      = 8 << 20
)

// MaxResponseHeaderBytes bounds the headers of one answer of a source's
// server (net/http's default is 10 MiB): ordinary servers send a few KiB.
const MaxResponseHeaderBytes = 64 << 10

// HTTPOptions configure every HTTP request of the sources.
type HTTPOptions struct {
	// CAFile is a PEM bundle the servers are verified against (system roots when empty).
	CAFile string
	// RequestTimeout bounds one request of a small document.
	RequestTimeout time.Duration
	// DownloadTimeout bounds one request of an image download (an
	// interrupted download resumes with Range in a new request).
	DownloadTimeout time.Duration
	// Retries is how many times a failed request is retried.
	Retries int
	// MaxResumes bounds the Range requests that resume one image download,
	// whatever progress each made (default DefaultMaxResumes): a server
	// that cuts every connection after a byte or two cannot make one
	// download out of thousands of requests.
	MaxResumes int
	// Logger receives retry notices (nil: none).
	Logger *slog.Logger
}

// Fetcher fetches documents and images over HTTP(S) with retries and backoff.
type Fetcher struct {
	small, large *retryablehttp.Client
	retries      int
	maxResumes   int

	// what the clients were built from, for forSource
	opts   HTTPOptions
	tlsCfg *tls.Config
}

// maxIdleConnsPerHost is how many idle connections to one host a client
// keeps for the next requests: twice the default IndexSource.Parallel.
const maxIdleConnsPerHost = 2 * DefaultIndexParallel

// DefaultMaxResumes is the default of HTTPOptions.MaxResumes.
const DefaultMaxResumes = 20

// NewFetcher builds the HTTP clients of the sources.
func NewFetcher(o HTTPOptions) (*Fetcher, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("sync.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("sync.ca_file %s: no PEM certificate", o.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = time.Minute
	}
	if o.DownloadTimeout <= 0 {
		o.DownloadTimeout = 10 * time.Minute
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	if o.MaxResumes <= 0 {
		o.MaxResumes = DefaultMaxResumes
	}
	return newFetcher(o, tlsCfg, nil), nil
}

// forSource returns a Fetcher with f's settings whose connections obey
// the address policy of a source (see netguard.go): sourceURL is the
// source's own URL ("" for a directory source). It has its own
// connections: a connection one source may make is never reused for
// another's request.
func (f *Fetcher) forSource(sourceURL string, allowPrivate bool) *Fetcher {
	p := &addrPolicy{allowPrivate: allowPrivate}
	if u, err := url.Parse(sourceURL); err == nil {
		p.sourceHost = u.Hostname()
	}
	return newFetcher(f.opts, f.tlsCfg, p)
}

// newFetcher builds the clients; p nil: only the addresses no source may
// reach are refused.
func newFetcher(o HTTPOptions, tlsCfg *tls.Config, p *addrPolicy) *Fetcher {
	mk := func(timeout time.Duration) *retryablehttp.Client {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		guardTransport(tr, p)
		tr.TLSClientConfig = tlsCfg
		tr.ResponseHeaderTimeout = time.Minute
		// a source's headers are not counted in a listing's bytes:
		// bounded well below net/http's 10 MiB, per answer
		tr.MaxResponseHeaderBytes = MaxResponseHeaderBytes
		// an index source fetches up to IndexSource.Parallel documents at
		// once from one host: keep that many connections (the default
		// keeps 2, closing the others after each request)
		tr.MaxIdleConnsPerHost = maxIdleConnsPerHost
		c := retryablehttp.NewClient()
		c.HTTPClient = &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: checkRedirect}
		c.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			if errors.Is(err, ErrRedirectDowngrade) || errors.Is(err, ErrAddressRefused) {
				return false, err // the same answer again: no retry
			}
			return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
		}
		c.RetryMax = o.Retries
		c.RetryWaitMin = 200 * time.Millisecond
		c.RetryWaitMax = 10 * time.Second
		c.Logger = nil
		if o.Logger != nil {
			c.Logger = retryLogger{o.Logger}
		}
		return c
	}
	return &Fetcher{small: mk(o.RequestTimeout), large: mk(o.DownloadTimeout), retries: o.Retries, maxResumes: o.MaxResumes, opts: o, tlsCfg: tlsCfg}
}

// ErrRedirectDowngrade refuses a redirect from an https URL to one that is
// not https: the source's server (or whoever answers for it) would move
// the request off TLS, where anyone on the way may answer it (an index
// that lists fewer bundles makes the sync retire images).
var ErrRedirectDowngrade = errors.New("redirect from https to another scheme refused")

// maxRedirects is how many redirects one request follows (net/http's own
// default).
const maxRedirects = 10

// checkRedirect is the sources' http.Client.CheckRedirect: at most
// maxRedirects, never from https to anything else (plain http; other
// schemes net/http refuses itself).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	for _, v := range via {
		if strings.EqualFold(v.URL.Scheme, "https") && !strings.EqualFold(req.URL.Scheme, "https") {
			return fmt.Errorf("%w (%s to %s)", ErrRedirectDowngrade, masked(v.URL), masked(req.URL))
		}
	}
	return nil
}

// retryLogger adapts slog to retryablehttp's LeveledLogger, at debug level
// except for errors (its messages are constant, its values URLs and counts).
type retryLogger struct{ l *slog.Logger }

func (r retryLogger) Error(msg string, kv ...any) { r.l.Warn("http: "+msg, kv...) }
func (r retryLogger) Info(msg string, kv ...any)  { r.l.Debug("http: "+msg, kv...) }
func (r retryLogger) Debug(msg string, kv ...any) { r.l.Debug("http: "+msg, kv...) }
func (r retryLogger) Warn(msg string, kv ...any)  { r.l.Debug("http: "+msg, kv...) }

// ErrTooLarge is returned for a document over its size limit.
var ErrTooLarge = errors.New("document too large")

// GetSmall fetches a whole document of at most limit bytes.
func (f *Fetcher) GetSmall(ctx context.Context, url string, limit int64) ([]byte, error) {
	b, _, _, err := f.getSmallIf(ctx, url, limit, nil)
	return b, err
}

// remembered is a small document as a whole 200 answer delivered it, with
// the validators that ask its server whether it changed since.
type remembered struct {
	body []byte
	// etag is the answer's strong ETag, or "" (a weak one only promises
	// an equivalent document, not the same bytes)
	etag string
	// lastModified is the answer's Last-Modified, or "" unless it is at
	// least a second before the answer's Date: a document changed again
	// within the second it was served would otherwise look unchanged
	lastModified string
}

// validatorsOf returns what of a 200 answer's validators can be relied on
// (see remembered); nil when none.
func validatorsOf(h http.Header, body []byte) *remembered {
	r := &remembered{body: body}
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		r.etag = et
	}
	if lm := h.Get("Last-Modified"); lm != "" {
		t, err1 := http.ParseTime(lm)
		d, err2 := http.ParseTime(h.Get("Date"))
		if err1 == nil && err2 == nil && d.Sub(t) >= time.Second {
			r.lastModified = lm
		}
	}
	if r.etag == "" && r.lastModified == "" {
		return nil
	}
	return r
}

// agrees reports whether a 304's headers agree with prev: its ETag, if it
// has one, equals prev's (a strong ETag where prev has none does not; a
// weak one is then ignored), and its Last-Modified, if it has one and prev
// has one, equals prev's.
func (prev *remembered) agrees(h http.Header) bool {
	if et := h.Get("ETag"); et != "" && et != prev.etag && (prev.etag != "" || !strings.HasPrefix(et, "W/")) {
		return false
	}
	if lm := h.Get("Last-Modified"); lm != "" && prev.lastModified != "" && lm != prev.lastModified {
		return false
	}
	return true
}

// getSmallIf fetches a whole document of at most limit bytes. With prev
// (what was remembered of url: a whole earlier answer of at most limit
// bytes), the request is conditional (If-None-Match, If-Modified-Since)
// and a 304 Not Modified whose validators agree with prev's returns
// prev's bytes; a 304 that does not agree is not trusted, and the
// document is fetched again without conditions. A 304 to a request
// without conditions is an error: there are no bytes it could mean. keep
// is what to remember of url for the next time: the 200 answer (when it
// has a validator worth sending), prev after a 304 that agrees, else nil.
// Every other answer or failure is an error and keep is nil: remembered
// bytes are never returned for a document that could not be fetched. read
// is how many bytes of answer bodies were read, errors included (a
// document over its limit sent without a Content-Length is read to one
// byte past it before it is refused), for a listing's byte limit.
func (f *Fetcher) getSmallIf(ctx context.Context, url string, limit int64, prev *remembered) (b []byte, keep *remembered, read int64, err error) {
	if prev != nil && int64(len(prev.body)) > limit {
		prev = nil
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, read, fmt.Errorf("GET %s: %w", url, err)
	}
	if prev != nil {
		if prev.etag != "" {
			req.Header.Set("If-None-Match", prev.etag)
		}
		if prev.lastModified != "" {
			req.Header.Set("If-Modified-Since", prev.lastModified)
		}
	}
	resp, err := f.small.Do(req)
	if err != nil {
		return nil, nil, read, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body := &countingReader{r: resp.Body}
	defer func() { read += body.n }()
	if resp.StatusCode == http.StatusNotModified {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
		switch {
		case prev == nil:
			return nil, nil, read, fmt.Errorf("GET %s: %s to a request without validators", url, resp.Status)
		case prev.agrees(resp.Header):
			return prev.body, prev, read, nil
		}
		// a 304 naming another version than the bytes remembered
		resp.Body.Close()
		b, keep, again, err := f.getSmallIf(ctx, url, limit, nil)
		return b, keep, read + again, err
	}
	if resp.StatusCode != http.StatusOK {
		// a short error page is read so that the connection is reused
		_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
		return nil, nil, read, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, nil, read, fmt.Errorf("GET %s: %w (%d bytes, limit %d)", url, ErrTooLarge, resp.ContentLength, limit)
	}
	b, err = io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, nil, read, fmt.Errorf("GET %s: %w", url, err)
	}
	if int64(len(b)) > limit {
		return nil, nil, read, fmt.Errorf("GET %s: %w (limit %d)", url, ErrTooLarge, limit)
	}
	return b, validatorsOf(resp.Header, b), read, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
