package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/internal/oserr"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

// TestTransientStartError: what a daemon waits out at start (the errors
// of real connections to a closed port and to one that hangs up; Keystone
// or a load balancer answering 5xx or 429; DNS; a timeout), however
// wrapped, and what it does not (credentials refused, configuration
// errors, a certificate not trusted, other 4xx, a document that does not
// parse).
func TestTransientStartError(t *testing.T) {
	closed := testutil.FreeAddr(t)
	_, refused := http.Post("http://"+closed+"/v3/auth/tokens", "application/json", strings.NewReader("{}"))
	hangUp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangUp.Close()
	go func() {
		for {
			c, err := hangUp.Accept()
			if err != nil {
				return
			}
			_, _ = bufio.NewReader(c).ReadString('\n')
			c.Close()
		}
	}()
	_, closedConn := http.Post("http://"+hangUp.Addr().String()+"/v3/auth/tokens", "application/json", strings.NewReader("{}"))
	status := func(code int) error {
		return gophercloud.ErrUnexpectedResponseCode{URL: "http://keystone/v3/auth/tokens", Method: "POST", Expected: []int{201}, Actual: code}
	}
	dns := &url.Error{Op: "Post", URL: "http://keystone.invalid/v3", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "keystone.invalid", IsNotFound: true}}}
	var syntax *json.SyntaxError
	if err := json.Unmarshal([]byte("<html>"), new(any)); !errors.As(err, &syntax) {
		t.Fatal(err)
	}
	wrap := func(err error) error { return fmt.Errorf("authenticating at http://x/v3: %w", oserr.Capped(err)) }
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"connection closed", closedConn, true},
		{"500", status(500), true},
		{"502", status(502), true},
		{"503", status(503), true},
		{"503 as a pointer", &gophercloud.ErrUnexpectedResponseCode{Actual: 503}, true},
		{"429", status(429), true},
		{"dns", dns, true},
		{"timeout", context.DeadlineExceeded, true},
		{"400", status(400), false},
		{"404", status(404), false},
		{"credentials refused", fmt.Errorf("authenticating: %w of user %q", errCredentialsRefused, "u"), false},
		{"configuration", usageError{errors.New("region \"X\" is not in Keystone's catalog")}, false},
		{"certificate", &url.Error{Op: "Post", URL: "https://k/v3", Err: x509.UnknownAuthorityError{}}, false},
		{"not json", syntax, false},
		{"other", errors.New("not a Keystone v3 token"), false},
	} {
		if c.err == nil {
			t.Fatalf("%s: no error to classify", c.name)
		}
		if got := transientStartError(c.err); got != c.want {
			t.Errorf("%s (%v): transient %v, want %v", c.name, c.err, got, c.want)
		}
		if got := transientStartError(wrap(c.err)); got != c.want {
			t.Errorf("%s, wrapped: transient %v, want %v", c.name, got, c.want)
		}
	}
	if transientStartError(nil) {
		t.Error("nil is transient")
	}
}

// TestStartWaitDelay: 1, 2, 4, 8, 16, then 30 seconds, each up to a
// fifth shorter, never longer.
func TestStartWaitDelay(t *testing.T) {
	w := newStartWait(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), nil)
	for n, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 5: 16 * time.Second,
		6: 30 * time.Second, 7: 30 * time.Second, 1000: 30 * time.Second} {
		for range 100 {
			if d := w.delay(n); d > base || d < base-base/5 {
				t.Fatalf("delay(%d) = %s, want %s to %s", n, d, base-base/5, base)
			}
		}
	}
	// a catalog without the region or service: 30 s, 1, 2, 4, then 5 min
	for n, base := range map[int]time.Duration{1: 30 * time.Second, 2: time.Minute, 4: 4 * time.Minute, 5: 5 * time.Minute, 1000: 5 * time.Minute} {
		for range 100 {
			if d := w.catalogDelay(n); d > base || d < base-base/5 {
				t.Fatalf("catalogDelay(%d) = %s, want %s to %s", n, d, base-base/5, base)
			}
		}
	}
}

