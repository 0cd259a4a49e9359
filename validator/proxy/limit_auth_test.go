package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

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
				t.Helper()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if dl, ok := t.Deadline(); ok {
					_ = c.SetReadDeadline(dl.Add(-5 * time.Second)) // (a bound on the test)
				}
				fmt.Fprintf(c, "POST /v2.1/servers/%s/action HTTP/1.1\r\nHost: gate\r\n%sContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"reboot\":", s.id, tokenField)
				return c, bufio.NewReader(c)
			}
			for _, tc := range []struct{ name, field string }{
				{"no token", ""},
				{"a token Keystone refuses", "X-Auth-Token: gAAAAABnot-a-token-" + fmt.Sprint(time.Now().UnixNano()) + "\r\n"},
			} {
				_, br := stall(tc.field)
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
