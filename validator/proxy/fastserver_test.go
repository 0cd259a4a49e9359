package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// envTestNetHTTP, when set, makes the tests serve their gates with
// net/http's server alone; by default a gate the fast server can serve
// (plain-HTTP upstream, no Options.Transport) is served by it, as Serve
// does.
const envTestNetHTTP = "IMAGETRUST_PROXY_TEST_NETHTTP"

// gateServer is a gate served on a loopback port for a test.
type gateServer struct {
	URL   string
	close func()
}

// Close stops the server.
func (s *gateServer) Close() { s.close() }

// serveGate serves p on a loopback port until the test ends: with the fast
// server in front of newServer's http.Server, as Serve does, unless p
// cannot have one or envTestNetHTTP is set.
func serveGate(t testing.TB, p *Proxy) *gateServer {
	t.Helper()
	if p.pool == nil || os.Getenv(envTestNetHTTP) != "" {
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		return &gateServer{URL: srv.URL, close: srv.Close}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := newServer(p, slog.New(slog.NewTextHandler(io.Discard, nil)))
	fs := newFastServer(p, hs)
	go func() { _ = fs.serve(ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = fs.shutdown(ctx)
			_ = hs.Shutdown(ctx)
			p.CloseIdleConnections()
		})
	}
	t.Cleanup(stop)
	return &gateServer{URL: "http://" + ln.Addr().String(), close: stop}
}

// fastPair is one gate served twice: by the fast server and by net/http's
// server alone (newServer's settings both), so that the same raw bytes
// can be sent to each and the answers compared.
type fastPair struct {
	g          *gateEnv
	fs         *fastServer
	fast, slow string // addresses
}

func newFastPair(t *testing.T, f *fixture, upstream string, mod func(*Options)) *fastPair {
	t.Helper()
	g := newGate(t, f, upstream, mod)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	hs := newServer(g.proxy, log)
	fs := newFastServer(g.proxy, hs)
	fln := listen()
	go func() { _ = fs.serve(fln) }()
	ss := newServer(g.proxy, log)
	sln := listen()
	go func() { _ = ss.Serve(sln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fs.shutdown(ctx)
		_ = hs.Shutdown(ctx)
		_ = ss.Shutdown(ctx)
	})
	return &fastPair{g: g, fs: fs, fast: fln.Addr().String(), slow: sln.Addr().String()}
}

var (
	dateLine  = regexp.MustCompile(`(?m)^Date: [^\r]*\r$`)
	requestID = regexp.MustCompile(`req-[0-9a-f-]{36}`)
)

// rawRoundTrip writes raw to addr and returns everything the server sends
// until it closes the connection (or wait passes), Date and fresh request
// ids masked.
func rawRoundTrip(t *testing.T, addr, raw string, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	out := dateLine.ReplaceAllString(string(b), "Date: *\r")
	out = requestID.ReplaceAllString(out, "req-*")
	if isTimeoutErr(err) {
		out += "\n[still open]"
	}
	return out
}

