package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks compare, in one run, the upstream called directly, through
// the gate, and through Debian's nginx proxying it, so that the gate's own
// cost shows as ratios and differences rather than absolute timings. The
// upstream is a fast stand-in (an in-process HTTP server answering at once):
// a real nova-api would hide the gate's cost behind its own.

// fastNova answers every request at once: GET /v2.1/servers/detail with
// serversDetail (what `openstack server list` reads, for a project of ten
// servers), anything else with a small JSON body. Its answer heads are
// nova-api's (Zed, as tests/openstack runs it): a Content-Length, never
// chunked, and the same header fields. It counts the connections it
// accepts in fastNovaConns.
func fastNova(tb testing.TB) *httptest.Server {
	body := []byte(`{"flavors":[{"id":"1","name":"m1.tiny","links":[{"rel":"self","href":"http://nova/v2.1/flavors/1"}]}]}`)
	detail := serversDetail(10)
	if !json.Valid(detail) {
		tb.Fatalf("serversDetail is not JSON: %s", detail)
	}
	bodyLen, detailLen := strconv.Itoa(len(body)), strconv.Itoa(len(detail))
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Openstack-Api-Version"] = []string{"compute 2.1"}
		h["X-Openstack-Nova-Api-Version"] = []string{"2.1"}
		h["Vary"] = []string{"OpenStack-API-Version", "X-OpenStack-Nova-API-Version"}
		h["X-Openstack-Request-Id"] = []string{"req-00000000-0000-4000-8000-000000000001"}
		h["X-Compute-Request-Id"] = []string{"req-00000000-0000-4000-8000-000000000001"}
		b, n := body, bodyLen
		if r.URL.Path == "/v2.1/servers/detail" {
			b, n = detail, detailLen
		}
		h["Content-Length"] = []string{n}
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusAccepted)
		}
		_, _ = w.Write(b)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			fastNovaConns.Add(1)
		}
	}
	s.Start()
	tb.Cleanup(s.Close)
	return s
}

// fastNovaConns counts the connections every fastNova accepted.
var fastNovaConns atomic.Int64

