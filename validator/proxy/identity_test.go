package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// standInKeystone is a stand-in Identity: a table of tokens. The gate's
// handling of callers is what these tests check; the Keystone-backed
// Identity is exercised against the real Keystone in
// TestIntegrationIdentity.
type standInKeystone struct {
	mu      sync.Mutex
	callers map[string]*Caller
	calls   atomic.Int64
	down    bool
	// gate, when set, holds every call until it is closed.
	gate chan struct{}
}

func (k *standInKeystone) Validate(_ context.Context, token string) (*Caller, error) {
	k.calls.Add(1)
	if k.gate != nil {
		<-k.gate
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return nil, errors.New("keystone: connection refused")
	}
	c, ok := k.callers[token]
	if !ok {
		return nil, fmt.Errorf("keystone: token: %w", ErrInvalidToken)
	}
	return c, nil
}

const (
	tokAlice     = "gAAAAABalice-token"
	tokUnmanaged = "gAAAAABunmanaged-token"
	tokExpiring  = "gAAAAABexpiring-token"
	aliceProject = "a11ce000a11ce000a11ce000a11ce000"
	labProject   = "1ab000001ab000001ab000001ab00000"
)

func newStandInKeystone(now time.Time) *standInKeystone {
	return &standInKeystone{callers: map[string]*Caller{
		tokAlice:     {UserID: "u-alice", UserName: "alice", ProjectID: aliceProject, ProjectName: "physics", Roles: []string{"member"}, ExpiresAt: now.Add(time.Hour)},
		tokUnmanaged: {UserID: "u-lab", UserName: "lab", ProjectID: labProject, ProjectName: "lab", Roles: []string{"member"}, ExpiresAt: now.Add(time.Hour)},
		tokExpiring:  {UserID: "u-short", ProjectID: aliceProject, ExpiresAt: now.Add(10 * time.Second)},
	}}
}

