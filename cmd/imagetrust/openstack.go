package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/prometheus/client_golang/prometheus"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/oserr"
)

// version is the release, set at build time with
// -ldflags "-X main.version=v1.2.3"; when empty, the module version Go
// stamped into the binary is used.
var version string

// userAgent is the product token every OpenStack request starts with.
func userAgent() string {
	v := version
	if v == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			v = bi.Main.Version
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	return "imagetrust/" + v
}

// authTimeout bounds the first authentication.
const authTimeout = 2 * time.Minute

// envCloud is the name of the cloud made from the OS_* variables.
const envCloud = "envvars"

// openImageClient authenticates with openProvider and returns a Glance v2
// client, found through the service catalog, and the id of the token's
// project, the mirror project: a login of its own (the daemons use
// openLogin and share theirs; the tests use this).
//
// The HTTP client has no overall timeout (an image stage may take an hour);
// a caller that wants one sets sc.ProviderClient.HTTPClient.Timeout, which
// keeps the TLS transport.
func openImageClient(ctx context.Context, cloud string, getenv func(string) string) (*gophercloud.ServiceClient, string, error) {
	pc, eo, project, err := openProvider(ctx, cloud, getenv)
	if err != nil {
		return nil, "", err
	}
	sc, err := newImageClient(pc, eo)
	if err != nil {
		return nil, "", err
	}
	return sc, project, nil
}

// responseHeaderTimeout bounds the wait for an OpenStack service's answer.
// Long enough for Glance's slowest synchronous answers (deleting a large
// image from an RBD store, finishing an upload to a slow store).
var responseHeaderTimeout = 10 * time.Minute

// openProvider authenticates to Keystone and returns the provider client,
// the endpoint options for the service clients (region, interface) and the
// id of the token's project, the mirror project: openLogin without a log.
func openProvider(ctx context.Context, cloud string, getenv func(string) string) (*gophercloud.ProviderClient, gophercloud.EndpointOpts, string, error) {
	l, err := openLogin(ctx, cloud, getenv, nil)
	if err != nil {
		return nil, gophercloud.EndpointOpts{}, "", err
	}
	return l.pc, l.eo, l.project, nil
}

// keystoneLogin is a process's login to Keystone as its service user: one
// provider client (pc), which every OpenStack client of the process shares
// (the proxy's Glance lookups, its token validation and its Cinder
// endpoint), the credentials in use, and the one hold-off (reauthGuard)
// that every renewal of that client goes through.
//
// Credentials: the clouds.yaml entry cloud or, when cloud is empty, the one
// named by OS_CLOUD (clouds.yaml from OS_CLIENT_CONFIG_FILE or the standard
// places; OS_REGION_NAME, OS_INTERFACE and OS_CACERT override the entry);
// without either, the OS_* variables of an openrc file (password or
// application credential; OS_USER_DOMAIN_*/OS_PROJECT_DOMAIN_* or
// OS_DOMAIN_*; OS_CACERT, OS_CERT, OS_KEY). Both go through gophercloud's
// clouds.Parse, so the CA file, client certificate and verify setting apply
// alike. The token is renewed when it expires or is revoked (on a 401),
// with the credentials in use; reload reads them again (SIGHUP). Every
// request carries User-Agent imagetrust/VERSION. No log line or error
// includes a password or secret.
type keystoneLogin struct {
	cloud  string
	getenv func(string) string
	log    *slog.Logger

	pc      *gophercloud.ProviderClient
	eo      gophercloud.EndpointOpts
	project string
	// refusals counts the logins Keystone refused after the start, by
	// when: "renewal" or "reload"
	refusals *prometheus.CounterVec
	// renewalFailures counts the token renewals that failed, by cause
	// (renewalCauses)
	renewalFailures *prometheus.CounterVec
	// renewalLog writes the renewal failures' lines, rate-limited
	renewalLog *renewalLog

	// sem serialises logins after the start (renewals, reloads): one
	// Keystone is asked at a time, and a renewal waiting for another
	// sees its refusal and its hold-off
	sem chan struct{}
	// under sem:
	ao    gophercloud.AuthOptions // AllowReauth false
	guard reauthGuard
}

