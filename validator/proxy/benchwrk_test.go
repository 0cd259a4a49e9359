package proxy

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// envWrkDuration is how long each wrk round lasts (default 3s).
const envWrkDuration = "IMAGETRUST_PROXY_BENCH_WRK_DURATION"

// envWrkRounds is how many rounds each target gets (default 5): more
// rounds steady the medians on a machine shared with other jobs.
const envWrkRounds = "IMAGETRUST_PROXY_BENCH_WRK_ROUNDS"

var (
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkCount  = regexp.MustCompile(`([0-9]+) requests in`)
	wrkErrors = regexp.MustCompile(`Non-2xx or 3xx responses|Socket errors`)
)

// BenchmarkPassThroughWrk is BenchmarkPassThrough with wrk (Debian's
// package) as the load generator instead of Go clients in this process: one
// wrk thread, 32 connections, GET /v2.1/flavors, the targets taking turns
// for 5 rounds (median reported; envWrkRounds sets another number), in
// reverse order every other round. The paired-* metrics are the median of
// each round's own ratio. wrk is
// a C event loop that needs far less CPU per request than the Go clients,
// so on a small machine more of it is left to the targets; both load
// generators hit every target the same way.
// The benchmark runs its rounds once whatever b.N is (-benchtime 1x).
//
//	go test ./validator/proxy -run '^$' -bench PassThroughWrk -benchtime 1x
func BenchmarkPassThroughWrk(b *testing.B) {
	wrk := lookWrk(b)
	t := newBenchTargets(b)
	rates := wrkRounds(b, wrk, t.passThroughTargets(b))
	for _, p := range wrkPaths {
		r := wrkReport{b, rates, p.prefix}
		r.rates("direct", "gate", "gate-proc", "gate-proc-nethttp", "gate-proc-nodirect", "nginx", "nginx-auto",
			"nginx-xf", "nginx-auto-xf")
		r.ratios("gate-proc/direct")
		if t.nginx != "" {
			r.ratios("gate-proc/nginx", "gate-proc/nginx-auto", "gate-proc-nethttp/nginx",
				"gate-proc-nodirect/nginx", "gate-proc-nethttp/nginx-auto")
			r.ratios("gate-proc/nginx-xf", "gate-proc/nginx-auto-xf")
			r.paired("gate-proc/nginx", "gate-proc/nginx-auto", "gate-proc/nginx-xf", "gate-proc/nginx-auto-xf")
		}
	}
}

// BenchmarkPassThroughWrkTLS is BenchmarkPassThroughWrk over TLS: the gate
// in its own process with a TLS listener (its fast server; net/http's
// server alone: gate-proc-tls-nethttp; the fast server without directConn
// under TLS: gate-proc-tls-nodirect) against nginx with the same
// certificate (ECDSA P-256) and cipher suite (TLS 1.3, AES-128-GCM, which
// Go's server picks), with 1 and auto workers, bare and with the gate's
// X-Forwarded-* fields (-xf-). wrk keeps its connections,
// so the rounds measure requests over established TLS connections, not
// handshakes.
//
//	go test ./validator/proxy -run '^$' -bench PassThroughWrkTLS -benchtime 1x
func BenchmarkPassThroughWrkTLS(b *testing.B) {
	wrk := lookWrk(b)
	up := fastNova(b)
	cert, key, _ := tlsListenerPair(b, b.TempDir())
	tlsEnv := envBenchChildTLS + "=" + cert + "," + key
	https := func(u string) string { return strings.Replace(u, "http://", "https://", 1) }
	targets := []benchTarget{
		{"gate-proc-tls", https(startGateProcess(b, up.URL, tlsEnv))},
		{"gate-proc-tls-nethttp", https(startGateProcess(b, up.URL, tlsEnv, envBenchChildNetHTTP+"=1"))},
		{"gate-proc-tls-nodirect", https(startGateProcess(b, up.URL, tlsEnv, envBenchChildNoDirect+"=1"))},
	}
	for _, n := range []struct {
		name      string
		workers   string
		forwarded bool
	}{{"nginx-tls", "1", false}, {"nginx-auto-tls", "auto", false}, {"nginx-xf-tls", "1", true}, {"nginx-auto-xf-tls", "auto", true}} {
		base := startNginx(b, up.URL, nginxSetup{workers: n.workers, certFile: cert, keyFile: key, forwarded: n.forwarded})
		if base == "" {
			b.Skip("nginx is not available")
		}
		targets = append(targets, benchTarget{n.name, base})
	}
	rates := wrkRounds(b, wrk, targets)
	for _, p := range wrkPaths {
		r := wrkReport{b, rates, p.prefix}
		r.rates("gate-proc-tls", "gate-proc-tls-nethttp", "gate-proc-tls-nodirect", "nginx-tls", "nginx-auto-tls",
			"nginx-xf-tls", "nginx-auto-xf-tls")
		r.ratios("gate-proc-tls/nginx-tls", "gate-proc-tls/nginx-auto-tls", "gate-proc-tls-nethttp/nginx-tls",
			"gate-proc-tls/gate-proc-tls-nethttp", "gate-proc-tls-nodirect/nginx-tls")
		r.ratios("gate-proc-tls/nginx-xf-tls", "gate-proc-tls/nginx-auto-xf-tls")
		r.paired("gate-proc-tls/nginx-tls", "gate-proc-tls/nginx-auto-tls", "gate-proc-tls/nginx-xf-tls",
			"gate-proc-tls/nginx-auto-xf-tls")
	}
}