// TestStartOpen: the wait's logic with open functions of the test's (no
// service: TestDaemonsWaitForOpenStackAtStart runs the daemons against
// the real Keystone). Transient failures are waited out (each logged at
// WARN with the next attempt, counted, /healthz 503 saying why) until open
// works; anything else ends the wait with its error after one attempt;
// the context's end ends it with errStopping; without a wait (--once)
// open runs once.
func TestStartOpen(t *testing.T) {
	outage := &url.Error{Op: "Post", URL: "http://k/v3/auth/tokens", Err: syscall.ECONNREFUSED}
	newWait := func() (*startWait, *testutil.SyncBuffer, *startHealth) {
		logs := &testutil.SyncBuffer{}
		h := &startHealth{}
		w := newStartWait(slog.New(slog.NewTextHandler(logs, nil)), prometheus.NewRegistry(), h)
		w.first, w.max = time.Millisecond, 4*time.Millisecond
		return w, logs, h
	}
	healthz := func(h *startHealth) (int, string) {
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, nil)
		return rec.code, rec.body.String()
	}

	t.Run("waits out transient failures", func(t *testing.T) {
		w, logs, h := newWait()
		if code, body := healthz(h); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
			t.Fatalf("before the first attempt: /healthz %d %q", code, body)
		}
		var calls int
		var during []string
		v, err := startOpen(context.Background(), w, func(context.Context) (string, error) {
			calls++
			if calls > 1 {
				_, body := healthz(h)
				during = append(during, body)
			}
			if calls < 4 {
				return "", outage
			}
			return "clients", nil
		})
		if err != nil || v != "clients" || calls != 4 {
			t.Fatalf("startOpen: %q %v after %d calls", v, err, calls)
		}
		if n := strings.Count(logs.String(), `level=WARN msg="OpenStack not reachable at start; waiting for it"`); n != 3 {
			t.Errorf("%d WARN lines, want 3:\n%s", n, logs.String())
		}
		for _, want := range []string{"connection refused", "next_attempt=", "attempt=3", `msg="OpenStack reachable: starting" attempts=4`,
			`hint="nothing listens at that host and port: the service is not up yet, or the address is wrong`} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, logs.String())
			}
		}
		if len(during) != 3 || !strings.Contains(during[2], "attempt 3 failed") || !strings.Contains(during[2], "connection refused") {
			t.Errorf("/healthz while waiting: %q", during)
		}
		if counterValue(t, w.failures) != 3 {
			t.Errorf("imagetrust_start_failures_total %v, want 3", counterValue(t, w.failures))
		}
	})
	t.Run("long errors capped", func(t *testing.T) {
		// Glance's version discovery through a load balancer that
		// answers 503 with its error page: gophercloud's error holds the
		// whole body, and endpointError does not cap it
		page := "<html><body><h1>503 Service Unavailable</h1>" + strings.Repeat("No server is available to handle this request. ", 200) + "</body></html>"
		discovery := endpointError("image", gophercloud.EndpointOpts{}, gophercloud.ErrUnexpectedResponseCode{
			URL: "http://glance:9292/", Method: "GET", Expected: []int{200, 300}, Actual: 503, Body: []byte(page)})
		w, logs, h := newWait()
		var during string
		calls := 0
		if _, err := startOpen(context.Background(), w, func(context.Context) (int, error) {
			if calls++; calls == 1 {
				return 0, discovery
			}
			_, during = healthz(h)
			return 1, nil
		}); err != nil {
			t.Fatal(err)
		}
		var warn string
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "level=WARN") {
				warn = line
			}
		}
		if !strings.Contains(warn, "got 503 instead") || len(warn) > oserr.MaxText+400 {
			t.Errorf("WARN line of %d bytes (page %d), want the reason capped near %d:\n%.600s", len(warn), len(page), oserr.MaxText, warn)
		}
		if !strings.Contains(during, "got 503 instead") || len(during) > oserr.MaxText+300 {
			t.Errorf("/healthz while waiting: %d bytes, want the reason capped:\n%.600s", len(during), during)
		}
	})
	t.Run("waits out a catalog without the region or service", func(t *testing.T) {
		// a catalog a deployment tool fills after Keystone is up: the
		// image service missing, then there. Before, this ended the
		// start (exit 2) and systemd restarted the daemon every
		// RestartSec for ever, each restart a login.
		gap := catalogError(errors.New(`the Keystone catalog has no image service (service type image): no endpoint with interface public in region "R"; the service types it has there: identity`))
		w, logs, h := newWait()
		w.first, w.max = time.Hour, time.Hour // not the transient waits
		w.catalogFirst, w.catalogMax = time.Millisecond, 2*time.Millisecond
		calls := 0
		var during string
		v, err := startOpen(context.Background(), w, func(context.Context) (string, error) {
			if calls++; calls < 3 {
				if calls == 2 {
					_, during = healthz(h)
				}
				return "", gap
			}
			return "clients", nil
		})
		if err != nil || v != "clients" || calls != 3 {
			t.Fatalf("startOpen: %q %v after %d calls", v, err, calls)
		}
		const warn = `level=WARN msg="Keystone's catalog lacks what the configuration asks for at start; waiting for it"`
		if n := strings.Count(logs.String(), warn); n != 2 {
			t.Errorf("%d catalog WARN lines, want 2:\n%s", n, logs.String())
		}
		for _, want := range []string{`no image service (service type image)`, `region \"R\"`, "the service types it has there: identity", "hint=", "next_attempt="} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, logs.String())
			}
		}
		if !strings.Contains(during, "waiting for OpenStack at start") || !strings.Contains(during, "no image service") {
			t.Errorf("/healthz while waiting for the catalog: %q", during)
		}
		if !errors.Is(gap, errUsage) || loginExit(gap) != exitUsage {
			t.Errorf("a catalog gap is no longer exit 2 for --once: %d", loginExit(gap))
		}
		// --once: no wait, the error as it is
		calls = 0
		if _, err := startOpen(context.Background(), nil, func(context.Context) (int, error) { calls++; return 0, gap }); err != gap || calls != 1 {
			t.Errorf("--once: %v after %d calls", err, calls)
		}
	})
	t.Run("no wait for the rest", func(t *testing.T) {
		for _, err := range []error{
			fmt.Errorf("authenticating: %w of user %q", errCredentialsRefused, "u"),
			usageError{errors.New("auth_url: ...")},
			errors.New("not a Keystone v3 token"),
		} {
			w, logs, _ := newWait()
			calls := 0
			_, got := startOpen(context.Background(), w, func(context.Context) (int, error) { calls++; return 0, err })
			if got != err || calls != 1 || strings.Contains(logs.String(), "WARN") {
				t.Errorf("%v: %v after %d calls:\n%s", err, got, calls, logs.String())
			}
		}
	})
	t.Run("stopped while waiting", func(t *testing.T) {
		w, _, _ := newWait()
		w.first, w.max = time.Hour, time.Hour
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := startOpen(ctx, w, func(context.Context) (int, error) { return 0, outage })
			done <- err
		}()
		for w.failures == nil || counterValue(t, w.failures) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, errStopping) {
			t.Fatalf("after cancel: %v", err)
		}
	})
	t.Run("stopped during an attempt that hangs", func(t *testing.T) {
		w, _, _ := newWait()
		ctx, cancel := context.WithCancel(context.Background())
		hang := make(chan struct{})
		defer close(hang)
		started := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			_, err := startOpen(ctx, w, func(context.Context) (int, error) { close(started); <-hang; return 0, nil })
			done <- err
		}()
		<-started
		cancel()
		if err := <-done; !errors.Is(err, errStopping) {
			t.Fatalf("after cancel: %v", err)
		}
	})
	t.Run("once", func(t *testing.T) {
		calls := 0
		_, err := startOpen(context.Background(), nil, func(context.Context) (int, error) { calls++; return 0, outage })
		if err != outage || calls != 1 {
			t.Fatalf("without a wait: %v after %d calls", err, calls)
		}
	})
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) { r.code = code }