// openLogin authenticates to Keystone once with the configured credentials
// (see keystoneLogin). Credentials that can't be used as they are give a
// usageError (exit 2); credentials Keystone refuses (HTTP 401) an error
// that is errCredentialsRefused and no usageError (exit 78, exitCredentials):
// asking again with them cannot help, and each try is one more failed
// login towards a lockout. log gets the renewals' refusals and the
// reloads (nil: none).
func openLogin(ctx context.Context, cloud string, getenv func(string) string, log *slog.Logger) (*keystoneLogin, error) {
	ao, eo, tlsConf, err := usableCredentials(cloud, getenv)
	if err != nil {
		return nil, err
	}
	ao.AllowReauth = false
	pc, err := openstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return nil, usageError{fmt.Errorf("auth_url: %w", err)}
	}
	pc.UserAgent.Prepend(userAgent())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	}
	if tlsConf.MinVersion == 0 {
		tlsConf.MinVersion = tls.VersionTLS12
	}
	tr.TLSClientConfig = tlsConf
	// a service that accepts the connection and never answers must not
	// hang a pass, a reload or the start-up (gophercloud's service
	// discovery takes no context): every request gets its response head
	// within this once its body is sent (an upload's too); the proxy's
	// forwarding to Nova has its own transport (validator/proxy)
	tr.ResponseHeaderTimeout = responseHeaderTimeout
	pc.HTTPClient = http.Client{Transport: tr}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &keystoneLogin{cloud: cloud, getenv: getenv, log: log, pc: pc, eo: eo, ao: ao,
		sem:             make(chan struct{}, 1),
		guard:           reauthGuard{first: reauthHoldOff, max: reauthMaxHoldOff, now: time.Now},
		refusals:        newLoginRefusals(),
		renewalFailures: newRenewalFailures(),
		renewalLog:      newRenewalLog(log),
	}

	actx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	// the provider client itself: its endpoint locator (the catalog) is
	// the first token's
	if err := openstack.Authenticate(actx, pc, ao); err != nil {
		if refusedLogin(err) {
			// trying again with the same credentials cannot help, and
			// each try is one more failed login towards a lockout: exit
			// 78, on which the units do not restart
			return nil, fmt.Errorf("authenticating at %s: %w of %s (HTTP %d: a wrong, changed or expired password or application credential, a deleted application credential, a disabled or locked-out user)",
				redactURL(ao.IdentityEndpoint), errCredentialsRefused, credentialsOwner(ao), refusalStatus(err))
		}
		// the endpoint redacted anyway; gophercloud's error holds the whole
		// response body (a mistyped auth_url: some web server's page)
		return nil, fmt.Errorf("authenticating at %s: %w%s", redactURL(ao.IdentityEndpoint), oserr.Capped(err), certificateHint(err))
	}
	project, err := tokenProject(pc)
	if err != nil {
		return nil, err
	}
	// a region_name no endpoint is in: every service client would fail
	// with gophercloud's "No suitable endpoint"
	if err := checkRegion(tokenCatalog(pc), eo.Region); err != nil {
		return nil, err
	}
	l.project = project
	pc.ReauthFunc = l.reauth
	return l, nil
}

// loginExit is the exit status of a daemon or --once run whose openLogin
// (or a service client after it) failed with err at start: 78 when
// Keystone refused the credentials, 2 for credentials that can't be used
// as they are or (--once) a catalog without the region or service, 1
// otherwise (a --once run that found Keystone unreachable: its timer tries
// again; a daemon waits for a transient failure and a catalog without the
// region or service, startOpen, and exits 1 for the others).
func loginExit(err error) int {
	switch {
	case errors.Is(err, errCredentialsRefused):
		return exitCredentials
	case errors.Is(err, errUsage):
		return exitUsage
	}
	return exitInvalid
}

// startFailed reports the failed start-up of a daemon or --once run of
// cmd (openLogin and its service clients, through startOpen) and returns
// its exit status, loginExit's: a daemon stopped while it waited for
// OpenStack (errStopping) logs "stopping" and exits 0; credentials
// Keystone refused (78) and what can't work as configured (2) go to
// stderr, "imagetrust: CMD: ..."; any other failure (1) is logged at
// ERROR with msg or, when msg is "", goes to stderr too.
func startFailed(e *env, log *slog.Logger, cmd, msg string, err error) int {
	if errors.Is(err, errStopping) {
		log.Info("stopping")
		return exitOK
	}
	code := loginExit(err)
	if code != exitInvalid || msg == "" {
		return fail(e, code, "%s: %v", cmd, err)
	}
	log.Error(msg, "err", err)
	return code
}

// A daemon (sync, crl, proxy; not --once) that cannot reach Keystone or
// its services at start waits for them instead of exiting: after a
// site's power-up its hosts are often up minutes before Keystone, and a
// daemon that exited each time had systemd restart it every few seconds,
// each restart a login attempt and a few journal lines (and, with a
// shorter RestartSec, the unit's start limit reached: failed for good).
// Each attempt that fails for a transient reason (transientStartError:
// refused, reset or timed-out connections, DNS, HTTP 5xx or 429) is
// logged at WARN once, with the reason and the time of the next; the
// next comes after startFirstWait, doubled for each failure in a row, at
// most startMaxWait, each wait up to a fifth shorter at random (the
// daemons of a site that started together do not ask in step).
//
// A catalog that lacks what the configuration asks for (errNotInCatalog:
// the region, or the service with the interface in the region) is waited
// out too, more slowly: a deployment tool, or a site's power-up, may
// register the endpoints after Keystone is up, and a daemon that exited 2
// for it was restarted by systemd every RestartSec for ever, each restart
// a fresh login. Each attempt is a (successful) login that reads the
// catalog again, after catalogFirstWait, doubled for each in a row, at
// most catalogMaxWait; each is logged at WARN naming the region, service
// type and interface and what the catalog has, and /healthz says so (503).
// A --once or --dry-run run still fails at once with exit 2.
//
// Credentials refused (exit 78) and other configuration errors (2) still
// end the start at once: waiting cannot mend them.
const (
	startFirstWait = time.Second
	// startMaxWait caps the wait: a daemon notices Keystone back within
	// half a minute, at the cost of one connection or one request to a
	// service that is down (never a failed login: a refusal ends the
	// wait) every half minute, negligible for Keystone, Glance and Nova
	// even from every daemon of a site at once.
	startMaxWait = 30 * time.Second
)

