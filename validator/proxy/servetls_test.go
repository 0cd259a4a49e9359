package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tlsListenerPair writes a self-signed certificate for 127.0.0.1 and its
// key (made for the test) to dir, and returns their files and a client
// that trusts the certificate.
func tlsListenerPair(t *testing.T, dir string) (certFile, keyFile string, client *http.Client) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imagetrust proxy test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "proxy.pem"), filepath.Join(dir, "proxy.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return certFile, keyFile, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestServeTLS: with a TLS certificate and key the gate's listener is
// HTTPS. Over it a pass-through request is answered and the upstream is
// told the client's protocol (X-Forwarded-Proto: https), the version
// document's hrefs name https, boots are judged as on a plain listener
// (one refused, one forwarded), and a plain-HTTP client gets no answer.
func TestServeTLS(t *testing.T) {
	f := catalogue(t)
	var mu sync.Mutex
	protos := map[string]string{} // path -> X-Forwarded-Proto
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		protos[r.Method+" "+r.URL.Path] = r.Header.Get("X-Forwarded-Proto")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/":
			_, _ = w.Write([]byte(`{"versions":[{"id":"v2.1","status":"CURRENT","links":[{"rel":"self","href":"http://` + r.Host + `/v2.1/"}]}]}`))
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
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, g.proxy, ServerOptions{Listen: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ShutdownTimeout: 5 * time.Second,
			Ready: func(a, _ net.Addr) { addr <- a }})
	}()
	base := "https://" + (<-addr).String()
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

	if code, b := get(http.MethodGet, "/v2.1/flavors", ""); code != 200 || string(b) != `{"flavors":[]}` {
		t.Errorf("pass-through: %d %s", code, b)
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

	// plain HTTP to the TLS port: no HTTP answer
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	plain, _ := io.ReadAll(c)
	c.Close()
	if strings.Contains(string(plain), `{"flavors"`) {
		t.Errorf("plain HTTP on the TLS port was answered: %q", plain)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}
