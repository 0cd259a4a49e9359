package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

// heldHook is a contextualisation hook that holds every boot it sees
// until released (the gated request then holds its slot: body read, image
// judged, not yet forwarded), panics for a server named "panic", and
// lets the others through untouched.
type heldHook struct {
	entered chan string // server names, as each boot reaches the hook
	mu      sync.Mutex
	release chan struct{}
}

func newHeldHook() *heldHook {
	return &heldHook{entered: make(chan string, 64), release: make(chan struct{})}
}

func (h *heldHook) hook(b Boot, _ string, _ bool) (string, bool, error) {
	if b.ServerName == "panic" {
		panic("test: the hook panics")
	}
	if !strings.HasPrefix(b.ServerName, "held") {
		return "", false, nil
	}
	h.mu.Lock()
	rel := h.release
	h.mu.Unlock()
	h.entered <- b.ServerName
	select {
	case <-rel:
	case <-b.Request.Context().Done():
	}
	return "", false, nil
}

// releaseAll lets the held boots go on, and holds those that come next.
func (h *heldHook) releaseAll() {
	h.mu.Lock()
	close(h.release)
	h.release = make(chan struct{})
	h.mu.Unlock()
}

// waitFor polls cond until it holds (the test's own deadline bounds the
// wait: no timed assertion, only the outcome).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if dl, ok := t.Deadline(); ok && time.Until(dl) < 5*time.Second {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gaugeValue reads a gauge (or counter) of reg by its family name and,
// optionally, its one label's value.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s %s", name, label)
	return 0
}

// TestGatedLimitNova: the bound on gated requests, against the real nova-api,
// Glance and Keystone of the loopback stack. Boots through the gate are held
// in its contextualisation hook (after their body was read and their image
// judged with the real Glance: what a burst of large boots, or a stalled
// service, holds in memory), up to MaxGated of them:
//   - pass-through requests (the flavor list from nova-api) are served
//     meanwhile, on the fast server and on net/http's alone;
//   - the next MaxGated boots wait in the queue; the one after them is
//     refused at once, 503 serviceUnavailable with Retry-After, in Nova's
//     fault shape, and never reaches Nova; with a short queue timeout a
//     waiting boot is refused 503 queue-timeout;
//   - released, the held and queued boots are forwarded and nova-api
//     creates their servers (202), and every slot is given back;
//   - no slot leaks when a client goes away in the middle of its body, when
//     Nova cannot be reached (502), or when the hook panics;
//   - the overload log: one line at the first refusal, then one summary.
func TestGatedLimitNova(t *testing.T) {
	s := startNovaStack(t)
	for _, netHTTPOnly := range []bool{false, true} {
		name := "ok fast server"
		if netHTTPOnly {
			name = "ok net/http only"
		}
		t.Run(name, func(t *testing.T) { testGatedLimitNova(t, s, netHTTPOnly) })
	}
}