// TestFastServerMatchesNetHTTP sends the same raw requests to the gate
// served by the fast server and by net/http's server, and compares the
// bytes the client gets back and the requests the upstream receives.
func TestFastServerMatchesNetHTTP(t *testing.T) {
	f := catalogue(t)
	up := newRawUpstream(t, func(r *http.Request) (string, bool) {
		name := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		raw, ok := forwarderCases[name]
		if !ok {
			raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
		}
		if name == "big" {
			raw = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("x", 5000)
		}
		if name == "bigchunked" {
			raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + strings.Repeat("<p>", 5000/3) + "yy\r\n0\r\n\r\n"
		}
		if raw, ok := plainAnswers[name]; ok {
			return raw, name == "plaintruncated" || name == "plainmidtruncated"
		}
		if name == "notmodified" {
			raw = "HTTP/1.1 304 Not Modified\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nETag: \"y\"\r\n\r\n"
		}
		if name == "oddstatus" {
			raw = "HTTP/1.1 599 Whatever\r\nContent-Length: 3\r\n\r\nodd"
		}
		if name == "empty" {
			raw = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
		}
		if name == "sniff" {
			raw = "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n<html>hi</html>"
		}
		return raw, name == "close" || name == "eof" || name == "truncated"
	})
	for _, base := range []string{"", "/compute"} {
		pair := newFastPair(t, f, "http://"+up.ln.Addr().String()+base, nil)
		type req struct{ name, method, target, headers string }
		reqs := []req{
			{"headers", "GET", "/v2.1/servers/detail?all_tenants=1&name=a%2Fb",
				clientHeaders + "x-lower-case: v\r\nPragma: no-cache\r\n"},
			{"no user agent", "GET", "/v2.1/flavors", ""},
			{"empty user agent", "GET", "/v2.1/flavors", "User-Agent: \r\n"},
			{"content-length zero", "GET", "/v2.1/flavors", "Content-Length: 0\r\n"},
			{"escaped path", "GET", "/v2.1/os-x/a%2Fb%20c/plain", ""},
			{"empty query", "GET", "/v2.1/flavors?", ""},
			{"version document", "GET", "/v2.1", ""},
			{"version root", "GET", "/", ""},
			{"options", "OPTIONS", "/v2.1/servers/plain", ""},
			{"delete", "DELETE", "/v2.1/servers/plain", ""},
			{"big", "GET", "/v2.1/things/big", ""},
			{"big chunked", "GET", "/v2.1/things/bigchunked", ""},
			{"sniffed", "GET", "/v2.1/things/sniff", ""},
			{"not modified", "GET", "/v2.1/things/notmodified", "If-None-Match: \"y\"\r\n"},
			{"not modified, head", "HEAD", "/v2.1/things/notmodified", ""},
			{"odd status", "GET", "/v2.1/things/oddstatus", ""},
			{"empty", "GET", "/v2.1/things/empty", ""},
			{"head big", "HEAD", "/v2.1/things/big", ""},
		}
		for name := range plainAnswers {
			reqs = append(reqs, req{"plain " + name, "GET", "/v2.1/things/" + name, ""})
			reqs = append(reqs, req{"plain head " + name, "HEAD", "/v2.1/things/" + name, ""})
		}
		for name := range forwarderCases {
			reqs = append(reqs, req{"answer " + name, "GET", "/v2.1/things/" + name, ""})
			reqs = append(reqs, req{"head answer " + name, "HEAD", "/v2.1/things/" + name, ""})
		}
		for _, rq := range reqs {
			t.Run(base+" "+rq.name, func(t *testing.T) {
				head := rq.method + " " + rq.target + " HTTP/1.1\r\nHost: compute.example.org\r\n" + rq.headers
				// the same request twice on one connection, then a last one
				// that closes it
				raw := head + "\r\n" + head + "\r\n" + rq.method + " " + rq.target + " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
				var got [2]string
				var sent [2]*http.Request
				before := pair.fs.handOvers.Load()
				for i, addr := range []string{pair.fast, pair.slow} {
					got[i] = rawRoundTrip(t, addr, raw, 10*time.Second)
					sent[i] = up.lastRequest()
				}
				handedOver := pair.fs.handOvers.Load() != before
				if want := rq.method == "DELETE" || strings.HasPrefix(rq.name, "version"); handedOver != want {
					t.Errorf("handed over to net/http: %v, want %v", handedOver, want)
				}
				if got[0] != got[1] {
					t.Errorf("client saw\nfast %q\nslow %q", got[0], got[1])
				}
				r, s := sent[0], sent[1]
				if r.Method != s.Method || r.RequestURI != s.RequestURI || r.Host != s.Host || !reflect.DeepEqual(r.Header, s.Header) {
					t.Errorf("upstream saw\nfast %s %s Host %s %v\nslow %s %s Host %s %v", r.Method, r.RequestURI, r.Host, r.Header,
						s.Method, s.RequestURI, s.Host, s.Header)
				}
			})
		}
	}
}

