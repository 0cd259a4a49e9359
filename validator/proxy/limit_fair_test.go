package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

// TestGatedPerProjectNova: one project cannot take every gated slot. Two
// slots, at most one per project (tokens validated by the real Keystone,
// boots forwarded to the real nova-api, held in the contextualisation
// hook): a demo boot holds one slot; a second demo boot waits though a
// slot is free; a boot of the admin project takes that slot at once; a
// third demo boot, with one of its project waiting already, is refused at
// once, 503 serviceUnavailable in Nova's shape with Retry-After, counted
// as imagetrust_proxy_gated_rejections_total{reason="project-limit"} and
// summed up in the overload summary line. Released, the held boots and
// the waiting one are created (202). Before the fix the second demo boot
// took the free slot and the admin project's boot waited.
func TestGatedPerProjectNova(t *testing.T) {
	s := startNovaStack(t)
	id, authURI := s.identity(t)
	h := newHeldHook()
	logs := &testutil.SyncBuffer{}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
		MirrorProject: s.project, Identity: id, AuthURI: authURI,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), Metrics: m, UserData: h.hook,
		MaxGated: 2, MaxGatedPerProject: 1, GatedQueueTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p.rejects.interval = time.Hour // (flushed by the test)
	addr, _, _ := serveInBackground(t, p, ServerOptions{ShutdownTimeout: 5 * time.Second})
	base := "http://" + addr
	_, demo := s.viaGate(t, ostest.CloudDemo, base)
	_, admin := s.viaGate(t, ostest.CloudAdmin, base)

	type answer struct {
		code   int
		header http.Header
		body   []byte
		err    error
	}
	post := func(sc interface{ Token() string }, owner func(id string), name string) chan answer {
		out := make(chan answer, 1)
		go func() {
			body := `{"server":{"name":"` + name + `","imageRef":"` + s.id + `","flavorRef":"` + s.flavorID + `","networks":"none"}}`
			req, _ := http.NewRequest(http.MethodPost, base+"/v2.1/servers", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Auth-Token", sc.Token())
			req.Header.Set("OpenStack-API-Version", "compute 2.37")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == http.StatusAccepted {
				var v struct{ Server struct{ ID string } }
				if json.Unmarshal(b, &v) == nil && v.Server.ID != "" {
					owner(v.Server.ID)
				}
			}
			out <- answer{code: resp.StatusCode, header: resp.Header, body: b}
		}()
		return out
	}
	cleanup := func(sc interface{ Token() string }) func(string) {
		c := demo
		if sc == admin.ProviderClient {
			c = admin
		}
		return func(id string) {
			t.Cleanup(func() { _ = servers.Delete(context.Background(), c, id).ExtractErr() })
		}
	}
	dp, ap := demo.ProviderClient, admin.ProviderClient

	d1 := post(dp, cleanup(dp), "held-d1")
	if n := <-h.entered; n != "held-d1" {
		t.Fatalf("held %s", n)
	}
	d2 := post(dp, cleanup(dp), "held-d2")
	waitFor(t, "the second demo boot waiting or in flight", func() bool { return p.limit.waiting.Load() == 1 || p.limit.inFlight() == 2 })
	if w, n := p.limit.waiting.Load(), p.limit.inFlight(); w != 1 || n != 1 {
		t.Fatalf("second boot of the project: %d waiting, %d in flight; want it waiting beside the free slot", w, n)
	}
	a1 := post(ap, cleanup(ap), "held-a1")
	if n := <-h.entered; n != "held-a1" {
		t.Fatalf("held %s, want the admin project's boot", n)
	}
	// the project's share taken and one of its boots waiting: refused at once
	for range 2 {
		over := <-post(dp, cleanup(dp), "held-d3")
		if over.err != nil {
			t.Fatal(over.err)
		}
		if name, code, msg := fault(t, over.body); over.code != http.StatusServiceUnavailable || name != "serviceUnavailable" || code != 503 ||
			msg != "The image gate is busy with other boot requests of your project; try again in a few seconds." {
			t.Errorf("boot over the project's share: %d %s", over.code, over.body)
		}
		if over.header.Get("Retry-After") != "1" || !requestIDRE.MatchString(over.header.Get("X-Openstack-Request-Id")) {
			t.Errorf("boot over the project's share: headers %v", over.header)
		}
	}
	if v := gaugeValue(t, reg, "imagetrust_proxy_gated_rejections_total", RejectProjectLimit); v != 2 {
		t.Errorf("imagetrust_proxy_gated_rejections_total{reason=project-limit} %v, want 2", v)
	}

	h.releaseAll() // d1 and a1 go on; d2 takes a slot and is held
	if n := <-h.entered; n != "held-d2" {
		t.Fatalf("held %s, want the waiting demo boot", n)
	}
	h.releaseAll()
	for _, c := range []chan answer{d1, a1, d2} {
		if a := <-c; a.err != nil || a.code != http.StatusAccepted {
			t.Errorf("held boot: %d %s %v", a.code, a.body, a.err)
		}
	}
	waitFor(t, "every slot given back", func() bool { return p.limit.inFlight() == 0 && p.limit.waiting.Load() == 0 })
	p.limit.mu.Lock()
	if len(p.limit.byProject) != 0 || len(p.limit.waitingBy) != 0 || len(p.limit.queue) != 0 {
		t.Errorf("per-project counts left: %v %v %d", p.limit.byProject, p.limit.waitingBy, len(p.limit.queue))
	}
	p.limit.mu.Unlock()

	p.rejects.flush()
	var first, summary map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch l["msg"] {
		case "gated request refused: overloaded":
			first = l
		case "gated requests refused: overloaded (summary)":
			summary = l
		}
	}
	if first == nil || first["reason"] != RejectProjectLimit || first["project_id"] == "" || first["max_gated_per_project"] != 1.0 {
		t.Errorf("first overload line: %v", first)
	}
	if summary == nil || summary["project_limit"] != 1.0 || summary["count"] != 1.0 {
		t.Errorf("summary line: %v\n%s", summary, logs.String())
	}
}

