package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// novaRaw sends one raw request to nova-api (a fresh connection) and reads
// its answer.
func novaRaw(t *testing.T, hostport, req string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestMicroversionMatchesNova asks the stack's nova-api (eventlet, webob,
// microversion-parse) which compute microversion it reads from header
// values (it names it in its answer's OpenStack-API-Version, or answers
// 400) and compares requestMicroversion's reading. The gate decides by it
// whether a rebuild's user_data is contextualised: "compute\xa02.57" was
// 2.1 to the gate and 2.57 to Nova (Python's whitespace), so the rebuild's
// user_data reached the server without the site's part.
func TestMicroversionMatchesNova(t *testing.T) {
	_, token, nu := novaAsDemo(t)
	// nova-api takes a rebuild's user_data under "compute\xa02.57": the
	// schema of 2.57 admits it (the unknown server then answers 404), that
	// of 2.56 does not (400)
	for v, want := range map[string]int{"compute\xa02.57": http.StatusNotFound, "compute 2.56": http.StatusBadRequest} {
		body := `{"rebuild":{"imageRef":"` + idGood + `","user_data":"dXNlcg=="}}`
		resp := novaRaw(t, nu.Host, fmt.Sprintf("POST %s/servers/%s/action HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\n"+
			"OpenStack-API-Version: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			strings.TrimSuffix(nu.Path, "/"), idUnknown, nu.Host, token, v, len(body), body))
		if resp.StatusCode != want {
			t.Errorf("rebuild with user_data under %q: nova-api answers %s, want %d", v, resp.Status, want)
		}
	}
	type hdrs struct{ std, legacy []string }
	cases := []hdrs{
		{std: []string{"compute 2.57"}},
		{std: []string{"compute\xa02.57"}},
		{std: []string{"compute\x852.57"}},
		{std: []string{"compute 2.57\xa0"}},
		{std: []string{"\xa0compute 2.57"}},
		{std: []string{"compute\t2.57"}},
		{std: []string{"compute 2.57, foo\xa0bar"}},
		{std: []string{"compute 2.60, compute 2.57 x"}},
		{std: []string{"compute 2.57", "volume 3.5"}},
		{std: []string{"volume 3.5", "compute 2.58"}},
		{std: []string{"compute LATEST"}},
		{std: []string{"COMPUTE 2.58"}},
		{std: []string{"compute 2.-0"}},
		{std: []string{"compute 2.057"}},
		{std: []string{"compute 2.x"}},
		{std: []string{"volume 3.5"}, legacy: []string{"2.58"}},
		{legacy: []string{"2.58\xa0"}},
		{legacy: []string{"2.58,"}},
		{legacy: []string{"2.40, 2.58"}},
		{legacy: []string{"2.40", "2.58"}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q %q", tc.std, tc.legacy), func(t *testing.T) {
			h := http.Header{}
			var b strings.Builder
			fmt.Fprintf(&b, "GET %s/flavors HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\n", strings.TrimSuffix(nu.Path, "/"), nu.Host, token)
			for _, v := range tc.std {
				h.Add("OpenStack-API-Version", v)
				fmt.Fprintf(&b, "OpenStack-API-Version: %s\r\n", v)
			}
			for _, v := range tc.legacy {
				h.Add("X-OpenStack-Nova-API-Version", v)
				fmt.Fprintf(&b, "X-OpenStack-Nova-API-Version: %s\r\n", v)
			}
			b.WriteString("Connection: close\r\n\r\n")
			resp := novaRaw(t, nu.Host, b.String())
			mv, ok := requestMicroversion(h, false)
			switch {
			case resp.StatusCode == http.StatusBadRequest:
				if ok {
					t.Errorf("nova-api refuses it (400); the gate reads %v", mv)
				}
			case resp.StatusCode != http.StatusOK:
				t.Fatalf("nova-api: %s", resp.Status)
			case !ok:
				t.Errorf("nova-api reads %q; the gate refuses it", resp.Header.Get("OpenStack-API-Version"))
			case mv.minor < 1<<30 && resp.Header.Get("OpenStack-API-Version") != fmt.Sprintf("compute %d.%d", mv.major, mv.minor):
				t.Errorf("nova-api reads %q; the gate %v", resp.Header.Get("OpenStack-API-Version"), mv)
			}
		})
	}
}

// TestSmugglingToNova sends the request-smuggling attempts of the s19
// review through the gate (its fast server, and net/http alone) into the
// stack's nova-api. Each hides a server create, a POST to
// /v2.1/servers?canary=N naming an image the gate refuses, behind
// framing that a parser might read differently (Content-Length against
// Transfer-Encoding, bytes Python takes for whitespace or line ends,
// obs-fold, trailers, chunk extensions, HTTP/1.0 keep-alive, Expect,
// Upgrade, CONNECT, pipelining, other target forms). The gate must judge
// (and refuse) every hidden create or refuse the whole request: nova-api's
// log must never name a canary.
func TestSmugglingToNova(t *testing.T) {
	c, token, nu := novaAsDemo(t)
	nova := novaRoot(nu)
	prefix := nova.Path
	canary := fmt.Sprintf("smuggle%d-", time.Now().UnixNano())
	body := `{"server":{"name":"smuggled","imageRef":"no-such-tag","flavorRef":"1","networks":"none"}}`
	inner := func(n int) string {
		return fmt.Sprintf("POST %s/v2.1/servers?canary=%s%d HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", prefix, canary, n, token, len(body), body)
	}
	h := "Host: x\r\nX-Auth-Token: " + token + "\r\n"
	pass := "POST " + prefix + "/v2.1/flavors/detail HTTP/1.1\r\n" + h
	var attacks []func(n int) string
	for _, te := range []string{"chunked", " chunked", "chunked ", "CHUNKED", "xchunked", "chunked, identity",
		"identity, chunked", "chunked,chunked", "chunked\t", "chunked\x0b", "chunked\xa0", "\x85chunked"} {
		attacks = append(attacks,
			func(n int) string {
				return pass + "Content-Length: 5\r\nTransfer-Encoding: " + te + "\r\n\r\n0\r\n\r\n" + inner(n)
			},
			func(n int) string {
				s := inner(n)
				return pass + "Content-Length: 4\r\nTransfer-Encoding: " + te + "\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(s), s)
			},
			func(n int) string {
				return "GET " + prefix + "/v2.1/flavors HTTP/1.1\r\n" + h + "Transfer-Encoding: " + te + "\r\n\r\n" + inner(n)
			})
	}
	for _, head := range []string{
		"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
		"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n",
		"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
		"Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n",
		"X-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
		"X-A: a\rTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
		"X-A: a\xa0Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
		"Transfer-Encoding\x00: chunked\r\nContent-Length: 5\r\n",
		"Content-Length: 0\r\nContent-Length: 5\r\n",
		"Content-Length: 0, 5\r\n",
		"Content-Length: +0\r\n",
	} {
		attacks = append(attacks, func(n int) string { return pass + head + "\r\n0\r\n\r\n" + inner(n) })
	}
	for _, raw := range []string{
		pass + "Transfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n%s",
		pass + "Transfer-Encoding: chunked\r\n\r\n0;a=\"\r\n\r\n%s",
		pass + "Transfer-Encoding: chunked\r\n\r\n0\n\n%s",
		pass + "Transfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n%s",
		pass + "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n%s",
		"POST " + prefix + "/v2.1/flavors/detail HTTP/1.0\r\n" + h + "Connection: keep-alive\r\n\r\n%s",
		"GET " + prefix + "/v2.1/flavors HTTP/1.0\r\n" + h + "Connection: keep-alive\r\n\r\n%s",
		"GET " + prefix + "/v2.1/flavors HTTP/1.1\r\n" + h + "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n%s",
		"GET " + prefix + "/v2.1/flavors HTTP/1.1\r\n" + h + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n%s",
		"CONNECT " + nu.Host + " HTTP/1.1\r\nHost: " + nu.Host + "\r\n\r\n%s",
		"GET " + prefix + "/v2.1/flavors HTTP/1.1\r\n" + h + "\r\n%s",
		"GET " + prefix + "/v2.1/flavors?a\xa0POST HTTP/1.1\r\n" + h + "\r\n%s",
		"GET http://x" + prefix + "/v2.1/flavors HTTP/1.1\r\n" + h + "\r\n%s",
		"OPTIONS * HTTP/1.1\r\n" + h + "\r\n%s",
		"GET " + prefix + "/v2.1/flavors HTTP/1.1\r\n" + h + "X-L: " + strings.Repeat("a", 9000) + "\r\n\r\n%s",
	} {
		attacks = append(attacks, func(n int) string { return fmt.Sprintf(raw, inner(n)) })
	}
	attacks = append(attacks, func(n int) string {
		s := inner(n)
		return pass + fmt.Sprintf("Expect: 100-continue\r\nContent-Length: %d\r\n\r\n%s", len(s), s)
	})

	n := 0
	for _, netHTTPOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("netHTTPOnly=%v", netHTTPOnly), func(t *testing.T) {
			if netHTTPOnly {
				t.Setenv(envTestNetHTTP, "1")
			}
			f := newFixture(t)
			g := newGate(t, f, nova.String(), nil)
			gu, _ := url.Parse(g.srv.URL)
			for _, a := range attacks {
				n++
				// a last request that closes the connection, so that the
				// read below ends once the gate has answered everything
				novaRawAll(t, gu.Host, a(n)+"GET "+prefix+"/v2.1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			}
		})
	}
	// the control: the first attack sent to nova-api itself smuggles its
	// create (eventlet reads the chunked body), so the log shows a canary
	control := fmt.Sprintf("canary=%s%d ", canary, n+1)
	novaRawAll(t, nu.Host, attacks[0](n+1)+"GET "+prefix+"/v2.1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	// nova-api logs a request once it has answered it: wait for a marker
	// sent last, then look for the canaries
	marker := fmt.Sprintf("%send", canary)
	novaRaw(t, nu.Host, "GET "+prefix+"/v2.1/?canary="+marker+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	logPath := c.StateDir + "/log/nova-api.log"
	var log []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if log, err = os.ReadFile(logPath); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(log, []byte(marker)) && bytes.Contains(log, []byte(control)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the marker %s or the control %q never reached %s", marker, control, logPath)
		}
	}
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "canary="+canary) && !strings.Contains(l, marker) && !strings.Contains(l, control) {
			t.Errorf("nova-api received a smuggled create: %s", l)
		}
	}
}

// novaRawAll writes req on a fresh connection and reads until the peer
// closes it.
func novaRawAll(t *testing.T, hostport, req string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	return out
}

// TestRoutesMatchNova asks the stack's nova-api which request paths it
// routes to a server create or a server action (a create with an invalid
// imageRef answers 400 naming imageRef; a rebuild of an unknown server 404
// naming the instance) and checks that the gate judges or refuses a POST
// to each (classifyPath: a create or action route, or anomalous).
// Percent-encoding, case, suffixes, parameters, dot and empty segments,
// control and non-ASCII bytes, prefixes.
func TestRoutesMatchNova(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the loopback OpenStack")
	}
	c := ostest.Start(t, ostest.Options{WithNova: true})
	demo := c.ComputeClient(t, ostest.CloudDemo)
	token := demo.ProviderClient.Token()
	nu, err := url.Parse(c.NovaURL)
	if err != nil {
		t.Fatal(err)
	}
	prefix := novaRoot(nu).Path
	res, ok := demo.ProviderClient.GetAuthResult().(interface {
		ExtractProject() (*tokens.Project, error)
	})
	if !ok {
		t.Fatal("demo: not a v3 token")
	}
	proj, err := res.ExtractProject()
	if err != nil {
		t.Fatal(err)
	}
	var creates, actions []string
	for _, v := range []string{"/v2.1", "/v2", "", "/V2.1", "/v2.1/" + proj.ID, "/v2/" + proj.ID, "//v2.1", "/v2.1/", "/v2.1%2F", "/v2%2e1", "/v2.1/x/..", "/v2.1/."} {
		for _, coll := range []string{"servers", "os-volumes_boot", "Servers", "serv%65rs", "servers.json", "servers%0a", "servers%0d", "servers%09",
			"servers%00", "servers%20", "servers;x", "servers%3B", "servers/", "servers/.", "servers%2F", "servers%C2%85", "servers%C2%A0",
			"servers%E2%80%A8", "servers#x", "servers?x=1", "servers%23", "os-volumes-boot", "os-volumes_boot%0a"} {
			creates = append(creates, v+"/"+coll)
		}
		for _, tail := range []string{"servers/I/action", "os-volumes_boot/I/action", "servers/I/action%0a", "servers/I%0a/action",
			"servers/I/Action", "servers/I/action.json", "servers/I/action;x", "servers/I;x/action", "servers/I.json/action",
			"servers/I%2Faction", "servers%2FI%2Faction", "servers/I/action/", "servers/I/./action", "servers/I/action%23",
			"servers/I/action%00", "servers/I/action%E2%80%A8", "servers/I/action%C2%85", "servers//I/action"} {
			actions = append(actions, v+"/"+strings.ReplaceAll(tail, "I", idUnknown))
		}
	}
	request := func(path, body string) string {
		return fmt.Sprintf("POST %s%s HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\nContent-Type: application/json\r\n"+
			"Content-Length: %d\r\nConnection: close\r\n\r\n%s", prefix, path, nu.Host, token, len(body), body)
	}
	judged := func(path string, want routeKind) bool {
		u, err := url.ParseRequestURI(path) // (what a client sends the gate)
		if err != nil {
			return true // net/http refuses the target
		}
		rt, anomalous := classifyPath(u.EscapedPath())
		return anomalous || rt.kind == want
	}
	routed := 0
	for _, p := range creates {
		resp, body := novaRawBody(t, nu.Host, request(p, `{"server":{"name":"x","imageRef":"x","flavorRef":"1"}}`))
		if resp.StatusCode == http.StatusBadRequest && strings.Contains(body, "imageRef") {
			routed++
			if !judged(p, routeCreate) {
				t.Errorf("nova-api routes POST %s to a server create; the gate passes it through", p)
			}
		}
	}
	for _, p := range actions {
		resp, body := novaRawBody(t, nu.Host, request(p, `{"rebuild":{"imageRef":"`+idGood+`"}}`))
		if resp.StatusCode == http.StatusNotFound && strings.Contains(body, "Instance") {
			routed++
			if !judged(p, routeAction) {
				t.Errorf("nova-api routes POST %s to a server action; the gate passes it through", p)
			}
		}
	}
	if routed < 20 {
		t.Fatalf("only %d paths routed by nova-api: the oracle is broken", routed)
	}
	t.Logf("%d of %d paths routed by nova-api, each judged or refused by the gate", routed, len(creates)+len(actions))
}