func TestIdentityGate(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	ks := newStandInKeystone(time.Now())
	g := newGate(t, f, nova.srv.URL, func(o *Options) {
		o.Identity = ks
		o.AuthURI = "http://keystone.example:5000"
		o.UnmanagedProjects = []string{labProject}
	})
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		want                     int
		// validated is whether the Identity is asked
		validated bool
	}{
		{"ok valid token", "POST", "/v2.1/servers", serverBody(idGood), map[string]string{"X-Auth-Token": tokAlice}, 202, true},
		{"ok X-Storage-Token as keystonemiddleware reads it", "POST", "/v2.1/servers", serverBody(idGood), map[string]string{"X-Storage-Token": tokAlice}, 202, true},
		{"ok unmanaged image for the token's unmanaged project", "POST", "/v2.1/servers", serverBody(idSnapshot), map[string]string{"X-Auth-Token": tokUnmanaged}, 202, true},
		{"ok rebuild", "POST", "/v2.1/servers/" + idUnknown + "/action", `{"rebuild":{"imageRef":"` + idGood + `"}}`, map[string]string{"X-Auth-Token": tokAlice}, 202, true},
		{"ok pass-through is not validated", "GET", "/v2.1/flavors", "", nil, 202, false},
		// every action is validated before it may take a slot (its body
		// read), the ones that are not rebuild or rescue too
		{"ok non-gated action with a valid token", "POST", "/v2.1/servers/" + idUnknown + "/action", `{"os-stop":null}`, map[string]string{"X-Auth-Token": tokAlice}, 202, true},
		{"fail non-gated action without a token", "POST", "/v2.1/servers/" + idUnknown + "/action", `{"os-stop":null}`, nil, 401, false},
		{"fail non-gated action with a bogus token", "POST", "/v2.1/servers/" + idUnknown + "/action", `{"os-stop":null}`, map[string]string{"X-Auth-Token": "bogus"}, 401, true},
		{"fail no token", "POST", "/v2.1/servers", serverBody(idGood), nil, 401, false},
		{"fail bogus token", "POST", "/v2.1/servers", serverBody(idGood), map[string]string{"X-Auth-Token": "bogus"}, 401, true},
		{"fail bogus token on rescue", "POST", "/v2.1/servers/" + idUnknown + "/action", `{"rescue":{"rescue_image_ref":"` + idGood + `"}}`, map[string]string{"X-Auth-Token": "bogus"}, 401, true},
		{"fail unmanaged image for a managed project", "POST", "/v2.1/servers", serverBody(idSnapshot), map[string]string{"X-Auth-Token": tokAlice}, 403, true},
		// the path names the unmanaged project, the token another: the token wins
		// X_Auth_Token is X-Auth-Token to Nova's WSGI server: dropped, so
		// that the token the gate validates is the one Nova reads
		{"fail underscore token alone is no token", "POST", "/v2.1/servers", serverBody(idGood), map[string]string{"X_Auth_Token": tokAlice}, 401, false},
		{"ok underscore token beside X-Storage-Token: the storage token judged and forwarded", "POST", "/v2.1/servers", serverBody(idSnapshot), map[string]string{"X-Storage-Token": tokUnmanaged, "X_Auth_Token": tokAlice}, 202, true},
		// fields the Connection field names never reach Nova (ReverseProxy
		// drops them): the gate reads what Nova will, X-Storage-Token
		{"fail token named in Connection is not the one judged", "POST", "/v2.1/servers", serverBody(idSnapshot), map[string]string{"X-Auth-Token": tokUnmanaged, "X-Storage-Token": tokAlice, "Connection": "X-Auth-Token"}, 403, true},
		{"fail unmanaged project only in the path", "POST", "/v2.1/" + labProject + "/servers", serverBody(idSnapshot), map[string]string{"X-Auth-Token": tokAlice}, 403, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, calls := nova.count(), ks.calls.Load()
			// a fresh token per case for the validation count: the cache is tested below
			resp, body := do(t, c.method, g.srv.URL+c.path, "application/json", c.body, c.hdr)
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, body)
			}
			forwarded := nova.count() > before
			if forwarded != (c.want == 202) {
				t.Errorf("forwarded %v with status %d", forwarded, c.want)
			}
			if asked := ks.calls.Load() > calls; asked && !c.validated {
				t.Errorf("the identity was asked")
			}
			if c.want == 401 {
				checkUnauthorized(t, resp, body)
			}
			if c.want == 202 && c.validated {
				rec, _ := nova.last()
				if rec.Header.Get("X-Auth-Token")+rec.Header.Get("X-Storage-Token") != c.hdr["X-Auth-Token"]+c.hdr["X-Storage-Token"] {
					t.Errorf("the token was not forwarded unchanged")
				}
				if rec.Header.Get("X_Auth_Token") != "" {
					t.Errorf("X_Auth_Token was forwarded")
				}
			}
		})
	}
	t.Run("fail repeated token header", func(t *testing.T) {
		req, _ := http.NewRequest("POST", g.srv.URL+"/v2.1/servers", strings.NewReader(serverBody(idGood)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("X-Auth-Token", tokAlice)
		req.Header.Add("X-Auth-Token", tokUnmanaged)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	if s := g.logs.String(); strings.Contains(s, tokAlice) || strings.Contains(s, tokUnmanaged) || strings.Contains(s, "bogus") {
		t.Errorf("a token was logged:\n%s", s)
	}
	if got := metricValue(t, g, "imagetrust_proxy_token_validations_total{result=missing}"); got != 4 {
		t.Errorf("missing-token count %v, want 4", got)
	}
}

// checkUnauthorized checks a 401 against keystonemiddleware's (auth_token
// process_request: error/code/title/message, WWW-Authenticate).
func checkUnauthorized(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	var m struct {
		Error struct {
			Code           int
			Title, Message string
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &m); err != nil || m.Error.Code != 401 || m.Error.Title != "Unauthorized" || m.Error.Message == "" {
		t.Errorf("401 body %s", body)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("401 Content-Type %q", resp.Header.Get("Content-Type"))
	}
	if w := resp.Header.Get("WWW-Authenticate"); w != "" && !strings.HasPrefix(w, `Keystone uri="`) {
		t.Errorf("WWW-Authenticate %q", w)
	}
	if !strings.HasPrefix(resp.Header.Get("X-Openstack-Request-Id"), "req-") {
		t.Errorf("no request id on the 401")
	}
}

func TestIdentityAuditAndContext(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	ks := newStandInKeystone(time.Now())
	var got []Boot
	g := newGate(t, f, nova.srv.URL, func(o *Options) {
		o.Identity = ks
		o.UserData = func(b Boot, ud string, has bool) (string, bool, error) {
			got = append(got, b)
			return "", false, nil
		}
	})
	tok := map[string]string{"X-Auth-Token": tokAlice}
	do(t, "POST", g.srv.URL+"/v2.1/servers", "application/json", `{"server":{"name":"web-1","imageRef":"el9"}}`, tok)
	do(t, "POST", g.srv.URL+"/v2.1/servers/"+idUnknown+"/action", "application/json", `{"rebuild":{"imageRef":"`+idGood+`","name":"web-2","user_data":null}}`, map[string]string{"X-Auth-Token": tokAlice, "OpenStack-API-Version": "compute 2.57"})
	do(t, "POST", g.srv.URL+"/v2.1/servers", "application/json", serverBody(idRevoked), tok)
	if len(got) != 2 || got[0].ServerName != "web-1" || got[1].ServerName != "web-2" {
		t.Fatalf("hook calls %+v", got)
	}
	for _, b := range got {
		if b.Caller == nil || b.Caller.UserID != "u-alice" || b.Caller.ProjectID != aliceProject || b.Image == nil {
			t.Errorf("hook got %+v", b)
		}
	}
	var audits []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(g.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] == "boot decision" {
			audits = append(audits, m)
		}
	}
	if len(audits) != 3 {
		t.Fatalf("%d audit lines:\n%s", len(audits), g.logs.String())
	}
	for _, a := range audits {
		if a["user_id"] != "u-alice" || a["project_id"] != aliceProject || a["user_name"] != "alice" || a["project_name"] != "physics" {
			t.Errorf("audit line %v", a)
		}
	}
	if n := ks.calls.Load(); n != 1 {
		t.Errorf("%d validations for one token, want 1 (cached)", n)
	}
}

func TestIdentityKeystoneDown(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	ks := newStandInKeystone(time.Now())
	ks.down = true
	g := newGate(t, f, nova.srv.URL, func(o *Options) { o.Identity = ks })
	resp, body := do(t, "POST", g.srv.URL+"/v2.1/servers", "application/json", serverBody(idGood), map[string]string{"X-Auth-Token": tokAlice})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if name, code, _ := fault(t, body); name != "serviceUnavailable" || code != 503 {
		t.Errorf("fault %s %d", name, code)
	}
	if nova.count() != 0 {
		t.Error("Nova was called")
	}
	// the failure is not cached: Keystone back, the same token passes
	ks.mu.Lock()
	ks.down = false
	ks.mu.Unlock()
	if resp, body := do(t, "POST", g.srv.URL+"/v2.1/servers", "application/json", serverBody(idGood), map[string]string{"X-Auth-Token": tokAlice}); resp.StatusCode != 202 {
		t.Fatalf("after recovery: %d %s", resp.StatusCode, body)
	}
}

func TestIdentityCache(t *testing.T) {
	now := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	tick := func(d time.Duration) { n := clock.Load().Add(d); clock.Store(&n) }
	nowf := func() time.Time { return *clock.Load() }
	ctx := t.Context()

	t.Run("ok ttl and token expiry bound the cache", func(t *testing.T) {
		ks := newStandInKeystone(now)
		c := newCachedIdentity(ks, time.Minute, 10, nowf, nil)
		for range 3 {
			if _, err := c.Validate(ctx, tokAlice); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Validate(ctx, tokExpiring); err != nil {
				t.Fatal(err)
			}
		}
		if n := ks.calls.Load(); n != 2 {
			t.Fatalf("%d calls, want 2", n)
		}
		tick(11 * time.Second) // past tokExpiring's expiry, within the TTL
		_, _ = c.Validate(ctx, tokAlice)
		_, _ = c.Validate(ctx, tokExpiring)
		if n := ks.calls.Load(); n != 3 {
			t.Fatalf("%d calls, want 3 (the expired token asked again)", n)
		}
		tick(time.Minute) // past the TTL
		_, _ = c.Validate(ctx, tokAlice)
		if n := ks.calls.Load(); n != 4 {
			t.Fatalf("%d calls, want 4 (the TTL passed)", n)
		}
	})
	t.Run("ok refusals are not cached", func(t *testing.T) {
		ks := newStandInKeystone(now)
		c := newCachedIdentity(ks, time.Minute, 10, nowf, nil)
		for range 2 {
			if _, err := c.Validate(ctx, "bogus"); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err %v", err)
			}
		}
		if n := ks.calls.Load(); n != 2 {
			t.Fatalf("%d calls, want 2", n)
		}
	})
	t.Run("ok bounded size", func(t *testing.T) {
		ks := newStandInKeystone(now)
		for i := range 20 {
			ks.callers[fmt.Sprint("tok-", i)] = &Caller{UserID: fmt.Sprint(i)}
		}
		c := newCachedIdentity(ks, time.Hour, 5, nowf, nil)
		for i := range 20 {
			_, _ = c.Validate(ctx, fmt.Sprint("tok-", i))
		}
		if n := c.cache.len(); n != 5 {
			t.Fatalf("cache holds %d entries, want 5", n)
		}
	})
	t.Run("ok concurrent validations share one call", func(t *testing.T) {
		ks := newStandInKeystone(now)
		ks.gate = make(chan struct{})
		c := newCachedIdentity(ks, time.Hour, 10, nowf, nil)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if cl, err := c.Validate(ctx, tokAlice); err != nil || cl.UserID != "u-alice" {
					t.Errorf("%v %v", cl, err)
				}
			})
		}
		for ks.calls.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // let the others join the flight (late ones hit the cache)
		close(ks.gate)
		wg.Wait()
		if n := ks.calls.Load(); n != 1 {
			t.Fatalf("%d calls, want 1", n)
		}
	})
	t.Run("ok the token is not kept", func(t *testing.T) {
		ks := newStandInKeystone(now)
		c := newCachedIdentity(ks, time.Hour, 10, nowf, nil)
		_, _ = c.Validate(ctx, tokAlice)
		for k := range c.cache.items {
			if strings.Contains(string(k[:]), "alice") {
				t.Fatal("the cache key holds the token")
			}
		}
	})
}

