package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus collectors. A nil *Metrics records nothing.
type Metrics struct {
	decisions      *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	cache          *prometheus.CounterVec
	upstreamErrors prometheus.Counter
	tokens         *prometheus.CounterVec
	// observers of the common kinds, resolved once
	observers map[string]prometheus.Observer
}

// NewMetrics creates the proxy's collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "decisions_total",
			Help: "Boot decisions by outcome (allowed, refused, error) and reason (first failed check).",
		}, []string{"outcome", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "request_duration_seconds",
			Help:    "Time to answer a request, upstream included, by kind (gated, refused, passthrough, version).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "cache_lookups_total",
			Help: "Glance lookup cache results (hit, miss).",
		}, []string{"result"}),
		upstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "upstream_errors_total",
			Help: "Requests that failed to reach Nova, Glance or Keystone.",
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "token_validations_total",
			Help: "Token validations of gated requests by result (hit: cached; validated, invalid, error: asked Keystone; missing: no token).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.decisions, m.duration, m.cache, m.upstreamErrors, m.tokens} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.observers = map[string]prometheus.Observer{}
	for _, k := range []string{"gated", "refused", "passthrough", "version"} {
		m.observers[k] = m.duration.WithLabelValues(k)
	}
	return m, nil
}

func (m *Metrics) decision(outcome, reason string) {
	if m != nil {
		m.decisions.WithLabelValues(outcome, reason).Inc()
	}
}

func (m *Metrics) observe(kind string, seconds float64) {
	if m != nil {
		if o, ok := m.observers[kind]; ok {
			o.Observe(seconds)
			return
		}
		m.duration.WithLabelValues(kind).Observe(seconds)
	}
}

func (m *Metrics) cacheHit() {
	if m != nil {
		m.cache.WithLabelValues("hit").Inc()
	}
}

func (m *Metrics) cacheMiss() {
	if m != nil {
		m.cache.WithLabelValues("miss").Inc()
	}
}

func (m *Metrics) upstreamError() {
	if m != nil {
		m.upstreamErrors.Inc()
	}
}

func (m *Metrics) token(result string) {
	if m != nil {
		m.tokens.WithLabelValues(result).Inc()
	}
}