// catalogFirstWait and catalogMaxWait bound the waits for a catalog that
// lacks a region or service at start: one login every 5 minutes at most,
// a few hundred a day, against the one every RestartSec (10 s) of a
// restarted daemon. Variables for the tests.
var (
	catalogFirstWait = 30 * time.Second
	catalogMaxWait   = 5 * time.Minute
)

// errStopping is the end of a daemon's wait for OpenStack at start: it
// was told to stop (SIGTERM).
var errStopping = errors.New("stopped while waiting for OpenStack at start")

// startWait is a daemon's wait for OpenStack at start (see startFirstWait).
type startWait struct {
	log        *slog.Logger
	health     *startHealth // nil: no /healthz
	first, max time.Duration
	// the waits for a catalog that lacks a region or service
	catalogFirst, catalogMax time.Duration
	failures                 prometheus.Counter
	waiting                  prometheus.Gauge
}

// newStartWait is the wait of a daemon logging to log, with its metrics in
// reg and its /healthz (nil: none) 503 while it waits.
func newStartWait(log *slog.Logger, reg prometheus.Registerer, health *startHealth) *startWait {
	w := &startWait{log: log, health: health, first: startFirstWait, max: startMaxWait,
		catalogFirst: catalogFirstWait, catalogMax: catalogMaxWait,
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "imagetrust_start_failures_total",
			Help: "Attempts at the daemon's start to log in to Keystone and reach the services it needs that failed for a transient reason (connection refused, reset or timed out, DNS, HTTP 5xx or 429; it tries again after 1, 2, 4 ... 30 seconds) or found Keystone's catalog without the configured region or a service it needs (it logs in again after 30 s, 1, 2, 4, 5 minutes)."}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imagetrust_start_waiting",
			Help: "1 while the daemon waits at its start for Keystone and the services it needs (serving only /metrics and a 503 /healthz), 0 once it has started."}),
	}
	reg.MustRegister(w.failures, w.waiting)
	return w
}

// delay is the wait after n failed attempts in a row.
func (w *startWait) delay(n int) time.Duration {
	return backoff(w.first, w.max, n)
}

// catalogDelay is the wait after n attempts in a row that found the
// catalog without what the configuration asks for.
func (w *startWait) catalogDelay(n int) time.Duration {
	return backoff(w.catalogFirst, w.catalogMax, n)
}

// backoff is first doubled n-1 times, at most limit, up to a fifth
// shorter at random.
func backoff(first, limit time.Duration, n int) time.Duration {
	d := min(first<<min(n-1, 16), limit)
	return d - rand.N(d/5+1)
}

// startOpen runs open (a login and the service clients on it) until it
// succeeds, fails for a reason that is not transient (its error
// returned), or ctx ends (errStopping). Without a wait (w nil: --once,
// the CLI) open runs once and its error is returned as it is.
func startOpen[T any](ctx context.Context, w *startWait, open func(context.Context) (T, error)) (T, error) {
	var zero T
	if w == nil {
		return open(ctx)
	}
	w.waiting.Set(1)
	defer w.waiting.Set(0)
	since := time.Now()
	// failed attempts in a row, transient and catalog ones (each has its
	// own backoff)
	transient, catalog := 0, 0
	for n := 1; ; n++ {
		v, err := attemptStart(ctx, open)
		if ctx.Err() != nil {
			return zero, errStopping
		}
		if err == nil {
			if n > 1 {
				w.log.Info("OpenStack reachable: starting", "attempts", n, "waited", time.Since(since).Round(time.Second))
			}
			return v, nil
		}
		inCatalog := errors.Is(err, errNotInCatalog)
		if !inCatalog && !transientStartError(err) {
			return zero, err
		}
		w.failures.Inc()
		var d time.Duration
		if inCatalog {
			catalog, transient = catalog+1, 0
			d = w.catalogDelay(catalog)
		} else {
			transient, catalog = transient+1, 0
			d = w.delay(transient)
		}
		next := time.Now().Add(d).UTC().Format(time.RFC3339)
		// capped: a service's version discovery that got a load
		// balancer's 503 page has all of it in its error (the login's
		// errors are capped already), and this is said at every attempt
		said := oserr.Capped(err)
		attrs := []any{"err", said, "attempt", n, "next_attempt", next, "retry_in", d.Round(time.Millisecond)}
		msg := "OpenStack not reachable at start; waiting for it"
		if inCatalog {
			msg = "Keystone's catalog lacks what the configuration asks for at start; waiting for it"
			attrs = append(attrs, "hint", "the region or endpoint is not registered in Keystone (yet): a deployment that fills the catalog later is waited for; a wrong region_name or interface: a fix of clouds.yaml is taken at the next attempt (each reads it again), one of OS_REGION_NAME or OS_INTERFACE takes a restart")
		} else if h := startHint(err); h != "" {
			attrs = append(attrs, "hint", h)
		}
		w.log.Warn(msg, attrs...)
		w.health.waiting(fmt.Sprintf("waiting for OpenStack at start since %s: attempt %d failed: %v; next attempt at %s",
			since.UTC().Format(time.RFC3339), n, said, next))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, errStopping
		case <-t.C:
		}
	}
}

