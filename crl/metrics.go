package crl

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the CRL job's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	acceptedTotal prometheus.Counter
	refusedTotal  *prometheus.CounterVec
	ageSeconds    *prometheus.GaugeVec
	imagesByState *prometheus.GaugeVec
	lastSuccess   prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		acceptedTotal: prometheus.NewCounter(prometheus.CounterOpts{Name: "imagetrust_crl_accepted_total",
			Help: "CRLs accepted (new content only)."}),
		refusedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imagetrust_crl_refused_total",
			Help: "CRLs refused or unusable, by reason (stale counts each run a CRL is stale)."}, []string{"reason"}),
		ageSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "imagetrust_crl_age_seconds",
			Help: "Time since thisUpdate of the CRL in use, by issuer."}, []string{"issuer"}),
		imagesByState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "imagetrust_crl_images",
			Help: "Catalogue images by global validity after the last run (state=revoked: images revoked)."}, []string{"state"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imagetrust_crl_last_success_timestamp_seconds",
			Help: "Unix time of the end of the last successful run."}),
	}
	reg.MustRegister(m.acceptedTotal, m.refusedTotal, m.ageSeconds, m.imagesByState, m.lastSuccess)
	return m
}

func (m *Metrics) accepted() {
	if m != nil {
		m.acceptedTotal.Inc()
	}
}

func (m *Metrics) refused(reason string) {
	if m != nil {
		m.refusedTotal.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) age(issuer string, d time.Duration) {
	if m != nil {
		m.ageSeconds.WithLabelValues(issuer).Set(d.Seconds())
	}
}

func (m *Metrics) images(counts map[string]int) {
	if m == nil {
		return
	}
	for _, s := range []string{StateValid, StateRevoked, StateHold, StateUnknown} {
		m.imagesByState.WithLabelValues(s).Set(float64(counts[s]))
	}
}

func (m *Metrics) success(t time.Time) {
	if m != nil {
		m.lastSuccess.Set(float64(t.Unix()))
	}
}
