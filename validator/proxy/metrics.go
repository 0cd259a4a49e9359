package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/validator"
)

// ReasonOther is the reason label of a decision whose reason is not among
// DecisionReasons: the label's values stay a fixed set whatever a Decider
// or a future code path returns.
const ReasonOther = "other"

// DecisionReasons are every reason label imagetrust_proxy_decisions_total
// carries, by outcome. Each series exists, at 0, from the start (an
// increase() alert sees the first event too), and no other is ever
// made: a reason outside the list counts as ReasonOther, an outcome
// outside it as "error".
var DecisionReasons = map[string][]string{
	"allowed": {"ok", validator.DecisionUnmanaged, validator.DecisionRunAnyway, ReasonOther},
	"refused": {
		// the image decisions (validator.Trust.DecideBoot and DecideTag)
		validator.DecisionNotInCatalogue, validator.DecisionRecordInvalid,
		validator.DecisionRecordTampered,
		validator.DecisionGlobalPrefix + validator.GlobalRevoked, validator.DecisionGlobalPrefix + validator.GlobalHold,
		validator.DecisionGlobalPrefix + validator.GlobalUnknown, validator.DecisionGlobalPrefix + "missing",
		validator.DecisionGlobalPrefix + "other",
		validator.DecisionBlacklisted, validator.DecisionLocalUnknown, validator.DecisionNotActive,
		validator.DecisionExpired, validator.DecisionNotYetValid, validator.DecisionNoCandidates,
		// the gate's own about the reference and the volumes
		"bad-reference", "not-found", "bad-alias", "ambiguous-tag", "volume-boot", "volume-without-image",
		"volume-not-found", "volume-not-ready",
		// the request itself
		"token", "body", "content-type", "content-encoding", "size", "user-data", "site-context",
		"target", "method", "method-override", "path",
		// a decision without reasons (firstReason)
		"refused",
		ReasonOther,
	},
	"error": {"lookup", "identity", "volume-lookup", ReasonOther},
}

// upstream is an OpenStack service the proxy calls: the service label of
// imagetrust_proxy_upstream_errors_total. The set is closed (the constants
// below, UpstreamServices): every series exists at 0 from the start, and
// no request can make another.
type upstream int

const (
	upstreamNova     upstream = iota // users' requests forwarded to Nova
	upstreamGlance                   // the gate's image lookups
	upstreamKeystone                 // the validation of users' tokens
	upstreamCinder                   // the gate's volume and snapshot lookups
	numUpstreams
)

// UpstreamServices are the service labels of
// imagetrust_proxy_upstream_errors_total, by upstream.
var UpstreamServices = [numUpstreams]string{"nova", "glance", "keystone", "cinder"}

// decisionKey is one series of imagetrust_proxy_decisions_total.
type decisionKey struct{ outcome, reason string }

