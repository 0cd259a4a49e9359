package glancesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/hashicorp/go-retryablehttp"
)

// ErrNotResumable is returned by an image download that broke off at a
// server that does not honour Range: the caller must start the whole
// transfer again (and hash from the first byte).
var ErrNotResumable = errors.New("download broke off and the server does not resume (no 206 to a Range request)")

// rangeReader reads an image over HTTP and, when the stream breaks, asks
// for the rest with a Range request, checking the 206 and its Content-Range.
type rangeReader struct {
	ctx     context.Context
	f       *Fetcher
	url     string
	off     int64
	body    io.ReadCloser
	validor string // ETag or Last-Modified of the first response, for If-Range
	fails   int    // consecutive failures without progress
	resumes int    // Range requests made, bounded by the Fetcher's maxResumes
}

// ErrTooManyResumes is returned by an image download that broke off more
// often than HTTPOptions.MaxResumes allows, however far each request got.
var ErrTooManyResumes = errors.New("download broke off too often")

// OpenURL starts downloading url.
func (f *Fetcher) OpenURL(ctx context.Context, url string) (io.ReadCloser, error) {
	r := &rangeReader{ctx: ctx, f: f, url: url}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rangeReader) open() error {
	req, err := retryablehttp.NewRequestWithContext(r.ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", r.url, err)
	}
	if r.off > 0 {
		if r.resumes >= r.f.maxResumes {
			return fmt.Errorf("GET %s at byte %d: %w (%d resumed requests)", r.url, r.off, ErrTooManyResumes, r.resumes)
		}
		r.resumes++
		req.Header.Set("Range", "bytes="+strconv.FormatInt(r.off, 10)+"-")
		if r.validor != "" {
			req.Header.Set("If-Range", r.validor)
		}
	}
	resp, err := r.f.large.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", r.url, err)
	}
	switch {
	case r.off == 0 && resp.StatusCode == http.StatusOK:
		if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
			r.validor = et
		} else {
			r.validor = resp.Header.Get("Last-Modified")
		}
	case r.off > 0 && resp.StatusCode == http.StatusPartialContent:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != r.off {
			resp.Body.Close()
			return fmt.Errorf("GET %s: %w (Content-Range %q for offset %d)", r.url, ErrNotResumable, resp.Header.Get("Content-Range"), r.off)
		}
	case r.off > 0 && resp.StatusCode == http.StatusOK:
		resp.Body.Close()
		return fmt.Errorf("GET %s: %w", r.url, ErrNotResumable)
	default:
		resp.Body.Close()
		return fmt.Errorf("GET %s: %s", r.url, resp.Status)
	}
	r.body = resp.Body
	return nil
}

// contentRangeStart reads the first byte position of "bytes a-b/n".
func contentRangeStart(v string) (int64, bool) {
	v, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(v, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	return n, err == nil
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for {
		if r.body == nil {
			if err := r.open(); err != nil {
				return 0, err
			}
		}
		n, err := r.body.Read(p)
		r.off += int64(n)
		if n > 0 {
			r.fails = 0
		}
		if err == nil || err == io.EOF || n > 0 {
			if err != nil && err != io.EOF {
				r.drop()
				err = nil
			}
			return n, err
		}
		if r.ctx.Err() != nil {
			return 0, r.ctx.Err()
		}
		// the stream broke: resume where it stopped
		r.drop()
		r.fails++
		if r.fails > r.f.retries {
			return 0, fmt.Errorf("GET %s at byte %d: %w", r.url, r.off, err)
		}
	}
}

func (r *rangeReader) drop() {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
}

func (r *rangeReader) Close() error {
	r.drop()
	return nil
}