// startHint is what a transient start-up failure that looks the same
// whether the service is down or the address is wrong may also mean, for
// the WARN line ("" for the others): the daemon waits either way.
func startHint(err error) string {
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens at that host and port: the service is not up yet, or the address is wrong (auth_url, or the endpoint in Keystone's catalog)"
	case errors.As(err, &dns) && dns.IsNotFound:
		return "the host name does not resolve: DNS is not up yet, or the name is wrong (auth_url, or the endpoint in Keystone's catalog)"
	}
	return ""
}

// attemptStart runs open, returning at once when ctx ends: gophercloud's
// service discovery takes no context, and a service that accepts the
// connection and never answers holds it up to responseHeaderTimeout. An
// attempt left behind ends on its own; its result is dropped.
func attemptStart[T any](ctx context.Context, open func(context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := open(ctx)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// transientStartError reports whether a failed start-up login (or a
// service's version discovery after it) may work when asked again
// unchanged: the service is not (yet) reachable, or answers that it can't
// serve now. Credentials refused and configuration errors are not; nor
// are a TLS certificate the client does not trust, a 4xx other than 429
// (a wrong auth_url gets 404), or an answer that is no Keystone's (a
// document that does not parse).
func transientStartError(err error) bool {
	if err == nil || errors.Is(err, errUsage) || errors.Is(err, errCredentialsRefused) || certificateHint(err) != "" {
		return false
	}
	var ue gophercloud.ErrUnexpectedResponseCode
	var pue *gophercloud.ErrUnexpectedResponseCode
	switch {
	case errors.As(err, &ue):
		return ue.Actual >= 500 || ue.Actual == http.StatusTooManyRequests
	case errors.As(err, &pue):
		return pue.Actual >= 500 || pue.Actual == http.StatusTooManyRequests
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		// the resolver or the name's zone not up yet; a name mistyped
		// waits too, said at WARN at every attempt
		return true
	}
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EHOSTUNREACH,
		syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN, syscall.ETIMEDOUT, syscall.EPIPE,
		io.EOF, io.ErrUnexpectedEOF, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tokenProject is the id of the project pc's token is scoped to.
func tokenProject(pc *gophercloud.ProviderClient) (string, error) {
	cr, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return "", errors.New("not a Keystone v3 token: cannot tell the mirror project")
	}
	p, err := cr.ExtractProject()
	if err != nil || p == nil || p.ID == "" {
		return "", errors.New("the token is not scoped to a project (the mirror project)")
	}
	return p.ID, nil
}

// refusedLogin reports whether err is Keystone's refusal of a login (POST
// /v3/auth/tokens): 401 (a wrong password or secret, an expired
// application credential, a disabled or locked-out user), or 404 with
// Keystone's error document "Could not find Application Credential", Zed's
// answer for an application credential id it does not have (deleted).
// Either way the same credentials cannot work on a second try.
func refusedLogin(err error) bool {
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) || !strings.HasSuffix(ue.URL, "/auth/tokens") {
		return false
	}
	switch ue.Actual {
	case http.StatusUnauthorized:
		return true
	case http.StatusNotFound:
		// Keystone's own error document, about an application
		// credential: not any web server's 404 page (a mistyped
		// auth_url), which is no answer about the credentials
		var doc struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		return json.Unmarshal(ue.Body, &doc) == nil && doc.Error.Code == http.StatusNotFound &&
			strings.Contains(doc.Error.Message, "Application Credential")
	}
	return false
}

// refusalStatus is the HTTP status of a refusedLogin error.
func refusalStatus(err error) int {
	var ue gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &ue) {
		return ue.Actual
	}
	return 0
}

// register adds the login's metrics to reg.
func (l *keystoneLogin) register(reg prometheus.Registerer) {
	reg.MustRegister(l.refusals, l.renewalFailures)
}

// newLoginRefusals is imagetrust_keystone_login_refusals_total, both
// series (renewal, reload) at 0.
func newLoginRefusals() *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imagetrust_keystone_login_refusals_total",
		Help: "Logins Keystone refused (HTTP 401, or 404 for a deleted application credential) to this daemon's credentials after its start: when renewing the token (renewal: the credentials in use no longer work; the next try waits 1, 2, 4 ... 30 minutes) or reading new ones on SIGHUP (reload: the new ones were not taken, the old ones stay in use)."},
		[]string{"when"})
	for _, w := range []string{"renewal", "reload"} {
		v.WithLabelValues(w)
	}
	return v
}

// renewalCauses are the cause labels of
// imagetrust_keystone_renewal_failures_total (renewalCause), a closed set:
// every series exists at 0 from the start.
var renewalCauses = []string{"connection-refused", "connection-reset", "timeout", "tls", "dns", "refused", "http-error", "other"}

