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

// TestGatedPerProjectNova: the gated slots are shared out between
// projects, work-conserving and fair (tokens validated by the real
// Keystone, boots forwarded to the real nova-api, held in the
// contextualisation hook). Two slots, a share of one per project: two
// demo boots take both slots (the project borrows the slot nobody else
// asks for); two more wait, filling the waiting places; a boot of the
// admin project takes the place of the newest waiting demo boot, which is
// refused 503 serviceUnavailable in Nova's shape with Retry-After,
// counted as imagetrust_proxy_gated_rejections_total{reason="project-limit"};
// another demo boot, each project now with one waiting place, is refused
// queue-full; the first slot given back (a held demo boot's client goes)
// goes to the admin boot, which waited after the demo one but whose
// project holds none. The overload log has the first refusal in full and
// the other in the summary line. Released, the boots are created (202).
// Before the fix the second demo boot waited beside a free slot.
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
	dp, ap := demo.ProviderClient, admin.ProviderClient
	post := func(ctx context.Context, sc interface{ Token() string }, name string) chan answer {
		c := demo
		if sc == ap {
			c = admin
		}
		out := make(chan answer, 1)
		go func() {
			body := `{"server":{"name":"` + name + `","imageRef":"` + s.id + `","flavorRef":"` + s.flavorID + `","networks":"none"}}`
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2.1/servers", strings.NewReader(body))
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
					t.Cleanup(func() { _ = servers.Delete(context.Background(), c, v.Server.ID).ExtractErr() })
				}
			}
			out <- answer{code: resp.StatusCode, header: resp.Header, body: b}
		}()
		return out
	}
	refused := func(what string, a answer, msg string) {
		t.Helper()
		if a.err != nil {
			t.Fatalf("%s: %v", what, a.err)
		}
		if name, code, m := fault(t, a.body); a.code != http.StatusServiceUnavailable || name != "serviceUnavailable" || code != 503 || m != msg {
			t.Errorf("%s: %d %s", what, a.code, a.body)
		}
		if a.header.Get("Retry-After") != "1" || !requestIDRE.MatchString(a.header.Get("X-Openstack-Request-Id")) {
			t.Errorf("%s: headers %v", what, a.header)
		}
	}
	bg := context.Background()

	d1ctx, d1cancel := context.WithCancel(bg)
	defer d1cancel()
	d1 := post(d1ctx, dp, "held-d1")
	if n := <-h.entered; n != "held-d1" {
		t.Fatalf("held %s", n)
	}
	d2 := post(bg, dp, "held-d2")
	waitFor(t, "the second demo boot waiting or in flight", func() bool { return p.limit.waiting.Load() == 1 || p.limit.inFlight() == 2 })
	if w, n := p.limit.waiting.Load(), p.limit.inFlight(); w != 0 || n != 2 {
		t.Fatalf("second boot of a project alone: %d waiting, %d in flight; want it in the free slot", w, n)
	}
	if n := <-h.entered; n != "held-d2" {
		t.Fatalf("held %s", n)
	}
	d3 := post(bg, dp, "held-d3")
	waitFor(t, "d3 waiting", func() bool { return p.limit.waiting.Load() == 1 })
	d4 := post(bg, dp, "held-d4")
	waitFor(t, "d4 waiting", func() bool { return p.limit.waiting.Load() == 2 })

	// every waiting place the demo project's: the admin boot takes d4's
	a1 := post(bg, ap, "held-a1")
	refused("the newest waiting demo boot", <-d4,
		"The image gate is busy with other boot requests of your project; try again in a few seconds.")
	waitFor(t, "a1 waiting", func() bool { return p.limit.waiting.Load() == 2 })
	// one waiting place each: refused at once
	refused("a demo boot with every place taken", <-post(bg, dp, "held-d5"),
		"The image gate is busy with other boot requests; try again in a few seconds.")
	if v := gaugeValue(t, reg, "imagetrust_proxy_gated_rejections_total", RejectProjectLimit); v != 1 {
		t.Errorf("imagetrust_proxy_gated_rejections_total{reason=project-limit} %v, want 1", v)
	}
	if v := gaugeValue(t, reg, "imagetrust_proxy_gated_rejections_total", RejectQueueFull); v != 1 {
		t.Errorf("imagetrust_proxy_gated_rejections_total{reason=queue-full} %v, want 1", v)
	}

	// d1's client goes: its slot goes to a1 (admin holds none), not d3
	d1cancel()
	if n := <-h.entered; n != "held-a1" {
		t.Fatalf("the slot given back went to %s, want the admin project's boot", n)
	}
	if a := <-d1; a.err == nil {
		t.Errorf("d1 after its client went: %d %s", a.code, a.body)
	}
	h.releaseAll() // d2 and a1 go on; d3 takes a slot and is held
	if n := <-h.entered; n != "held-d3" {
		t.Fatalf("held %s, want the waiting demo boot", n)
	}
	h.releaseAll()
	for _, c := range []chan answer{d2, a1, d3} {
		if a := <-c; a.err != nil || a.code != http.StatusAccepted {
			t.Errorf("held boot: %d %s %v", a.code, a.body, a.err)
		}
	}
	waitFor(t, "every slot given back", func() bool { return p.limit.inFlight() == 0 && p.limit.waiting.Load() == 0 })
	checkLimitEmpty(t, p.limit)

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
	if summary == nil || summary["queue_full"] != 1.0 || summary["count"] != 1.0 {
		t.Errorf("summary line: %v\n%s", summary, logs.String())
	}
}

