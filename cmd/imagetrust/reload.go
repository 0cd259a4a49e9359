package main

import (
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// reloadMetrics tell whether the last configuration reload (SIGHUP) of a
// daemon worked, so that a broken file is seen before the next restart
// fails on it (the names follow Prometheus's own reload metrics).
type reloadMetrics struct {
	ok   prometheus.Gauge
	last prometheus.Gauge
}

// newReloadMetrics registers the reload metrics of a daemon that started
// now with a configuration that loaded.
func newReloadMetrics(reg prometheus.Registerer, now time.Time) *reloadMetrics {
	m := &reloadMetrics{
		ok: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imagetrust_config_last_reload_successful",
			Help: "1 if the configuration in effect is the file as it was last read (start-up or the last SIGHUP), 0 if the last reload failed and the previous configuration is kept."}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imagetrust_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded with success (start-up or SIGHUP), Unix seconds."}),
	}
	reg.MustRegister(m.ok, m.last)
	m.ok.Set(1)
	m.last.Set(float64(now.Unix()))
	return m
}

// done records a reload's outcome.
func (m *reloadMetrics) done(err error, now time.Time) {
	if err != nil {
		m.ok.Set(0)
		return
	}
	m.ok.Set(1)
	m.last.Set(float64(now.Unix()))
}

// restartOnly names the settings that differ between the configuration a
// daemon started with and a reloaded one, among those it reads only at
// start-up: every key of the sections named whole, and the keys named one
// by one ("sync.listen"). A reload that changes them must say they wait
// for a restart, not just "reloaded".
func restartOnly(started, reloaded *itconfig.Config, sections []string, keys []string) []string {
	var out []string
	a, b := reflect.ValueOf(*started), reflect.ValueOf(*reloaded)
	for i := range a.NumField() {
		sec := tomlName(a.Type().Field(i))
		if sec == "" || a.Field(i).Kind() != reflect.Struct {
			continue
		}
		whole := slices.Contains(sections, sec)
		fa, fb := a.Field(i), b.Field(i)
		for j := range fa.NumField() {
			key := sec + "." + tomlName(fa.Type().Field(j))
			if key == sec+"." || !whole && !slices.Contains(keys, key) {
				continue
			}
			if !reflect.DeepEqual(fa.Field(j).Interface(), fb.Field(j).Interface()) {
				out = append(out, key)
			}
		}
	}
	return out
}

// tomlName is a field's TOML key ("" for none).
func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// registerTrustMetrics exports, for a daemon that judges with a trust
// store it loaded (the proxy, the sync), how many of that store's CRLs
// are past their nextUpdate now. Those CRLs are read only at start and on
// SIGHUP: a count above 0 says that fetch-crl, or the reload after it, is
// not happening (the store keeps using them; the CRL job's flags are
// another matter, with their own metrics). trust returns the store in
// use.
func registerTrustMetrics(reg prometheus.Registerer, trust func() *validator.Trust) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imagetrust_trust_stale_crls",
		Help: "CRLs of the trust store in use (trust.crl_files, trust.ca_dirs) past their nextUpdate: read only at start and on reload (SIGHUP), so fetch-crl's new ones are not in use."},
		func() float64 {
			t := trust()
			if t == nil {
				return 0
			}
			return float64(len(t.StaleCRLs(time.Now())))
		}))
}

// firstRetry is how soon a daemon (sync, crl) tries again after a run that
// failed as a whole: Glance or Keystone unreachable, the credentials
// refused. A variable for the tests.
var firstRetry = time.Minute

// retryWait is the wait after failures failed runs in a row: firstRetry,
// doubled for each further failure (a minute, 2, 4, 8 ...), so that an
// outage of minutes costs minutes, while credentials that stay wrong are
// tried less and less often (each try is a failed login in Keystone's
// eyes, and enough of them lock a user out where
// [security_compliance] lockout_failure_attempts is set). The daemons cap
// it at their interval.
func retryWait(failures int) time.Duration {
	if failures < 1 {
		return 0
	}
	return firstRetry << min(failures-1, 16)
}

// ignoreReloads logs each SIGHUP hup delivers until the func it returns is
// called, naming --dry-run when dry, else --once: a --once or --dry-run run (of sync or crl) catches SIGHUP from its
// start, as the daemons do, so that a reload meant for a daemon (logrotate's
// postrotate, `systemctl reload` of a oneshot unit, a fetch-crl hook) does
// not kill it with the default action in the middle of its writes; it
// finishes with the configuration it started with.
func ignoreReloads(hup <-chan os.Signal, log *slog.Logger, cmd string, dry bool) (stop func()) {
	msg := "SIGHUP: reload ignored in --once (the run finishes with the configuration it started with)"
	if dry {
		msg = "SIGHUP: reload ignored in --dry-run (the run finishes with the configuration it started with)"
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-hup:
				log.Warn(msg, "command", cmd)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