// novaRawBody is novaRaw with the answer's body.
func novaRawBody(t *testing.T, hostport, req string) (*http.Response, string) {
	t.Helper()
	out := novaRawAll(t, hostport, req)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestForwardedPrefixNova: the stack's nova-api (http_proxy_to_wsgi with
// enable_proxy_headers_parsing, etc/nova/nova.conf.snippet) writes a
// client's X-Forwarded-Prefix into its links; through the gate it does
// not (TestNoForwardedPrefix).
func TestForwardedPrefixNova(t *testing.T) {
	_, token, nu := novaAsDemo(t)
	nova := novaRoot(nu)
	g := newGate(t, newFixture(t), nova.String(), nil)
	gu, _ := url.Parse(g.srv.URL)
	for _, target := range []string{"/v2.1/", "/v2.1/flavors?limit=1"} {
		req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\nX-Forwarded-Prefix: /evil\r\nConnection: close\r\n\r\n", "%s", "%s", token)
		_, direct := novaRawBody(t, nu.Host, fmt.Sprintf(req, nova.Path+target, nu.Host))
		_, via := novaRawBody(t, gu.Host, fmt.Sprintf(req, target, gu.Host))
		if target == "/v2.1/" && !strings.Contains(direct, "/evil/") {
			t.Fatalf("nova-api no longer takes X-Forwarded-Prefix: %s", direct)
		}
		if strings.Contains(via, "/evil") {
			t.Errorf("GET %s through the gate: Nova's answer has the client's prefix: %s", target, via)
		}
	}
}

// novaAsDemo starts (or joins) the loopback stack with nova-api (skipped
// under -short) and returns it, a token of its demo user and nova-api's
// compute endpoint.
func novaAsDemo(t *testing.T) (*ostest.Cloud, string, *url.URL) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the loopback OpenStack")
	}
	c := ostest.Start(t, ostest.Options{WithNova: true})
	token := c.ComputeClient(t, ostest.CloudDemo).ProviderClient.Token()
	nu, err := url.Parse(c.NovaURL)
	if err != nil {
		t.Fatal(err)
	}
	return c, token, nu
}