// TestGatedLimitProjectTimeout: a request that waited its whole queue
// timeout while its project held its share or more is refused as
// project-limit, one whose project held less as queue-timeout; the slot
// given back goes to the waiting request whose project holds the fewest
// slots, past an earlier one whose project holds more.
func TestGatedLimitProjectTimeout(t *testing.T) {
	l := newGatedLimit(2, 1, time.Millisecond, nil)
	for range 2 { // (a alone borrows the other slot)
		if r := l.acquire(context.Background(), "a"); r != "" {
			t.Fatal(r)
		}
	}
	if r := l.acquire(context.Background(), "a"); r != RejectProjectLimit {
		t.Errorf("request of a project over its share: %q, want %q", r, RejectProjectLimit)
	}
	if r := l.acquire(context.Background(), "c"); r != RejectQueueTimeout {
		t.Errorf("request of a project under its share: %q, want %q", r, RejectQueueTimeout)
	}
	// a (holding 2) waits first, c (none) behind it: a's slot goes to c
	l.timeout = time.Hour
	got := make(chan string, 2)
	go func() { got <- "a" + l.acquire(context.Background(), "a") }()
	waitFor(t, "a waiting", func() bool { return l.waiting.Load() == 1 })
	go func() { got <- "c" + l.acquire(context.Background(), "c") }()
	waitFor(t, "c waiting", func() bool { return l.waiting.Load() == 2 })
	l.release("a")
	if g := <-got; g != "c" {
		t.Errorf("the slot given back went to %q, want c", g)
	}
	l.release("a")
	if g := <-got; g != "a" {
		t.Errorf("the next slot went to %q, want a", g)
	}
	l.release("a")
	l.release("c")
	checkLimitEmpty(t, l)
}

// checkLimitEmpty fails t unless l holds no slot, no waiter and no count.
func checkLimitEmpty(t *testing.T, l *gatedLimit) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used != 0 || len(l.byProject) != 0 || len(l.waitingBy) != 0 || len(l.queue) != 0 || l.waiting.Load() != 0 ||
		len(l.bodies) != 0 || len(l.reclaiming) != 0 {
		t.Errorf("left: %d slots %v, waiting %v %d %d, bodies %d, reclaiming %v", l.used, l.byProject, l.waitingBy, len(l.queue), l.waiting.Load(),
			len(l.bodies), l.reclaiming)
	}
}

// TestGatedLimitWorkConserving: one busy project uses every slot (it
// borrows beyond its share what nobody else asks for), and a project that
// comes while it holds them gets the next slot given back, before the busy
// project's requests that waited longer. Before the fix the busy project
// got its share (half) and its other requests waited beside free slots.
func TestGatedLimitWorkConserving(t *testing.T) {
	l := newGatedLimit(4, 2, time.Millisecond, nil) // (the old code's wait)
	for i := range 4 {
		if r := l.acquire(context.Background(), "a"); r != "" {
			t.Fatalf("request %d of a project alone with free slots: %q", i, r)
		}
	}
	l.timeout = time.Hour
	got := make(chan string, 3)
	wait := func(project string, waiting int64) {
		go func() { got <- project + l.acquire(context.Background(), project) }()
		waitFor(t, project+" waiting", func() bool { return l.waiting.Load() == waiting })
	}
	wait("a", 1)
	wait("a", 2)
	wait("b", 3)
	l.release("a")
	if g := <-got; g != "b" {
		t.Errorf("the first slot given back went to %q, want the newcomer b", g)
	}
	l.release("a")
	l.release("a")
	for range 2 {
		if g := <-got; g != "a" {
			t.Errorf("slot went to %q, want a", g)
		}
	}
	for _, p := range []string{"a", "a", "a", "b"} {
		l.release(p)
	}
	checkLimitEmpty(t, l)
}

