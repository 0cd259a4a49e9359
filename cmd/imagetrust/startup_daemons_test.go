package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

// flakyKeystone is auth_url as a site's power-up shows it to a daemon:
// first nothing listens on the port (connection refused), then something
// accepts and hangs up (a load balancer without a backend), then answers
// 503, then forwards every connection to the real Keystone.
type flakyKeystone struct {
	addr, target string
	mode         atomic.Int32
	ln           net.Listener
}

const (
	ksRefuse = iota
	ksHangUp
	ks503
	ksForward
)

func newFlakyKeystone(t *testing.T, keystoneURL string) *flakyKeystone {
	u, err := url.Parse(keystoneURL)
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyKeystone{addr: testutil.FreeAddr(t), target: u.Host}
	t.Cleanup(func() {
		if f.ln != nil {
			f.ln.Close()
		}
	})
	return f
}

// set switches to mode; from ksHangUp on the port listens.
func (f *flakyKeystone) set(t *testing.T, mode int32) {
	f.mode.Store(mode)
	if mode == ksRefuse || f.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
}

func (f *flakyKeystone) serve(c net.Conn) {
	defer c.Close()
	switch f.mode.Load() {
	case ksHangUp:
		_, _ = bufio.NewReader(c).ReadString('\n')
		_ = c.(*net.TCPConn).SetLinger(0)
	case ks503:
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		const body = "keystone not ready (the test's stand-in)\n"
		fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	case ksForward:
		k, err := net.Dial("tcp", f.target)
		if err != nil {
			return
		}
		defer k.Close()
		go func() { _, _ = io.Copy(k, c); _ = k.(*net.TCPConn).CloseWrite() }()
		_, _ = io.Copy(c, k)
	}
}

// daemonProcess is a daemon of the built binary, its stderr kept.
type daemonProcess struct {
	name string
	cmd  *exec.Cmd
	logs *testutil.SyncBuffer
	done chan struct{}
	code int
}

func startDaemon(t *testing.T, name string, env []string, args ...string) *daemonProcess {
	t.Helper()
	d := &daemonProcess{name: name, cmd: exec.Command(ostest.Binary(t), args...), logs: &testutil.SyncBuffer{}, done: make(chan struct{})}
	d.cmd.Env = env
	d.cmd.Stderr, d.cmd.Stdout = d.logs, io.Discard
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = d.cmd.Wait()
		d.code = d.cmd.ProcessState.ExitCode()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", d.name, d.logs.String())
		}
	})
	return d
}