// Metrics are the proxy's Prometheus collectors. A nil *Metrics records nothing.
type Metrics struct {
	decisions      *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	cache          *prometheus.CounterVec
	upstreamErrors *prometheus.CounterVec
	// upstreamCounters are the series of UpstreamServices, resolved once
	upstreamCounters [numUpstreams]prometheus.Counter
	tokens           *prometheus.CounterVec
	// observers of the common kinds, resolved once
	observers map[string]prometheus.Observer
	// decisionCounters are the series of DecisionReasons, resolved once
	decisionCounters map[decisionKey]prometheus.Counter
	// the overload limits (limit.go)
	inFlight, waiting, conns prometheus.Gauge
	gatedRejects             map[string]prometheus.Counter
	connsRefused             prometheus.Counter
	connsIdleClosed          prometheus.Counter
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
			Help: "Time to answer a request, upstream included, by kind (gated, refused, passthrough, version).",
			// from the gate's own refusals (25 to 100 µs, a record cached) to Nova's
			// slowest pass-through calls (a minute or more)
			Buckets: []float64{.000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"kind"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "cache_lookups_total",
			Help: "Glance lookup cache results (hit, miss).",
		}, []string{"result"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "upstream_errors_total",
			Help: "Requests that failed to reach an upstream service, by service (nova, glance, keystone, cinder; a client that went away is not counted).",
		}, []string{"service"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "token_validations_total",
			Help: "Token validations of gated requests by result (hit: cached; validated, invalid, error: asked Keystone; missing: no token).",
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "gated_in_flight",
			Help: "Gated requests (create, rebuild, rescue, other server actions) being judged or forwarded now; at most proxy.max_gated_requests.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "gated_waiting",
			Help: "Gated requests waiting for a slot (proxy.max_gated_requests reached).",
		}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "connections",
			Help: "Client connections the gate's listener holds now; at most proxy.max_connections.",
		}),
		connsIdleClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "connections_idle_closed_total",
			Help: "Idle keep-alive client connections closed to make room for a new one at proxy.max_connections.",
		}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "imagetrust", Subsystem: "proxy", Name: "connections_refused_total",
			Help: "Client connections closed at once because proxy.max_connections were open and none of them idle.",
		}),
	}
	rejects := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "imagetrust", Subsystem: "proxy", Name: "gated_rejections_total",
		Help: "Gated requests refused with 503 for want of a slot (proxy.max_gated_requests), by reason (queue-full, queue-timeout; project-limit: its project held its share, proxy.max_gated_per_project; client-gone: the client left while it waited).",
	}, []string{"reason"})
	for _, c := range []prometheus.Collector{m.decisions, m.duration, m.cache, m.upstreamErrors, m.tokens,
		m.inFlight, m.waiting, m.conns, m.connsRefused, m.connsIdleClosed, rejects} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.observers = map[string]prometheus.Observer{}
	for _, k := range durationKinds {
		m.observers[k] = m.duration.WithLabelValues(k)
	}
	m.decisionCounters = map[decisionKey]prometheus.Counter{}
	for outcome, reasons := range DecisionReasons {
		for _, r := range reasons {
			m.decisionCounters[decisionKey{outcome, r}] = m.decisions.WithLabelValues(outcome, r)
		}
	}
	for u, s := range UpstreamServices {
		m.upstreamCounters[u] = m.upstreamErrors.WithLabelValues(s)
	}
	for _, r := range cacheResults {
		m.cache.WithLabelValues(r)
	}
	for _, r := range tokenResults {
		m.tokens.WithLabelValues(r)
	}
	m.gatedRejects = map[string]prometheus.Counter{}
	for _, r := range GatedRejectReasons {
		m.gatedRejects[r] = rejects.WithLabelValues(r)
	}
	return m, nil
}

// The label values of the other vectors, each exported at 0 from the start.
var (
	durationKinds = []string{"gated", "refused", "passthrough", "version"}
	cacheResults  = []string{"hit", "miss"}
	tokenResults  = []string{"hit", "validated", "invalid", "error", "missing"}
)

func (m *Metrics) decision(outcome, reason string) {
	if m == nil {
		return
	}
	c, ok := m.decisionCounters[decisionKey{outcome, reason}]
	if !ok {
		if _, known := DecisionReasons[outcome]; !known {
			outcome = "error"
		}
		if c, ok = m.decisionCounters[decisionKey{outcome, ReasonOther}]; !ok {
			// every outcome of DecisionReasons lists ReasonOther; this
			// only guards a list edited without it
			c = m.decisionCounters[decisionKey{"error", ReasonOther}]
		}
	}
	c.Inc()
}

func (m *Metrics) observe(kind string, seconds float64) {
	if m != nil {
		if o, ok := m.observers[kind]; ok {
			o.Observe(seconds)
		}
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

// upstreamError counts a request that failed to reach the service u.
func (m *Metrics) upstreamError(u upstream) {
	if m != nil {
		m.upstreamCounters[u].Inc()
	}
}

func (m *Metrics) token(result string) {
	if m != nil {
		m.tokens.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) gatedInFlight(d float64) {
	if m != nil {
		m.inFlight.Add(d)
	}
}

func (m *Metrics) gatedWaiting(d float64) {
	if m != nil {
		m.waiting.Add(d)
	}
}

func (m *Metrics) gatedRejected(reason string) {
	if m != nil {
		m.gatedRejects[reason].Inc()
	}
}

func (m *Metrics) connOpen(d float64) {
	if m != nil {
		m.conns.Add(d)
	}
}

func (m *Metrics) connRefused() {
	if m != nil {
		m.connsRefused.Inc()
	}
}

func (m *Metrics) connIdleClosed() {
	if m != nil {
		m.connsIdleClosed.Inc()
	}
}
