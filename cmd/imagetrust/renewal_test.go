package main

import (
	"bytes"
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
	"time"

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
	login.renewalLog.interval = time.Hour // its summaries flushed by the test
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

	// the outage goes on: every renewal still fails and counts, but the
	// line is not written again for each; the interval's end (flushed
	// here: the test's interval is an hour) writes one summary line.
	// Before, each failure wrote its ERROR line: an outage flooded the log
	mark := len(logs.String())
	for i := 0; i < 3; i++ {
		login.pc.SetToken("gone-token")
		if err := list(); err == nil || !strings.Contains(err.Error(), "token renewal with Keystone at "+host+" failed: connection refused") {
			t.Fatalf("renewal %d more with Keystone stopped: %v", i+1, err)
		}
	}
	if got := counterValue(t, login.renewalFailures.WithLabelValues("connection-refused")); got != 4 {
		t.Errorf("imagetrust_keystone_renewal_failures_total{cause=connection-refused} = %v after 4 failures, want 4", got)
	}
	if n := strings.Count(logs.String()[mark:], `msg="token renewal with Keystone failed"`); n != 0 {
		t.Errorf("%d more lines for the same cause within the interval, want none:\n%s", n, logs.String()[mark:])
	}
	login.renewalLog.flush()
	login.renewalLog.flush() // nothing more to say
	want := `level=ERROR msg="token renewals with Keystone failed again (summary)" keystone=` + host + ` count=3 connection-refused=3 last_cause="connection refused" interval=1h0m0s` + "\n"
	if n := strings.Count(logs.String()[mark:], want); n != 1 {
		t.Errorf("%d summary lines %q, want 1:\n%s", n, want, logs.String()[mark:])
	}

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

// TestRenewalLogRateLimited: renewalLog writes the first failure of each
// cause at once, the repeats as one summary line per interval (counts by
// cause, the last cause), and after an interval without failure goes
// quiet, so that the next failure is written in full again.
func TestRenewalLogRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l := newRenewalLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime})))
	l.interval = time.Hour // flushed by hand
	for range 5 {
		l.note("k:5000", "connection-refused", "connection refused")
	}
	l.note("k:5000", "timeout", "timeout")
	l.note("k:5000", "timeout", "timeout")
	l.flush()
	l.flush() // an interval with nothing: quiet
	l.note("k:5000", "connection-refused", "connection refused")
	want := `level=ERROR msg="token renewal with Keystone failed" keystone=k:5000 cause="connection refused"
level=ERROR msg="token renewal with Keystone failed" keystone=k:5000 cause=timeout
level=ERROR msg="token renewals with Keystone failed again (summary)" keystone=k:5000 count=5 connection-refused=4 timeout=1 last_cause=timeout interval=1h0m0s
level=ERROR msg="token renewal with Keystone failed" keystone=k:5000 cause="connection refused"
`
	if buf.String() != want {
		t.Errorf("lines:\n%s\nwant:\n%s", buf.String(), want)
	}
	l.timer.Stop()
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
