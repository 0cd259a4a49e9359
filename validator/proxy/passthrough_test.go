package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func TestPassThroughFidelity(t *testing.T) {
	f := catalogue(t)
	var got *http.Request
	var gotBody []byte
	release := make(chan struct{})
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		gotBody, _ = io.ReadAll(r.Body)
		h := w.Header()
		h.Set("X-Openstack-Request-Id", "req-11111111-2222-4333-8444-555555555555")
		h.Set("X-Compute-Request-Id", "req-11111111-2222-4333-8444-555555555555")
		h.Set("OpenStack-API-Version", "compute 2.79")
		h.Set("X-OpenStack-Nova-API-Version", "2.79")
		h.Add("Vary", "OpenStack-API-Version")
		h.Add("Vary", "X-OpenStack-Nova-API-Version")
		h.Set("Content-Type", "application/json")
		if r.URL.Path == "/v2.1/stream" {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("first\n"))
			w.(http.Flusher).Flush()
			<-release
			_, _ = w.Write([]byte("second\n"))
			return
		}
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"conflictingRequest": {"code": 409, "message": "x"}}`))
	}))
	defer nova.Close()
	g := newGate(t, f, nova.URL, nil)

	// a non-gated POST with odd bytes: forwarded byte for byte
	odd := `{"flavor" :{"name":"a","name":"b"} }`
	req, _ := http.NewRequest(http.MethodPost, g.srv.URL+"/v2.1/flavors?x=1&y=%2F", strings.NewReader(odd))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("X-Auth-Token", "gAAAAtoken")
	req.Header.Set("OpenStack-API-Version", "compute 2.79")
	req.Header.Set("X-OpenStack-Nova-API-Version", "2.79")
	req.Header.Set("X-Openstack-Request-Id", "req-99999999-2222-4333-8444-555555555555")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || string(body) != `{"conflictingRequest": {"code": 409, "message": "x"}}` {
		t.Errorf("status %d body %s", resp.StatusCode, body)
	}
	for k, v := range map[string]string{
		"X-Openstack-Request-Id": "req-11111111-2222-4333-8444-555555555555", "X-Compute-Request-Id": "req-11111111-2222-4333-8444-555555555555",
		"Openstack-Api-Version": "compute 2.79", "X-Openstack-Nova-Api-Version": "2.79",
	} {
		if resp.Header.Get(k) != v {
			t.Errorf("response header %s = %q, want %q", k, resp.Header.Get(k), v)
		}
	}
	if len(resp.Header.Values("Vary")) != 2 {
		t.Errorf("Vary = %v", resp.Header.Values("Vary"))
	}
	if string(gotBody) != odd || got.URL.RawQuery != "x=1&y=%2F" || got.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("upstream got body %q query %q ctype %q", gotBody, got.URL.RawQuery, got.Header.Get("Content-Type"))
	}
	for _, k := range []string{"X-Auth-Token", "OpenStack-API-Version", "X-OpenStack-Nova-API-Version", "X-Openstack-Request-Id"} {
		if got.Header.Get(k) != req.Header.Get(k) {
			t.Errorf("upstream header %s = %q", k, got.Header.Get(k))
		}
	}

	// GET of a gated path, DELETE and PUT pass untouched
	for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPut} {
		resp, _ := do(t, m, g.srv.URL+"/v2.1/servers/"+idUnknown, "application/json", `{"server":{"name":"x","name":"y"}}`, nil)
		if resp.StatusCode != http.StatusConflict || got.Method != m {
			t.Errorf("%s: status %d, upstream saw %s", m, resp.StatusCode, got.Method)
		}
	}

	// a streamed response arrives before the upstream finishes it
	resp, err = http.Get(g.srv.URL + "/v2.1/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	close(release)
	if err != nil || line != "first\n" {
		t.Fatalf("streamed first line %q, %v", line, err)
	}
}

func TestVersionDocumentRewrite(t *testing.T) {
	f := catalogue(t)
	var upstreamURL string
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Nova builds hrefs from the Host it is asked with
		base := "http://" + r.Host + "/nova"
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", base+"/v2.1/")
		// as nova-api's URL map: runs of slashes collapsed; the version
		// choices (300) for a path outside the API
		path := regexp.MustCompile(`/+`).ReplaceAllString(r.URL.Path, "/")
		switch {
		case path == "/nova/" || path == "/nova":
			_, _ = w.Write([]byte(`{"versions":[{"id":"v2.0","status":"SUPPORTED","links":[{"rel":"self","href":"` + base + `/v2/"}]},{"id":"v2.1","status":"CURRENT","version":"2.93","min_version":"2.1","links":[{"rel":"self","href":"` + base + `/v2.1/"}]}]}`))
		case path == "/nova/v2.1" || path == "/nova/v2.1/":
			_, _ = w.Write([]byte(`{"version":{"id":"v2.1","links":[{"href":"` + base + `/v2.1/","rel":"self"},{"href":"http://docs.openstack.org/","rel":"describedby","type":"text/html"}],"status":"CURRENT"}}`))
		case !strings.HasPrefix(path, "/nova/v2.1/") && !strings.HasPrefix(path, "/nova/v2/"):
			rest := strings.TrimPrefix(path, "/nova")
			w.WriteHeader(http.StatusMultipleChoices)
			_, _ = w.Write([]byte(`{"choices":[{"id":"v2.0","status":"SUPPORTED","links":[{"rel":"self","href":"` + base + `/v2` + rest + `"}]},{"id":"v2.1","status":"CURRENT","links":[{"rel":"self","href":"` + base + `/v2.1` + rest + `"}]}]}`))
		default:
			w.WriteHeader(404)
		}
	}))
	defer nova.Close()
	upstreamURL = nova.URL + "/nova"
	pub, _ := url.Parse("https://compute.example.org:8774/gate")
	// both as Keystone's catalog gives them, with the version: dropped
	pubVersioned, _ := url.Parse("https://compute.example.org:8774/gate/v2.1/")
	for _, c := range []struct {
		name     string
		upstream string
		pub      *url.URL
		want     func(g *gateEnv) string
	}{
		{"ok public url", upstreamURL, pub, func(*gateEnv) string { return "https://compute.example.org:8774/gate" }},
		{"ok request host", upstreamURL, nil, func(g *gateEnv) string { return g.srv.URL }},
		{"ok upstream and public url with /v2.1", upstreamURL + "/v2.1", pubVersioned, func(*gateEnv) string { return "https://compute.example.org:8774/gate" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGate(t, f, c.upstream, func(o *Options) { o.PublicURL = c.pub })
			want := c.want(g)
			for path, hrefs := range map[string][]string{
				"/":      {want + "/v2/", want + "/v2.1/"},
				"/v2.1":  {want + "/v2.1/", "http://docs.openstack.org/"},
				"/v2.1/": {want + "/v2.1/", "http://docs.openstack.org/"},
			} {
				resp, body := do(t, http.MethodGet, g.srv.URL+path, "", "", nil)
				var doc any
				if err := json.Unmarshal(body, &doc); err != nil {
					t.Fatalf("%s: %v: %s", path, err, body)
				}
				var found []string
				collectHrefs(doc, &found)
				if strings.Join(found, " ") != strings.Join(hrefs, " ") {
					t.Errorf("%s: hrefs %v, want %v", path, found, hrefs)
				}
				if resp.Header.Get("Location") != want+"/v2.1/" {
					t.Errorf("%s: Location %q", path, resp.Header.Get("Location"))
				}
				if resp.ContentLength != int64(len(body)) {
					t.Errorf("%s: Content-Length %d for %d bytes", path, resp.ContentLength, len(body))
				}
			}
			// Paths nova-api also answers with version documents (runs of
			// slashes collapsed) or the version choices (300): no href may
			// lead around the gate.
			for _, path := range []string{"//", "///", "//v2.1", "/%2Fv2.1", "/v2.1//", "//v2.1/", "/" + strings.Repeat("/", 20) + "v2",
				"/./v2.1", "/V2.1", "/v2.1.json", "/foo", "/x/../v2.1", "/" + strings.Repeat("x", 40)} {
				resp, body := do(t, http.MethodGet, g.srv.URL+path, "", "", nil)
				var doc any
				if err := json.Unmarshal(body, &doc); err != nil {
					t.Fatalf("%s: %d %v: %s", path, resp.StatusCode, err, body)
				}
				var found []string
				collectHrefs(doc, &found)
				if len(found) == 0 {
					t.Errorf("%s: %d, no hrefs: %s", path, resp.StatusCode, body)
				}
				for _, h := range found {
					if !strings.HasPrefix(h, want+"/") && h != "http://docs.openstack.org/" {
						t.Errorf("%s: %d, href %s does not name the gate", path, resp.StatusCode, h)
					}
				}
				if resp.ContentLength != int64(len(body)) {
					t.Errorf("%s: Content-Length %d for %d bytes", path, resp.ContentLength, len(body))
				}
			}
		})
	}
}

func collectHrefs(v any, out *[]string) {
	switch t := v.(type) {
	case map[string]any:
		if h, ok := t["href"].(string); ok {
			*out = append(*out, h)
		}
		for k, e := range t {
			if k != "href" {
				collectHrefs(e, out)
			}
		}
	case []any:
		for _, e := range t {
			collectHrefs(e, out)
		}
	}
}

func TestUpstreamDown(t *testing.T) {
	f := catalogue(t)
	nova := httptest.NewServer(http.NotFoundHandler())
	u := nova.URL
	nova.Close()
	g := newGate(t, f, u, nil)
	for _, path := range []string{"/v2.1/flavors", "/v2.1/servers"} {
		resp, body := do(t, http.MethodPost, g.srv.URL+path, "application/json", serverBody(idGood), nil)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		if name, _, _ := fault(t, body); name != "computeFault" {
			t.Errorf("%s: fault %s", path, name)
		}
	}
}

// TestRequestTrailersDropped: a passed-through chunked request reaches Nova
// without its trailer fields. Nova's WSGI server (eventlet) reads one line
// after the last chunk, so a second trailer line would be read as the next
// request on the gate's upstream connection.
func TestRequestTrailersDropped(t *testing.T) {
	f := catalogue(t)
	got := make(chan http.Header, 1)
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r.Trailer.Clone()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer nova.Close()
	g := newGate(t, f, nova.URL, nil)
	req, _ := http.NewRequest(http.MethodPut, g.srv.URL+"/v2.1/servers/"+idUnknown+"/metadata", chunkedReader{strings.NewReader(`{"metadata":{}}`)})
	req.Header.Set("Content-Type", "application/json")
	req.TransferEncoding = []string{"chunked"}
	req.Trailer = http.Header{"X-One": {"1"}, "X-Two": {"2"}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if tr := <-got; len(tr) != 0 {
		t.Errorf("Nova got trailers %v", tr)
	}
}

// TestTrimEndpoint: a trailing version is dropped from the upstream and
// public URLs, and a trailing version and project segment (an older
// Keystone catalog's …/v2.1/{project_id}), with the part dropped named
// for the startup warning; anything else is kept.
func TestTrimEndpoint(t *testing.T) {
	for _, tc := range []struct{ name, in, want, dropped string }{
		{"ok no path", "http://nova:8774", "http://nova:8774", ""},
		{"ok root", "http://nova:8774/", "http://nova:8774/", ""},
		{"ok catalog endpoint", "http://nova:8774/v2.1", "http://nova:8774", "/v2.1"},
		{"ok catalog endpoint with a slash", "http://nova:8774/v2.1/", "http://nova:8774", "/v2.1"},
		{"ok legacy v2", "http://nova:8774/v2", "http://nova:8774", "/v2"},
		{"ok devstack mount", "http://nova/compute/v2.1", "http://nova/compute", "/v2.1"},
		{"ok devstack mount alone", "http://nova/compute", "http://nova/compute", ""},
		{"ok a mount that only looks like a version", "http://nova/v2.10", "http://nova/v2.10", ""},
		{"ok old catalog with the project", "http://nova:8774/v2.1/6f0c7b1c9a7d4e3f8a2b5c6d7e8f9a0b", "http://nova:8774", "/v2.1/6f0c7b1c9a7d4e3f8a2b5c6d7e8f9a0b"},
		{"ok old catalog with the project and a slash", "http://nova:8774/v2.1/6f0c7b1c9a7d4e3f8a2b5c6d7e8f9a0b/", "http://nova:8774", "/v2.1/6f0c7b1c9a7d4e3f8a2b5c6d7e8f9a0b"},
		{"ok legacy v2 with the project", "http://nova:8774/v2/6f0c7b1c9a7d4e3f8a2b5c6d7e8f9a0b", "http://nova:8774", "/v2/6f0c7b1c9a7d4e3f8a2b5c6d7e8f9a0b"},
		{"ok devstack mount with the project", "http://nova/compute/v2.1/p1", "http://nova/compute", "/v2.1/p1"},
		// to Nova the segment after a version is a project or a route, never part of a mount
		{"ok one segment after a version is a project", "http://nova/v2.1/compute", "http://nova", "/v2.1/compute"},
		{"ok a version deeper in the path", "http://nova/v2.1/compute/x", "http://nova/v2.1/compute/x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got, dropped := TrimEndpoint(u)
			if got.String() != tc.want || dropped != tc.dropped {
				t.Errorf("TrimEndpoint(%s) = %s, %q, want %s, %q", tc.in, got, dropped, tc.want, tc.dropped)
			}
			if w := withoutVersion(u).String(); w != tc.want {
				t.Errorf("withoutVersion(%s) = %s, want %s", tc.in, w, tc.want)
			}
			if u.String() != tc.in {
				t.Errorf("TrimEndpoint changed its argument to %s", u)
			}
		})
	}
}

// TestCatalogTemplate: the templates of Keystone's SQL and templated
// catalogs are found (and New refuses an upstream holding one).
func TestCatalogTemplate(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"ok none", "http://nova:8774/v2.1/6f0c7b1c9a7d4e3f8a2b5c6d7e8f9a0b", ""},
		{"fail tenant_id", "http://nova:8774/v2/%(tenant_id)s", "%(tenant_id)s"},
		{"fail project_id", "http://nova:8774/v2.1/%(project_id)s", "%(project_id)s"},
		{"fail templated catalog", "http://nova:8774/v2.1/$(project_id)s", "$(project_id)s"},
		{"fail unclosed", "http://nova:8774/v2.1/$(project_id", "$(project_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CatalogTemplate(tc.in); got != tc.want {
				t.Errorf("CatalogTemplate(%s) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	u, err := url.Parse("http://nova:8774/v2.1/$(project_id)s")
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Upstream: u, Lookup: nil})
	if err == nil || !strings.Contains(err.Error(), "$(project_id)s") {
		t.Errorf("New with a template upstream: %v, want the template named", err)
	}
}
