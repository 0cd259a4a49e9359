package proxy

import (
	"encoding/json"
	"github.com/imagetrust/imagetrust/internal/testutil"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// recorded is one request as the upstream received it.
type recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
	ContentLen   int64
	TE           []string
}

// recordingNova is a recording stand-in for Nova's compute API: it stores
// what reaches it and answers 202 with Nova's request id headers. The gate's
// judgement and forwarding are what these tests check; a real nova-api is
// used by the integration test.
type recordingNova struct {
	mu   sync.Mutex
	reqs []recorded
	srv  *httptest.Server
}

func newRecordingNova(t testing.TB) *recordingNova {
	n := &recordingNova{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n.mu.Lock()
		n.reqs = append(n.reqs, recorded{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: b, ContentLen: r.ContentLength, TE: r.TransferEncoding})
		n.mu.Unlock()
		w.Header().Set("X-Openstack-Request-Id", "req-00000000-0000-4000-8000-000000000001")
		w.Header().Set("X-Compute-Request-Id", "req-00000000-0000-4000-8000-000000000001")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"server":{"id":"0b9e6c55-7a4e-4f0e-9e0b-6d8b0b8a1a01"}}`))
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *recordingNova) last() (recorded, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.reqs) == 0 {
		return recorded{}, false
	}
	return n.reqs[len(n.reqs)-1], true
}

func (n *recordingNova) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.reqs)
}

// gateEnv is a proxy in front of an upstream, with its logs and metrics.
type gateEnv struct {
	proxy *Proxy
	srv   *gateServer
	logs  *testutil.SyncBuffer
	reg   *prometheus.Registry
}

func newGate(t testing.TB, f *fixture, upstream string, mod func(*Options)) *gateEnv {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Upstream: u, Lookup: f.glance, Decider: f.trust, MirrorProject: mirrorProject,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), Metrics: m, MaxBody: 64 << 10,
	}
	if mod != nil {
		mod(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &gateEnv{proxy: p, srv: serveGate(t, p), logs: logs, reg: reg}
}

// fault decodes a Nova-shaped error body: name, code, message.
func fault(t testing.TB, b []byte) (string, int, string) {
	t.Helper()
	var m map[string]struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
		t.Fatalf("not a Nova fault: %s", b)
	}
	for k, v := range m {
		return k, v.Code, v.Message
	}
	return "", 0, ""
}

func serverBody(imageRef string) string {
	return `{"server":{"name":"vm","flavorRef":"1","networks":"none","imageRef":` + jsonString(imageRef) + `}}`
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func do(t testing.TB, method, u, ctype, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// tcpPair returns the two ends of a loopback TCP connection, the client
// end read and written through directIO when direct is set.
func tcpPair(t *testing.T, direct bool) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	if direct {
		return directIO(c), s
	}
	return c, s
}