// await polls ok until it holds, failing t when the daemon exits first
// or after two minutes.
func (d *daemonProcess) await(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !ok() {
		select {
		case <-d.done:
			t.Fatalf("%s exited %d before %s:\n%s", d.name, d.code, what, d.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within two minutes:\n%s", d.name, what, d.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLine waits for a log line holding every one of want.
func (d *daemonProcess) waitLine(t *testing.T, want ...string) {
	t.Helper()
	d.await(t, fmt.Sprintf("log line with %q", want), func() bool {
		for _, line := range strings.Split(d.logs.String(), "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return true
			}
		}
		return false
	})
}

// stop sends SIGTERM and returns the exit status (failing t after a
// minute).
func (d *daemonProcess) stop(t *testing.T) int {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return d.code
	case <-time.After(time.Minute):
		t.Fatalf("%s still runs a minute after SIGTERM:\n%s", d.name, d.logs.String())
		return -1
	}
}

// get is the status and body of a GET of u (0 when it can't connect).
func get(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startupConfigs writes the sync and CRL daemons' configuration (each
// with a listen address) and the proxy's (metrics_listen too), and
// returns the files and the addresses.
func startupConfigs(t *testing.T) (daemonCfg, proxyCfg, syncListen, crlListen, gateListen, proxyMetrics string) {
	t.Helper()
	path, _ := daemonConfig(t)
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	syncListen, crlListen, proxyMetrics = testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	s := strings.Replace(string(text), "[sync]\n", "[sync]\nlisten = \""+syncListen+"\"\n", 1)
	s = strings.Replace(s, "[crl]\n", "[crl]\nlisten = \""+crlListen+"\"\n", 1)
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	proxyCfg, gateListen = proxyConfig(t, filepath.Dir(filepath.Dir(path)),
		fmt.Sprintf("upstream = \"http://127.0.0.1:9/v2.1\"\nmetrics_listen = %q\n", proxyMetrics))
	return path, proxyCfg, syncListen, crlListen, gateListen, proxyMetrics
}

// TestDaemonsWaitForOpenStackAtStart: the three daemons (the built binary)
// started while their auth_url leads nowhere, as at a site's power-up,
// stay up and wait: through a port where nothing listens, one that hangs
// up, and one that answers 503, each failure logged at WARN with the
// reason and the next attempt, /healthz 503 saying why, /metrics served
// (imagetrust_start_waiting 1), the proxy's gate not listening (a load
// balancer sends boots elsewhere). Once the port forwards to the real
// Keystone each starts: the sync makes its pass, the CRL job its run, the
// proxy's gate listens, and /healthz answers 200. A daemon whose password
// Keystone refuses waits through the outage too, and exits 78 at its
// first answer. No password in any log; SIGTERM ends each with 0.
// Before, each daemon exited 1 at its first attempt.
func TestDaemonsWaitForOpenStackAtStart(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ks := newFlakyKeystone(t, c.KeystoneURL)
	daemonCfg, proxyCfg, syncListen, crlListen, gateListen, proxyMetrics := startupConfigs(t)
	// the process's own mirror project (ownMirror): the sync pass and the CRL run act on
	// every image of their project, and those of the stack's mirror project
	// are other tests' (glancesync's, run at the same time by go test
	// ./...), whose imagetrust_global_validity the CRL run would set unknown
	p := ownMirror(t, c)
	password := p.Password
	const wrong = "not-the-password-5d1c"
	env := func(pw string) []string {
		return append(os.Environ(), "OS_CLOUD=", "OS_CLIENT_CONFIG_FILE=", "OS_AUTH_URL=http://"+ks.addr+"/v3",
			"OS_USERNAME="+p.Name, "OS_PASSWORD="+pw, "OS_PROJECT_NAME="+p.Name,
			"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default")
	}
	syncD := startDaemon(t, "sync", env(password), "sync", "--config", daemonCfg)
	crlD := startDaemon(t, "crl", env(password), "crl", "--config", daemonCfg)
	proxyD := startDaemon(t, "proxy", env(password), "proxy", "--config", proxyCfg)
	// a CRL daemon of its own (no listen address to share)
	text, err := os.ReadFile(daemonCfg)
	if err != nil {
		t.Fatal(err)
	}
	refusedCfg := filepath.Join(filepath.Dir(daemonCfg), "refused.toml")
	if err := os.WriteFile(refusedCfg, []byte(strings.Replace(string(text), "listen = \""+crlListen+"\"\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	refusedD := startDaemon(t, "crl (wrong password)", env(wrong), "crl", "--config", refusedCfg)
	daemons := []*daemonProcess{syncD, crlD, proxyD, refusedD}
	health := map[*daemonProcess]string{syncD: syncListen, crlD: crlListen, proxyD: proxyMetrics}
	const waiting = `level=WARN msg="OpenStack not reachable at start; waiting for it"`

	for _, phase := range []struct {
		mode int32
		err  []string // what one of a daemon's WARN lines says in the phase (any of)
	}{
		{ksRefuse, []string{"connection refused"}},
		{ksHangUp, []string{"EOF", "connection reset by peer"}},
		{ks503, []string{"got 503 instead"}},
	} {
		ks.set(t, phase.mode)
		for _, d := range daemons {
			d.await(t, fmt.Sprintf("WARN with %q", phase.err), func() bool {
				for _, line := range strings.Split(d.logs.String(), "\n") {
					if !strings.Contains(line, waiting) || !strings.Contains(line, "next_attempt=") {
						continue
					}
					for _, e := range phase.err {
						if strings.Contains(line, e) {
							return true
						}
					}
				}
				return false
			})
		}
		for d, addr := range health {
			code, body := get("http://" + addr + "/healthz")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for OpenStack at start") {
				t.Errorf("%s /healthz while waiting: %d %q, want 503 saying it waits", d.name, code, body)
			}
			if code, body := get("http://" + addr + "/metrics"); code != http.StatusOK || !strings.Contains(body, "\nimagetrust_start_waiting 1\n") ||
				!strings.Contains(body, "imagetrust_start_failures_total ") {
				t.Errorf("%s /metrics while waiting: %d, imagetrust_start_waiting 1 and imagetrust_start_failures_total missing", d.name, code)
			}
		}
		if conn, err := net.Dial("tcp", gateListen); err == nil {
			conn.Close()
			t.Errorf("the proxy's gate listens before its first login")
		}
	}

	ks.set(t, ksForward)
	syncD.waitLine(t, `msg="sync pass done"`)
	crlD.waitLine(t, `msg="crl run done"`)
	for _, d := range []*daemonProcess{syncD, crlD, proxyD} {
		d.waitLine(t, `msg="OpenStack reachable: starting"`)
	}
	for d, addr := range health {
		d.await(t, "/healthz 200", func() bool { code, _ := get("http://" + addr + "/healthz"); return code == http.StatusOK })
		if _, body := get("http://" + addr + "/metrics"); !strings.Contains(body, "\nimagetrust_start_waiting 0\n") {
			t.Errorf("%s: imagetrust_start_waiting is not 0 once started", d.name)
		}
	}
	proxyD.await(t, "the gate listening", func() bool {
		conn, err := net.Dial("tcp", gateListen)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	select {
	case <-refusedD.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the daemon whose password Keystone refuses still runs:\n%s", refusedD.logs.String())
	}
	if refusedD.code != exitCredentials || !strings.Contains(refusedD.logs.String(), "keystone refused the credentials of user") {
		t.Errorf("refused password after the wait: exit %d, want %d saying so:\n%s", refusedD.code, exitCredentials, refusedD.logs.String())
	}
	for _, d := range daemons {
		if strings.Contains(d.logs.String(), password) || strings.Contains(d.logs.String(), wrong) {
			t.Errorf("%s logged a password", d.name)
		}
	}
	for _, d := range []*daemonProcess{syncD, crlD, proxyD} {
		if code := d.stop(t); code != exitOK {
			t.Errorf("%s: exit %d after SIGTERM, want 0", d.name, code)
		}
	}
}

// TestStopWhileWaitingForOpenStack: SIGTERM to a daemon waiting for an
// auth_url where nothing listens ends it at once with 0 ("stopping"); a
// --once or --dry-run run against it fails at once with 1, saying why,
// and does not wait (its timer or cron tries again). Built binary;
// nothing of OpenStack is asked, so no stack is needed.
func TestStopWhileWaitingForOpenStack(t *testing.T) {
	daemonCfg, proxyCfg, _, _, _, _ := startupConfigs(t)
	env := append(os.Environ(), "OS_CLOUD=", "OS_CLIENT_CONFIG_FILE=", "OS_AUTH_URL=http://"+testutil.FreeAddr(t)+"/v3",
		"OS_USERNAME=imagetrust", "OS_PASSWORD=secret-4e2b", "OS_PROJECT_NAME=mirror",
		"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default")
	daemons := []*daemonProcess{
		startDaemon(t, "sync", env, "sync", "--config", daemonCfg),
		startDaemon(t, "crl", env, "crl", "--config", daemonCfg),
		startDaemon(t, "proxy", env, "proxy", "--config", proxyCfg),
	}
	for _, d := range daemons {
		d.waitLine(t, `level=WARN msg="OpenStack not reachable at start; waiting for it"`, "connection refused")
		if code := d.stop(t); code != exitOK || !strings.Contains(d.logs.String(), "msg=stopping") {
			t.Errorf("%s: SIGTERM while waiting: exit %d, want 0 and \"stopping\":\n%s", d.name, code, d.logs.String())
		}
	}
	for _, args := range [][]string{{"sync", "--once", "--config", daemonCfg}, {"crl", "--once", "--config", daemonCfg},
		{"sync", "--dry-run", "--config", daemonCfg}, {"crl", "--dry-run", "--config", daemonCfg}} {
		d := startDaemon(t, args[0]+" --once", env, args...)
		select {
		case <-d.done:
		case <-time.After(time.Minute):
			t.Fatalf("%s still runs after a minute: it waits", strings.Join(args, " "))
		}
		if d.code != exitInvalid || !strings.Contains(d.logs.String(), "connection refused") || strings.Contains(d.logs.String(), "waiting for it") {
			t.Errorf("%s: exit %d, want 1 at once saying connection refused:\n%s", strings.Join(args, " "), d.code, d.logs.String())
		}
	}
}

// TestReloadWhileWaitingForOpenStack: a SIGHUP (systemctl reload) while
// the sync and CRL daemons wait for OpenStack at start takes effect as
// soon as they have logged in, before the sync's first pass and the CRL
// job's first run. Before, the sync took it after its first pass (hours,
// at a new site that mirrors every image), the first pass running with
// the configuration the operator had just replaced.
func TestReloadWhileWaitingForOpenStack(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ks := newFlakyKeystone(t, c.KeystoneURL)
	daemonCfg, _, _, _, _, _ := startupConfigs(t)
	// the process's own mirror project (ownMirror): the sync pass and the CRL run act on
	// every image of their project, and those of the stack's mirror project
	// are other tests' (glancesync's, run at the same time by go test
	// ./...), whose imagetrust_global_validity the CRL run would set unknown
	p := ownMirror(t, c)
	env := append(os.Environ(), "OS_CLOUD=", "OS_CLIENT_CONFIG_FILE=", "OS_AUTH_URL=http://"+ks.addr+"/v3",
		"OS_USERNAME="+p.Name, "OS_PASSWORD="+p.Password, "OS_PROJECT_NAME="+p.Name,
		"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default")
	syncD := startDaemon(t, "sync", env, "sync", "--config", daemonCfg)
	crlD := startDaemon(t, "crl", env, "crl", "--config", daemonCfg)
	for _, d := range []*daemonProcess{syncD, crlD} {
		d.waitLine(t, `level=WARN msg="OpenStack not reachable at start; waiting for it"`, "connection refused")
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	ks.set(t, ksForward)
	syncD.waitLine(t, `msg="sync pass done"`)
	crlD.waitLine(t, `msg="crl run done"`)
	for _, c := range []struct {
		d              *daemonProcess
		reloaded, then string
	}{
		{syncD, `msg="configuration and trust reloaded"`, `msg="sync pass done"`},
		{crlD, `msg="configuration and CAs reloaded"`, `msg="crl daemon started"`},
	} {
		logs := c.d.logs.String()
		r, p := strings.Index(logs, c.reloaded), strings.Index(logs, c.then)
		if r < 0 || r > p {
			t.Errorf("%s: the SIGHUP of the wait not taken before %s (at %d; reloaded at %d):\n%s", c.d.name, c.then, p, r, logs)
		}
		if strings.Contains(logs, "reload failed") {
			t.Errorf("%s: reload failed:\n%s", c.d.name, logs)
		}
	}
	for _, d := range []*daemonProcess{syncD, crlD} {
		if code := d.stop(t); code != exitOK {
			t.Errorf("%s: exit %d after SIGTERM, want 0", d.name, code)
		}
	}
}
