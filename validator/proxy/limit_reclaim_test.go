package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestGatedBorrowedSlotReclaimedNova: one project with a valid token
// (tokens validated by the real Keystone) takes every slot while it is
// alone (two slots, a share of one) with requests whose bodies stall; a
// boot of another project then does not wait for a body deadline: the
// slot the stalling project borrowed beyond its share, its body not read,
// is taken back (its request answered 503 project-limit in Nova's shape,
// Retry-After, Connection: close; Nova not called), and the other
// project's boot is forwarded to the real nova-api and created (202). The
// stalling project keeps its share (one slot, still held). On the fast
// server (handed over) and on net/http's alone. Before the fix the boot
// waited until a stalled body's deadline (an hour here): refused
// queue-timeout after its queue timeout.
func TestGatedBorrowedSlotReclaimedNova(t *testing.T) {
	s := startNovaStack(t)
	id, authURI := s.identity(t)
	for _, netHTTPOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("net/http only %v", netHTTPOnly), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
				MirrorProject: s.project, Identity: id, AuthURI: authURI, Metrics: m,
				Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
				MaxGated: 2, MaxGatedPerProject: 1, GatedQueueTimeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			p.bodyTimeout = time.Hour // (before it serves: a stalled body is not given up on)
			addr, _, _ := serveInBackground(t, p, ServerOptions{NetHTTPOnly: netHTTPOnly, ShutdownTimeout: 5 * time.Second})
			base := "http://" + addr
			_, demo := s.viaGate(t, ostest.CloudDemo, base)
			admin, adminDirect := s.viaGate(t, ostest.CloudAdmin, base)

			stall := func() net.Conn {
				c, _ := stallBody(t, addr, "/v2.1/servers", "X-Auth-Token: "+demo.ProviderClient.Token()+"\r\n", `{"server":`)
				return c
			}
			c1 := stall()
			waitFor(t, "the first stalled demo boot in a slot", func() bool { return p.limit.inFlight() == 1 })
			c2 := stall()
			waitFor(t, "both slots the demo project's", func() bool { return p.limit.inFlight() == 2 })

			srv, err := servers.Create(context.Background(), admin, servers.CreateOpts{Name: "reclaim-admin", ImageRef: s.id,
				FlavorRef: s.flavorID, Networks: "none"}, nil).Extract()
			if err != nil {
				t.Fatalf("the admin project's boot while the demo project stalls in every slot: %v", err)
			}
			t.Cleanup(func() { _ = servers.Delete(context.Background(), adminDirect, srv.ID).ExtractErr() })

			resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
			if err != nil {
				t.Fatalf("the borrowed slot's request: no answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if name, code, msg := fault(t, b); resp.StatusCode != http.StatusServiceUnavailable || name != "serviceUnavailable" || code != 503 ||
				msg != "The image gate is busy with other boot requests of your project; try again in a few seconds." {
				t.Errorf("the borrowed slot's request: %d %s", resp.StatusCode, b)
			}
			if resp.Header.Get("Retry-After") != "1" || !resp.Close {
				t.Errorf("the borrowed slot's request: headers %v, close %v", resp.Header, resp.Close)
			}
			if v := gaugeValue(t, reg, "imagetrust_proxy_gated_rejections_total", RejectProjectLimit); v != 1 {
				t.Errorf("imagetrust_proxy_gated_rejections_total{reason=project-limit} %v, want 1", v)
			}
			// the demo project keeps its share: the first stalled request
			// still holds its slot
			waitFor(t, "the admin boot's slot given back", func() bool { return p.limit.inFlight() == 1 })
			p.limit.mu.Lock()
			bodies := len(p.limit.bodies)
			if len(p.limit.byProject) != 1 || bodies != 1 || len(p.limit.reclaiming) != 0 {
				t.Errorf("left: %v, %d bodies, reclaiming %v", p.limit.byProject, bodies, p.limit.reclaiming)
			}
			p.limit.mu.Unlock()
			c1.Close()
			waitFor(t, "every slot given back", func() bool { return p.limit.inFlight() == 0 })
			checkLimitEmpty(t, p.limit)
		})
	}
}