func testGatedLimitNova(t *testing.T, s *novaStack, netHTTPOnly bool) {
	const maxGated = 2
	h := newHeldHook()
	logs := &testutil.SyncBuffer{}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	newGateProxy := func(upstream string, timeout time.Duration) *Proxy {
		o := Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
			MirrorProject: s.project, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Metrics: m,
			UserData: h.hook, MaxGated: maxGated, GatedQueueTimeout: timeout}
		if upstream != "" {
			u := *s.nova
			u.Host = upstream
			o.Upstream, o.Metrics = &u, nil
		}
		p, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := newGateProxy("", time.Hour)
	p.rejects.interval = time.Hour // (flushed by the test)
	addr, _, _ := serveInBackground(t, p, ServerOptions{NetHTTPOnly: netHTTPOnly, ShutdownTimeout: 5 * time.Second})
	base := "http://" + addr
	_, demo := s.viaGate(t, ostest.CloudDemo, base)
	token := demo.ProviderClient.Token()

	type answer struct {
		code   int
		header http.Header
		body   []byte
		err    error
	}
	post := func(ctx context.Context, base, name string) answer {
		body := `{"server":{"name":"` + name + `","imageRef":"` + s.id + `","flavorRef":"` + s.flavorID + `","networks":"none"}}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2.1/servers", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Auth-Token", token)
		req.Header.Set("OpenStack-API-Version", "compute 2.37")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return answer{err: err}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusAccepted {
			var out struct{ Server struct{ ID string } }
			if json.Unmarshal(b, &out) == nil && out.Server.ID != "" {
				t.Cleanup(func() { _ = servers.Delete(context.Background(), demo, out.Server.ID).ExtractErr() })
			}
		}
		return answer{code: resp.StatusCode, header: resp.Header, body: b}
	}
	passThrough := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/v2.1/flavors", nil)
		req.Header.Set("X-Auth-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("pass-through while the gated limit is full: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"flavors"`) {
			t.Errorf("pass-through while the gated limit is full: %d %s", resp.StatusCode, b)
		}
	}
	// hold fills every slot with held boots and returns their answers.
	hold := func(p *Proxy, base, prefix string) chan answer {
		t.Helper()
		out := make(chan answer, maxGated)
		for i := range maxGated {
			go func() { out <- post(context.Background(), base, fmt.Sprintf("%s-%d", prefix, i)) }()
		}
		for range maxGated {
			<-h.entered
		}
		if n := p.limit.inFlight(); n != maxGated {
			t.Fatalf("%d gated requests in flight, want %d", n, maxGated)
		}
		return out
	}
	settled := func(what string) {
		t.Helper()
		waitFor(t, what+": every slot given back", func() bool { return p.limit.inFlight() == 0 && p.limit.waiting.Load() == 0 })
		if v := gaugeValue(t, reg, "imagetrust_proxy_gated_in_flight", ""); v != 0 {
			t.Errorf("%s: imagetrust_proxy_gated_in_flight %v, want 0", what, v)
		}
	}

	held := hold(p, base, "held")
	if v := gaugeValue(t, reg, "imagetrust_proxy_gated_in_flight", ""); v != maxGated {
		t.Errorf("imagetrust_proxy_gated_in_flight %v, want %d", v, maxGated)
	}
	passThrough()
	queued := make(chan answer, maxGated)
	for i := range maxGated {
		go func() { queued <- post(context.Background(), base, fmt.Sprintf("held-queued-%d", i)) }()
	}
	waitFor(t, "boots waiting in the queue", func() bool { return p.limit.waiting.Load() == maxGated })
	if v := gaugeValue(t, reg, "imagetrust_proxy_gated_waiting", ""); v != maxGated {
		t.Errorf("imagetrust_proxy_gated_waiting %v, want %d", v, maxGated)
	}
	over := post(context.Background(), base, "held-over")
	if over.err != nil {
		t.Fatal(over.err)
	}
	if name, code, msg := fault(t, over.body); over.code != http.StatusServiceUnavailable || name != "serviceUnavailable" ||
		code != 503 || msg != "The image gate is busy with other boot requests; try again in a few seconds." {
		t.Errorf("boot over the limit: %d %s", over.code, over.body)
	}
	if over.header.Get("Retry-After") != "1" || !requestIDRE.MatchString(over.header.Get("X-Openstack-Request-Id")) ||
		over.header.Get("X-Compute-Request-Id") != over.header.Get("X-Openstack-Request-Id") {
		t.Errorf("boot over the limit: headers %v", over.header)
	}
	// a second one: in the overload log's summary
	if a := post(context.Background(), base, "held-over"); a.code != http.StatusServiceUnavailable {
		t.Errorf("second boot over the limit: %d %s %v", a.code, a.body, a.err)
	}
	passThrough()

	h.releaseAll() // the held boots go on; the queued ones take their slots and are held
	for range maxGated {
		<-h.entered
	}
	h.releaseAll()
	for range maxGated {
		if a := <-held; a.err != nil || a.code != http.StatusAccepted {
			t.Errorf("held boot: %d %s %v", a.code, a.body, a.err)
		}
	}
	for range maxGated {
		if a := <-queued; a.err != nil || a.code != http.StatusAccepted {
			t.Errorf("queued boot: %d %s %v", a.code, a.body, a.err)
		}
	}
	settled("after the held boots")
	if v := gaugeValue(t, reg, "imagetrust_proxy_gated_rejections_total", RejectQueueFull); v != 2 {
		t.Errorf("imagetrust_proxy_gated_rejections_total{reason=queue-full} %v, want 2", v)
	}

	// a client that goes away in the middle of its body: its request took
	// a slot and reads the body when the client goes
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /v2.1/servers HTTP/1.1\r\nHost: gate\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"server\":")
	waitFor(t, "the half-sent boot in flight", func() bool { return p.limit.inFlight() == 1 })
	c.Close()
	settled("after a client gone mid-body")

	// a hook that panics (net/http's server recovers; the slot comes back)
	if a := post(context.Background(), base, "panic"); a.err == nil {
		t.Errorf("boot whose hook panics: %d %s, want the connection closed", a.code, a.body)
	}
	settled("after a panic")

	// every slot is there again: MaxGated boots are held at once
	held = hold(p, base, "held-b")
	h.releaseAll()
	for range maxGated {
		if a := <-held; a.code != http.StatusAccepted {
			t.Errorf("boot after the leaks: %d %s %v", a.code, a.body, a.err)
		}
	}
	settled("at the end")

	// Nova unreachable: 502, the slot given back
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	pd := newGateProxy(deadAddr, time.Hour)
	daddr, _, _ := serveInBackground(t, pd, ServerOptions{NetHTTPOnly: netHTTPOnly, ShutdownTimeout: 5 * time.Second})
	for range maxGated + 1 {
		if a := post(context.Background(), "http://"+daddr, "unreachable"); a.code != http.StatusBadGateway {
			t.Errorf("boot with Nova unreachable: %d %s %v", a.code, a.body, a.err)
		}
	}
	waitFor(t, "slots back after upstream errors", func() bool { return pd.limit.inFlight() == 0 })

	// a short queue timeout: the boot that waits is refused when it ends
	pt := newGateProxy("", time.Millisecond)
	taddr, _, _ := serveInBackground(t, pt, ServerOptions{NetHTTPOnly: netHTTPOnly, ShutdownTimeout: 5 * time.Second})
	held = hold(pt, "http://"+taddr, "held-t")
	late := post(context.Background(), "http://"+taddr, "held-late")
	if name, _, _ := fault(t, late.body); late.code != http.StatusServiceUnavailable || name != "serviceUnavailable" {
		t.Errorf("boot after the queue timeout: %d %s", late.code, late.body)
	}
	h.releaseAll()
	for range maxGated {
		<-held
	}
	waitFor(t, "slots back after the timeout test", func() bool { return pt.limit.inFlight() == 0 })
	if v := gaugeValue(t, reg, "imagetrust_proxy_gated_rejections_total", RejectQueueTimeout); v != 1 {
		t.Errorf("imagetrust_proxy_gated_rejections_total{reason=queue-timeout} %v, want 1", v)
	}
	p.rejects.flush()

	// the audit: the first refusal in full, the others in a summary
	var firsts, summaries int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch l["msg"] {
		case "gated request refused: overloaded":
			firsts++
			if l["reason"] == "" || l["request_id"] == "" || l["remote"] == "" {
				t.Errorf("first overload line lacks fields: %s", line)
			}
		case "gated requests refused: overloaded (summary)":
			summaries++
			if l["count"] != 1.0 || l["queue_full"] != 1.0 || l["first_request_id"] == "" {
				t.Errorf("summary line: %s", line)
			}
		}
	}
	// p's: the first queue-full refusal in full, the second in the summary;
	// pt's: the queue timeout in full
	if firsts != 2 || summaries != 1 {
		t.Errorf("%d first overload lines (want 2), %d summaries (want 1):\n%s", firsts, summaries, logs.String())
	}
}