// newRenewalFailures is imagetrust_keystone_renewal_failures_total, every
// series of renewalCauses at 0.
func newRenewalFailures() *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imagetrust_keystone_renewal_failures_total",
		Help: "Renewals of this daemon's Keystone token that failed, by cause: connection-refused, connection-reset, timeout, tls, dns (Keystone unreachable or not trusted; the next request tries again), refused (Keystone refused the credentials: see imagetrust_keystone_login_refusals_total), http-error (another HTTP status), other."},
		[]string{"cause"})
	for _, c := range renewalCauses {
		v.WithLabelValues(c)
	}
	return v
}

// renewalCause reduces the error of a failed login to Keystone to its
// essence: a label of renewalCauses and a short text for the log
// ("connection refused", "timeout", "TLS: x509: certificate signed by
// unknown authority", "HTTP 401: credentials refused"). gophercloud's
// error holds the whole request and response around it.
func renewalCause(err error) (label, text string) {
	if refusedLogin(err) {
		return "refused", fmt.Sprintf("HTTP %d: credentials refused", refusalStatus(err))
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	switch {
	case errors.As(err, &ua):
		return "tls", "TLS: " + ua.Error()
	case errors.As(err, &hn):
		return "tls", "TLS: " + hn.Error()
	case errors.As(err, &ci):
		return "tls", "TLS: " + ci.Error()
	case errors.As(err, &rh):
		return "tls", "TLS: not a TLS server (" + rh.Msg + ")"
	case errors.As(err, &ae):
		return "tls", "TLS: " + ae.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection-refused", "connection refused"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "dns", "DNS: " + dns.Err + " (" + dns.Name + ")"
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout", "timeout"
	}
	for _, e := range []error{syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return "connection-reset", "connection reset or closed"
		}
	}
	for _, e := range []error{syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN} {
		if errors.Is(err, e) {
			return "connection-refused", e.Error()
		}
	}
	var ue gophercloud.ErrUnexpectedResponseCode
	var pue *gophercloud.ErrUnexpectedResponseCode
	switch {
	case errors.As(err, &ue):
		return "http-error", fmt.Sprintf("HTTP %d", ue.Actual)
	case errors.As(err, &pue):
		return "http-error", fmt.Sprintf("HTTP %d", pue.Actual)
	}
	return "other", oserr.Capped(err).Error()
}

// endpointHost is the host:port of an endpoint URL, for logs (never its
// user information).
func endpointHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redactURL(raw)
	}
	return u.Host
}

// lock takes sem, or gives up with ctx.
func (l *keystoneLogin) lock(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *keystoneLogin) unlock() { <-l.sem }

// attempt logs in with ao on a throw-away copy of the provider client (same
// endpoint, transport and user agent) and returns it with its token.
func (l *keystoneLogin) attempt(ctx context.Context, ao gophercloud.AuthOptions) (*gophercloud.ProviderClient, error) {
	tac, err := openstack.NewClient(l.pc.IdentityEndpoint)
	if err != nil {
		return nil, err
	}
	tac.HTTPClient = l.pc.HTTPClient
	tac.UserAgent = l.pc.UserAgent
	ao.AllowReauth = false
	return tac, openstack.Authenticate(ctx, tac, ao)
}

// reauth is the provider client's ReauthFunc (gophercloud calls it after a
// 401, once the token expired or was revoked): a login with the
// credentials in use, through the hold-off. When Keystone refuses them
// (HTTP 401 to POST /v3/auth/tokens: a password or application credential
// rotated or expired, the user disabled or locked out), the error says
// so, one line is logged (the user, never the secret, and when Keystone
// is asked next), and until then every renewal fails at once with that
// error: without the hold-off each request of a daemon (each boot the
// proxy looks up) made one more failed login, enough of which lock the
// user out where Keystone's [security_compliance] lockout_failure_attempts
// is set, and fill Keystone's log. Other failures (Keystone unreachable,
// its certificate not trusted) are logged first in one short line, "token
// renewal with Keystone failed" with the auth_url's host and the cause
// (renewalCause; the first of each cause, the repeats summed up once a
// minute: renewalLog), and returned with that prefix; the next request
// tries again. Every failure that asked Keystone counts in
// imagetrust_keystone_renewal_failures_total{cause}.
func (l *keystoneLogin) reauth(ctx context.Context) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	who := credentialsOwner(l.ao)
	if err := l.guard.check(); err != nil {
		return err
	}
	tac, err := l.attempt(ctx, l.ao)
	if err != nil {
		if ctx.Err() != nil {
			// the request given up (the daemon stopping): no failure
			// of Keystone's
			return err
		}
		label, cause := renewalCause(err)
		l.renewalFailures.WithLabelValues(label).Inc()
		if !refusedLogin(err) {
			// first and short: gophercloud's error, logged by the
			// caller after this, holds the whole request with the
			// cause at its end
			host := endpointHost(l.ao.IdentityEndpoint)
			l.renewalLog.note(host, label, cause)
			return fmt.Errorf("token renewal with Keystone at %s failed: %s: %w", host, cause, oserr.Capped(err))
		}
		n, next, refused := l.guard.refuse(who, refusalStatus(err))
		l.refusals.WithLabelValues("renewal").Inc()
		l.log.Error("keystone refused the credentials when renewing the token; update them and reload (SIGHUP)",
			"user", credentialsLogName(l.ao), "refusals_in_a_row", n, "next_attempt", next.UTC().Format(time.RFC3339))
		return refused
	}
	l.pc.CopyTokenFrom(tac)
	if n := l.guard.accepted(); n > 0 {
		l.log.Info("keystone accepts the credentials again", "user", credentialsLogName(l.ao), "after_refusals", n)
	}
	return nil
}