// serversDetail is a GET /servers/detail answer of n servers, shaped as
// nova-api (microversion 2.79) writes one: about 1.7 KiB a server.
func serversDetail(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"servers": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		id := fmt.Sprintf("5f2d3a5e-0c3b-4b4e-9d7a-%012d", i)
		fmt.Fprintf(&b, `{"id": %q, "name": "worker-%d", "status": "ACTIVE", "tenant_id": "4a5e2f0c1b3d4e6f8a9b0c1d2e3f4a5b", `+
			`"user_id": "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a49", "metadata": {}, "hostId": "3f1b5e7c9d2a4f6b8e0c1d3a5b7e9f2c4d6a8b0e1f3c5d7a9b2e4f6c", `+
			`"image": {"id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "links": [{"rel": "bookmark", "href": "http://nova/images/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}]}, `+
			`"flavor": {"vcpus": 2, "ram": 4096, "disk": 40, "ephemeral": 0, "swap": 0, "original_name": "m1.medium", "extra_specs": {}}, `+
			`"created": "2026-11-25T10:00:00Z", "updated": "2026-11-25T10:01:00Z", "addresses": {"private": [{"version": 4, "addr": "10.0.0.%d", `+
			`"OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:%02x"}]}, "accessIPv4": "", "accessIPv6": "", `+
			`"links": [{"rel": "self", "href": "http://nova/v2.1/servers/%[1]s"}, {"rel": "bookmark", "href": "http://nova/servers/%[1]s"}], `+
			`"OS-DCF:diskConfig": "MANUAL", "progress": 0, "OS-EXT-AZ:availability_zone": "nova", "config_drive": "", "key_name": "mykey", `+
			`"OS-SRV-USG:launched_at": "2026-11-25T10:01:00.000000", "OS-SRV-USG:terminated_at": null, "security_groups": [{"name": "default"}], `+
			`"OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:power_state": 1, "os-extended-volumes:volumes_attached": [], `+
			`"locked": false, "locked_reason": null, "description": null, "tags": [], "trusted_image_certificates": null, "server_groups": []}`,
			id, i, i+10, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// nginxSetup is how startNginx runs nginx in front of upstream.
type nginxSetup struct {
	// workers is worker_processes: "1", or "auto" (one per core,
	// Debian's default)
	workers string
	// certFile and keyFile, when set, make the listener HTTPS: TLS 1.2 and
	// 1.3, its TLS 1.3 cipher suite AES-128-GCM (the one Go's server picks
	// on AES hardware, so that both do the same work per byte)
	certFile, keyFile string
	// forwarded makes nginx send the upstream the X-Forwarded-For,
	// X-Forwarded-Host and X-Forwarded-Proto fields the gate sends it (the
	// client's address, the Host it asked for, its scheme), as an nginx in
	// front of Nova does so that Nova's links name the public address
	// (etc/nova/nova.conf.snippet, [oslo_middleware]): the same request
	// reaches the upstream from either, so both do the same work
	forwarded bool
}

// startNginx runs Debian's nginx as a child process proxying to upstream on
// a free loopback port, set up as ns says, and returns its base URL (""
// when nginx is missing).
func startNginx(tb testing.TB, upstream string, ns nginxSetup) string {
	tb.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/nginx"); err2 != nil {
			return ""
		}
		bin = "/usr/sbin/nginx"
	}
	dir := tb.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	up, _ := url.Parse(upstream)
	tlsConf, scheme, fwd := "", "http://", ""
	if ns.forwarded {
		fwd = "\n      proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Forwarded-Host $http_host;" +
			"\n      proxy_set_header X-Forwarded-Proto $scheme;"
	}
	if ns.certFile != "" {
		tlsConf = fmt.Sprintf(" ssl;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n"+
			"    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256", ns.certFile, ns.keyFile)
		scheme = "https://"
	}
	conf := fmt.Sprintf(`worker_processes %[4]s;
error_log %[1]s/error.log warn;
pid %[1]s/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fcgi;
  uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
  upstream nova { server %[2]s; keepalive 256; }
  server {
    listen %[3]s%[5]s;
    location / { proxy_pass http://nova; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $http_host;%[6]s }
  }
}
`, dir, up.Host, addr, ns.workers, tlsConf, fwd)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", cf, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		tb.Logf("nginx does not start: %v", err)
		return ""
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return scheme + addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
	tb.Logf("nginx did not listen: %s", b)
	return ""
}

type benchTargets struct {
	direct, gate, nginx string
	client              *http.Client
}

