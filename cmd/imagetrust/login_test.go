package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/imagetrust/imagetrust/internal/ostest"
	ittestutil "github.com/imagetrust/imagetrust/internal/testutil"
	"github.com/imagetrust/imagetrust/validator/proxy"
)

// TestReauthGuardSchedule: after the n-th refused renewal in a row no
// renewal asks Keystone for 1, 2, 4, 8, 16, then 30 minutes (the cap); a
// login that works starts over at a minute. The clock is the test's.
// Before, the hold-off was a minute whatever the refusals in a row.
func TestReauthGuardSchedule(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	now := start
	g := &reauthGuard{first: reauthHoldOff, max: reauthMaxHoldOff, now: func() time.Time { return now }}
	for n, want := range map[int]time.Duration{0: 0, 1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 5: 16 * time.Minute,
		6: 30 * time.Minute, 7: 30 * time.Minute, 1000: 30 * time.Minute} {
		if got := g.holdOff(n); got != want {
			t.Errorf("holdOff(%d) = %s, want %s", n, got, want)
		}
	}
	// Keystone refuses each try: when is it asked, in the first 100
	// minutes, probing every second
	var asked []time.Duration
	for now = start; now.Before(start.Add(100 * time.Minute)); now = now.Add(time.Second) {
		if err := g.check(); err != nil {
			if !errors.Is(err, errCredentialsRefused) || !strings.Contains(err.Error(), `user "imagetrust"`) {
				t.Fatalf("in the hold-off: %v", err)
			}
			continue
		}
		asked = append(asked, now.Sub(start))
		n, next, err := g.refuse(`user "imagetrust"`, 401)
		if n != len(asked) || !next.Equal(now.Add(g.holdOff(n))) || !strings.Contains(err.Error(), next.UTC().Format(time.RFC3339)) {
			t.Fatalf("refusal %d: %v, %d in a row, next %s", len(asked), err, n, next)
		}
	}
	want := []time.Duration{0, time.Minute, 3 * time.Minute, 7 * time.Minute, 15 * time.Minute, 31 * time.Minute, 61 * time.Minute, 91 * time.Minute}
	if len(asked) != len(want) {
		t.Fatalf("Keystone asked at %v, want %v", asked, want)
	}
	for i := range want {
		if asked[i] != want[i] {
			t.Fatalf("Keystone asked at %v, want %v", asked, want)
		}
	}
	// a login that works (a reload, or the user unlocked) starts over
	now = now.Add(time.Hour)
	if g.check() != nil || g.accepted() != len(want) || g.check() != nil {
		t.Fatal("the hold-off outlived a login that worked")
	}
	if n, next, _ := g.refuse(`user "imagetrust"`, 401); n != 1 || next.Sub(now) != time.Minute {
		t.Fatalf("after a login that worked: refusal %d, next in %s; want 1 and a minute", n, next.Sub(now))
	}
}

// counterValue is c's value.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// countLogins counts the logins (POST .../auth/tokens) through a client.
type countLogins struct {
	next http.RoundTripper
	n    *atomic.Int32
}