// retryInUse is reload's login with unchanged credentials while Keystone
// has been refusing them (a hold-off runs): the operator may have fixed
// the user's side (re-enabled or unlocked it, set the password back) and
// reloads to say so; without it the daemon waited out the hold-off, up
// to 30 minutes. Asked at once, one login per reload: accepted, the
// hold-off ends; refused, it counts as a refusal in a row (when="reload")
// and the hold-off grows as a renewal's would. Under sem.
func (l *keystoneLogin) retryInUse(ctx context.Context) error {
	who := credentialsOwner(l.ao)
	actx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	tac, err := l.attempt(actx, l.ao)
	if refusedLogin(err) {
		n, next, _ := l.guard.refuse(who, refusalStatus(err))
		l.refusals.WithLabelValues("reload").Inc()
		l.log.Error("keystone still refuses the credentials in use (reloaded unchanged during the hold-off)",
			"user", credentialsLogName(l.ao), "refusals_in_a_row", n, "next_attempt", next.UTC().Format(time.RFC3339))
		return fmt.Errorf("credentials unchanged: %w of %s (HTTP %d); not asked again before %s", errCredentialsRefused, who, refusalStatus(err), next.UTC().Format(time.RFC3339))
	}
	if err != nil {
		return fmt.Errorf("credentials of %s: authenticating at %s: %w", who, redactURL(l.ao.IdentityEndpoint), oserr.Capped(err))
	}
	l.pc.CopyTokenFrom(tac)
	n := l.guard.accepted()
	l.log.Info("keystone accepts the credentials in use again (reloaded during the hold-off)", "user", credentialsLogName(l.ao), "after_refusals", n)
	return nil
}

// reload reads the credentials again (the clouds.yaml file; the process's
// OS_* variables do not change) and, when they changed, logs in with them:
// accepted, they replace those in use and their token the client's, and
// any hold-off ends; refused (counted, and logged with the user) or not
// tried, those in use stay, with their token. It is asked at once, hold-off
// or not: a reload is the operator's. Unchanged credentials are not tried
// again (a reload for new CRLs makes no login), unless Keystone has been
// refusing them (retryInUse). A new auth_url, region or
// interface, or credentials of another project (the mirror project is
// fixed at start) take a restart: refused here.
func (l *keystoneLogin) reload(ctx context.Context) error {
	ao, eo, _, err := usableCredentials(l.cloud, l.getenv)
	if err != nil {
		return fmt.Errorf("credentials: %w; keeping those in use", err)
	}
	ao.AllowReauth = false
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	if reflect.DeepEqual(ao, l.ao) && reflect.DeepEqual(eo, l.eo) {
		if l.guard.failures == 0 {
			return nil
		}
		return l.retryInUse(ctx)
	}
	who := credentialsOwner(ao)
	if ao.IdentityEndpoint != l.ao.IdentityEndpoint || !reflect.DeepEqual(eo, l.eo) {
		return fmt.Errorf("credentials: a new auth_url, region or interface takes a restart; keeping the credentials of %s", credentialsOwner(l.ao))
	}
	actx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	tac, err := l.attempt(actx, ao)
	if refusedLogin(err) {
		l.refusals.WithLabelValues("reload").Inc()
		l.log.Error("keystone refused the new credentials; keeping those in use", "user", credentialsLogName(ao), "in_use", credentialsLogName(l.ao))
		return fmt.Errorf("new credentials: %w of %s (HTTP %d); keeping those of %s", errCredentialsRefused, who, refusalStatus(err), credentialsOwner(l.ao))
	}
	if err != nil {
		return fmt.Errorf("new credentials of %s: authenticating at %s: %w; keeping those in use", who, redactURL(ao.IdentityEndpoint), oserr.Capped(err))
	}
	if p, err := tokenProject(tac); err != nil || p != l.project {
		return fmt.Errorf("new credentials of %s: not scoped to the mirror project %s (%v): another project takes a restart; keeping those in use", who, l.project, cmpOr(p, err))
	}
	l.ao = ao
	l.pc.CopyTokenFrom(tac)
	n := l.guard.accepted()
	l.log.Info("credentials reloaded: Keystone accepted them and they are in use", "user", credentialsLogName(ao), "after_refusals", n)
	return nil
}

// cmpOr is p, or err when p could not be told.
func cmpOr(p string, err error) any {
	if err != nil {
		return err
	}
	return p
}