func newBenchTargets(b *testing.B) *benchTargets {
	f := catalogue(b)
	nova := fastNova(b)
	u, _ := url.Parse(nova.URL)
	p, err := New(Options{Upstream: u, Lookup: f.glance, Decider: f.trust, MirrorProject: mirrorProject,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), CacheTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	gs := httptest.NewServer(p)
	b.Cleanup(gs.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	b.Cleanup(tr.CloseIdleConnections)
	t := &benchTargets{direct: nova.URL, gate: gs.URL, nginx: startNginx(b, nova.URL, nginxSetup{workers: "1"}), client: &http.Client{Transport: tr}}
	if t.nginx == "" {
		b.Log("nginx not available: its comparison is skipped")
	}
	return t
}

var gatedBody = serverBody(idGood)

func (t *benchTargets) get(b *testing.B, base string) time.Duration {
	start := time.Now()
	resp, err := t.client.Get(base + "/v2.1/flavors")
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
	return time.Since(start)
}

func (t *benchTargets) boot(b *testing.B, base string) time.Duration {
	start := time.Now()
	resp, err := t.client.Post(base+"/v2.1/servers", "application/json", strings.NewReader(gatedBody))
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		b.Fatalf("status %d", resp.StatusCode)
	}
	return time.Since(start)
}

// median is the middle value of rates (the upper one of an even count).
func median(rates []float64) float64 {
	r := slices.Clone(rates)
	slices.Sort(r)
	return r[len(r)/2]
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// BenchmarkLatency measures one request at a time, interleaving the targets:
// a pass-through GET direct, through the gate and through nginx, and a boot
// (POST /servers, warm cache) direct and through the gate. It reports p50
// and p99 of each, the gate's added p99 latency, and ratios.
func BenchmarkLatency(b *testing.B) {
	t := newBenchTargets(b)
	// warm: connections, lookup cache, record verification cache
	for range 50 {
		t.get(b, t.direct)
		t.get(b, t.gate)
		t.boot(b, t.direct)
		t.boot(b, t.gate)
		if t.nginx != "" {
			t.get(b, t.nginx)
		}
	}
	var direct, gate, ngx, bootDirect, bootGate []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		direct = append(direct, t.get(b, t.direct))
		gate = append(gate, t.get(b, t.gate))
		if t.nginx != "" {
			ngx = append(ngx, t.get(b, t.nginx))
		}
		bootDirect = append(bootDirect, t.boot(b, t.direct))
		bootGate = append(bootGate, t.boot(b, t.gate))
	}
	b.StopTimer()
	b.ReportMetric(us(quantile(direct, .5)), "direct-p50-µs")
	b.ReportMetric(us(quantile(gate, .5)), "gate-p50-µs")
	b.ReportMetric(us(quantile(gate, .99)-quantile(direct, .99)), "gate-added-p99-µs")
	b.ReportMetric(us(quantile(bootGate, .5)), "boot-gate-p50-µs")
	b.ReportMetric(us(quantile(bootGate, .99)-quantile(bootDirect, .99)), "boot-added-p99-µs")
	b.ReportMetric(float64(quantile(gate, .5))/float64(quantile(direct, .5)), "gate/direct-p50")
	b.ReportMetric(float64(quantile(bootGate, .5))/float64(quantile(bootDirect, .5)), "boot-gate/direct-p50")
	if len(ngx) > 0 {
		b.ReportMetric(us(quantile(ngx, .5)), "nginx-p50-µs")
		b.ReportMetric(us(quantile(ngx, .99)-quantile(direct, .99)), "nginx-added-p99-µs")
		b.ReportMetric(float64(quantile(gate, .5))/float64(quantile(ngx, .5)), "gate/nginx-p50")
	}
}

// throughput runs n requests from 32 concurrent clients and returns req/s.
func (t *benchTargets) throughput(b *testing.B, n int, one func(*testing.B, string) time.Duration, base string) float64 {
	const workers = 32
	var wg sync.WaitGroup
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				one(b, base)
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkThroughput measures pass-through and boot throughput with 32
// concurrent clients, direct, through the gate and through nginx, each for
// the same number of requests, and reports req/s and ratios.
func BenchmarkThroughput(b *testing.B) {
	t := newBenchTargets(b)
	n := max(b.N, 500)
	t.throughput(b, 500, t.get, t.gate) // warm
	t.throughput(b, 200, t.boot, t.gate)
	b.ResetTimer()
	direct := t.throughput(b, n, t.get, t.direct)
	gate := t.throughput(b, n, t.get, t.gate)
	bootDirect := t.throughput(b, n, t.boot, t.direct)
	bootGate := t.throughput(b, n, t.boot, t.gate)
	var ngx float64
	if t.nginx != "" {
		t.throughput(b, 500, t.get, t.nginx)
		ngx = t.throughput(b, n, t.get, t.nginx)
	}
	b.StopTimer()
	b.ReportMetric(direct, "direct-req/s")
	b.ReportMetric(gate, "gate-req/s")
	b.ReportMetric(bootGate, "boot-gate-req/s")
	b.ReportMetric(gate/direct, "gate/direct")
	b.ReportMetric(bootGate/bootDirect, "boot-gate/direct")
	if ngx > 0 {
		b.ReportMetric(ngx, "nginx-req/s")
		b.ReportMetric(gate/ngx, "gate/nginx")
	}
}

// benchTarget is one server the pass-through benchmarks load.
type benchTarget struct{ name, base string }

// passThroughTargets are the upstream directly, the gate in this process,
// the gate in its own process (served as Serve serves it, with the fast
// server; with net/http's server alone: gate-proc-nethttp; with the fast
// server but Go's net package's reads and writes instead of directConn's:
// gate-proc-nodirect), and nginx with 1 and auto workers, as a bare proxy
// (nginx, nginx-auto) and sending the upstream the X-Forwarded-* fields the
// gate sends (nginx-xf, nginx-auto-xf: the same request reaches the
// upstream, so nginx does the gate's work; nginxSetup.forwarded).
func (t *benchTargets) passThroughTargets(b *testing.B) []benchTarget {
	targets := []benchTarget{{"direct", t.direct}, {"gate", t.gate}, {"gate-proc", startGateProcess(b, t.direct)},
		{"gate-proc-nethttp", startGateProcess(b, t.direct, envBenchChildNetHTTP+"=1")},
		{"gate-proc-nodirect", startGateProcess(b, t.direct, envBenchChildNoDirect+"=1")}}
	if t.nginx != "" {
		targets = append(targets, benchTarget{"nginx", t.nginx},
			benchTarget{"nginx-auto", startNginx(b, t.direct, nginxSetup{workers: "auto"})},
			benchTarget{"nginx-xf", startNginx(b, t.direct, nginxSetup{workers: "1", forwarded: true})},
			benchTarget{"nginx-auto-xf", startNginx(b, t.direct, nginxSetup{workers: "auto", forwarded: true})})
	}
	return targets
}

// BenchmarkPassThrough measures pass-through throughput (GET /v2.1/flavors
// from 32 concurrent clients) of the upstream called directly, of the gate
// in this process, of the gate in a process of its own (startGateProcess),
// and of nginx with one worker and with worker_processes auto (one per
// core), bare and with the gate's X-Forwarded-* fields (-xf). The targets take turns for 5 rounds of b.N/5 requests each and the
// median round of each is reported, with ratios. The fair comparison is
// gate-proc against nginx: both run in their own process, the clients and
// the stand-in upstream in this one.
//
//	go test ./validator/proxy -run '^$' -bench PassThrough -benchtime 50000x
func BenchmarkPassThrough(b *testing.B) {
	t := newBenchTargets(b)
	targets := t.passThroughTargets(b)
	for _, tg := range targets {
		t.throughput(b, 2000, t.get, tg.base) // warm: connections, buffers
	}
	const rounds = 5
	per := max(b.N/rounds, 200)
	rates := map[string][]float64{}
	b.ResetTimer()
	for range rounds {
		for _, tg := range targets {
			rates[tg.name] = append(rates[tg.name], t.throughput(b, per, t.get, tg.base))
		}
	}
	b.StopTimer()
	med := func(name string) float64 { return median(rates[name]) }
	for _, tg := range targets {
		b.ReportMetric(med(tg.name), tg.name+"-req/s")
	}
	b.ReportMetric(med("gate")/med("direct"), "gate/direct")
	b.ReportMetric(med("gate-proc")/med("direct"), "gate-proc/direct")
	if t.nginx != "" {
		b.ReportMetric(med("gate")/med("nginx"), "gate/nginx")
		b.ReportMetric(med("gate-proc")/med("nginx"), "gate-proc/nginx")
		b.ReportMetric(med("gate-proc")/med("nginx-auto"), "gate-proc/nginx-auto")
		b.ReportMetric(med("gate-proc-nethttp")/med("nginx"), "gate-proc-nethttp/nginx")
		b.ReportMetric(med("gate-proc-nethttp")/med("nginx-auto"), "gate-proc-nethttp/nginx-auto")
		b.ReportMetric(med("gate-proc")/med("nginx-xf"), "gate-proc/nginx-xf")
		b.ReportMetric(med("gate-proc")/med("nginx-auto-xf"), "gate-proc/nginx-auto-xf")
	}
}
