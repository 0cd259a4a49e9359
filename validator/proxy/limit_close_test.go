package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestOverloadRefusalClosesConnNova: a gated request refused for want of
// a slot (queue-full at once, project-limit or queue-timeout after its
// wait) before its body was read is answered with Connection: close, and
// the gate closes the connection after the answer, however much of the
// body the client still owes. Tokens are validated by the real Keystone;
// one slot, held by a request of the demo project whose body stalls. On
// the fast server (handed over) and on net/http's alone, over plain HTTP
// and TLS; the queue-full one with a chunked body. Before the fix
// no answer came: net/http first read the rest
// of the body (as long as the client took, up to the read timeout)
// before it answered; with Connection: close alone, after it answered
// (closing the body drains it): a stalled client held a connection, not
// a slot, after its refusal.
func TestOverloadRefusalClosesConnNova(t *testing.T) {
	s := startNovaStack(t)
	id, authURI := s.identity(t)
	type mode struct{ netHTTPOnly, tls bool }
	for _, m := range []mode{{false, false}, {true, false}, {false, true}, {true, true}} {
		netHTTPOnly := m.netHTTPOnly
		t.Run(fmt.Sprintf("ok net/http only %v tls %v", netHTTPOnly, m.tls), func(t *testing.T) {
			p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
				MirrorProject: s.project, Identity: id, AuthURI: authURI,
				Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
				MaxGated: 1, GatedQueueTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			p.bodyTimeout = time.Hour // (the slot's stalled body is not given up on)
			so := ServerOptions{NetHTTPOnly: netHTTPOnly, ShutdownTimeout: 5 * time.Second}
			var tlsConf *tls.Config
			if m.tls {
				var client *http.Client
				so.TLSCert, so.TLSKey, client = tlsListenerPair(t, t.TempDir())
				tlsConf = client.Transport.(*http.Transport).TLSClientConfig
			}
			addr, _, _ := serveInBackground(t, p, so)
			_, demo := s.viaGate(t, ostest.CloudDemo, "http://"+addr)
			token := demo.ProviderClient.Token()
			// stall sends a boot whose body stops after its first bytes:
			// 10 of 1000 declared, or (chunked) one chunk of a body whose
			// length was never declared
			stall := func(chunked bool) (net.Conn, *bufio.Reader) {
				t.Helper()
				c, err := dialGate(addr, tlsConf)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if chunked {
					fmt.Fprintf(c, "POST /v2.1/servers HTTP/1.1\r\nHost: gate\r\nContent-Type: application/json\r\nX-Auth-Token: %s\r\nTransfer-Encoding: chunked\r\n\r\na\r\n{\"server\":\r\n", token)
				} else {
					fmt.Fprintf(c, "POST /v2.1/servers HTTP/1.1\r\nHost: gate\r\nContent-Type: application/json\r\nX-Auth-Token: %s\r\nContent-Length: 1000\r\n\r\n{\"server\":", token)
				}
				return c, bufio.NewReader(c)
			}
			// refusedClosed reads the refusal on c and then expects the
			// gate to close c, though 990 bytes of its body never came
			refusedClosed := func(what string, c net.Conn, br *bufio.Reader) {
				t.Helper()
				_ = c.SetReadDeadline(time.Now().Add(time.Minute)) // (a failure, not a hang)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: no answer: %v", what, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
					t.Errorf("%s: %d %v %s", what, resp.StatusCode, resp.Header, b)
				}
				if !resp.Close {
					t.Errorf("%s: answered without Connection: close", what)
				}
				expectConnClosed(t, what, br)
			}
			stall(false) // (holds the one slot)
			waitFor(t, "the stalled boot in the slot", func() bool { return p.limit.inFlight() == 1 })
			c2, br2 := stall(false) // (waits in the one waiting place)
			waitFor(t, "the second boot waiting", func() bool { return p.limit.waiting.Load() == 1 })
			c3, br3 := stall(true)
			refusedClosed("queue-full", c3, br3)
			refusedClosed("after its wait", c2, br2)
		})
	}
}

// expectConnClosed expects the gate to close the connection br reads
// after the answer read from it (within the read deadline set on it, a
// bound, not a timed assertion: the gate closes it at once).
func expectConnClosed(t *testing.T, what string, br *bufio.Reader) {
	t.Helper()
	if n, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: the connection stays open after the refusal", what)
		} else {
			t.Errorf("%s: after the refusal: %v %v, want EOF", what, n, err)
		}
	}
}

// stallBody sends a request head for path with fields (each ending in
// CRLF: a token field, say), Content-Length 1000, and start, the first
// bytes of its body, on a new connection to addr, then stalls: the rest
// of the body never comes. Reads on it fail 5 s before the test's
// deadline (a failure, not a hang); it is closed at the test's end.
func stallBody(t *testing.T, addr, path, fields, start string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if dl, ok := t.Deadline(); ok {
		_ = c.SetReadDeadline(dl.Add(-5 * time.Second))
	}
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: gate\r\n%sContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n%s", path, fields, start)
	return c, bufio.NewReader(c)
}

// dialGate connects to the gate at addr, over TLS when tlsConf is set.
func dialGate(addr string, tlsConf *tls.Config) (net.Conn, error) {
	if tlsConf != nil {
		return tls.Dial("tcp", addr, tlsConf)
	}
	return net.Dial("tcp", addr)
}
