package crl

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the CRL job's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	acceptedTotal prometheus.Counter
	refusedTotal  *prometheus.CounterVec
	ageDesc       *prometheus.Desc
	nextUpdate    *prometheus.GaugeVec
	imagesByState *prometheus.GaugeVec
	untrustedImgs prometheus.Gauge
	lastSuccess   prometheus.Gauge
	lostWrites    prometheus.Counter
	localGone     prometheus.Counter

	// now is the clock imagetrust_crl_age_seconds is read against, at
	// each scrape (tests set it)
	now func() time.Time

	mu sync.Mutex
	// oldest is, by CA the last run used, the thisUpdate of its oldest CRL
	// in use: imagetrust_crl_age_seconds is the time since, computed at
	// each scrape, so that it grows between runs (an alert on it fires
	// when the CRL gets old, not at the next run). A CA no longer in use
	// loses its series (both gauges) at the next run.
	oldest map[crlSeries]time.Time
}

// crlSeries is the labels of the per-CA gauges: the issuer DN and keyID,
// which tells apart two CAs of one name (a re-keyed CA, both in use).
type crlSeries struct{ issuer, key string }

// crlTimes is what the per-CA gauges show: the thisUpdate of the oldest
// CRL in use (its age is computed at scrape time) and the first nextUpdate
// (zero: none).
type crlTimes struct {
	thisUpdate time.Time
	nextUpdate time.Time
}

// Reasons lists every refusal reason, as imagetrust_crl_refused_total{reason}
// carries them (each series exists, at 0, from the start: an increase()
// alert sees the first refusal too).
var Reasons = []string{ReasonParse, ReasonSignature, ReasonWrongIssuer, ReasonNotCRLSigner, ReasonFuture,
	ReasonRollback, ReasonStale, ReasonDelta, ReasonUnsupported, ReasonFetch}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		acceptedTotal: prometheus.NewCounter(prometheus.CounterOpts{Name: "imagetrust_crl_accepted_total",
			Help: "CRLs accepted (new content only)."}),
		refusedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imagetrust_crl_refused_total",
			Help: "CRLs refused or unusable, by reason (stale counts each run a CRL is stale)."}, []string{"reason"}),
		ageDesc: prometheus.NewDesc("imagetrust_crl_age_seconds",
			"Time since thisUpdate of the oldest CRL in use of a CA, by issuer and key (hex of the CA's key identifier, 8 bytes), at the time of the scrape.",
			[]string{"issuer", "key"}, nil),
		nextUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "imagetrust_crl_next_update_timestamp_seconds",
			Help: "Unix time of the first nextUpdate of the CRLs in use of a CA, by issuer and key (as imagetrust_crl_age_seconds)."}, []string{"issuer", "key"}),
		imagesByState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "imagetrust_crl_images",
			Help: "Catalogue images by global validity after the last run (state=revoked: images revoked)."}, []string{"state"}),
		untrustedImgs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imagetrust_crl_untrusted_images",
			Help: "Catalogue images the last run judged unknown because their record no longer chains to a configured CA (counted in imagetrust_crl_images{state=\"unknown\"} too)."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imagetrust_crl_last_success_timestamp_seconds",
			Help: "Unix time of the end of the last successful run."}),
		lostWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "imagetrust_crl_lost_writes_total",
			Help: "Image changes that did not hold after " + fmt.Sprint(MaxWriteAttempts) + " writes: a concurrent Glance write undid them (Report.LostWrites; retried within TransitRecheck)."}),
		localGone: prometheus.NewCounter(prometheus.CounterOpts{Name: "imagetrust_crl_local_flags_gone_total",
			Help: "imagetrust_local_validity flags seen by a run and gone at the next (removed by an operator, or lost to a concurrent Glance write)."}),
		now:    time.Now,
		oldest: map[crlSeries]time.Time{},
	}
	for _, r := range Reasons {
		m.refusedTotal.WithLabelValues(r)
	}
	reg.MustRegister(m.acceptedTotal, m.refusedTotal, ageCollector{m}, m.nextUpdate, m.imagesByState, m.untrustedImgs, m.lastSuccess,
		m.lostWrites, m.localGone)
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

// crlTimes sets the per-CA gauges of one run and drops the series of the
// CAs the run did not use.
func (m *Metrics) crlTimes(times map[crlSeries]crlTimes) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for s, t := range times {
		if t.nextUpdate.IsZero() {
			m.nextUpdate.DeleteLabelValues(s.issuer, s.key)
		} else {
			m.nextUpdate.WithLabelValues(s.issuer, s.key).Set(float64(t.nextUpdate.Unix()))
		}
	}
	for s := range m.oldest {
		if _, ok := times[s]; !ok {
			m.nextUpdate.DeleteLabelValues(s.issuer, s.key)
			delete(m.oldest, s)
		}
	}
	for s, t := range times {
		m.oldest[s] = t.thisUpdate
	}
}

// ageCollector exports imagetrust_crl_age_seconds, computed at each scrape
// from the thisUpdate the last run stored.
type ageCollector struct{ m *Metrics }

func (c ageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.ageDesc }

func (c ageCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for s, tu := range m.oldest {
		ch <- prometheus.MustNewConstMetric(m.ageDesc, prometheus.GaugeValue, now.Sub(tu).Seconds(), s.issuer, s.key)
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

func (m *Metrics) untrusted(n int) {
	if m != nil {
		m.untrustedImgs.Set(float64(n))
	}
}

func (m *Metrics) lostWrite() {
	if m != nil {
		m.lostWrites.Inc()
	}
}

func (m *Metrics) localFlagGone() {
	if m != nil {
		m.localGone.Inc()
	}
}

func (m *Metrics) success(t time.Time) {
	if m != nil {
		m.lastSuccess.Set(float64(t.Unix()))
	}
}

// keyID names the key of c's CA in metrics and messages: the first 8
// bytes, in hex, of the CA certificate's subject key identifier, else of
// the CRL's authority key identifier, else of the SHA-256 of the CA's
// public key. Two CAs of one name with other keys have other keyIDs.
func keyID(c *CRL) string {
	id := c.CA.SubjectKeyId
	if len(id) == 0 {
		id = c.Header.AuthorityKeyId
	}
	if len(id) == 0 {
		s := sha256.Sum256(c.CA.RawSubjectPublicKeyInfo)
		id = s[:]
	}
	return hex.EncodeToString(id[:min(len(id), 8)])
}
