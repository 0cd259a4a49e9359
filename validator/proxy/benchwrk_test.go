package proxy

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// envWrkDuration is how long each wrk round lasts (default 3s).
const envWrkDuration = "IMAGETRUST_PROXY_BENCH_WRK_DURATION"

// envWrkRounds is how many rounds each target gets (default 5): more
// rounds steady the medians on a machine shared with other jobs.
const envWrkRounds = "IMAGETRUST_PROXY_BENCH_WRK_ROUNDS"

var (
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
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
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (apt-get install wrk)")
	}
	d := os.Getenv(envWrkDuration)
	if d == "" {
		d = "3s"
	}
	t := newBenchTargets(b)
	targets := t.passThroughTargets(b)
	run := func(base, path, dur string) float64 {
		out, err := exec.Command(wrk, "-t1", "-c32", "-d"+dur, base+path).CombinedOutput()
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
	// small: GET /v2.1/flavors, a 100-byte answer (the gate's cost per
	// request shows most); detail: GET /v2.1/servers/detail, what
	// `openstack server list` reads for ten servers (serversDetail)
	paths := []struct{ prefix, path string }{{"", "/v2.1/flavors"}, {"detail-", "/v2.1/servers/detail"}}
	for _, tg := range targets {
		run(tg.base, paths[0].path, "1s") // warm
	}
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv(envWrkRounds)); err == nil && n > 0 {
		rounds = n
	}
	rates := map[string][]float64{}
	b.ResetTimer()
	for round := range rounds {
		for _, p := range paths {
			for i := range targets {
				// every other round in reverse order, so that no target
				// always follows the same one
				tg := targets[i]
				if round%2 == 1 {
					tg = targets[len(targets)-1-i]
				}
				rates[p.prefix+tg.name] = append(rates[p.prefix+tg.name], run(tg.base, p.path, d))
			}
		}
	}
	b.StopTimer()
	med := func(name string) float64 { return median(rates[name]) }
	// paired: the median over rounds of the ratio within each round, where
	// the two targets ran within seconds of each other (steadier than the
	// ratio of medians when the machine's load drifts)
	paired := func(a, over string) float64 {
		r := make([]float64, len(rates[a]))
		for i := range r {
			r[i] = rates[a][i] / rates[over][i]
		}
		b.Logf("%s/%s by round: %.3f", a, over, r)
		return median(r)
	}
	for _, p := range paths {
		for _, tg := range targets {
			b.ReportMetric(med(p.prefix+tg.name), p.prefix+tg.name+"-req/s")
		}
		b.ReportMetric(med(p.prefix+"gate-proc")/med(p.prefix+"direct"), p.prefix+"gate-proc/direct")
		if t.nginx != "" {
			b.ReportMetric(med(p.prefix+"gate-proc")/med(p.prefix+"nginx"), p.prefix+"gate-proc/nginx")
			b.ReportMetric(med(p.prefix+"gate-proc")/med(p.prefix+"nginx-auto"), p.prefix+"gate-proc/nginx-auto")
			b.ReportMetric(paired(p.prefix+"gate-proc", p.prefix+"nginx"), p.prefix+"paired-gate-proc/nginx")
			b.ReportMetric(paired(p.prefix+"gate-proc", p.prefix+"nginx-auto"), p.prefix+"paired-gate-proc/nginx-auto")
			b.ReportMetric(med(p.prefix+"gate-proc-nethttp")/med(p.prefix+"nginx"), p.prefix+"gate-proc-nethttp/nginx")
			b.ReportMetric(med(p.prefix+"gate-proc-nodirect")/med(p.prefix+"nginx"), p.prefix+"gate-proc-nodirect/nginx")
			b.ReportMetric(med(p.prefix+"gate-proc-nethttp")/med(p.prefix+"nginx-auto"), p.prefix+"gate-proc-nethttp/nginx-auto")
		}
	}
}
