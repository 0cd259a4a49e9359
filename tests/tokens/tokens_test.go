// Package tokens tests the long-running commands against a Keystone whose
// tokens expire within seconds (tests/openstack/start.sh with
// IMAGETRUST_TOKEN_EXPIRATION): the sync daemon, the CRL daemon and the
// boot proxy keep working after their first token expired, an image
// stream that outlives the token completes, and the proxy refuses a user's
// token once it expired although it validated it before. The stack is the
// package's own (ostest.StartPrivate), Keystone and Glance only: the
// shared stack keeps Keystone's default hour, since other tests' clients
// need not outlive their tokens.
package tokens

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"

	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(ostest.Main(m)) }

// lifetime is the stack's token lifetime in seconds. Keystone takes any;
// below keystoneauth's 120 s every OpenStack service re-authenticates its
// own user before each validation, which costs time, not correctness.
const lifetime = 10

// lockout is the stack's lockout_failure_attempts: a user is locked out
// after that many failed logins in a row.
const lockout = 2

func TestTokenExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for tokens to expire")
	}
	c := ostest.StartPrivate(t, ostest.Options{TokenExpiration: lifetime, LockoutAttempts: lockout})
	// side by side: both mostly wait for tokens to expire
	t.Run("stage", func(t *testing.T) {
		t.Parallel()
		testStageAfterExpiry(t, c)
	})
	t.Run("daemons", func(t *testing.T) {
		t.Parallel()
		testDaemons(t, c)
	})
}