// wrkPaths are what the wrk benchmarks load. small: GET /v2.1/flavors, a
// 100-byte answer (the gate's cost per request shows most); detail: GET
// /v2.1/servers/detail, what `openstack server list` reads for ten servers
// (serversDetail). A metric's name starts with the prefix.
var wrkPaths = []struct{ prefix, path string }{{"", "/v2.1/flavors"}, {"detail-", "/v2.1/servers/detail"}}

// lookWrk finds wrk or skips the benchmark.
func lookWrk(b *testing.B) string {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (apt-get install wrk)")
	}
	return wrk
}

// wrkRounds loads every target with every wrkPaths path, the targets taking
// turns (in reverse order every other round) for envWrkRounds rounds of
// envWrkDuration each, after a warm-up, and returns the rates by metric
// name (prefix and target), one per round. It also logs, per metric name,
// the median over rounds of the CPU time this process spent per request
// (user and system, from getrusage: the stand-in upstream's work, as the
// targets run in processes of their own, except "gate", whose own work
// this includes) and of the connections the stand-in upstream accepted
// in a round: whether the upstream works harder behind one target.
func wrkRounds(b *testing.B, wrk string, targets []benchTarget) map[string][]float64 {
	d := os.Getenv(envWrkDuration)
	if d == "" {
		d = "3s"
	}
	upCPU, upConns := map[string][]float64{}, map[string][]float64{}
	var metric string // (of the run under way)
	run := func(base, path, dur string) float64 {
		var r0, r1 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
		c0 := fastNovaConns.Load()
		out, err := exec.Command(wrk, "-t1", "-c32", "-d"+dur, base+path).CombinedOutput()
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		if m := wrkCount.FindSubmatch(out); m != nil && metric != "" {
			n, _ := strconv.ParseFloat(string(m[1]), 64)
			cpu := r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano()
			upCPU[metric] = append(upCPU[metric], float64(cpu)/1e3/n)
			upConns[metric] = append(upConns[metric], float64(fastNovaConns.Load()-c0))
		}
		if err != nil {
			b.Fatalf("wrk: %v: %s", err, out)
		}
		if wrkErrors.Match(out) {
			b.Fatalf("wrk saw errors against %s: %s", base, out)
		}
		m := wrkRate.FindSubmatch(out)
		if m == nil {
			b.Fatalf("wrk output: %s", out)
		}
		r, _ := strconv.ParseFloat(string(bytes.TrimSpace(m[1])), 64)
		return r
	}
	for _, tg := range targets {
		run(tg.base, wrkPaths[0].path, "1s") // warm
	}
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv(envWrkRounds)); err == nil && n > 0 {
		rounds = n
	}
	rates := map[string][]float64{}
	b.ResetTimer()
	for round := range rounds {
		for _, p := range wrkPaths {
			for i := range targets {
				// every other round in reverse order, so that no target
				// always follows the same one
				tg := targets[i]
				if round%2 == 1 {
					tg = targets[len(targets)-1-i]
				}
				metric = p.prefix + tg.name
				rates[metric] = append(rates[metric], run(tg.base, p.path, d))
			}
		}
	}
	b.StopTimer()
	for _, p := range wrkPaths {
		for _, tg := range targets {
			m := p.prefix + tg.name
			b.Logf("%s: upstream CPU %.1f µs a request, %.0f upstream connections opened a round (medians)",
				m, median(upCPU[m]), median(upConns[m]))
		}
	}
	return rates
}