// TestGatedLimitReclaim: the rule of reclaimFor. A project holding every
// slot (4, a share of 2) loses, for each request of another project that
// comes to wait while that project holds and waits for no more than its
// share, its newest slot whose body is not read yet and that it holds
// beyond its share (not one taken back already); never a slot within its
// share, nor one whose body was read; a slot taken back as its body came
// is refused all the same.
func TestGatedLimitReclaim(t *testing.T) {
	l := newGatedLimit(4, 2, time.Hour, nil)
	body := func() *deadlineBody { return &deadlineBody{ReadCloser: io.NopCloser(strings.NewReader("{}"))} }
	a := make([]*deadlineBody, 4)
	for i := range a {
		a[i] = body()
		if r := l.acquireBody(context.Background(), "a", a[i]); r != "" {
			t.Fatal(r)
		}
	}
	if !l.bodyRead(a[3]) { // (the newest, its body read: never taken back)
		t.Fatal("a body read before any wait taken back")
	}
	got := make(chan string, 4)
	wait := func(project string, n int64) {
		b := body()
		go func() { got <- project + l.acquireBody(context.Background(), project, b) }()
		waitFor(t, project+" waiting", func() bool { return l.waiting.Load() == n })
	}
	reclaimed := func() string {
		l.mu.Lock()
		defer l.mu.Unlock()
		s := ""
		for i, b := range a {
			if b.reclaimed {
				s += fmt.Sprint(i)
			}
		}
		return s
	}
	wait("c", 1)
	if r := reclaimed(); r != "2" {
		t.Fatalf("reclaimed %q, want a's newest unread slot (2)", r)
	}
	if n, err := a[2].Read(make([]byte, 8)); n != 0 || err != errSlotReclaimed {
		t.Errorf("reading a reclaimed body: %d %v", n, err)
	}
	if l.bodyRead(a[2]) {
		t.Error("a reclaimed body read: its slot kept")
	}
	wait("c", 2)
	if r := reclaimed(); r != "12" {
		t.Fatalf("reclaimed %q, want 1 and 2", r)
	}
	wait("c", 3) // (c would then have more than its share)
	wait("d", 4) // (a holds its share, the reclaimed not counted)
	if r := reclaimed(); r != "12" {
		t.Fatalf("reclaimed %q, want still 1 and 2", r)
	}
	for _, i := range []int{2, 1} {
		l.dropBody(a[i])
		l.release("a")
	}
	for range 2 {
		if r := <-got; r != "c" && r != "d" {
			t.Fatalf("after the reclaimed slots came back: %q", r)
		}
	}
	l.mu.Lock()
	if len(l.reclaiming) != 0 || l.byProject["a"] != 2 {
		t.Errorf("reclaiming %v, slots %v", l.reclaiming, l.byProject)
	}
	l.mu.Unlock()
	// give back everything: a's two, and the others' as they come
	for _, i := range []int{0, 3} {
		l.dropBody(a[i])
		l.release("a")
	}
	for range 2 {
		<-got
	}
	l.mu.Lock()
	rest := append([]*deadlineBody(nil), l.bodies...)
	held := maps.Clone(l.byProject)
	l.mu.Unlock()
	for _, b := range rest {
		l.dropBody(b)
	}
	for p, n := range held {
		for range n {
			l.release(p)
		}
	}
	checkLimitEmpty(t, l)
}

// TestGatedLimitReclaimOnlyUpToShare: a waiting request whose project
// holds its share already takes nothing back, though another project
// holds more than its own (it waits for a slot given back, max-min); one
// of a project below its share does.
func TestGatedLimitReclaimOnlyUpToShare(t *testing.T) {
	l := newGatedLimit(4, 1, time.Hour, nil)
	var a []*deadlineBody
	for _, p := range []string{"a", "a", "a", "c"} {
		b := &deadlineBody{ReadCloser: io.NopCloser(strings.NewReader("{}"))}
		if r := l.acquireBody(context.Background(), p, b); r != "" {
			t.Fatal(r)
		}
		if p == "a" {
			a = append(a, b)
		}
	}
	got := make(chan string, 2)
	go func() { got <- l.acquireBody(context.Background(), "c", nil) }()
	waitFor(t, "c waiting", func() bool { return l.waiting.Load() == 1 })
	l.mu.Lock()
	n := l.reclaiming["a"]
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("a project at its share took back %d slots", n)
	}
	go func() { got <- l.acquireBody(context.Background(), "d", nil) }()
	waitFor(t, "d waiting", func() bool { return l.waiting.Load() == 2 })
	l.mu.Lock()
	n = l.reclaiming["a"]
	l.mu.Unlock()
	if n != 1 || !a[2].reclaimed {
		t.Fatalf("a project below its share took back %d slots (a's newest: %v)", n, a[2].reclaimed)
	}
	for _, b := range a {
		l.dropBody(b)
		l.release("a")
	}
	for range 2 {
		if r := <-got; r != "" {
			t.Fatal(r)
		}
	}
	l.mu.Lock()
	held := maps.Clone(l.byProject)
	rest := append([]*deadlineBody(nil), l.bodies...)
	l.mu.Unlock()
	for _, b := range rest {
		l.dropBody(b)
	}
	for p, k := range held {
		for range k {
			l.release(p)
		}
	}
	checkLimitEmpty(t, l)
}