// TestUnderscoreFieldsDropped: a request field whose name holds an
// underscore never reaches Nova, on any path (the fast server's, net/http's
// pass-through, a gated boot). Nova's WSGI server reads X_Auth_Token as
// X-Auth-Token and OpenStack_API_Version as OpenStack-API-Version, so the
// gate would validate one token, or read one microversion, and Nova act on
// another.
func TestUnderscoreFieldsDropped(t *testing.T) {
	f := catalogue(t)
	var mu sync.Mutex
	var seen []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{}`))
	}))
	defer up.Close()
	pair := newFastPair(t, f, up.URL, nil)
	// (Transfer_Encoding would make eventlet frame the forwarded body as
	// chunked while the gate sends it with a length: a desync)
	fields := "X-Auth-Token: gAAAAok\r\nX_Auth_Token: gAAAAother\r\nOpenStack_API_Version: compute 2.57\r\nx_other_field: 1\r\n" +
		"Transfer_Encoding: chunked\r\n"
	boot := serverBody(idGood)
	for name, raw := range map[string]string{
		"fast server pass-through": "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n" + fields + "\r\n",
		"net/http pass-through":    "POST /v2.1/flavors HTTP/1.1\r\nHost: h\r\n" + fields + "Content-Length: 2\r\n\r\n{}",
		"gated boot":               "POST /v2.1/servers HTTP/1.1\r\nHost: h\r\n" + fields + "Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(boot)) + "\r\n\r\n" + boot,
	} {
		for _, addr := range []string{pair.fast, pair.slow} {
			mu.Lock()
			seen = nil
			mu.Unlock()
			out := rawRoundTrip(t, addr, raw+"GET /end HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 5*time.Second)
			if !strings.HasPrefix(out, "HTTP/1.1 202 ") {
				t.Fatalf("%s: %.300q", name, out)
			}
			mu.Lock()
			if len(seen) != 2 {
				t.Fatalf("%s: the upstream saw %d requests", name, len(seen))
			}
			h := seen[0]
			mu.Unlock()
			for k := range h {
				if strings.Contains(k, "_") {
					t.Errorf("%s: the upstream saw %s: %q", name, k, h[k])
				}
			}
			if got := h.Values("X-Auth-Token"); len(got) != 1 || got[0] != "gAAAAok" {
				t.Errorf("%s: the upstream saw X-Auth-Token %q", name, got)
			}
		}
	}
}

// TestRequestTargetForms: only a path ("/…") is a request target the gate
// forwards. "x:%2Fv2.1%2Fservers" parses in Go as an opaque URL with an
// empty path (a version document to the gate) and went to Nova as the
// request line "%2Fv2.1%2Fservers", which eventlet decodes into
// /v2.1/servers: a server create from any image, unjudged (shown against
// the real nova-api by an outside review). Every method, both servers.
func TestRequestTargetForms(t *testing.T) {
	f := catalogue(t)
	var mu sync.Mutex
	var seen []string
	// a raw upstream that records every request line, as eventlet would
	// take it (Go's own server refuses a target that is not a path)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					mu.Lock()
					seen = append(seen, strings.TrimSpace(line))
					mu.Unlock()
					n := 0
					for {
						h, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if h == "\r\n" {
							break
						}
						if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
							n, _ = strconv.Atoi(strings.TrimSpace(v))
						}
					}
					if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
						return
					}
					_, _ = io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
				}
			}()
		}
	}()
	pair := newFastPair(t, f, "http://"+ln.Addr().String(), nil)
	boot := serverBody(idRevoked)
	for _, target := range []string{
		"http:%2Fv2.1%2Fservers", "x:%2Fv2.1%2Fos-volumes_boot", "x:%2Fv2.1%2Fservers%2F" + idUnknown + "%2Faction",
		"http://h/v2.1/servers", "v2.1/servers", "*",
	} {
		for _, method := range []string{"POST", "PUT", "GET"} {
			for _, addr := range []string{pair.fast, pair.slow} {
				mu.Lock()
				seen = nil
				mu.Unlock()
				raw := method + " " + target + " HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: " +
					strconv.Itoa(len(boot)) + "\r\nConnection: close\r\n\r\n" + boot
				out := rawRoundTrip(t, addr, raw, 5*time.Second)
				if !strings.HasPrefix(out, "HTTP/1.1 400 ") {
					t.Errorf("%s %s: %.200q", method, target, out)
				}
				mu.Lock()
				if len(seen) != 0 {
					t.Errorf("%s %s: the upstream saw %q", method, target, seen)
				}
				mu.Unlock()
			}
		}
	}
}

// TestTokenCacheTTLOption: the gate reuses a token's validation for
// Options.TokenCacheTTL (proxy.token_cache_ttl), DefaultTokenCacheTTL when
// it is 0, and asks Keystone again once it has passed: a token revoked in
// Keystone stops passing the gate at most that long after the gate
// validated it.
func TestTokenCacheTTLOption(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		want time.Duration
	}{
		{"ok default", 0, DefaultTokenCacheTTL},
		{"ok 90s", 90 * time.Second, 90 * time.Second},
		{"ok 20m", 20 * time.Minute, 20 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			var clock atomic.Pointer[time.Time]
			clock.Store(&now)
			tick := func(d time.Duration) { n := clock.Load().Add(d); clock.Store(&n) }
			ks := newStandInKeystone(now)
			g := newGate(t, f, nova.srv.URL, func(o *Options) {
				o.Identity = ks
				o.TokenCacheTTL = tc.ttl
				o.Now = func() time.Time { return *clock.Load() }
			})
			boot := func(wantCalls int64) {
				t.Helper()
				if resp, body := do(t, "POST", g.srv.URL+"/v2.1/servers", "application/json", serverBody(idGood), map[string]string{"X-Auth-Token": tokAlice}); resp.StatusCode != 202 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				if n := ks.calls.Load(); n != wantCalls {
					t.Fatalf("%d validations by Keystone, want %d (ttl %s)", n, wantCalls, tc.want)
				}
			}
			boot(1)
			tick(tc.want - time.Second)
			boot(1) // within the TTL: reused
			tick(2 * time.Second)
			boot(2) // past it: Keystone asked again
		})
	}
}