// wrkReport reports the metrics of one wrkPaths path.
type wrkReport struct {
	b      *testing.B
	by     map[string][]float64 // rates by metric name, one per round
	prefix string
}

// rates reports each target's median rate.
func (r wrkReport) rates(names ...string) {
	for _, n := range names {
		r.b.ReportMetric(median(r.by[r.prefix+n]), r.prefix+n+"-req/s")
	}
}

// ratios reports, for each "a/over", the ratio of a's median rate to
// over's.
func (r wrkReport) ratios(pairs ...string) {
	for _, pair := range pairs {
		a, over, _ := strings.Cut(pair, "/")
		r.b.ReportMetric(median(r.by[r.prefix+a])/median(r.by[r.prefix+over]), r.prefix+pair)
	}
}

// paired reports, for each "a/over", the median over rounds of the ratio
// within each round, where the two targets ran within seconds of each
// other (steadier than the ratio of medians when the machine's load
// drifts), and logs the rounds' ratios. With 6 rounds or more it also
// reports the bounds of a distribution-free confidence interval of at least
// 95% for that median (medianCI: -lo, -hi), and logs its coverage: a bound
// on the side of 1 says which target is faster; an interval around 1 says
// the run cannot tell them apart.
func (r wrkReport) paired(pairs ...string) {
	for _, pair := range pairs {
		a, over, _ := strings.Cut(pair, "/")
		ra, ro := r.by[r.prefix+a], r.by[r.prefix+over]
		q := make([]float64, len(ra))
		for i := range q {
			q[i] = ra[i] / ro[i]
		}
		r.b.Logf("%s%s by round: %.3f", r.prefix, pair, q)
		r.b.ReportMetric(median(q), r.prefix+"paired-"+pair)
		if lo, hi, coverage, ok := medianCI(q); ok {
			r.b.Logf("%s%s median round ratio: %.1f%% interval [%.3f, %.3f]", r.prefix, pair, 100*coverage, lo, hi)
			r.b.ReportMetric(lo, r.prefix+"paired-"+pair+"-lo")
			r.b.ReportMetric(hi, r.prefix+"paired-"+pair+"-hi")
		}
	}
}

// medianCI returns a confidence interval for the median of the population
// that q was drawn from, with no assumption on its distribution (the sign
// test's interval): the order statistics x(k) and x(n+1-k), k the largest
// for which P(B(n, 1/2) < k) is at most 2.5%, and the interval's coverage,
// at least 95%. ok is false below 6 values, too few for 95%.
func medianCI(q []float64) (lo, hi, coverage float64, ok bool) {
	s := slices.Sorted(slices.Values(q))
	n := len(s)
	tail, k := 0.0, 0
	c := 1.0 // C(n, i)
	for i := range n {
		p := c / math.Exp2(float64(n))
		if tail+p > 0.025 {
			break
		}
		tail, k = tail+p, i+1
		c = c * float64(n-i) / float64(i+1)
	}
	if k == 0 {
		return 0, 0, 0, false
	}
	return s[k-1], s[n-k], 1 - 2*tail, true
}
