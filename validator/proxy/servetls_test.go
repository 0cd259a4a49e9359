package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

// tlsListenerPair writes a self-signed certificate for 127.0.0.1 and its
// key (made for the test) to dir, and returns their files and a client
// that trusts the certificate.
func tlsListenerPair(t testing.TB, dir string) (certFile, keyFile string, client *http.Client) {
	t.Helper()
	certFile, keyFile, pool := testpki.TLSServer(t, dir, "proxy")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return certFile, keyFile, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestServeTLS: with a TLS certificate and key the gate's listener is
// HTTPS, served by the fast server (as a plain listener is) or by net/http
// alone. Over it a pass-through request is answered (by the fast path,
// with the fast server) and the upstream is told the client's protocol
// (X-Forwarded-Proto: https); the version document, which the fast server
// hands over to net/http, names https in its hrefs; boots on the handed-over
// connection are judged as on a plain listener (one refused, one
// forwarded, both told https); a plain-HTTP request gets net/http's 400.
func TestServeTLS(t *testing.T) {
	for _, netHTTPOnly := range []bool{false, true} {
		name := "ok fast server"
		if netHTTPOnly {
			name = "ok net/http only"
		}
		t.Run(name, func(t *testing.T) { testServeTLS(t, netHTTPOnly) })
	}
}

func testServeTLS(t *testing.T, netHTTPOnly bool) {
	f := catalogue(t)
	var mu sync.Mutex
	protos := map[string]string{} // method and path -> X-Forwarded-Proto
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		protos[r.Method+" "+r.URL.Path] = r.Header.Get("X-Forwarded-Proto")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/":
			_, _ = w.Write([]byte(`{"versions":[{"id":"v2.1","status":"CURRENT","links":[{"rel":"self","href":"http://` + r.Host + `/v2.1/"}]}]}`))
		case "/v2.1/servers/detail":
			// larger than the fast server's write buffer, all in its read
			// buffer: head and body leave together (relayPlain)
			w.Header().Set("Content-Length", "15000")
			_, _ = w.Write(bytes.Repeat([]byte("[12345678]"), 1500))
		case "/v2.1/servers":
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"server":{"id":"0b9e6c55-7a4e-4f0e-9e0b-6d8b0b8a1a01"}}`))
		default:
			_, _ = w.Write([]byte(`{"flavors":[]}`))
		}
	}))
	defer nova.Close()
	g := newGate(t, f, nova.URL, nil)
	certFile, keyFile, client := tlsListenerPair(t, t.TempDir())
	var fast *fastServer
	testHookFastServer = func(s *fastServer) { fast = s }
	defer func() { testHookFastServer = nil }()
	addr, cancel, wait := serveInBackground(t, g.proxy, ServerOptions{TLSCert: certFile, TLSKey: keyFile,
		ShutdownTimeout: 5 * time.Second, NetHTTPOnly: netHTTPOnly})
	base := "https://" + addr
	if (fast == nil) != netHTTPOnly {
		t.Fatalf("fast server made: %v, NetHTTPOnly %v", fast != nil, netHTTPOnly)
	}
	handOvers := func() int64 {
		if fast == nil {
			return -1
		}
		return fast.handOvers.Load()
	}
	get := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s over TLS: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.TLS == nil {
			t.Errorf("%s %s: answered without TLS", method, path)
		}
		return resp.StatusCode, b
	}

	for range 3 {
		if code, b := get(http.MethodGet, "/v2.1/flavors", ""); code != 200 || string(b) != `{"flavors":[]}` {
			t.Errorf("pass-through: %d %s", code, b)
		}
	}
	if code, b := get(http.MethodGet, "/v2.1/servers/detail", ""); code != 200 || !bytes.Equal(b, bytes.Repeat([]byte("[12345678]"), 1500)) {
		t.Errorf("pass-through of 15000 bytes: %d, %d bytes", code, len(b))
	}
	if !netHTTPOnly && handOvers() != 0 {
		t.Errorf("pass-through over TLS: %d connections handed over to net/http, want 0 (the fast path)", handOvers())
	}
	code, b := get(http.MethodGet, "/", "")
	var doc any
	if err := json.Unmarshal(b, &doc); code != 200 || err != nil {
		t.Fatalf("version document: %d %s", code, b)
	}
	var hrefs []string
	collectHrefs(doc, &hrefs)
	if len(hrefs) != 1 || hrefs[0] != base+"/v2.1/" {
		t.Errorf("version document hrefs %v, want [%s/v2.1/]", hrefs, base)
	}
	if !netHTTPOnly && handOvers() != 1 {
		t.Errorf("version document over TLS: %d connections handed over, want 1", handOvers())
	}
	if code, b := get(http.MethodPost, "/v2.1/servers", serverBody(idRevoked)); code != http.StatusForbidden {
		t.Errorf("boot of a revoked image over TLS: %d %s", code, b)
	}
	if code, b := get(http.MethodPost, "/v2.1/servers", serverBody(idGood)); code != http.StatusAccepted {
		t.Errorf("boot of a good image over TLS: %d %s", code, b)
	}
	mu.Lock()
	for _, k := range []string{"GET /v2.1/flavors", "GET /", "POST /v2.1/servers"} {
		if protos[k] != "https" {
			t.Errorf("%s: the upstream was told X-Forwarded-Proto %q, want https", k, protos[k])
		}
	}
	mu.Unlock()

	// plain HTTP to the TLS port: net/http's answer
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	plain, _ := io.ReadAll(c)
	c.Close()
	if want := "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"; string(plain) != want {
		t.Errorf("plain HTTP on the TLS port: %q, want %q", plain, want)
	}

	// the fast server's shutdown does not wait for a handshake that never
	// comes (net/http's waits for a new connection up to 5 s)
	if !netHTTPOnly {
		stalled, err := net.Dial("tcp", strings.TrimPrefix(base, "https://"))
		if err != nil {
			t.Fatal(err)
		}
		defer stalled.Close()
		time.Sleep(50 * time.Millisecond) // (accepted, in its handshake)
	}
	start := time.Now()
	cancel()
	wait()
	if d := time.Since(start); !netHTTPOnly && d > 3*time.Second {
		t.Errorf("shutdown took %v with a connection in its TLS handshake", d)
	}
}

// serveInBackground runs Serve for h on a free loopback port with o (its
// Listen and Ready set here, a Logger that discards if o has none) and
// returns the gate's address, cancel, which begins Serve's shutdown, and
// wait, which waits for Serve to return and fails the test if it returns
// an error or not within 10 s. The test's cleanup calls both.
func serveInBackground(t *testing.T, h http.Handler, o ServerOptions) (addr string, cancel, wait func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	served := make(chan error, 1)
	o.Listen, o.Ready = "127.0.0.1:0", func(a, _ net.Addr) { ready <- a }
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	go func() { served <- Serve(ctx, h, o) }()
	var a net.Addr
	select {
	case a = <-ready:
	case err := <-served:
		cancel()
		t.Fatalf("Serve: %v", err)
	}
	var once sync.Once
	wait = func() {
		once.Do(func() {
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Serve did not return")
			}
		})
	}
	t.Cleanup(func() { cancel(); wait() })
	return a.String(), cancel, wait
}

// TestServeTLSReload: ReloadTLS makes new handshakes use the key pair
// found in the files then (a renewed certificate); a pair that does not
// load leaves the current one in use, and says so in the log.
func TestServeTLSReload(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	g := newGate(t, f, nova.srv.URL, nil)
	dir := t.TempDir()
	certFile, keyFile, clientA := tlsListenerPair(t, dir)
	certB, keyB, clientB := tlsListenerPair(t, t.TempDir())
	logs := &testutil.SyncBuffer{}
	reload := make(chan struct{})
	addr, _, _ := serveInBackground(t, g.proxy, ServerOptions{TLSCert: certFile, TLSKey: keyFile, ReloadTLS: reload,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	// handshake reports whether a new connection trusting the pair that
	// client trusts is accepted
	handshake := func(client *http.Client) error {
		c, err := tls.Dial("tcp", addr, client.Transport.(*http.Transport).TLSClientConfig)
		if err == nil {
			c.Close()
		}
		return err
	}
	waitLog := func(msg string, n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); strings.Count(logs.String(), msg) < n; {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log: %s", msg, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	copyFile := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err == nil {
			err = os.WriteFile(to, b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	if err := handshake(clientA); err != nil {
		t.Fatalf("first pair: %v", err)
	}
	if handshake(clientB) == nil {
		t.Fatal("the second pair is served before it was installed")
	}
	copyFile(certB, certFile)
	copyFile(keyB, keyFile)
	reload <- struct{}{}
	waitLog("TLS key pair reloaded", 1)
	if err := handshake(clientB); err != nil {
		t.Fatalf("after the reload: %v", err)
	}
	if handshake(clientA) == nil {
		t.Error("the first pair is still served after the reload")
	}

	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	waitLog("TLS key pair reload failed; keeping the current one", 1)
	if err := handshake(clientB); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
}