// plainAnswers are upstream answers, by the last path segment, that the
// fast relay takes (TestPlainAnswer checks that it does).
var plainAnswers = map[string]string{
	"plainsmall": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
	"plainbig": "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 40000\r\n\r\n" +
		strings.Repeat("0123456789", 4000),
	"plainfields": "HTTP/1.1 404 Not Found\r\nx-b: 1\r\nContent-Type: application/json\r\nset-cookie: a=1\r\nX-A:  spaced \t\r\n" +
		"Set-Cookie: b=2\r\nDate: Tue, 25 Nov 2026 20:00:00 GMT\r\nOpenStack-API-Version: compute 2.1\r\nX-Empty:\r\n" +
		"Content-Length: 9\r\n\r\nnot found",
	"plainempty":     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
	"plainodd":       "HTTP/1.1 599 Whatever\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nodd",
	"plaintruncated": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly part",
	// larger than the client write buffer, within the upstream read
	// buffer: head and body go out in one writev (relayPlain)
	"plainmid": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nVary: A\r\nVary: B\r\nContent-Length: 15000\r\n\r\n" +
		strings.Repeat("[12345678]", 1500),
	"plainmidtruncated": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15000\r\n\r\n" +
		strings.Repeat("y", 6000),
}

// TestPlainAnswer: which answers the fast relay takes.
func TestPlainAnswer(t *testing.T) {
	for name, raw := range plainAnswers {
		var a plainAnswer
		if !parsePlainAnswer([]byte(raw), &a) {
			t.Errorf("%s: not taken", name)
		}
	}
	for _, raw := range []string{
		forwarderCases["plain"], // hop-by-hop fields, Location
		forwarderCases["chunked"], forwarderCases["eof"], forwarderCases["nocontent"], forwarderCases["hints"],
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", // no type: sniffed
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream; charset=utf-8\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 02\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 2\r\nPragma: no-cache\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 2\r\nX: a\r\n b\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Type: \xc3\xa9\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200\r\nContent-Type: a\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.0 200 OK\r\nContent-Type: a\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 2\r\n", // head not in whole
	} {
		var a plainAnswer
		if parsePlainAnswer([]byte(raw), &a) {
			t.Errorf("taken: %q", raw)
		}
	}
}

// TestFastServerHostile sends hostile and unusual input to both servers:
// whatever the fast path declines goes to net/http with the bytes it has
// read, so the answers must be the same byte for byte.
func TestFastServerHostile(t *testing.T) {
	f := catalogue(t)
	up := newRawUpstream(t, func(r *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", false
	})
	pair := newFastPair(t, f, "http://"+up.ln.Addr().String(), nil)
	get := "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n"
	end := "GET /v2.1/end HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
	boot := func(img string) string {
		b := serverBody(img)
		return "POST /v2.1/servers HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(b)) + "\r\n\r\n" + b
	}
	cases := map[string]string{
		"smuggle cl te":           "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + end,
		"smuggle te cl":           "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + end,
		"smuggle two cl":          "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nGET /" + end,
		"smuggle cl list":         "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nContent-Length: 0, 0\r\n\r\n" + end,
		"smuggle te identity":     "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n" + end,
		"smuggle te obs-fold":     "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + end,
		"smuggle te space":        "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + end,
		"get with body":           "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" + end,
		"cl plus sign":            "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nContent-Length: +0\r\n\r\n" + end,
		"bare lf":                 "GET /v2.1/flavors HTTP/1.1\nHost: h\n\n" + end,
		"bare cr":                 "GET /v2.1/flavors HTTP/1.1\rHost: h\r\n\r\n" + end,
		"obs-fold":                "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n" + end,
		"no host":                 "GET /v2.1/flavors HTTP/1.1\r\n\r\n" + end,
		"two hosts":               "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n" + end,
		"bad host":                "GET /v2.1/flavors HTTP/1.1\r\nHost: h/x\r\n\r\n" + end,
		"empty host":              "GET /v2.1/flavors HTTP/1.1\r\nHost: \r\n\r\n" + end,
		"nul in header":           "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n" + end,
		"utf8 in header":          "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nX-A: \xc3\xa9\r\n\r\n" + end,
		"space in name":           "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nX A: a\r\n\r\n" + end,
		"empty name":              "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n" + end,
		"http/1.0":                "GET /v2.1/flavors HTTP/1.0\r\nHost: h\r\n\r\n",
		"http/1.0 keep-alive":     "GET /v2.1/flavors HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n" + end,
		"http/2 preface":          "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"method and version only": "HEAD HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"lowercase method":        "get /v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"absolute target":         "GET http://h/v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"asterisk":                "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"two spaces":              "GET  /v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"tab in line":             "GET\t/v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"fragment":                "GET /v2.1/flavors#x HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"semicolon query":         "GET /v2.1/flavors?a=1;b=2 HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"leading crlf":            "\r\n" + get + end,
		"expect":                  "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n" + end,
		"upgrade":                 "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + end,
		"h2c upgrade":             "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" + end,
		"huge header":             "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n" + end,
		"header over buffer":      "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n" + end,
		"many headers":            "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X-A: a\r\n", 150) + "\r\n" + end,
		"huge target":             "GET /v2.1/" + strings.Repeat("a", 70<<10) + " HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"garbage":                 "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + end,
		"pipelined":               get + get + get + end,
		"gated after pass":        get + get + boot(idRevoked) + get + end,
		"allowed boot after":      get + boot(idGood) + get + end,
		"gated first":             boot(idRevoked) + get + end,
		"post anomalous path":     get + "POST /v2.1//servers HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}" + end,
		"version after pass":      get + "GET /v2.1 HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"escaped create judged":   get + "POST /v2.1/serv%65rs HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" + end,
		"get on servers path":     "GET /v2.1/servers HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"method override judged":  get + "GET /v2.1/flavors?_method=POST HTTP/1.1\r\nHost: h\r\n\r\n" + end,
		"connection close first":  "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + boot(idRevoked),
		"connection close token":  "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, CLOSE\r\n\r\n" + get,
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			before := pair.fs.handOvers.Load()
			fast := rawRoundTrip(t, pair.fast, raw, 5*time.Second)
			if name == "pipelined" && pair.fs.handOvers.Load() != before {
				t.Error("plain pass-through requests were handed over to net/http")
			}
			slow := rawRoundTrip(t, pair.slow, raw, 5*time.Second)
			if fast != slow {
				t.Errorf("client saw\nfast %.3000q\nslow %.3000q", fast, slow)
			}
			if strings.Contains(name, "gated") && !strings.Contains(fast, "403 Forbidden") {
				t.Errorf("the boot was not refused: %.2000q", fast)
			}
			if strings.Contains(name, "judged") && !strings.Contains(fast, "badRequest") {
				t.Errorf("the request was not judged: %.2000q", fast)
			}
		})
	}
}

