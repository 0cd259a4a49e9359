package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoad drives the gate at a fixed rate for 60 s (a mix of pass-through
// GETs, allowed boots and refused boots against the fast stand-in upstream)
// and checks that every request got its expected answer and that neither
// goroutines nor heap grew. The gate is served by Serve as `imagetrust
// proxy` serves it: by the fast server, the client's kept connections
// being handed over to net/http at their first boot; then by net/http
// alone (NetHTTPOnly). It runs only with IMAGETRUST_LOAD=1 (two minutes):
//
//	IMAGETRUST_LOAD=1 go test ./validator/proxy -run Load -v
func TestLoad(t *testing.T) {
	if os.Getenv("IMAGETRUST_LOAD") != "1" {
		t.Skip("set IMAGETRUST_LOAD=1 to run the 60 s load test")
	}
	t.Run("fast server", func(t *testing.T) { loadRun(t, false) })
	t.Run("net/http only", func(t *testing.T) { loadRun(t, true) })
}

func loadRun(t *testing.T, netHTTPOnly bool) {
	const (
		rate     = 300 // requests per second
		duration = 60 * time.Second
	)
	f := catalogue(t)
	nova := fastNova(t)
	u, _ := url.Parse(nova.URL)
	p, err := New(Options{Upstream: u, Lookup: f.glance, Decider: f.trust, MirrorProject: mirrorProject,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), CacheTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	addr, _, _ := serveInBackground(t, p, ServerOptions{NetHTTPOnly: netHTTPOnly}) // (stopped at cleanup)
	base := "http://" + addr
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	type shot struct {
		method, path, body string
		want               int
	}
	shots := []shot{
		{http.MethodGet, "/v2.1/flavors", "", 200},
		{http.MethodPost, "/v2.1/servers", serverBody(idGood), 202},
		{http.MethodPost, "/v2.1/servers", serverBody("el9"), 202},
		{http.MethodGet, "/v2.1/servers/detail", "", 200},
		{http.MethodPost, "/v2.1/servers", serverBody(idRevoked), 403},
	}
	var errs, bad, done atomic.Int64
	fire := func(s shot) {
		defer done.Add(1)
		var body io.Reader
		if s.body != "" {
			body = strings.NewReader(s.body)
		}
		req, _ := http.NewRequest(s.method, base+s.path, body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			errs.Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != s.want {
			bad.Add(1)
		}
	}
	sample := func() (int, uint64) {
		tr.CloseIdleConnections()
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse
	}
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	start := time.Now()
	var g0 int
	var h0 uint64
	i := 0
	for time.Since(start) < duration {
		<-tick.C
		if i == rate*5 { // after 5 s of warm-up: the baseline
			wg.Wait()
			g0, h0 = sample()
		}
		wg.Add(1)
		s := shots[i%len(shots)]
		go func() { defer wg.Done(); fire(s) }()
		i++
	}
	wg.Wait()
	g1, h1 := sample()
	t.Logf("%d requests in %v: %d transport errors, %d unexpected statuses; goroutines %d -> %d, heap in use %d -> %d KiB",
		done.Load(), time.Since(start).Round(time.Millisecond), errs.Load(), bad.Load(), g0, g1, h0>>10, h1>>10)
	if errs.Load() != 0 || bad.Load() != 0 {
		t.Errorf("%d transport errors, %d unexpected statuses", errs.Load(), bad.Load())
	}
	if g1 > g0+5 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if h1 > 2*h0+8<<20 {
		t.Errorf("heap in use grew from %d to %d KiB", h0>>10, h1>>10)
	}
}
