package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxVersionDoc bounds a version document the proxy rewrites.
const maxVersionDoc = 1 << 20

// modifyResponse rewrites, in answers from Nova, the links that would lead
// clients around the gate: the hrefs of version documents (keystoneauth
// clients use the discovered "self" href as the service URL) and Location
// headers. Everything else passes untouched.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	in := resp.Request
	if loc := resp.Header.Get("Location"); loc != "" {
		if nl, ok := p.rewriteHref(loc, p.publicBase(in)); ok {
			resp.Header.Set("Location", nl)
		}
	}
	if in.Method != http.MethodGet || (in.Context().Value(ctxVersionDoc) == nil && resp.StatusCode != http.StatusMultipleChoices) {
		return nil
	}
	return p.rewriteDocument(resp, p.publicBase(in))
}

// rewriteDocument rewrites the hrefs into the upstream of resp's JSON body
// (at most maxVersionDoc bytes; a larger or encoded body passes on whole)
// to pub, and sets the body's new length. Version documents are rewritten
// so, and every 300 (Multiple Choices) answer: nova-api answers a GET of
// any path outside its API (/./v2.1, /V2.1, /v2.1.json, /foo) with the
// version choices, their hrefs naming its own address.
func (p *Proxy) rewriteDocument(resp *http.Response, pub *url.URL) error {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if !strings.HasSuffix(mt, "json") || resp.Header.Get("Content-Encoding") != "" {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxVersionDoc+1))
	if err != nil {
		resp.Body.Close()
		return err
	}
	if len(b) > maxVersionDoc {
		// not a version document: pass it on whole, unread part included
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
		return nil
	}
	resp.Body.Close()
	var doc any
	if json.Unmarshal(b, &doc) == nil && p.rewriteHrefs(doc, pub) {
		if nb, err := encodeJSON(doc); err == nil {
			b = nb
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	resp.TransferEncoding = nil
	return nil
}

// publicBase is the proxy's own base URL for this request.
func (p *Proxy) publicBase(out *http.Request) *url.URL {
	if p.o.PublicURL != nil {
		return p.o.PublicURL
	}
	// out is the outgoing request; its Header carries X-Forwarded-* set by
	// Rewrite from the incoming request.
	u := &url.URL{Scheme: out.Header.Get("X-Forwarded-Proto"), Host: out.Header.Get("X-Forwarded-Host")}
	if u.Scheme == "" {
		u.Scheme = "http"
	}
	if u.Host == "" {
		return nil
	}
	return u
}

// publicBaseIn is the proxy's own base URL for an incoming request (what
// publicBase finds in the X-Forwarded-* headers of the outgoing one).
func (p *Proxy) publicBaseIn(in *http.Request) *url.URL {
	if p.o.PublicURL != nil {
		return p.o.PublicURL
	}
	if in.Host == "" {
		return nil
	}
	if in.TLS != nil {
		return &url.URL{Scheme: "https", Host: in.Host}
	}
	return &url.URL{Scheme: "http", Host: in.Host}
}

// rewriteHrefs replaces, in place, every "href" string under v that points
// into the upstream. It reports whether anything changed.
func (p *Proxy) rewriteHrefs(v any, pub *url.URL) bool {
	changed := false
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if s, ok := e.(string); ok && k == "href" {
				if ns, ok := p.rewriteHref(s, pub); ok {
					t[k] = ns
					changed = true
				}
				continue
			}
			changed = p.rewriteHrefs(e, pub) || changed
		}
	case []any:
		for _, e := range t {
			changed = p.rewriteHrefs(e, pub) || changed
		}
	}
	return changed
}

// rewriteHref maps a URL under the upstream base to the same place under pub.
func (p *Proxy) rewriteHref(href string, pub *url.URL) (string, bool) {
	if pub == nil {
		return "", false
	}
	u, err := url.Parse(href)
	if err != nil || u.Host == "" {
		return "", false
	}
	up := p.o.Upstream
	if !strings.EqualFold(u.Scheme, up.Scheme) || !sameHost(u, up) {
		return "", false
	}
	base := strings.TrimSuffix(up.Path, "/")
	if base != "" && u.Path != base && !strings.HasPrefix(u.Path, base+"/") {
		return "", false
	}
	rest := strings.TrimPrefix(u.Path, base)
	nu := *u
	nu.Scheme, nu.Host, nu.User = pub.Scheme, pub.Host, nil
	nu.Path = strings.TrimSuffix(pub.Path, "/") + rest
	nu.RawPath = ""
	return nu.String(), true
}

func sameHost(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}