// reauthHoldOff is how long, after Keystone first refused the credentials
// when a token was to be renewed, further renewals fail at once without
// asking Keystone again; each further refusal in a row doubles it (1, 2,
// 4, 8, 16 minutes), up to reauthMaxHoldOff.
const reauthHoldOff = time.Minute

// reauthMaxHoldOff caps the hold-off: Keystone's default lockout_duration
// (1800 s), so that once the credentials have been refused for a while a
// daemon makes at most one failed login per lockout period (7 in the
// first hour, then 2 an hour), and still notices within half an hour
// that the user was re-enabled or unlocked. New credentials do not wait
// for it: a reload (SIGHUP) tries them at once.
const reauthMaxHoldOff = 30 * time.Minute

// errCredentialsRefused marks a login Keystone refused: the credentials
// do not work.
var errCredentialsRefused = errors.New("keystone refused the credentials")

// reauthGuard is the hold-off after refused renewals: after the n-th
// refusal in a row no renewal asks Keystone for holdOff(n); a login that
// works starts it over. Its user (keystoneLogin) serialises the calls.
type reauthGuard struct {
	first, max time.Duration
	now        func() time.Time

	failures int
	refused  error
	until    time.Time
}

// holdOff is the wait after n refusals in a row: first, doubled for each
// further one, at most max.
func (g *reauthGuard) holdOff(n int) time.Duration {
	if n < 1 {
		return 0
	}
	return min(g.first<<min(n-1, 16), g.max)
}

// check returns the refusal in force (no renewal may ask Keystone now), or
// nil.
func (g *reauthGuard) check() error {
	if g.refused != nil && g.now().Before(g.until) {
		return g.refused
	}
	return nil
}

// refuse records that Keystone refused who's credentials now, with the
// HTTP status (refusalStatus), and returns the refusals in a row, when
// Keystone is asked next and the error renewals fail with.
func (g *reauthGuard) refuse(who string, status int) (int, time.Time, error) {
	g.failures++
	g.until = g.now().Add(g.holdOff(g.failures))
	g.refused = fmt.Errorf("%w of %s when renewing the token (HTTP %d: a changed or expired password or application credential, a deleted application credential, a disabled or locked-out user; update the credentials and reload); not asked again before %s",
		errCredentialsRefused, who, status, g.until.UTC().Format(time.RFC3339))
	return g.failures, g.until, g.refused
}

// accepted records a login that worked, and returns the refusals in a row
// before it.
func (g *reauthGuard) accepted() int {
	n := g.failures
	g.failures, g.refused, g.until = 0, nil, time.Time{}
	return n
}

// checkCredentials reports, as openProvider would, credentials that can't
// be used as they are (no cloud, a clouds.yaml entry that does not parse,
// a password in auth_url): a usageError, found without any request.
func checkCredentials(cloud string, getenv func(string) string) error {
	_, _, _, err := usableCredentials(cloud, getenv)
	return err
}

// usableCredentials is parseCredentials with auth_url checked; its errors
// are usageErrors.
func usableCredentials(cloud string, getenv func(string) string) (gophercloud.AuthOptions, gophercloud.EndpointOpts, *tls.Config, error) {
	ao, eo, tlsConf, err := parseCredentials(cloud, getenv)
	if err != nil {
		// no cloud, or one described wrongly: a configuration error
		return ao, eo, nil, usageError{err}
	}
	if itconfig.URLMayHoldCredentials(ao.IdentityEndpoint) {
		// never echoed, as the index and CRL source URLs are not
		return ao, eo, nil, usageError{errors.New("auth_url: not a URL without credentials: user:password@ in auth_url would appear in logs and errors; give the password as OS_PASSWORD or clouds.yaml's password")}
	}
	return ao, eo, tlsConf, nil
}

// credentialsLogName names whose credentials ao holds, for a log
// attribute (user=imagetrust): the user's name or id as it is, an
// application credential as such. credentialsOwner's quoted form is for
// error text; as an attribute value it quoted itself (user="user
// \"imagetrust\"").
func credentialsLogName(ao gophercloud.AuthOptions) string {
	switch {
	case ao.ApplicationCredentialID != "":
		return "application credential " + ao.ApplicationCredentialID
	case ao.ApplicationCredentialName != "":
		return "application credential " + ao.ApplicationCredentialName
	case ao.Username != "":
		return ao.Username
	case ao.UserID != "":
		return ao.UserID
	}
	return "the configured user"
}

// credentialsOwner names whose credentials ao holds, for errors.
func credentialsOwner(ao gophercloud.AuthOptions) string {
	switch {
	case ao.ApplicationCredentialID != "":
		return "application credential " + ao.ApplicationCredentialID
	case ao.ApplicationCredentialName != "":
		return fmt.Sprintf("application credential %q", ao.ApplicationCredentialName)
	case ao.Username != "":
		return fmt.Sprintf("user %q", ao.Username)
	case ao.UserID != "":
		return "user " + ao.UserID
	}
	return "the configured user"
}

// redactURL is an endpoint for logs and errors: any password replaced by
// xxxxx (url.URL.Redacted).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an unparsable URL)"
	}
	return u.Redacted()
}