// tokenTimes is when pc's token was issued and when it expires.
func tokenTimes(t *testing.T, pc *gophercloud.ProviderClient) (issued, expires time.Time) {
	t.Helper()
	cr, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		t.Fatalf("not a Keystone v3 token: %T", pc.GetAuthResult())
	}
	var tok struct {
		IssuedAt  time.Time `json:"issued_at"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := cr.ExtractInto(&tok); err != nil {
		t.Fatal(err)
	}
	return tok.IssuedAt, tok.ExpiresAt
}

// sleepPast sleeps until a second after when (Keystone's clock is this
// host's).
func sleepPast(when time.Time) {
	time.Sleep(time.Until(when.Add(time.Second)))
}

// testStageAfterExpiry: a stage whose data cannot be read twice (a stream
// from a source), started when the client's token has expired, succeeds:
// the token is renewed before the stream (glance.FreshToken). Before, the
// PUT met a 401, gophercloud renewed the token, but the data could not be
// sent again and the stage failed: a pass lost, the image left queued.
func testStageAfterExpiry(t *testing.T, c *ostest.Cloud) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc := c.ImageClient(t, ostest.CloudMirror)
	im, err := glance.Create(ctx, sc, glance.CreateOpts{Name: "token-expiry-stage", DiskFormat: "raw", ContainerFormat: "bare"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	_, expires := tokenTimes(t, sc.ProviderClient)
	sleepPast(expires)
	data := bytes.Repeat([]byte("imagetrust"), 1<<16)
	// a plain reader: no Seek, as a stream from a source
	body := struct{ io.Reader }{bytes.NewReader(data)}
	if err := glance.Stage(ctx, sc, im.ID, glance.Sized(body, int64(len(data)))).ExtractErr(); err != nil {
		t.Fatalf("stage with a token expired at %s: %v", expires.Format(time.RFC3339), err)
	}
	got, err := glance.Get(ctx, sc, im.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "uploading" {
		t.Fatalf("image %s is %s after the stage, want uploading", im.ID, got.Status)
	}
	if _, now := tokenTimes(t, sc.ProviderClient); !now.After(expires) {
		t.Fatalf("the token was not renewed: it expires at %s", now)
	}
}

// logLine is one line of a command's JSON log.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

func (l logLine) time(t *testing.T) time.Time {
	ts, err := time.Parse(time.RFC3339Nano, l.str("time"))
	if err != nil {
		t.Fatalf("log line without a time: %v", l)
	}
	return ts
}

// logLines parses what a command logged so far (the JSON lines only).
func logLines(b *testutil.SyncBuffer) []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// daemon is a running imagetrust command and its log.
type daemon struct {
	name   string
	log    *testutil.SyncBuffer
	exited chan struct{}
	proc   *os.Process
}

// waitFor waits until the daemon logged a line for which ok holds, and
// returns it; it fails t when the daemon exits first or ctx ends.
func (d *daemon) waitFor(ctx context.Context, t *testing.T, what string, ok func(logLine) bool) logLine {
	t.Helper()
	for {
		for _, l := range logLines(d.log) {
			if ok(l) {
				return l
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("%s exited before %s:\n%s", d.name, what, d.log.String())
		case <-ctx.Done():
			t.Fatalf("%s: no %s:\n%s", d.name, what, d.log.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// bundles is the index source the sync reads: a handler serving the files
// of dir, an index listing the bundles published so far, and the image data
// of slow bundles sent in pieces over more than a token's lifetime.
type bundles struct {
	dir  string
	mu   sync.Mutex
	list []string
	slow map[string]bool
}

func (b *bundles) publish(name string, slow bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.list = append(b.list, name+".json")
	if slow {
		b.slow[name+".raw"] = true
	}
}

func (b *bundles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	b.mu.Lock()
	slow := b.slow[name]
	var entries []map[string]string
	for _, d := range b.list {
		entries = append(entries, map[string]string{"descriptor": d})
	}
	b.mu.Unlock()
	if name == "index.json" {
		_ = json.NewEncoder(w).Encode(map[string]any{"version": 1, "bundles": entries})
		return
	}
	if strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
		http.NotFound(w, r)
		return
	}
	data, err := os.ReadFile(filepath.Join(b.dir, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if !slow || r.Method != http.MethodGet {
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
		return
	}
	// whole, in ten pieces over lifetime+2 seconds: the stream into Glance
	// outlives the token it started with
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	piece := (len(data) + 9) / 10
	for off := 0; off < len(data); off += piece {
		if _, err := w.Write(data[off:min(off+piece, len(data))]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		time.Sleep((lifetime + 2) * time.Second / 10)
	}
}

// nova stands in for nova-api behind the proxy (the stack runs without
// it): it accepts every server create and counts them.
type nova struct{ creates atomic.Int32 }

func (n *nova) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/servers") {
		n.creates.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"server":{"id":"6a1f53c5-3c43-4a8e-9d0f-000000000001"}}`)
		return
	}
	http.NotFound(w, r)
}

