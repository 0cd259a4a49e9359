package proxy

import (
	"bufio"
	"context"
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
)

// TestGatedSlotNeedsTokenNova: a gated request's token is validated (with
// the real Keystone) before it may take a slot and before its body is
// read. With one slot, clients that send the head of a server action and
// part of its body, then stall, with no token or with a token Keystone
// refuses, are answered 401 at once and hold no slot: a boot as the demo
// user goes on to the real nova-api (202). A client with a valid token
// that stalls does hold the slot (until the body timeout). On the fast
// server (handed over) and on net/http's alone. Before the fix the stalled
// clients took the slot before any token was looked at, and were answered
// 408 at the body timeout.
func TestGatedSlotNeedsTokenNova(t *testing.T) {
	s := startNovaStack(t)
	id, authURI := s.identity(t)
	for _, netHTTPOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("ok net/http only %v", netHTTPOnly), func(t *testing.T) {
			p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
				MirrorProject: s.project, Identity: id, AuthURI: authURI,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxGated: 1, GatedQueueTimeout: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			// (bounds the old code's stall, which answered 408 then)
			p.bodyTimeout = 2 * time.Second
			addr, _, _ := serveInBackground(t, p, ServerOptions{NetHTTPOnly: netHTTPOnly, ShutdownTimeout: 5 * time.Second})
			gate, direct := s.viaGate(t, ostest.CloudDemo, "http://"+addr)
			token := direct.ProviderClient.Token()

			// stall sends a server action's head and half its body
			stall := func(tokenField string) (net.Conn, *bufio.Reader) {
				return stallBody(t, addr, "/v2.1/servers/"+s.id+"/action", tokenField, `{"reboot":`)
			}
			for _, tc := range []struct{ name, field string }{
				{"no token", ""},
				{"a token Keystone refuses", "X-Auth-Token: gAAAAABnot-a-token-" + fmt.Sprint(time.Now().UnixNano()) + "\r\n"},
			} {
				c, br := stall(tc.field)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: no answer: %v", tc.name, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("stalled action with %s: %d %s, want 401 before the body is read", tc.name, resp.StatusCode, b)
				}
				checkUnauthorized(t, resp, b)
				if !resp.Close {
					// (else net/http reads the rest of the body, as long as
					// the client takes, before it answers)
					t.Errorf("stalled action with %s: the connection stays open", tc.name)
				}
				_ = c.SetReadDeadline(time.Now().Add(time.Minute)) // (a bound)
				expectConnClosed(t, "stalled action with "+tc.name, br)
				if n := p.limit.inFlight(); n != 0 {
					t.Errorf("stalled action with %s: %d slots taken", tc.name, n)
				}
			}
			srv, err := servers.Create(context.Background(), gate, servers.CreateOpts{Name: "slot-after-stalls", ImageRef: s.id,
				FlavorRef: s.flavorID, Networks: "none"}, nil).Extract()
			if err != nil {
				t.Fatalf("boot beside the stalled clients: %v", err)
			}
			t.Cleanup(func() { _ = servers.Delete(context.Background(), direct, srv.ID).ExtractErr() })

			// a valid token that stalls takes the slot
			c, _ := stall("X-Auth-Token: " + token + "\r\n")
			waitFor(t, "the stalled valid request in flight", func() bool { return p.limit.inFlight() == 1 })
			c.Close()
			waitFor(t, "its slot given back", func() bool { return p.limit.inFlight() == 0 })
		})
	}
}

// heldIdentity is an Identity whose next armed calls wait for release
// before they ask the real one (a Keystone slow to answer a flood).
type heldIdentity struct {
	next    Identity
	mu      sync.Mutex
	armed   int
	entered chan struct{}
	release chan struct{}
}

func (h *heldIdentity) Validate(ctx context.Context, token string) (*Caller, error) {
	h.mu.Lock()
	held := h.armed > 0
	if held {
		h.armed--
	}
	h.mu.Unlock()
	if held {
		h.entered <- struct{}{}
		<-h.release
	}
	return h.next.Validate(ctx, token)
}