// parseCredentials reads the clouds.yaml entry, or the OS_* variables as an
// in-memory clouds.yaml entry, with gophercloud's clouds.Parse.
func parseCredentials(cloud string, getenv func(string) string) (gophercloud.AuthOptions, gophercloud.EndpointOpts, *tls.Config, error) {
	if cloud == "" {
		cloud = getenv("OS_CLOUD")
	}
	var opts []clouds.ParseOption
	if cloud != "" {
		opts = append(opts, clouds.WithCloudName(cloud))
		if f := getenv("OS_CLIENT_CONFIG_FILE"); f != "" {
			opts = append(opts, clouds.WithLocations(f))
		}
		if r := getenv("OS_REGION_NAME"); r != "" {
			opts = append(opts, clouds.WithRegion(r))
		}
		if i := getenv("OS_INTERFACE"); i != "" {
			opts = append(opts, clouds.WithEndpointType(i))
		}
		if ca := getenv("OS_CACERT"); ca != "" {
			opts = append(opts, clouds.WithCACertPath(ca))
		}
		ao, eo, tlsConf, err := clouds.Parse(opts...)
		if err != nil {
			return ao, eo, nil, fmt.Errorf("clouds.yaml, cloud %q: %w", cloud, err)
		}
		return ao, eo, tlsConf, nil
	}
	c, err := cloudFromEnv(getenv)
	if err != nil {
		return gophercloud.AuthOptions{}, gophercloud.EndpointOpts{}, nil, err
	}
	doc, err := json.Marshal(clouds.Clouds{Clouds: map[string]clouds.Cloud{envCloud: c}})
	if err != nil {
		return gophercloud.AuthOptions{}, gophercloud.EndpointOpts{}, nil, fmt.Errorf("OS_* variables: %w", err)
	}
	// JSON is YAML; the name and the reader keep clouds.Parse off the
	// process environment and the files.
	ao, eo, tlsConf, err := clouds.Parse(clouds.WithCloudName(envCloud), clouds.WithCloudsYAML(bytes.NewReader(doc)),
		clouds.WithCACertPath(c.CACertFile), clouds.WithRegion(c.RegionName), clouds.WithEndpointType(c.Interface))
	if err != nil {
		return ao, eo, nil, fmt.Errorf("OS_* variables: %w", err)
	}
	return ao, eo, tlsConf, nil
}

// cloudFromEnv is the clouds.yaml entry the OS_* variables describe.
func cloudFromEnv(getenv func(string) string) (clouds.Cloud, error) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := strings.TrimSpace(getenv(n)); v != "" {
				return v
			}
		}
		return ""
	}
	a := &clouds.AuthInfo{
		AuthURL:                     first("OS_AUTH_URL"),
		Username:                    first("OS_USERNAME"),
		UserID:                      first("OS_USER_ID", "OS_USERID"),
		Password:                    getenv("OS_PASSWORD"),
		ApplicationCredentialID:     first("OS_APPLICATION_CREDENTIAL_ID"),
		ApplicationCredentialName:   first("OS_APPLICATION_CREDENTIAL_NAME"),
		ApplicationCredentialSecret: getenv("OS_APPLICATION_CREDENTIAL_SECRET"),
		ProjectName:                 first("OS_PROJECT_NAME", "OS_TENANT_NAME"),
		ProjectID:                   first("OS_PROJECT_ID", "OS_TENANT_ID"),
		UserDomainName:              first("OS_USER_DOMAIN_NAME"),
		UserDomainID:                first("OS_USER_DOMAIN_ID"),
		ProjectDomainName:           first("OS_PROJECT_DOMAIN_NAME"),
		ProjectDomainID:             first("OS_PROJECT_DOMAIN_ID"),
		DomainName:                  first("OS_DOMAIN_NAME"),
		DomainID:                    first("OS_DOMAIN_ID"),
	}
	switch {
	case a.AuthURL == "":
		return clouds.Cloud{}, errors.New("no cloud: set OS_CLOUD (clouds.yaml) or the OS_* variables (OS_AUTH_URL missing)")
	case a.ApplicationCredentialID != "" || a.ApplicationCredentialName != "":
		if a.ApplicationCredentialSecret == "" {
			return clouds.Cloud{}, errors.New("OS_APPLICATION_CREDENTIAL_SECRET missing")
		}
		if a.ApplicationCredentialID == "" && a.Username == "" && a.UserID == "" {
			return clouds.Cloud{}, errors.New("an application credential by name needs OS_USERNAME or OS_USER_ID")
		}
	case a.Username == "" && a.UserID == "":
		return clouds.Cloud{}, errors.New("OS_USERNAME, OS_USER_ID or OS_APPLICATION_CREDENTIAL_ID missing")
	case a.Password == "":
		return clouds.Cloud{}, errors.New("OS_PASSWORD missing")
	}
	return clouds.Cloud{
		AuthInfo:       a,
		RegionName:     first("OS_REGION_NAME"),
		Interface:      first("OS_INTERFACE"),
		CACertFile:     first("OS_CACERT"),
		ClientCertFile: first("OS_CERT"),
		ClientKeyFile:  first("OS_KEY"),
	}, nil
}
