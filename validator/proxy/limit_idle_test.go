package proxy

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

// TestIdleCloseAsRequestComesNova: the connection limit closes an idle
// keep-alive connection for a new one (closeIdle) just as its client's
// next request arrives, its bytes already read by the server but the
// connection not yet marked busy (the hook runs closeIdle at that point,
// as a new connection at the limit would). The client sees the connection
// closed with no answer; the request must then not be served at all: a
// boot judged and forwarded while openstack server create reports a
// closed connection (and, run again, makes a second server). Before, only
// the request's context, cancelled by net/http's background read once the
// body was read, kept Nova from it, in a race with the forward. On the
// fast server (its keep-alive wait, the request then handed over to
// net/http) and on net/http's alone (whose ConnState marks the connection
// active only once the request head is read). On the old code both fail:
// the boot is served (request_duration_seconds counts it).
func TestIdleCloseAsRequestComesNova(t *testing.T) {
	s := startNovaStack(t)
	for _, netHTTPOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("nethttp=%v", netHTTPOnly), func(t *testing.T) { testIdleCloseAsRequestComes(t, s, netHTTPOnly) })
	}
}

func testIdleCloseAsRequestComes(t *testing.T, s *novaStack, netHTTPOnly bool) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(&testutil.SyncBuffer{}, nil))
	p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
		MirrorProject: s.project, Logger: log, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	var limit *connLimit
	var armed, fired atomic.Bool
	testHookConnLimit = func(l *connLimit) {
		limit = l
		l.testHookIdleEnd = func() {
			if armed.Load() && !fired.Swap(true) {
				if !l.closeIdle() {
					t.Error("closeIdle found no idle connection")
				}
			}
		}
	}
	addr, _, _ := serveInBackground(t, p, ServerOptions{NetHTTPOnly: netHTTPOnly, ShutdownTimeout: 5 * time.Second, MaxConns: 8, Logger: log})
	testHookConnLimit = nil
	_, demo := s.viaGate(t, ostest.CloudDemo, "http://"+addr)
	token := demo.ProviderClient.Token()

	// request sends one request on c, in one write, and returns the
	// answer's status (0: none, the connection closed)
	request := func(c net.Conn, br *bufio.Reader, method, path, body string) int {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(time.Minute)) // (a bound on the test, not an assertion)
		req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: gate\r\nX-Auth-Token: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			method, path, token, len(body), body)
		if _, err := io.WriteString(c, req); err != nil {
			return 0
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	idle := limit.idleCount
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}

	c1, br1 := dial()
	if code := request(c1, br1, http.MethodGet, "/v2.1/flavors", ""); code != http.StatusOK {
		t.Fatalf("first request: %d", code)
	}
	waitFor(t, "the connection idle", func() bool { return idle() == 1 })
	// served is the number of requests the gate has served (its duration
	// histogram's count)
	served := func() uint64 {
		t.Helper()
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, fam := range fams {
			if fam.GetName() == "imagetrust_proxy_request_duration_seconds" {
				for _, mm := range fam.GetMetric() {
					n += mm.GetHistogram().GetSampleCount()
				}
			}
		}
		return n
	}
	before := served()
	armed.Store(true)
	if code := request(c1, br1, http.MethodPost, "/v2.1/servers", `{"server":{}}`); code != 0 {
		t.Errorf("request on the connection closed for room answered %d, want closed", code)
	}
	if !fired.Load() {
		t.Fatal("the hook did not run")
	}
	// the same request on a fresh connection is judged (and refused: an
	// empty server object)
	c2, br2 := dial()
	if code := request(c2, br2, http.MethodPost, "/v2.1/servers", `{"server":{}}`); code != http.StatusBadRequest {
		t.Errorf("request on a fresh connection: %d, want 400", code)
	}
	if n := served(); n != before+1 {
		t.Errorf("imagetrust_proxy_request_duration_seconds counts %d requests more, want 1 (the fresh connection's alone served)", n-before)
	}
	if v := gaugeValue(t, reg, "imagetrust_proxy_connections_idle_closed_total", ""); v != 1 {
		t.Errorf("imagetrust_proxy_connections_idle_closed_total %v, want 1", v)
	}
	c2.Close()
	waitFor(t, "every place given back", func() bool {
		return gaugeValue(t, reg, "imagetrust_proxy_connections", "") == 0
	})
}