func (c countLogins) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/auth/tokens") {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// TestProxyLoginHoldOff, against the real Keystone and Glance: the
// proxy's clients (Glance lookups and, with token_validation = service,
// token validation) share one login, so when Keystone refuses the
// credentials (the password changed under the proxy), a burst of requests
// on both makes one failed login, the next comes only when the hold-off
// (1, then 2 minutes, on the test's clock) is over, each is logged once,
// with the user and the next try, and counted; a reload with the new
// password works at once, whatever the hold-off, and starts it over.
// Before, the two clients had a guard each, each asking Keystone once a
// minute: two failed logins a minute, and a new password needed a
// restart.
func TestProxyLoginHoldOff(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	e := newUserEnv(t, c, "reader", "service")
	idc, getenv := e.idc, e.get
	setPassword := func(p string) { e.set("OS_PASSWORD", p) }
	rotate := func() string {
		t.Helper()
		p := uuid.NewString()
		if _, err := users.Update(ctx, idc, e.id, users.UpdateOpts{Password: p}).Extract(); err != nil {
			t.Fatal(err)
		}
		return p
	}

	logs := &ittestutil.SyncBuffer{}
	oc, err := openProxyClients(ctx, "", "service", "allow", getenv, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	oc.login.register(reg)
	now := time.Unix(1_000_000, 0)
	oc.login.guard.now = func() time.Time { return now }
	var logins atomic.Int32
	oc.login.pc.HTTPClient.Transport = countLogins{next: oc.login.pc.HTTPClient.Transport, n: &logins}
	demo := c.Provider(t, ostest.CloudDemo).Token()

	if _, err := oc.lookup.GetImage(ctx, uuid.NewString()); !errors.Is(err, proxy.ErrNotFound) {
		t.Fatalf("lookup with working credentials: %v", err)
	}
	if _, err := oc.identity.Validate(ctx, demo); err != nil {
		t.Fatalf("validation with working credentials: %v", err)
	}

	// the password changes in Keystone; the proxy's token is gone
	// (expired or revoked: Glance's cache may keep a revoked one for
	// minutes, an unknown one it refuses at once)
	rotate()
	oc.login.pc.SetToken("gone-" + uuid.NewString())
	// a burst of boots: lookups and validations, side by side
	burst := func() {
		t.Helper()
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, err := oc.lookup.GetImage(ctx, uuid.NewString()); err == nil || errors.Is(err, proxy.ErrNotFound) || !strings.Contains(err.Error(), "keystone refused the credentials") {
					t.Errorf("lookup with refused credentials: %v", err)
				}
			}()
			go func() {
				defer wg.Done()
				if _, err := oc.identity.Validate(ctx, demo); err == nil || errors.Is(err, proxy.ErrInvalidToken) {
					t.Errorf("validation with refused credentials: %v (a user's token is not invalid because the proxy's credentials are)", err)
				}
			}()
		}
		wg.Wait()
	}
	step := func(after time.Duration, wantLogins int) {
		t.Helper()
		now = now.Add(after)
		burst()
		if n := int(logins.Load()); n != wantLogins {
			t.Fatalf("%d logins so far, want %d:\n%s", n, wantLogins, logs.String())
		}
	}
	step(0, 1)
	step(59*time.Second, 1)
	step(time.Second, 2) // a minute after the first refusal
	step(119*time.Second, 2)
	step(time.Second, 3) // two minutes after the second
	step(3*time.Minute, 3)
	if n := strings.Count(logs.String(), "keystone refused the credentials when renewing the token"); n != 3 {
		t.Fatalf("%d refusals logged, want 3 (one per refusal):\n%s", n, logs.String())
	}
	for _, want := range []string{"user=" + e.get("OS_USERNAME") + " ", "refusals_in_a_row=3", "next_attempt=" + now.Add(time.Minute).UTC().Format(time.RFC3339)} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %s:\n%s", want, logs.String())
		}
	}
	if got := counterValue(t, oc.login.refusals.WithLabelValues("renewal")); got != 3 {
		t.Errorf("imagetrust_keystone_login_refusals_total{when=renewal} = %v, want 3", got)
	}
	if got := counterValue(t, oc.login.renewalFailures.WithLabelValues("refused")); got != 3 {
		t.Errorf("imagetrust_keystone_renewal_failures_total{cause=refused} = %v, want 3 (the renewals that asked Keystone)", got)
	}

	// the operator updates the file and reloads: in the hold-off (a minute
	// of its four left), the new password is tried at once and works
	setPassword(rotate())
	// Keystone's revocation of the user's tokens (the password change)
	// holds for every token issued within its second, the new one too
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	if err := oc.login.reload(ctx); err != nil {
		t.Fatalf("reload with the new password: %v", err)
	}
	if n := logins.Load(); n != 4 {
		t.Fatalf("%d logins, want 4: the reload's", n)
	}
	if _, err := oc.lookup.GetImage(ctx, uuid.NewString()); !errors.Is(err, proxy.ErrNotFound) {
		t.Fatalf("lookup after the reload: %v", err)
	}
	if _, err := oc.identity.Validate(ctx, demo); err != nil {
		t.Fatalf("validation after the reload: %v", err)
	}
	// reloading unchanged credentials makes no login
	if err := oc.login.reload(ctx); err != nil || logins.Load() != 4 {
		t.Fatalf("reload of unchanged credentials: %v, %d logins; want none", err, logins.Load())
	}
	// and the hold-off starts over at a minute
	rotate()
	oc.login.pc.SetToken("gone-" + uuid.NewString())
	step(0, 5)
	step(time.Minute, 6)
}