// TestStartFailed: the one report of a failed start (the four copies of
// "loginExit, then fail or log and exit 1" it replaced kept these codes):
// refused credentials 78 and configuration errors 2 on stderr; other
// failures 1, logged (or on stderr with no message); stopped while
// waiting 0.
func TestStartFailed(t *testing.T) {
	for _, c := range []struct {
		name       string
		msg        string
		err        error
		code       int
		stderr     string
		log        string
		stderrNone bool
	}{
		{"refused", "openstack authentication failed", fmt.Errorf("authenticating: %w of user %q", errCredentialsRefused, "u"), exitCredentials,
			"imagetrust: sync: authenticating: keystone refused the credentials", "", false},
		{"usage", "openstack authentication failed", usageError{errors.New("no cloud")}, exitUsage, "imagetrust: sync: no cloud", "", false},
		{"other, logged", "openstack authentication failed", errors.New("dial tcp: connection refused"), exitInvalid,
			"", `level=ERROR msg="openstack authentication failed" err="dial tcp: connection refused"`, true},
		{"other, on stderr", "", errors.New("dial tcp: connection refused"), exitInvalid, "imagetrust: sync: dial tcp: connection refused", "", false},
		{"stopping", "openstack authentication failed", errStopping, exitOK, "", `msg=stopping`, true},
	} {
		var stderr bytes.Buffer
		logs := &testutil.SyncBuffer{}
		code := startFailed(&env{stderr: &stderr}, slog.New(slog.NewTextHandler(logs, nil)), "sync", c.msg, c.err)
		if code != c.code || !strings.Contains(stderr.String(), c.stderr) || !strings.Contains(logs.String(), c.log) || (c.stderrNone && stderr.Len() > 0) {
			t.Errorf("%s: exit %d (want %d), stderr %q, log %q", c.name, code, c.code, stderr.String(), logs.String())
		}
	}
}