// TestGatedLimitWaitingPlaces: two projects that hold every slot and every
// waiting place do not shut out a third, fourth...: a newcomer takes the
// waiting place of the newest request of the project with the most of
// them (that request is refused project-limit, woken once), and gets the
// next slot given back. When every waiting project has one place, the
// next is refused queue-full. Before the fix the third project was
// refused queue-full at once.
func TestGatedLimitWaitingPlaces(t *testing.T) {
	l := newGatedLimit(4, 2, time.Hour, nil)
	for _, p := range []string{"a", "a", "b", "b"} {
		if r := l.acquire(context.Background(), p); r != "" {
			t.Fatal(r)
		}
	}
	type result struct{ name, reason string }
	got := make(chan result, 8)
	wait := func(name, project string) {
		go func() { got <- result{name, l.acquire(context.Background(), project)} }()
	}
	for i, n := range []string{"a1", "b1", "a2", "b2"} {
		wait(n, n[:1])
		waitFor(t, n+" waiting", func() bool { return l.waiting.Load() == int64(i+1) })
	}
	// c: a has two places, c none: a's newest (a2) makes room
	wait("c1", "c")
	if r := <-got; r != (result{"a2", RejectProjectLimit}) {
		t.Fatalf("taken off the queue: %v, want a2 refused %s", r, RejectProjectLimit)
	}
	waitFor(t, "c waiting", func() bool { return l.waiting.Load() == 4 })
	// d: b's newest (b2)
	wait("d1", "d")
	if r := <-got; r != (result{"b2", RejectProjectLimit}) {
		t.Fatalf("taken off the queue: %v, want b2 refused %s", r, RejectProjectLimit)
	}
	waitFor(t, "d waiting", func() bool { return l.waiting.Load() == 4 })
	// every waiting project has one place: e is refused at once
	if r := l.acquire(context.Background(), "e"); r != RejectQueueFull {
		t.Errorf("request with four projects waiting one each: %q, want %q", r, RejectQueueFull)
	}
	// slots given back: c and d first (none held), then a and b
	l.release("a")
	l.release("b")
	first := map[string]bool{}
	for range 2 {
		r := <-got
		first[r.name] = r.reason == ""
	}
	if !first["c1"] || !first["d1"] {
		t.Errorf("the first two slots went to %v, want c1 and d1", first)
	}
	l.release("a")
	l.release("b")
	for range 2 {
		if r := <-got; r.reason != "" || (r.name != "a1" && r.name != "b1") {
			t.Errorf("then: %v, want a1 and b1 granted", r)
		}
	}
	for _, p := range []string{"a", "b", "c", "d"} {
		l.release(p)
	}
	checkLimitEmpty(t, l)
}

// TestGatedLimitEvictedOnce: a waiting request taken off the queue (its
// place given to another project) as its own context ends is refused once
// and holds no slot, whichever woke it: no slot leak, no count left.
func TestGatedLimitEvictedOnce(t *testing.T) {
	l := newGatedLimit(2, 1, time.Hour, nil)
	for range 2 {
		if r := l.acquire(context.Background(), "a"); r != "" {
			t.Fatal(r)
		}
	}
	first := make(chan string, 1)
	go func() { first <- l.acquire(context.Background(), "a") }()
	waitFor(t, "a's first waiting", func() bool { return l.waiting.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan string, 1)
	go func() { second <- l.acquire(ctx, "a") }()
	waitFor(t, "a's second waiting", func() bool { return l.waiting.Load() == 2 })
	// as the second gives up, b takes its place (a has two, b none)
	l.testHookGaveUp = func() {
		l.mu.Lock()
		if !l.evictFor("b") {
			t.Error("no room made for b")
		}
		l.mu.Unlock()
	}
	cancel()
	if r := <-second; r != RejectProjectLimit {
		t.Errorf("taken off as it gave up: %q, want %q", r, RejectProjectLimit)
	}
	if w := l.waiting.Load(); w != 1 {
		t.Errorf("%d waiting, want a's first", w)
	}
	l.release("a")
	if r := <-first; r != "" {
		t.Errorf("a's first: %q, want the slot", r)
	}
	l.release("a")
	l.release("a")
	checkLimitEmpty(t, l)
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
	checkLimitEmpty(t, l)
}