// novaRoot is nova-api's root (its versions document) for its compute
// endpoint nu: nu without /v2.1.
func novaRoot(nu *url.URL) *url.URL {
	return &url.URL{Scheme: "http", Host: nu.Host, Path: strings.TrimSuffix(strings.TrimSuffix(nu.Path, "/"), "/v2.1")}
}

// TestMethodsMatchNova asks the stack's nova-api whether a request of any
// method but POST reaches a server create or action (the gate judges
// POSTs only, and refuses _method in a query: TestGateBypassTable): PUT,
// PATCH, GET, DELETE, HEAD, OPTIONS, an unknown method and POST in lower
// case, bare and with the method-override fields other frameworks honour
// (X-HTTP-Method-Override, X-Method-Override, X-HTTP-Method); and a POST
// HTML form with _method=POST (routes' other override). None does: each
// is answered without the create's imageRef check or the action's
// instance lookup (the oracle: POST gets both).
func TestMethodsMatchNova(t *testing.T) {
	_, token, nu := novaAsDemo(t)
	prefix := novaRoot(nu).Path
	create, action := prefix+"/v2.1/servers", prefix+"/v2.1/servers/"+idUnknown+"/action"
	createBody := `{"server":{"name":"x","imageRef":"x","flavorRef":"1"}}`
	actionBody := `{"rebuild":{"imageRef":"` + idGood + `"}}`
	routed := func(method, path, ctype, extra, body string) bool {
		req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\nContent-Type: %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			method, path, nu.Host, token, ctype, extra, len(body), body)
		resp, b := novaRawBody(t, nu.Host, req)
		if path == create {
			return resp.StatusCode == http.StatusBadRequest && strings.Contains(b, "imageRef")
		}
		return resp.StatusCode == http.StatusNotFound && strings.Contains(b, "Instance")
	}
	for _, path := range []string{create, action} {
		body := map[string]string{create: createBody, action: actionBody}[path]
		if !routed("POST", path, "application/json", "", body) {
			t.Fatalf("POST %s: not routed by nova-api: the oracle is broken", path)
		}
		for _, m := range []string{"PUT", "PATCH", "GET", "DELETE", "HEAD", "OPTIONS", "FOO", "post"} {
			for _, extra := range []string{"", "X-HTTP-Method-Override: POST\r\n", "X-Method-Override: POST\r\n", "X-HTTP-Method: POST\r\n"} {
				if routed(m, path, "application/json", extra, body) {
					t.Errorf("nova-api routes %s %s (%q) as the POST; the gate passes it through", m, path, strings.TrimSpace(extra))
				}
			}
		}
		if routed("POST", path, "application/x-www-form-urlencoded", "", "_method=POST&"+url.QueryEscape(body)) {
			t.Errorf("nova-api routes a form POST to %s", path)
		}
	}
}
