package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testpki"
	ittestutil "github.com/imagetrust/imagetrust/internal/testutil"
)

// TestRenewalKeystoneUnreachable: a token renewal (the sync's, the CRL
// job's and the proxy's service login, keystoneLogin.reauth) that cannot
// reach Keystone logs one short line first, `token renewal with Keystone
// failed` with the auth_url's host and the cause reduced to its essence,
// returns an error that says the same before gophercloud's, and counts in
// imagetrust_keystone_renewal_failures_total{cause}: the Keystone front
// serving a certificate of another CA (tls), stopped (connection-refused),
// and a listener in its place that never answers (timeout, after the
// transport's 10 s TLS handshake timeout). The real Keystone behind an
// HTTPS front (auth_url https://127.0.0.1:PORT/v3), the real Glance asked.
// Before, the only trace was gophercloud's long error, its cause at the
// end, and no metric told it apart from other failures.
func TestRenewalKeystoneUnreachable(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	certA, keyA, _ := testpki.TLSServer(t, t.TempDir(), "keystone")
	certB, keyB, _ := testpki.TLSServer(t, t.TempDir(), "keystone elsewhere")
	kpA, err := tls.LoadX509KeyPair(certA, keyA)
	if err != nil {
		t.Fatal(err)
	}
	kpB, err := tls.LoadX509KeyPair(certB, keyB)
	if err != nil {
		t.Fatal(err)
	}
	var serving atomic.Pointer[tls.Certificate]
	serving.Store(&kpA)
	ku, _ := url.Parse(strings.TrimSuffix(c.KeystoneURL, "/v3"))
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(ku))
	// per connection (no SNI for an IP address: GetCertificate would not
	// be asked)
	front.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kpA},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*serving.Load()}}, nil
		}}
	front.StartTLS()
	defer front.Close()
	host := front.Listener.Addr().String()

	vars := catalogCloud(t, c, front.URL+"/v3", "RegionOne", "", certA)
	logs := &ittestutil.SyncBuffer{}
	login, err := openLogin(ctx, "", func(k string) string { return vars[k] }, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	glance, err := newImageClient(login.pc, login.eo)
	if err != nil {
		t.Fatal(err)
	}
	list := func() error {
		_, err := images.List(glance, images.ListOpts{Limit: 1}).AllPages(ctx)
		return err
	}
	if err := list(); err != nil {
		t.Fatalf("Glance with a working login: %v", err)
	}

	renew := func(label, cause string) {
		t.Helper()
		mark := len(logs.String())
		// the token gone (expired, revoked): Glance answers 401, and the
		// client renews it
		login.pc.SetToken("gone-token")
		err := list()
		if err == nil {
			t.Fatalf("%s: Glance listed with the token gone and Keystone %s", label, label)
		}
		if want := "token renewal with Keystone at " + host + " failed: " + cause; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: the error does not say %q: %v", label, want, err)
		}
		// slog's text handler quotes a value with spaces
		quoted := cause
		if strings.ContainsAny(cause, " :") {
			quoted = `"` + cause + `"`
		}
		if want := `msg="token renewal with Keystone failed" keystone=` + host + " cause=" + quoted + "\n"; !strings.Contains(logs.String()[mark:], want) {
			t.Errorf("%s: no line %q:\n%s", label, want, logs.String()[mark:])
		}
		if got := counterValue(t, login.renewalFailures.WithLabelValues(label)); got != 1 {
			t.Errorf("imagetrust_keystone_renewal_failures_total{cause=%s} = %v, want 1", label, got)
		}
	}

	// Keystone's front now serves a certificate of another CA
	serving.Store(&kpB)
	front.CloseClientConnections()
	login.pc.HTTPClient.CloseIdleConnections()
	renew("tls", "TLS: x509: certificate signed by unknown authority")

	// stopped: nothing listens at the auth_url's port
	front.Close()
	login.pc.HTTPClient.CloseIdleConnections()
	renew("connection-refused", "connection refused")

	// something at that port that never answers
	ln, err := net.Listen("tcp", host)
	if err != nil {
		t.Skipf("the port again: %v", err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	renew("timeout", "timeout")

	for _, l := range renewalCauses {
		if l == "tls" || l == "connection-refused" || l == "timeout" {
			continue
		}
		if got := counterValue(t, login.renewalFailures.WithLabelValues(l)); got != 0 {
			t.Errorf("imagetrust_keystone_renewal_failures_total{cause=%s} = %v, want 0", l, got)
		}
	}
}
