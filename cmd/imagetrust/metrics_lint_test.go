package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/validator"
	"github.com/imagetrust/imagetrust/validator/proxy"
)

// daemonMetrics registers on a registry what each daemon's command
// registers on its own (its package's metrics, the reload and trust-store
// gauges, the start-up wait's, the Keystone login's), the Go and process
// collectors apart.
func daemonMetrics(t *testing.T) map[string]func(prometheus.Registerer) {
	noTrust := func() *validator.Trust { return nil }
	quiet := slog.New(slog.DiscardHandler)
	login := func(r prometheus.Registerer) {
		(&keystoneLogin{refusals: newLoginRefusals(), renewalFailures: newRenewalFailures()}).register(r)
	}
	return map[string]func(prometheus.Registerer){
		"proxy": func(r prometheus.Registerer) {
			if _, err := proxy.NewMetrics(r); err != nil {
				t.Fatal(err)
			}
			newReloadMetrics(r, time.Now())
			registerTrustMetrics(r, noTrust)
			newStartWait(quiet, r, nil)
			login(r)
		},
		"sync": func(r prometheus.Registerer) {
			m := glancesync.NewMetrics(r)
			m.Orphaned.WithLabelValues("cms").Set(1)
			registerTrustMetrics(r, noTrust)
			newReloadMetrics(r, time.Now())
			newStartWait(quiet, r, nil)
			login(r)
		},
		"crl": func(r prometheus.Registerer) {
			crl.NewMetrics(r)
			newReloadMetrics(r, time.Now())
			newStartWait(quiet, r, nil)
			login(r)
		},
	}
}

// TestDaemonMetricsLint builds each daemon's registry as the command does
// (daemonMetrics, the Go and process collectors) and checks that it
// gathers (no name registered twice, no inconsistent series) and passes
// promlint: counters end in _total, units are base units, every metric
// has help.
func TestDaemonMetricsLint(t *testing.T) {
	for name, add := range daemonMetrics(t) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		add(reg)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
	}
}