// TestProxyMetricsListenNotTheGate: a proxy.metrics_listen that takes the
// gate's port (proxy.listen) is a configuration error told at once (exit
// 2), before any request. Before, the proxy served its waiting /healthz
// there while Keystone was away (a load balancer's check saw the gate up,
// Nova's clients got 404 for every request), and once logged in
// proxy.Serve failed to bind the second of the two (exit 1, restarted).
func TestProxyMetricsListenNotTheGate(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:18774", "127.0.0.1:18774", true},
		{":18774", "127.0.0.1:18774", true},
		{"0.0.0.0:18774", "10.0.0.5:18774", true},
		{"[::]:18774", "127.0.0.1:18774", true},
		{"[::1]:18774", "[0:0::1]:18774", true},
		{"Proxy.example:18774", "proxy.example:18774", true},
		{"127.0.0.1:18774", "127.0.0.1:9743", false},
		{"127.0.0.1:18774", "10.0.0.5:18774", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{"127.0.0.1:18774", "", false},
	} {
		if got := listenOverlap(c.a, c.b); got != c.want {
			t.Errorf("listenOverlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}

	path, _ := daemonConfig(t)
	cfgPath, listen := proxyConfig(t, filepath.Dir(filepath.Dir(path)), "upstream = \"http://127.0.0.1:9/v2.1\"\n")
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fmt.Fprintf(f, "metrics_listen = %q\n", "0.0.0.0:"+listen[strings.LastIndexByte(listen, ':')+1:])
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	code, logs, gate := runProxyWithoutKeystone(t, cfgPath, listen)
	if gate != 0 {
		t.Fatalf("the proxy waits for Keystone with its /healthz on the gate's port (GET /v2.1/servers there: %d):\n%s", gate, logs)
	}
	if code != exitUsage || !strings.Contains(logs, "proxy.metrics_listen") {
		t.Fatalf("exit %d, want %d naming proxy.metrics_listen before any login:\n%s", code, exitUsage, logs)
	}
}

// TestProxyGateAddressTakenAtStart: a proxy.listen that another process
// holds ends the proxy's start at once (exit 1, naming proxy.listen),
// before any request to Keystone. Before, it waited for Keystone and
// found out only then (proxy.Serve), and again at every restart, each
// after a login.
func TestProxyGateAddressTakenAtStart(t *testing.T) {
	path, _ := daemonConfig(t)
	cfgPath, listen := proxyConfig(t, filepath.Dir(filepath.Dir(path)), "upstream = \"http://127.0.0.1:9/v2.1\"\n")
	other, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	code, logs, _ := runProxyWithoutKeystone(t, cfgPath, "")
	if code != exitInvalid || !strings.Contains(logs, "proxy.listen") || !strings.Contains(logs, "address already in use") {
		t.Fatalf("exit %d, want %d naming proxy.listen, taken, before any login:\n%s", code, exitInvalid, logs)
	}
}

// runProxyWithoutKeystone runs `imagetrust proxy --config cfgPath` in this
// process with an auth_url where nothing listens, until it exits (its
// code and log) or starts waiting for Keystone: then it is stopped, code
// is -1, and gate is the status of a GET /v2.1/servers at gateAddr
// meanwhile (0: none made, or no answer).
func runProxyWithoutKeystone(t *testing.T, cfgPath, gateAddr string) (code int, logs string, gate int) {
	t.Helper()
	vars := map[string]string{"OS_AUTH_URL": "http://" + testutil.FreeAddr(t) + "/v3", "OS_USERNAME": "imagetrust",
		"OS_PASSWORD": "secret-7a31", "OS_PROJECT_NAME": "mirror", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"}
	buf := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: buf, getenv: func(k string) string { return vars[k] }},
			[]string{"proxy", "--config", cfgPath})
	}()
	for {
		select {
		case code := <-done:
			if strings.Contains(buf.String(), "waiting for it") {
				t.Errorf("the proxy waited for Keystone before it exited %d", code)
			}
			return code, buf.String(), 0
		case <-time.After(20 * time.Millisecond):
		}
		if strings.Contains(buf.String(), "waiting for it") {
			if gateAddr != "" {
				gate, _ = get("http://" + gateAddr + "/v2.1/servers")
			}
			cancel()
			<-done
			t.Errorf("the proxy waits for Keystone")
			return -1, buf.String(), gate
		}
	}
}

// TestStartHint: the WARN line of a wait says what a refused connection
// or a name that does not resolve may also mean (a wrong address waits
// as long as a service that is down); other failures get no hint.
func TestStartHint(t *testing.T) {
	_, refused := http.Get("http://" + testutil.FreeAddr(t) + "/v3")
	dns := &url.Error{Op: "Post", URL: "http://keystone.invalid/v3", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "keystone.invalid", IsNotFound: true}}}
	dnsDown := &url.Error{Op: "Post", URL: "http://keystone.example/v3", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "server misbehaving", Name: "keystone.example", IsTemporary: true}}}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", fmt.Errorf("glance: %w", refused), "nothing listens at that host and port"},
		{"no such host", dns, "the host name does not resolve"},
		{"resolver down", dnsDown, ""},
		{"503", gophercloud.ErrUnexpectedResponseCode{Actual: 503}, ""},
	} {
		if got := startHint(c.err); (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: hint %q, want %q", c.name, got, c.want)
		}
	}
}

