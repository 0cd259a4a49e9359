package proxy

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// envWrkDuration is how long each wrk round lasts (default 3s).
const envWrkDuration = "IMAGETRUST_PROXY_BENCH_WRK_DURATION"

var (
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkErrors = regexp.MustCompile(`Non-2xx or 3xx responses|Socket errors`)
)

// BenchmarkPassThroughWrk is BenchmarkPassThrough with wrk (Debian's
// package) as the load generator instead of Go clients in this process: one
// wrk thread, 32 connections, GET /v2.1/flavors, the targets taking turns
// for 5 rounds (median reported). wrk is a C event loop that needs far less
// CPU per request than the Go clients, so on a small machine more of it is
// left to the targets; both load generators hit every target the same way.
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
	run := func(base, dur string) float64 {
		out, err := exec.Command(wrk, "-t1", "-c32", "-d"+dur, base+"/v2.1/flavors").CombinedOutput()
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
		run(tg.base, "1s") // warm
	}
	const rounds = 5
	rates := map[string][]float64{}
	b.ResetTimer()
	for range rounds {
		for _, tg := range targets {
			rates[tg.name] = append(rates[tg.name], run(tg.base, d))
		}
	}
	b.StopTimer()
	med := func(name string) float64 {
		r := slices.Clone(rates[name])
		slices.Sort(r)
		return r[len(r)/2]
	}
	for _, tg := range targets {
		b.ReportMetric(med(tg.name), tg.name+"-req/s")
	}
	b.ReportMetric(med("gate-proc")/med("direct"), "gate-proc/direct")
	if t.nginx != "" {
		b.ReportMetric(med("gate-proc")/med("nginx"), "gate-proc/nginx")
		b.ReportMetric(med("gate-proc")/med("nginx-auto"), "gate-proc/nginx-auto")
		b.ReportMetric(med("gate-proc-nethttp")/med("nginx"), "gate-proc-nethttp/nginx")
		b.ReportMetric(med("gate-proc-nethttp")/med("nginx-auto"), "gate-proc-nethttp/nginx-auto")
	}
}