// testDaemons runs `imagetrust sync`, `imagetrust crl` and `imagetrust
// proxy` (the built binary, as daemons) and checks that each keeps working
// once the token it started with has expired: the sync mirrors a bundle
// published after the expiry, whose image streams for longer than a token
// lives; the CRL daemon's runs go on without error; the proxy's Glance
// lookups still answer; and the proxy refuses a user's token that expired,
// although it validated (and cached) it before.
func testDaemons(t *testing.T, c *ostest.Cloud) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := ostest.Binary(t)
	dir := t.TempDir()
	cli := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("imagetrust %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	cli("pki", "init", "pki")
	idx := filepath.Join(dir, "idx")
	if err := os.Mkdir(idx, 0o755); err != nil {
		t.Fatal(err)
	}
	// a bundle of its own image data under idx/
	bundle := func(name string, size int) {
		t.Helper()
		data := bytes.Repeat([]byte(name+" "), size/(len(name)+1)+1)[:size]
		if err := os.WriteFile(filepath.Join(idx, name+".raw"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		j := filepath.Join("idx", name+".json")
		cli("describe", filepath.Join("idx", name+".raw"), "--vo", "demo", "--tag", name, "-o", j, "--title", name)
		cli("sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", j)
		cli("approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", j)
		cli("register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", j)
	}
	bundle("early", 1<<20)
	bundle("late", 1<<20)
	src := &bundles{dir: idx, slow: map[string]bool{}}
	src.publish("early", false)
	srv := httptest.NewServer(src)
	defer srv.Close()
	upstream := &nova{}
	novaSrv := httptest.NewServer(upstream)
	defer novaSrv.Close()

	trust, err := os.ReadFile(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	listen := testutil.FreeAddr(t)
	cfg := filepath.Join(dir, "pki", "daemons.toml")
	text := fmt.Sprintf(`%s
[log]
format = "json"

[sync]
interval = "1s"
lock_file = %q

[[sync.source]]
url = "%s/index.json"
vos = ["demo"]

[crl]
interval = "1s"
cache_dir = %q

[proxy]
listen = %q
upstream = "%s/v2.1"
# every boot looks the image up in Glance again
cache_ttl = "1ms"
`, trust, filepath.Join(dir, "sync.lock"), srv.URL, filepath.Join(dir, "crl"), listen, novaSrv.URL)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	start := func(name, cloud, cloudsYAML string, args ...string) *daemon {
		t.Helper()
		d := &daemon{name: name, log: &testutil.SyncBuffer{}, exited: make(chan struct{})}
		cmd := exec.Command(bin, append(args, "--config", cfg)...)
		cmd.Env = append(os.Environ(), "OS_CLOUD="+cloud, "OS_CLIENT_CONFIG_FILE="+cloudsYAML)
		cmd.Stdout = io.Discard
		cmd.Stderr = d.log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		d.proc = cmd.Process
		go func() { _ = cmd.Wait(); close(d.exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-d.exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-d.exited
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", name, d.log.String())
			}
		})
		return d
	}
	// the proxy's clouds.yaml is its own: the rotation below rewrites it
	clouds, err := os.ReadFile(c.CloudsYAML)
	if err != nil {
		t.Fatal(err)
	}
	proxyClouds := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(proxyClouds, clouds, 0o600); err != nil {
		t.Fatal(err)
	}
	syncD := start("sync", ostest.CloudMirror, c.CloudsYAML, "sync")
	crlD := start("crl", ostest.CloudMirror, c.CloudsYAML, "crl")
	proxyD := start("proxy", "proxy", proxyClouds, "proxy")
	msgIs := func(msg string) func(logLine) bool { return func(l logLine) bool { return l.str("msg") == msg } }
	syncD.waitFor(ctx, t, "authentication", msgIs("authenticated"))
	crlD.waitFor(ctx, t, "authentication", msgIs("authenticated"))
	proxyD.waitFor(ctx, t, "authentication", msgIs("proxy service credentials"))
	// every daemon holds a token issued before now
	authenticated := time.Now()

	early := syncD.waitFor(ctx, t, "the first image mirrored", func(l logLine) bool {
		return l.str("msg") == "image mirrored" && l.str("tag") == "early"
	}).str("image")

	// a boot through the proxy, with a user's token it validates and caches
	demo := c.Provider(t, ostest.CloudDemo)
	_, userExpires := tokenTimes(t, demo)
	boot := func(token, image string) int {
		t.Helper()
		body := fmt.Sprintf(`{"server":{"name":"tokens","imageRef":%q,"flavorRef":"1","networks":"none"}}`, image)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+listen+"/v2.1/servers", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Auth-Token", token)
		for {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				// not listening yet
				select {
				case <-proxyD.exited:
					t.Fatalf("the proxy exited:\n%s", proxyD.log.String())
				case <-ctx.Done():
					t.Fatalf("the proxy never answered: %v", err)
				case <-time.After(100 * time.Millisecond):
				}
				req.Body = io.NopCloser(strings.NewReader(body))
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusUnauthorized {
				t.Logf("proxy answered %s: %s", resp.Status, b)
			}
			return resp.StatusCode
		}
	}
	if code := boot(demo.Token(), early); code != http.StatusAccepted || upstream.creates.Load() != 1 {
		t.Fatalf("first boot: HTTP %d, %d creates reached Nova; want 202 and 1", code, upstream.creates.Load())
	}

	// Every token above has expired (the daemons' ones a lifetime after
	// they authenticated, at the latest).
	sleepPast(authenticated.Add(lifetime * time.Second))
	sleepPast(userExpires)
	expired := time.Now()

	// The sync: a bundle published now is mirrored, its image streamed for
	// longer than a token lives.
	src.publish("late", true)
	streamed := syncD.waitFor(ctx, t, "the late image staged", func(l logLine) bool {
		return l.str("tag") == "late" && (l.str("msg") == "image staged and verified; importing" || l.str("msg") == "image uploaded and verified")
	})
	if secs, _ := streamed["seconds"].(float64); secs < lifetime {
		t.Fatalf("the late image streamed in %.1f s, not for longer than a token lives (%d s)", secs, lifetime)
	}
	late := syncD.waitFor(ctx, t, "the late image mirrored", func(l logLine) bool {
		return l.str("msg") == "image mirrored" && l.str("tag") == "late"
	}).str("image")
	syncD.waitFor(ctx, t, "a whole pass after the expiry", func(l logLine) bool {
		return l.str("msg") == "sync pass done" && l.time(t).After(streamed.time(t))
	})
	// The CRL daemon: a run after the expiry that sees both images.
	crlD.waitFor(ctx, t, "a CRL run after the expiry", func(l logLine) bool {
		n, _ := l["images"].(float64)
		return l.str("msg") == "crl run done" && l.time(t).After(expired) && n == 2
	})

	// The proxy: the user's first token expired, so it is refused though
	// it was validated before; a new one boots the late image, which the
	// proxy looks up in Glance with a renewed token of its own.
	if code := boot(demo.Token(), late); code != http.StatusUnauthorized {
		t.Fatalf("boot with the user's expired token: HTTP %d, want 401", code)
	}
	fresh := c.Provider(t, ostest.CloudDemo)
	if code := boot(fresh.Token(), late); code != http.StatusAccepted || upstream.creates.Load() != 2 {
		t.Fatalf("boot after the proxy's token expired: HTTP %d, %d creates reached Nova; want 202 and 2", code, upstream.creates.Load())
	}

	// and nothing failed on the way
	for _, d := range []*daemon{syncD, crlD, proxyD} {
		for _, l := range logLines(d.log) {
			failed := l.str("level") == "ERROR"
			if n, ok := l["errors"].(float64); ok && n > 0 {
				failed = true
			}
			if failed {
				t.Errorf("%s: %v", d.name, l)
			}
		}
	}
	if t.Failed() {
		return
	}
	rotated(ctx, t, c, boot, proxyD, late, proxyClouds)
}

// rotated: the proxy user's password changes under the running proxy (its
// token revoked with it). Each boot then fails (502: the lookup could not
// be made), the log saying that Keystone refused the credentials and
// naming neither password, and the boots do not lock the user out:
// after the first refusal the proxy does not ask Keystone again for a
// while. Before, each boot made one failed login, and the third of them
// locked the user out under lockout_failure_attempts = 2, so that even
// the right password no longer worked.
//
// Then the rotation is finished as the operator guide says, without a
// restart: the new password into the proxy's clouds.yaml, SIGHUP; the
// proxy logs in with it at once (in the hold-off) and boots work again.
// A typo written into the file next and reloaded is refused and does not
// replace the working password: once the proxy's token expired, boots
// still work (renewed with the password in use). Before, SIGHUP did not
// read the credentials: the boots failed until a restart.
func rotated(ctx context.Context, t *testing.T, c *ostest.Cloud, boot func(token, image string) int, proxyD *daemon, image, proxyClouds string) {
	admin := c.Provider(t, ostest.CloudAdmin)
	idc, err := openstack.NewIdentityV3(admin, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := users.List(idc, users.ListOpts{Name: c.Env["PROXY_USER"]}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found, err := users.ExtractUsers(pages)
	if err != nil || len(found) != 1 {
		t.Fatalf("user %s: %v %v", c.Env["PROXY_USER"], found, err)
	}
	newPassword := "rotated-" + fmt.Sprint(time.Now().UnixNano())
	if _, err := users.Update(ctx, idc, found[0].ID, users.UpdateOpts{Password: newPassword}).Extract(); err != nil {
		t.Fatal(err)
	}
	// Keystone revoked the proxy's token, but Glance's keystonemiddleware
	// may still accept it from its cache until it expires (a lifetime at
	// most from now)
	sleepPast(time.Now().Add(lifetime * time.Second))
	demo := c.Provider(t, ostest.CloudDemo)
	for i := 0; i < lockout+2; i++ {
		if code := boot(demo.Token(), image); code != http.StatusBadGateway {
			t.Fatalf("boot %d after the proxy's password changed: HTTP %d, want 502", i+1, code)
		}
	}
	logs := proxyD.log.String()
	if !strings.Contains(logs, "keystone refused the credentials of user") {
		t.Errorf("the proxy's log does not say that Keystone refused its credentials:\n%s", logs)
	}
	if strings.Contains(logs, newPassword) || strings.Contains(logs, c.Env["PROXY_PASSWORD"]) {
		t.Errorf("the proxy's log holds a password:\n%s", logs)
	}
	// the new password works: the user is not locked out
	ao, _ := c.AuthOptions(t, "proxy")
	ao.Password = newPassword
	ao.AllowReauth = false
	pc, err := openstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	if err := openstack.Authenticate(ctx, pc, ao); err != nil {
		t.Fatalf("the proxy's user with its new password: %v (locked out by the proxy's failed logins?)", err)
	}

	// the operator writes the new password into the file and reloads
	writePassword := func(old, new string) {
		t.Helper()
		b, err := os.ReadFile(proxyClouds)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("%s does not hold the proxy's password", proxyClouds)
		}
		if err := os.WriteFile(proxyClouds, bytes.Replace(b, []byte(old), []byte(new), 1), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// each reload's outcome is the first line after the signal
	reload := func(want string) {
		t.Helper()
		sent := time.Now()
		if err := proxyD.proc.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		proxyD.waitFor(rctx, t, want, func(l logLine) bool {
			return l.str("msg") == want && !l.time(t).Before(sent.Add(-time.Second))
		})
	}
	writePassword(c.Env["PROXY_PASSWORD"], newPassword)
	reload("credentials reloaded: Keystone accepted them and they are in use")
	fresh := c.Provider(t, ostest.CloudDemo)
	if code := boot(fresh.Token(), image); code != http.StatusAccepted {
		t.Fatalf("boot after the new password was reloaded: HTTP %d, want 202", code)
	}

	// a typo reloaded: refused, the working password stays in use
	typo := "typo-" + fmt.Sprint(time.Now().UnixNano())
	writePassword(newPassword, typo)
	reload("keystone refused the new credentials; keeping those in use")
	sleepPast(time.Now().Add(lifetime * time.Second))
	fresh = c.Provider(t, ostest.CloudDemo)
	if code := boot(fresh.Token(), image); code != http.StatusAccepted {
		t.Fatalf("boot a token lifetime after a typo was reloaded: HTTP %d, want 202 (the typo replaced the working password?)", code)
	}
	logs = proxyD.log.String()
	for _, secret := range []string{typo, newPassword, c.Env["PROXY_PASSWORD"]} {
		if strings.Contains(logs, secret) {
			t.Errorf("the proxy's log holds a password:\n%s", logs)
		}
	}
}