// stubIdentity accepts every token as one caller.
type stubIdentity struct{}

func (stubIdentity) Validate(context.Context, string) (*Caller, error) {
	return &Caller{UserID: "u", ProjectID: "p"}, nil
}

// TestValidationWaitsForPlace: a token not in the cache that finds every
// validation place taken waits for one (up to the places' timeout) and is validated
// once one comes free, rather than being refused at once.
func TestValidationWaitsForPlace(t *testing.T) {
	h := &heldIdentity{next: stubIdentity{}, armed: 1, entered: make(chan struct{}), release: make(chan struct{})}
	ci := newCachedIdentity(h, time.Minute, 16, time.Now, nil)
	ci.places = newGatedLimit(1, 1, 30*time.Second, nil)
	first := make(chan error, 1)
	go func() { _, err := ci.Validate(context.Background(), "first"); first <- err }()
	<-h.entered // (the one place taken)
	second := make(chan error, 1)
	go func() { _, err := ci.Validate(context.Background(), "second"); second <- err }()
	select {
	case err := <-second:
		t.Fatalf("second token with every place taken: %v at once, want it to wait", err)
	case <-time.After(50 * time.Millisecond): // (not a timed assertion: it must not have been answered)
	}
	close(h.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second token once a place came free: %v", err)
	}
}

// orderIdentity answers each validation once release lets one through,
// after telling calls which token it is.
type orderIdentity struct {
	calls   chan string
	release chan struct{}
}

func (o *orderIdentity) Validate(_ context.Context, token string) (*Caller, error) {
	o.calls <- token
	<-o.release
	return &Caller{UserID: "u-" + token, ProjectID: "p"}, nil
}

// TestValidationPlacesFairBetweenClients: a client that floods the gate
// with tokens not in the cache does not keep another client's validation
// waiting behind its own. Client A holds both places and fills the
// waiting places; client B's token takes the newest of A's waiting places
// (A's request refused validation-busy) and gets the next place that
// comes free, before A's earlier waiter.
func TestValidationPlacesFairBetweenClients(t *testing.T) {
	o := &orderIdentity{calls: make(chan string, 8), release: make(chan struct{})}
	ci := newCachedIdentity(o, time.Minute, 16, time.Now, nil)
	ci.places = newGatedLimit(2, 1, time.Minute, nil)
	type result struct {
		token string
		err   error
	}
	done := make(chan result, 8)
	validate := func(client, token string) {
		go func() {
			_, err := ci.Validate(withClient(context.Background(), client), token)
			done <- result{token, err}
		}()
	}
	waitFor := func(cond func() bool, what string) {
		t.Helper()
		for range 2000 {
			if cond() {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("never %s", what)
	}
	validate("192.0.2.1", "a1")
	validate("192.0.2.1", "a2")
	for range 2 {
		if tok := <-o.calls; tok != "a1" && tok != "a2" {
			t.Fatalf("validated %s first", tok)
		}
	}
	validate("192.0.2.1", "a3")
	waitFor(func() bool { return ci.places.waiting.Load() == 1 }, "a3 waiting")
	validate("192.0.2.1", "a4")
	waitFor(func() bool { return ci.places.waiting.Load() == 2 }, "a4 waiting")
	validate("2001:db8::/64", "b1")
	if r := <-done; r.token != "a4" || !errors.Is(r.err, errValidationBusy) {
		t.Fatalf("%s: %v, want a4 refused for b1's waiting place", r.token, r.err)
	}
	o.release <- struct{}{} // (a1 or a2 done: a place comes free)
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	if tok := <-o.calls; tok != "b1" {
		t.Fatalf("the free place went to %s, want b1 (client B holds none, A one)", tok)
	}
	close(o.release)
	for range 3 {
		if r := <-done; r.err != nil {
			t.Fatalf("%s: %v", r.token, r.err)
		}
	}
}

// TestClientKey: IPv4 clients by address, IPv6 ones by /64.
func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.7:5555", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:5555", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:5555", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9%eth0]:5555", "2001:db8:1:2::/64"},
		{"not-an-address", "not-an-address"},
	} {
		r := &http.Request{RemoteAddr: tc.remote}
		if got := clientKey(r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.remote, got, tc.want)
		}
	}
}
