package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestProxyTLSReload runs `imagetrust proxy` with tls_cert and tls_key
// against the real Keystone and Glance of tests/openstack and sends it
// SIGHUP (as systemctl reload does) after a renewed certificate was put in
// place: new connections get the new one. (No Nova is needed: the test
// only shakes hands.)
func TestProxyTLSReload(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the loopback OpenStack")
	}
	c := ostest.Start(t, ostest.Options{})
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	certFile, keyFile, poolA := testpki.TLSServer(t, dir, "proxy")
	certB, keyB, poolB := testpki.TLSServer(t, t.TempDir(), "renewed")
	cfgPath, listen := proxyConfig(t, dir, fmt.Sprintf("upstream = \"http://127.0.0.1:1\"\ntls_cert = %q\ntls_key = %q\n", certFile, keyFile))
	handshake := func(pool *x509.CertPool) error {
		conn, err := tls.Dial("tcp", listen, &tls.Config{RootCAs: pool})
		if err == nil {
			conn.Close()
		}
		return err
	}
	logs := startProxyCommand(t, c, cfgPath, func() error { return handshake(poolA) })
	if handshake(poolB) == nil {
		t.Fatal("the renewed certificate is served before it was installed")
	}
	for from, to := range map[string]string{certB: certFile, keyB: keyFile} {
		b, err := os.ReadFile(from)
		if err == nil {
			err = os.WriteFile(to, b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "TLS key pair reloaded"); {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := handshake(poolB); err != nil {
		t.Errorf("the renewed certificate after SIGHUP: %v", err)
	}
	if handshake(poolA) == nil {
		t.Error("the old certificate is still served after SIGHUP")
	}
}