// TestServiceDiscoveryBounded: a service in the catalog that accepts the
// connection and never answers fails a service client's version
// discovery after discoveryTimeout, as timed out (transient: the start-up
// wait tries again), and the provider client keeps no timeout after it
// (it carries hour-long transfers). Before, gophercloud's discovery
// (no context) waited for the answer up to responseHeaderTimeout (10
// minutes; here, with no such timeout, for ever) with nothing logged.
func TestServiceDiscoveryBounded(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			// reads the request and never answers; ends when the client
			// hangs up
			go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	defer func(d time.Duration) { discoveryTimeout = d }(discoveryTimeout)
	discoveryTimeout = 100 * time.Millisecond
	cat := &tokens.ServiceCatalog{Entries: []tokens.CatalogEntry{{Type: "image", Name: "glance", Endpoints: []tokens.Endpoint{
		{Interface: "public", Region: "RegionOne", URL: "http://" + hung.Addr().String() + "/"}}}}}
	pc := &gophercloud.ProviderClient{}
	pc.EndpointLocator = func(eo gophercloud.EndpointOpts) (string, error) {
		return openstack.V3Endpoint(context.Background(), pc, cat, eo)
	}
	done := make(chan error, 1)
	go func() {
		_, err := newImageClient(pc, gophercloud.EndpointOpts{Region: "RegionOne", Availability: gophercloud.AvailabilityPublic})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !transientStartError(err) {
			t.Fatalf("discovery of a service that never answers: %v, want a transient error", err)
		}
		if !strings.Contains(err.Error(), "image endpoint") {
			t.Errorf("the error does not name the service: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the version discovery of a service that never answers still waits after a minute")
	}
	if pc.HTTPClient.Timeout != 0 {
		t.Errorf("the provider client keeps a timeout of %s after the discovery", pc.HTTPClient.Timeout)
	}
}
