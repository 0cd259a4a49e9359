package glance

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
)

// maxErrorBody bounds how much of an error answer is kept.
const maxErrorBody = 64 << 10

// sizedReader is a reader whose length is known in advance.
type sizedReader struct {
	io.Reader
	n int64
}

// Sized tells Stage and Upload that r yields exactly n bytes, so the request
// carries Content-Length n instead of chunked encoding; the request fails if
// r yields a different number of bytes.
func Sized(r io.Reader, n int64) io.Reader {
	return &sizedReader{Reader: r, n: n}
}

// Stage streams data into the staging area of a queued image
// (PUT /v2/images/{id}/stage); the image becomes uploading. Then call
// ImportGlanceDirect.
//
// Unlike imagedata.Stage, the data is never re-sent from where a failed
// attempt left it: on a 401 the token is renewed and the request is retried
// only when data is an io.Seeker (rewound to where it started); otherwise the
// 401 is returned and the caller must stage again from a fresh reader. The
// ProviderClient's RetryFunc is not used. data is read once, in small
// chunks, never held whole in memory, and not closed.
//
// A token with less than half its lifetime left is renewed first
// (FreshToken), so that a stream neither meets a 401 at its start nor
// hands Glance a token about to expire.
func Stage(ctx context.Context, client *gophercloud.ServiceClient, id string, data io.Reader) (r StageResult) {
	resp, err := putData(ctx, client, stageURL(client, id), data, nil)
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// Upload streams data as the image's data (PUT /v2/images/{id}/file); the
// image is active when Glance answers. Use it only where glance-direct is
// not offered: the image is active before the caller can check Glance's
// hash. It behaves like Stage otherwise.
func Upload(ctx context.Context, client *gophercloud.ServiceClient, id string, data io.Reader) (r UploadResult) {
	return UploadToStore(ctx, client, id, data, "")
}

// UploadToStore is Upload into one of Glance's stores (its enabled_backends
// id, sent as X-Image-Meta-Store; "" for the default_backend). Glance
// refuses a store it does not have with 400.
func UploadToStore(ctx context.Context, client *gophercloud.ServiceClient, id string, data io.Reader, store string) (r UploadResult) {
	var h map[string]string
	if store != "" {
		h = map[string]string{"X-Image-Meta-Store": store}
	}
	resp, err := putData(ctx, client, fileURL(client, id), data, h)
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// putData PUTs data as application/octet-stream, with the extra header
// fields h, and expects 204.
func putData(ctx context.Context, client *gophercloud.ServiceClient, url string, data io.Reader, h map[string]string) (*http.Response, error) {
	size := int64(-1)
	if s, ok := data.(*sizedReader); ok {
		size = s.n
		data = s.Reader
	}
	// Where a retry may rewind.
	start := int64(-1)
	if sk, ok := data.(io.Seeker); ok {
		if off, err := sk.Seek(0, io.SeekCurrent); err == nil {
			start = off
		}
	}
	if err := FreshToken(ctx, client.ProviderClient, time.Now()); err != nil {
		return nil, err
	}
	resp, tok, err := putOnce(ctx, client, url, data, size, h)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || client.ReauthFunc == nil {
		return checkStatus(resp, err, url)
	}
	// 401: renew the token, then retry once if the body can be rewound.
	resp, err401 := checkStatus(resp, nil, url)
	if rerr := client.Reauthenticate(ctx, tok); rerr != nil {
		return nil, fmt.Errorf("glance: renewing the token after a 401: %w (%w)", rerr, err401)
	}
	if start < 0 {
		return resp, err401
	}
	if _, err := data.(io.Seeker).Seek(start, io.SeekStart); err != nil {
		return nil, fmt.Errorf("glance: rewinding the data after a 401: %w", err)
	}
	resp, _, err = putOnce(ctx, client, url, data, size, h)
	return checkStatus(resp, err, url)
}

// FreshToken renews pc's token when less than half of its lifetime is left
// at now (or it has expired), for requests that must not meet a 401: an
// image stream, which cannot be sent again once read. gophercloud renews a
// token only after a 401; Glance checks the token once, when the request
// arrives, but a store that uses the caller's token when the data is in (a
// multi-tenant Swift store, a Cinder store without its own credentials)
// needs it to outlive the transfer, so the stream should start with as much
// of the token's lifetime as possible. A client that cannot renew its token
// (no ReauthFunc), or whose token does not tell when it was issued and when
// it expires (not Keystone v3), is left alone.
func FreshToken(ctx context.Context, pc *gophercloud.ProviderClient, now time.Time) error {
	if pc == nil || pc.ReauthFunc == nil {
		return nil
	}
	cr, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return nil
	}
	var t struct {
		IssuedAt  time.Time `json:"issued_at"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := cr.ExtractInto(&t); err != nil || t.IssuedAt.IsZero() || t.ExpiresAt.IsZero() {
		return nil
	}
	if t.ExpiresAt.Sub(now) >= t.ExpiresAt.Sub(t.IssuedAt)/2 {
		return nil
	}
	if err := pc.Reauthenticate(ctx, pc.Token()); err != nil {
		return fmt.Errorf("glance: renewing the token before streaming image data: %w", err)
	}
	return nil
}

// putOnce sends one PUT and returns the token it used.
func putOnce(ctx context.Context, client *gophercloud.ServiceClient, url string, data io.Reader, size int64, h map[string]string) (*http.Response, string, error) {
	// The transport closes a body that is an io.Closer: hide Close from it,
	// the caller owns data.
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, io.NopCloser(data))
	if err != nil {
		return nil, "", fmt.Errorf("glance: %w", err)
	}
	if size >= 0 {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", client.UserAgent.Join())
	for k, v := range client.MoreHeaders {
		req.Header.Set(k, v)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	tok := ""
	for k, v := range client.AuthenticatedHeaders() {
		req.Header.Set(k, v)
		if k == "X-Auth-Token" {
			tok = v
		}
	}
	resp, err := client.HTTPClient.Do(req)
	if err != nil {
		return nil, tok, err
	}
	return resp, tok, nil
}

// checkStatus turns anything but 204 into gophercloud's
// ErrUnexpectedResponseCode, so that ResponseCodeIs and IsConflict work.
func checkStatus(resp *http.Response, err error, url string) (*http.Response, error) {
	if err != nil {
		return nil, err
	}
	ok := []int{http.StatusNoContent}
	if slices.Contains(ok, resp.StatusCode) {
		drain(resp)
		return resp, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	drain(resp)
	return resp, gophercloud.ErrUnexpectedResponseCode{
		URL:            url,
		Method:         http.MethodPut,
		Expected:       ok,
		Actual:         resp.StatusCode,
		Body:           body,
		ResponseHeader: resp.Header,
	}
}

// drain reads what is left of a small answer and closes it, so the
// connection can be reused.
func drain(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
}