// TestGatedLimitProjectTimeout: a request that waited its whole queue
// timeout while its project held its share is refused as project-limit,
// one that waited for a slot with its project under its share as
// queue-timeout; the slot given back goes to the first waiting request
// whose project is under its share, past one whose project is at it.
func TestGatedLimitProjectTimeout(t *testing.T) {
	l := newGatedLimit(2, 1, time.Millisecond, nil)
	if r := l.acquire(context.Background(), "a"); r != "" {
		t.Fatal(r)
	}
	if r := l.acquire(context.Background(), "a"); r != RejectProjectLimit {
		t.Errorf("second request of a project at its share: %q, want %q", r, RejectProjectLimit)
	}
	if r := l.acquire(context.Background(), "b"); r != "" {
		t.Fatal(r)
	}
	if r := l.acquire(context.Background(), "c"); r != RejectQueueTimeout {
		t.Errorf("request with every slot taken: %q, want %q", r, RejectQueueTimeout)
	}
	// a (at its share) waits first, c behind it: b's slot goes to c
	l.timeout = time.Hour
	got := make(chan string, 2)
	go func() { got <- "a" + l.acquire(context.Background(), "a") }()
	waitFor(t, "a waiting", func() bool { return l.waiting.Load() == 1 })
	go func() { got <- "c" + l.acquire(context.Background(), "c") }()
	waitFor(t, "c waiting", func() bool { return l.waiting.Load() == 2 })
	l.release("b")
	if g := <-got; g != "c" {
		t.Errorf("the slot given back went to %q, want c", g)
	}
	l.release("a")
	if g := <-got; g != "a" {
		t.Errorf("the next slot went to %q, want a", g)
	}
	l.release("a")
	l.release("c")
	if l.inFlight() != 0 || len(l.byProject) != 0 || len(l.waitingBy) != 0 || len(l.queue) != 0 {
		t.Errorf("left: %d %v %v %d", l.inFlight(), l.byProject, l.waitingBy, len(l.queue))
	}
}

// TestGatedLimitGrantedAsItGaveUp: a waiting request whose client leaves
// (or whose wait times out) just as a released slot is given to it holds
// that slot: acquire reports it taken, and the caller's release gives it
// back. Reporting the refusal instead would leak the slot for good (no
// one would release it): max_gated_requests would shrink by one each time.
func TestGatedLimitGrantedAsItGaveUp(t *testing.T) {
	l := newGatedLimit(1, 1, time.Hour, nil)
	if r := l.acquire(context.Background(), "b"); r != "" {
		t.Fatal(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()                                     // (the wait ends on ctx: nothing else is ready)
	l.testHookGaveUp = func() { l.release("b") } // (the slot goes to the waiter, still queued)
	if r := l.acquire(ctx, "a"); r != "" {
		t.Fatalf("a request given a slot as it gave up: %q, want the slot", r)
	}
	if n := l.inFlight(); n != 1 {
		t.Fatalf("slots taken %d, want 1", n)
	}
	l.release("a")
	if l.inFlight() != 0 || len(l.byProject) != 0 || len(l.waitingBy) != 0 || len(l.queue) != 0 || l.waiting.Load() != 0 {
		t.Errorf("left: %d %v %v %d", l.inFlight(), l.byProject, l.waitingBy, len(l.queue))
	}
}