// TestValidationsCappedNova: the gate validates at most
// maxValidationsFor(MaxGated) tokens at once (real Keystone behind a
// wrapper that holds the first calls, as a slow Keystone under a flood of
// made-up tokens would). With that many validations under way, a request
// with another token not in the cache is answered 503 serviceUnavailable
// in Nova's shape with Retry-After, counted as
// imagetrust_proxy_gated_rejections_total{reason="validation-busy"};
// meanwhile a boot with a token validated before (cached) is created
// (202) and a pass-through GET is served. Released, the held validations
// end in 401. Before the fix the request was validated beside the others
// (its made-up token answered 401 by Keystone): a flood meant as many
// Keystone calls at once as the gate had connections. The flood comes
// from 127.0.0.2; from 127.0.0.1, a known client (the demo token was
// validated for it), a new token (the admin's) is validated beside the
// flood, in the places of known clients, and its boot created: before
// those places it was refused validation-busy.
func TestValidationsCappedNova(t *testing.T) {
	s := startNovaStack(t)
	id, authURI := s.identity(t)
	hid := &heldIdentity{next: id, entered: make(chan struct{}, 16), release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
		MirrorProject: s.project, Identity: hid, AuthURI: authURI, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxGated: 1, GatedQueueTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	addr, _, _ := serveInBackground(t, p, ServerOptions{ShutdownTimeout: 5 * time.Second})
	base := "http://" + addr
	gate, direct := s.viaGate(t, ostest.CloudDemo, base)
	boot := func(name string) {
		t.Helper()
		srv, err := servers.Create(context.Background(), gate, servers.CreateOpts{Name: name, ImageRef: s.id,
			FlavorRef: s.flavorID, Networks: "none"}, nil).Extract()
		if err != nil {
			t.Fatalf("boot %s: %v", name, err)
		}
		t.Cleanup(func() { _ = servers.Delete(context.Background(), direct, srv.ID).ExtractErr() })
	}
	boot("validations-cached") // (the demo token validated, cached)

	// the flood's client: another address than the demo user's
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	post := func(token string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(http.MethodPost, base+"/v2.1/servers/"+s.id+"/action", strings.NewReader(`{"reboot":{"type":"SOFT"}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Auth-Token", token)
		resp, err := other.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b, nil
	}
	capN := maxValidationsFor(1)
	hid.mu.Lock()
	hid.armed = capN
	hid.mu.Unlock()
	codes := make(chan int, capN)
	for i := range capN {
		go func() {
			resp, _, err := post(fmt.Sprintf("gAAAAABnot-a-token-%d-%d", time.Now().UnixNano(), i))
			if err != nil {
				codes <- 0
				return
			}
			codes <- resp.StatusCode
		}()
	}
	for range capN {
		<-hid.entered
	}
	resp, b, err := post(fmt.Sprintf("gAAAAABnot-a-token-%d-over", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	if name, code, msg := fault(t, b); resp.StatusCode != http.StatusServiceUnavailable || name != "serviceUnavailable" || code != 503 ||
		msg != "The image gate is busy validating the tokens of other requests; try again in a few seconds." {
		t.Errorf("request over the validation bound: %d %s", resp.StatusCode, b)
	}
	if resp.Header.Get("Retry-After") != "1" || !requestIDRE.MatchString(resp.Header.Get("X-Openstack-Request-Id")) {
		t.Errorf("request over the validation bound: headers %v", resp.Header)
	}
	if v := gaugeValue(t, reg, "imagetrust_proxy_gated_rejections_total", RejectValidationBusy); v != 1 {
		t.Errorf("imagetrust_proxy_gated_rejections_total{reason=validation-busy} %v, want 1", v)
	}
	boot("validations-cached-beside") // (a cached token does not wait)
	admin, adminDirect := s.viaGate(t, ostest.CloudAdmin, base)
	srv, err := servers.Create(context.Background(), admin, servers.CreateOpts{Name: "validations-known-client", ImageRef: s.id,
		FlavorRef: s.flavorID, Networks: "none"}, nil).Extract()
	if err != nil {
		t.Fatalf("a new token of a known client beside the flood: %v", err)
	}
	t.Cleanup(func() { _ = servers.Delete(context.Background(), adminDirect, srv.ID).ExtractErr() })
	req, _ := http.NewRequest(http.MethodGet, base+"/v2.1/flavors", nil)
	req.Header.Set("X-Auth-Token", direct.ProviderClient.Token())
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("pass-through beside the held validations: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	close(hid.release)
	for range capN {
		if c := <-codes; c != http.StatusUnauthorized {
			t.Errorf("held validation of a made-up token: %d, want 401", c)
		}
	}
	if n := p.limit.inFlight(); n != 0 {
		t.Errorf("%d slots taken", n)
	}
}