// TestConnLimitNova: the bound on client connections, on the fast server
// and on net/http's alone, plain and TLS, in front of the real nova-api.
// With MaxConns keep-alive connections open and idle (one of them, on the
// fast server, handed over to net/http by a boot), a new one is served:
// the one idle the longest is closed to make room (as nginx does), the
// handed-over one first, then the fast one, each counted in
// imagetrust_proxy_connections_idle_closed_total. With MaxConns
// connections open and none idle (connected, no request yet), the next is
// accepted and closed at once: its request gets no answer,
// imagetrust_proxy_connections_refused_total counts it and the connection
// log says so, and the connections held are still served. Once a
// connection closes, its place is free again. Before idle connections were
// closed for new ones, a new connection was refused while MaxConns idle
// ones sat there.
func TestConnLimitNova(t *testing.T) {
	s := startNovaStack(t)
	for _, netHTTPOnly := range []bool{false, true} {
		for _, withTLS := range []bool{false, true} {
			name := fmt.Sprintf("ok nethttp=%v tls=%v", netHTTPOnly, withTLS)
			t.Run(name, func(t *testing.T) { testConnLimitNova(t, s, netHTTPOnly, withTLS) })
		}
	}
}

func testConnLimitNova(t *testing.T, s *novaStack, netHTTPOnly, withTLS bool) {
	const maxConns = 2
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
		MirrorProject: s.project, Logger: log, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	o := ServerOptions{NetHTTPOnly: netHTTPOnly, ShutdownTimeout: 5 * time.Second, MaxConns: maxConns, Logger: log}
	var tlsConf *tls.Config
	if withTLS {
		var client *http.Client
		o.TLSCert, o.TLSKey, client = tlsListenerPair(t, t.TempDir())
		tlsConf = client.Transport.(*http.Transport).TLSClientConfig
	}
	var limit *connLimit
	testHookConnLimit = func(l *connLimit) { limit = l }
	addr, _, _ := serveInBackground(t, p, o)
	testHookConnLimit = nil
	_, demo := s.viaGate(t, ostest.CloudDemo, "http://"+addr)
	token := demo.ProviderClient.Token()

	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	dial := func() *conn {
		t.Helper()
		c, err := dialGate(addr, tlsConf)
		if err != nil {
			return &conn{c: nil}
		}
		return &conn{c: c, br: bufio.NewReader(c)}
	}
	// request sends one request on c and returns the answer's status (0:
	// none, the connection closed)
	request := func(c *conn, method, path, body string) int {
		t.Helper()
		if c.c == nil {
			return 0
		}
		_ = c.c.SetDeadline(time.Now().Add(time.Minute)) // (a bound on the test, not an assertion)
		fmt.Fprintf(c.c, "%s %s HTTP/1.1\r\nHost: gate\r\nX-Auth-Token: %s\r\n", method, path, token)
		if body != "" {
			fmt.Fprintf(c.c, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
		}
		fmt.Fprintf(c.c, "\r\n%s", body)
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	open := func() float64 { return gaugeValue(t, reg, "imagetrust_proxy_connections", "") }

	idle := limit.idleCount

	// a boot hands c2 over to net/http on the fast server (refused here:
	// an empty server object), and it stays open, idle
	c2 := dial()
	if code := request(c2, http.MethodPost, "/v2.1/servers", `{"server":{}}`); code != http.StatusBadRequest {
		t.Fatalf("second connection: %d", code)
	}
	waitFor(t, "the second connection idle", func() bool { return idle() == 1 })
	c1 := dial()
	if code := request(c1, http.MethodGet, "/v2.1/flavors", ""); code != http.StatusOK {
		t.Fatalf("first connection: %d", code)
	}
	waitFor(t, "both connections idle", func() bool { return idle() == 2 })
	if v := open(); v != maxConns {
		t.Errorf("imagetrust_proxy_connections %v, want %d", v, maxConns)
	}
	// at the limit, a new connection takes the place of the oldest idle
	// one: c2 (handed over), then c1 (fast)
	c3 := dial()
	if code := request(c3, http.MethodGet, "/v2.1/flavors", ""); code != http.StatusOK {
		t.Fatalf("connection at the limit with idle ones: %d, want served", code)
	}
	if code := request(c2, http.MethodGet, "/v2.1/flavors", ""); code != 0 {
		t.Errorf("the connection idle the longest answered %d, want closed", code)
	}
	waitFor(t, "c1 and c3 idle", func() bool { return idle() == 2 })
	c4 := dial()
	if code := request(c4, http.MethodGet, "/v2.1/flavors", ""); code != http.StatusOK {
		t.Fatalf("second connection at the limit with idle ones: %d, want served", code)
	}
	if code := request(c1, http.MethodGet, "/v2.1/flavors", ""); code != 0 {
		t.Errorf("the next connection idle the longest answered %d, want closed", code)
	}
	if v := gaugeValue(t, reg, "imagetrust_proxy_connections_idle_closed_total", ""); v != 2 {
		t.Errorf("imagetrust_proxy_connections_idle_closed_total %v, want 2", v)
	}
	if v := gaugeValue(t, reg, "imagetrust_proxy_connections_refused_total", ""); v != 0 {
		t.Errorf("imagetrust_proxy_connections_refused_total %v, want 0", v)
	}
	if v := open(); v != maxConns {
		t.Errorf("imagetrust_proxy_connections %v, want %d", v, maxConns)
	}
	c3.c.Close()
	c4.c.Close()
	waitFor(t, "every place given back", func() bool { return open() == 0 })

	// none idle (connected, no request yet): the next is refused
	c5, c6 := dial(), dial()
	waitFor(t, "two connections open", func() bool { return open() == maxConns })
	c7 := dial()
	if code := request(c7, http.MethodGet, "/v2.1/flavors", ""); code != 0 {
		t.Errorf("connection over the limit, none idle, answered %d, want closed", code)
	}
	if v := gaugeValue(t, reg, "imagetrust_proxy_connections_refused_total", ""); v != 1 {
		t.Errorf("imagetrust_proxy_connections_refused_total %v, want 1", v)
	}
	if !strings.Contains(logs.String(), `"msg":"connection refused: connection limit reached"`) {
		t.Errorf("no connection limit line:\n%s", logs.String())
	}
	// still served on the connections held
	if code := request(c5, http.MethodGet, "/v2.1/flavors", ""); code != http.StatusOK {
		t.Errorf("held connection: %d", code)
	}
	if code := request(c6, http.MethodPost, "/v2.1/servers", `{"server":{}}`); code != http.StatusBadRequest {
		t.Errorf("held connection: %d", code)
	}
	// a place comes back when a connection closes, a handed-over one's too
	c6.c.Close()
	waitFor(t, "the closed connection's place given back", func() bool { return open() == maxConns-1 })
	c8 := dial()
	if code := request(c8, http.MethodGet, "/v2.1/flavors", ""); code != http.StatusOK {
		t.Errorf("connection after one closed: %d", code)
	}
	for _, c := range []*conn{c1, c2, c5, c7, c8} {
		if c.c != nil {
			c.c.Close()
		}
	}
	waitFor(t, "every place given back", func() bool { return open() == 0 })
}

// TestGatedBodyStallNova: a client that sends the head of a gated request
// and part of its body, then stalls, holds its slot only for the body
// timeout, not for the server's ReadTimeout (2 minutes): it is answered 408
// and the slot comes back, so that as many stalled clients as there are
// slots (with a valid token: without one a gated request is refused 401
// before it takes a slot, TestGatedSlotNeedsTokenNova; this gate has no
// Identity) do not stop every boot. A boot that follows through the same gate,
// with the same short body timeout, is forwarded to the real nova-api and
// created, though held in the contextualisation hook past the body
// timeout (net/http lifts the deadline once the body is read: it would
// otherwise end the request's context before Nova is asked). On the fast
// server (handed over) and on net/http's alone.
func TestGatedBodyStallNova(t *testing.T) {
	s := startNovaStack(t)
	for _, netHTTPOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("ok net/http only %v", netHTTPOnly), func(t *testing.T) {
			h := newHeldHook()
			p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
				MirrorProject: s.project, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxGated: 1, GatedQueueTimeout: time.Hour,
				UserData: h.hook})
			if err != nil {
				t.Fatal(err)
			}
			p.bodyTimeout = 300 * time.Millisecond // (before it serves)
			addr, _, _ := serveInBackground(t, p, ServerOptions{NetHTTPOnly: netHTTPOnly, ShutdownTimeout: 5 * time.Second})

			// (a failure, not a hang, without the body timeout)
			_, br := stallBody(t, addr, "/v2.1/servers/"+s.id+"/action", "", `{"rebuild":`)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("stalled body: no answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if _, _, msg := fault(t, b); resp.StatusCode != http.StatusRequestTimeout ||
				msg != "The request body did not arrive within 300ms; the image gate does not wait longer for it." {
				t.Errorf("stalled body: %d %s, want 408", resp.StatusCode, b)
			}
			waitFor(t, "the stalled request's slot given back", func() bool { return p.limit.inFlight() == 0 })

			gate, direct := s.viaGate(t, ostest.CloudDemo, "http://"+addr)
			go func() {
				<-h.entered
				time.Sleep(3 * p.bodyTimeout) // (past the body timeout: not a timed assertion)
				h.releaseAll()
			}()
			srv, err := servers.Create(context.Background(), gate, servers.CreateOpts{Name: "held-stall-after", ImageRef: s.id,
				FlavorRef: s.flavorID, Networks: "none"}, nil).Extract()
			if err != nil {
				t.Fatalf("boot after the stalled one: %v", err)
			}
			t.Cleanup(func() { _ = servers.Delete(context.Background(), direct, srv.ID).ExtractErr() })
		})
	}
}

// idleCount is the number of counted connections waiting for a next
// request.
func (l *connLimit) idleCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for e := range l.conns {
		if e.idleSince.Load() > 0 {
			n++
		}
	}
	return n
}