// TestFastServerClientGone: a client that goes away while the upstream has
// not answered makes the gate drop its upstream connection (as
// TestForwarderClientGone checks for net/http's server); the connection's
// next requests, pipelined behind a slow one, are still answered.
func TestFastServerClientGone(t *testing.T) {
	f := catalogue(t)
	release := make(chan struct{})
	up := newRawUpstream(t, func(r *http.Request) (string, bool) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/slow"):
			return "", false // never answered
		case strings.HasSuffix(r.URL.Path, "/later"):
			<-release
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	pair := newFastPair(t, f, "http://"+up.ln.Addr().String(), nil)
	c, err := net.Dial("tcp", pair.fast)
	if err != nil {
		t.Fatal(err)
	}
	// slowThenGone sends a request the upstream never answers, then goes
	// away: the gate must drop the upstream connection
	slowThenGone := func(c net.Conn, requestsBefore int, when string) {
		_, _ = io.WriteString(c, "GET /v2.1/servers/slow HTTP/1.1\r\nHost: h\r\n\r\n")
		up.waitRequests(requestsBefore + 1)
		c.Close()
		select {
		case <-up.gone:
		case <-time.After(20 * time.Second):
			t.Fatal(when + ", the gate kept its upstream connection to a gone client's request")
		}
	}
	slowThenGone(c, 0, "on a new connection")
	// the same after answered requests on the connection: the watch's
	// timer, set for the first of them, fires early for the slow one and
	// is set again for what is left
	c, err = net.Dial("tcp", pair.fast)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for range 3 {
		_, _ = io.WriteString(c, "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		time.Sleep(watchAfter / 4)
	}
	slowThenGone(c, 4, "after answered requests")
	// a slow answer with the next request already sent behind it
	go func() { time.Sleep(3 * watchAfter); close(release) }()
	out := rawRoundTrip(t, pair.fast, "GET /v2.1/servers/later HTTP/1.1\r\nHost: h\r\n\r\n"+
		"GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 10*time.Second)
	if strings.Count(out, "HTTP/1.1 200 OK") != 2 {
		t.Fatalf("pipelined behind a slow request: %q", out)
	}
}

// TestFastServerTimeouts: an idle keep-alive connection is closed after
// IdleTimeout, a head that does not come in whole within ReadHeaderTimeout
// closes the connection without an answer (as net/http does).
func TestFastServerTimeouts(t *testing.T) {
	f := catalogue(t)
	up := newRawUpstream(t, func(r *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	g := newGate(t, f, "http://"+up.ln.Addr().String(), nil)
	hs := newServer(g.proxy, slog.New(slog.NewTextHandler(io.Discard, nil)))
	hs.ReadHeaderTimeout, hs.IdleTimeout = 200*time.Millisecond, 300*time.Millisecond
	fs := newFastServer(g.proxy, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = fs.serve(ln) }()
	t.Cleanup(func() { _ = fs.shutdown(context.Background()); _ = hs.Close() })
	for _, c := range []struct {
		name, raw string
		answers   int
		within    time.Duration
	}{
		{"idle", "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n", 1, 2 * time.Second},
		{"slow head", "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n", 0, 2 * time.Second},
		{"silent", "", 0, 2 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			out := rawRoundTrip(t, ln.Addr().String(), c.raw, 5*time.Second)
			if strings.Contains(out, "[still open]") || time.Since(start) > c.within {
				t.Fatalf("not closed in time: %q after %v", out, time.Since(start))
			}
			if n := strings.Count(out, "HTTP/1.1 200"); n != c.answers {
				t.Errorf("%d answers: %q", n, out)
			}
		})
	}
}

// TestFastServerShutdown: Serve with the fast server stops on its context:
// an idle keep-alive connection is closed at once, a request in flight
// finishes (with Connection: close) and Serve returns.
func TestFastServerShutdown(t *testing.T) {
	f := catalogue(t)
	release := make(chan struct{})
	up := newRawUpstream(t, func(r *http.Request) (string, bool) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			<-release
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	g := newGate(t, f, "http://"+up.ln.Addr().String(), nil)
	a, cancel, wait := serveInBackground(t, g.proxy, ServerOptions{ShutdownTimeout: 10 * time.Second})
	idle, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_, _ = io.WriteString(idle, "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n")
	busy, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, _ = io.WriteString(busy, "GET /v2.1/servers/slow HTTP/1.1\r\nHost: h\r\n\r\n")
	buf := make([]byte, 4096)
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idle.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("first answer: %q %v", buf[:n], err)
	}
	up.waitRequests(2)
	cancel()
	if b, err := io.ReadAll(idle); err != nil || len(b) != 0 {
		t.Errorf("idle connection: %q %v", b, err)
	}
	close(release)
	_ = busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(busy)
	if err != nil || !strings.Contains(string(b), "Connection: close\r\n") || !strings.HasSuffix(string(b), "ok") {
		t.Errorf("request in flight: %q %v", b, err)
	}
	wait()
}

// TestClientWatchTrack: the exchange the client watch tracks is
// interrupted when the client goes away, also when it went away before
// the exchange began (while its upstream connection was being dialled),
// and untrack says so as context.AfterFunc's stop does.
func TestClientWatchTrack(t *testing.T) {
	for _, tt := range []struct {
		name      string
		goneFirst bool
	}{{"ok not gone", false}, {"fail gone before the exchange", true}} {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := tcpPair(t, true)
			w := &clientWatch{gone: tt.goneFirst}
			w.track(&upConn{c: c})
			if tt.goneFirst {
				// the read ends at once, on the deadline track set
				errc := make(chan error, 1)
				go func() { _, err := c.Read(make([]byte, 1)); errc <- err }()
				select {
				case err := <-errc:
					if !isTimeoutErr(err) {
						t.Fatalf("read: %v, want a timeout", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the exchange of a client gone before it was not interrupted")
				}
			}
			if got := w.untrack(); got == tt.goneFirst {
				t.Errorf("untrack() = %v, want %v", got, !tt.goneFirst)
			}
			if w.up != nil {
				t.Error("untrack left the connection tracked")
			}
		})
	}
}