// TestReloadKeepsWorkingCredentials: new credentials Keystone refuses (a
// typo in the file) do not replace those in use: the reload fails, says
// so with the user, is counted, and the proxy's token is renewed with the
// old password. Credentials of another project (the mirror project is
// fixed at start) are refused too.
func TestReloadKeepsWorkingCredentials(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	e := newUserEnv(t, c, "reader")
	idc, getenv, set := e.idc, e.get, e.set
	good := e.get("OS_PASSWORD")

	logs := &ittestutil.SyncBuffer{}
	oc, err := openProxyClients(ctx, "", "self", "allow", getenv, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	wrong := "typo-" + uuid.NewString()
	set("OS_PASSWORD", wrong)
	err = oc.login.reload(ctx)
	if !errors.Is(err, errCredentialsRefused) || !strings.Contains(err.Error(), e.get("OS_USERNAME")) || strings.Contains(err.Error(), wrong) {
		t.Fatalf("reload with a wrong password: %v", err)
	}
	if got := counterValue(t, oc.login.refusals.WithLabelValues("reload")); got != 1 {
		t.Errorf("imagetrust_keystone_login_refusals_total{when=reload} = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "keystone refused the new credentials") || strings.Contains(logs.String(), wrong) {
		t.Errorf("log:\n%s", logs.String())
	}
	// a renewal (the token gone) uses the password in use, which works
	oc.login.pc.SetToken("gone-" + uuid.NewString())
	if _, err := oc.lookup.GetImage(ctx, uuid.NewString()); !errors.Is(err, proxy.ErrNotFound) {
		t.Fatalf("lookup after a refused reload: %v (the wrong password replaced the working one?)", err)
	}

	// another project (the user may log in to it): refused, the mirror
	// project is fixed at start
	_, demoProject := tokenIDs(t, c.Provider(t, ostest.CloudDemo))
	if err := roles.Assign(ctx, idc, roleID(t, idc, "reader"), roles.AssignOpts{UserID: e.id, ProjectID: demoProject}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	set("OS_PASSWORD", good)
	set("OS_PROJECT_ID", demoProject)
	if err := oc.login.reload(ctx); err == nil || !strings.Contains(err.Error(), "mirror project") {
		t.Fatalf("reload with another project: %v", err)
	}
	oc.login.pc.SetToken("gone-" + uuid.NewString())
	if _, err := oc.lookup.GetImage(ctx, uuid.NewString()); !errors.Is(err, proxy.ErrNotFound) {
		t.Fatalf("lookup after a reload of another project: %v", err)
	}
}

// keystoneCounter is a reverse proxy to the real Keystone that counts the
// logins (POST .../auth/tokens) made through it.
func keystoneCounter(t *testing.T, keystoneURL string) (string, *atomic.Int32) {
	t.Helper()
	u, err := url.Parse(keystoneURL)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/auth/tokens") {
			n.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + u.Path, &n
}

// TestWrongPasswordAtStart: a daemon or --once run whose password Keystone
// refuses (rotated, and the file not updated) exits 78 (EX_CONFIG), on
// which the systemd units do not restart (each restart would be a failed
// login towards a lockout), after one login and no other, with an error
// that says the credentials were refused, naming the user and not the
// password. Before, it exited 2, which the units restart on (Go exits 2
// on a panic too).
func TestWrongPasswordAtStart(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	path, _ := daemonConfig(t)
	proxyCfg, _ := proxyConfig(t, filepath.Dir(filepath.Dir(path)), "upstream = \"http://127.0.0.1:9/v2.1\"\n")
	const wrong = "not-the-password-7f3a"
	authURL, logins := keystoneCounter(t, c.KeystoneURL)
	vars := map[string]string{"OS_AUTH_URL": authURL, "OS_USERNAME": c.Env["MIRROR_USER"], "OS_PASSWORD": wrong,
		"OS_PROJECT_NAME": c.Env["MIRROR_PROJECT"], "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"}
	for _, args := range [][]string{{"crl", "--once", "--config", path}, {"sync", "--once", "--config", path}, {"crl", "--config", path},
		{"sync", "--config", path}, {"proxy", "--config", proxyCfg}} {
		logins.Store(0)
		code, _, stderr := cliEnv(t, t.TempDir(), vars, args...)
		const want = "keystone refused the credentials of user"
		if code != exitCredentials || !strings.Contains(stderr, want) || !strings.Contains(stderr, c.Env["MIRROR_USER"]) || strings.Contains(stderr, wrong) {
			t.Errorf("%s: exit %d, want %d and %q without the password:\n%s", strings.Join(args, " "), code, exitCredentials, want, stderr)
		}
		if n := logins.Load(); n != 1 {
			t.Errorf("%s: %d logins, want 1", strings.Join(args, " "), n)
		}
	}
}

// TestReloadUnchangedInHoldOff: Keystone refuses the credentials in use
// (the password changed in Keystone, not in the file); the operator sets
// Keystone's side right (the password back, a user re-enabled or
// unlocked) and reloads without touching the file. The reload tries the
// unchanged credentials at once, in the hold-off, and the proxy works
// again; a reload while Keystone still refuses them is one login, counted
// (when="reload") and lengthening the hold-off. Without a hold-off an
// unchanged reload still makes no login (TestProxyLoginHoldOff). Before,
// such a reload did nothing: the daemon waited out the hold-off, up to
// 30 minutes.
func TestReloadUnchangedInHoldOff(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	e := newUserEnv(t, c, "reader")
	idc := e.idc
	setPassword := func(p string) {
		t.Helper()
		if _, err := users.Update(ctx, idc, e.id, users.UpdateOpts{Password: p}).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	logs := &ittestutil.SyncBuffer{}
	oc, err := openProxyClients(ctx, "", "self", "allow", e.get, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	oc.login.guard.now = func() time.Time { return now }
	var logins atomic.Int32
	oc.login.pc.HTTPClient.Transport = countLogins{next: oc.login.pc.HTTPClient.Transport, n: &logins}
	lookup := func() error {
		_, err := oc.lookup.GetImage(ctx, uuid.NewString())
		if errors.Is(err, proxy.ErrNotFound) {
			return nil
		}
		return err
	}

	// the password changed in Keystone only: a renewal is refused
	setPassword(uuid.NewString())
	oc.login.pc.SetToken("gone-" + uuid.NewString())
	if err := lookup(); err == nil || !strings.Contains(err.Error(), "keystone refused the credentials") {
		t.Fatalf("lookup with refused credentials: %v", err)
	}
	if n := logins.Load(); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	// reloaded unchanged while Keystone still refuses: one login, counted,
	// and the hold-off is now the second refusal's (2 minutes)
	err = oc.login.reload(ctx)
	if !errors.Is(err, errCredentialsRefused) || strings.Contains(err.Error(), e.get("OS_PASSWORD")) {
		t.Fatalf("fail reload of unchanged, refused credentials: %v", err)
	}
	if n := logins.Load(); n != 2 {
		t.Fatalf("%d logins, want 2: the reload's", n)
	}
	if got := counterValue(t, oc.login.refusals.WithLabelValues("reload")); got != 1 {
		t.Errorf("imagetrust_keystone_login_refusals_total{when=reload} = %v, want 1", got)
	}
	now = now.Add(time.Minute + time.Second)
	if err := lookup(); err == nil || logins.Load() != 2 {
		t.Fatalf("a minute later: lookup %v, %d logins; want the 2-minute hold-off of the second refusal", err, logins.Load())
	}

	// Keystone's side set right, the file untouched: a reload works at once
	setPassword(e.get("OS_PASSWORD"))
	// Keystone's revocation of the user's tokens (the password change)
	// holds for every token issued within its second
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	if err := oc.login.reload(ctx); err != nil {
		t.Fatalf("ok reload of unchanged credentials Keystone accepts again: %v", err)
	}
	if n := logins.Load(); n != 3 {
		t.Fatalf("%d logins, want 3", n)
	}
	if err := lookup(); err != nil {
		t.Fatalf("lookup after the reload: %v", err)
	}
	if !strings.Contains(logs.String(), "keystone accepts the credentials in use again") || strings.Contains(logs.String(), e.get("OS_PASSWORD")) {
		t.Errorf("log:\n%s", logs.String())
	}
	// no hold-off now: an unchanged reload makes no login
	if err := oc.login.reload(ctx); err != nil || logins.Load() != 3 {
		t.Fatalf("reload of unchanged, working credentials: %v, %d logins; want none", err, logins.Load())
	}
}

// userEnv is a user of the test's own with roles on the mirror project
// (proxyUser), as the OS_* variables of a daemon's credentials, which the
// test may change under the running clients (a reload reads them again).
type userEnv struct {
	idc *gophercloud.ServiceClient // the admin's identity client
	id  string                     // the user's id

	mu   sync.Mutex
	vars map[string]string
}

func newUserEnv(t *testing.T, c *ostest.Cloud, roleNames ...string) *userEnv {
	t.Helper()
	ctx := context.Background()
	idc, err := openstack.NewIdentityV3(c.Provider(t, ostest.CloudAdmin), gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	user := proxyUser(t, c, idc, roleNames...)
	e := &userEnv{idc: idc, vars: map[string]string{}}
	for _, k := range []string{"OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_ID", "OS_USER_DOMAIN_NAME", "OS_REGION_NAME"} {
		e.vars[k] = user(k)
	}
	pages, err := users.List(idc, users.ListOpts{Name: e.vars["OS_USERNAME"]}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found, err := users.ExtractUsers(pages)
	if err != nil || len(found) != 1 {
		t.Fatalf("user %s: %v %v", e.vars["OS_USERNAME"], found, err)
	}
	e.id = found[0].ID
	return e
}

// get is the daemon's getenv.
func (e *userEnv) get(k string) string { e.mu.Lock(); defer e.mu.Unlock(); return e.vars[k] }

// set changes a variable, as an operator edits the file.
func (e *userEnv) set(k, v string) { e.mu.Lock(); defer e.mu.Unlock(); e.vars[k] = v }
