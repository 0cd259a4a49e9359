package crl

import (
	"crypto/x509"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func hexKey(ca *x509.Certificate) string {
	return keyID(&CRL{CA: ca, List: &List{Header: &x509.RevocationList{}}})
}

// TestJobMetrics: the per-CA gauges are labelled by issuer and key, so two
// CAs of one name show apart; nextUpdate is exported; the age is computed
// at each scrape, so it grows between runs (a scrape with the clock moved
// on, no run in between, shows it older); a CA no longer used loses its
// series; every refusal reason exists at 0 from the start.
func TestJobMetrics(t *testing.T) {
	w := newWorld(t)
	rekeyed := w.root.Intermediate("Job Registrar CA")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	clock := t0
	m.now = func() time.Time { return clock }
	gather := func(name string) []*dto.Metric {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()
			}
		}
		return nil
	}
	labels := func(mt *dto.Metric) map[string]string {
		out := map[string]string{}
		for _, l := range mt.GetLabel() {
			out[l.GetName()] = l.GetValue()
		}
		return out
	}
	refused := gather("imagetrust_crl_refused_total")
	if len(refused) != len(Reasons) {
		t.Fatalf("refused_total before any run: %d series, want %d", len(refused), len(Reasons))
	}
	for _, mt := range refused {
		if mt.GetCounter().GetValue() != 0 || !slices.Contains(Reasons, labels(mt)["reason"]) {
			t.Fatalf("refused_total series %v", mt)
		}
	}

	cache := t.TempDir()
	nuOld, nuNew := t0.Add(7*24*time.Hour), t0.Add(3*24*time.Hour)
	w.serve(crlT(w.registrar, 4), 0, 0)
	j := w.job(t, cache, t0, true)
	j.metrics = m
	j.cfg.CAs = append(j.cfg.CAs, rekeyed.Cert)
	// (a CRL of user certificates only, later than the old key's complete
	// one: neither speaks for all the certificates the other does, so
	// neither supersedes the other, Index.Superseded)
	j.cfg.Sources = append(j.cfg.Sources, Source{File: testpki.WriteFile(t, t.TempDir(), "rekeyed.crl",
		rekeyed.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-30 * time.Minute), NextUpdate: nuNew, IDP: pki.IDPOnlyUserCerts}))})
	run(t, j)
	want := map[string]float64{hexKey(w.registrar.Cert): float64(nuOld.Unix()), hexKey(rekeyed.Cert): float64(nuNew.Unix())}
	wantAge := map[string]float64{hexKey(w.registrar.Cert): time.Hour.Seconds(), hexKey(rekeyed.Cert): (30 * time.Minute).Seconds()}
	check := func(keys ...string) {
		t.Helper()
		for name, vals := range map[string]map[string]float64{"imagetrust_crl_next_update_timestamp_seconds": want, "imagetrust_crl_age_seconds": wantAge} {
			got := map[string]float64{}
			for _, mt := range gather(name) {
				if l := labels(mt); l["issuer"] == w.registrar.Cert.Subject.String() {
					got[l["key"]] = mt.GetGauge().GetValue()
				}
			}
			if len(got) != len(keys) {
				t.Fatalf("%s: %v, want keys %q", name, got, keys)
			}
			for _, k := range keys {
				if g, ok := got[k]; !ok || g != vals[k] {
					t.Fatalf("%s{key=%s}: %v, want %v", name, k, got, vals[k])
				}
			}
		}
	}
	check(hexKey(w.registrar.Cert), hexKey(rekeyed.Cert))
	// no run, the clock 90 minutes on: the CRLs are 90 minutes older
	clock = t0.Add(90 * time.Minute)
	for k := range wantAge {
		wantAge[k] += (90 * time.Minute).Seconds()
	}
	check(hexKey(w.registrar.Cert), hexKey(rekeyed.Cert))

	// the re-keyed CA leaves the configuration: its series go
	j = w.job(t, cache, t0, true)
	j.metrics = m
	run(t, j)
	check(hexKey(w.registrar.Cert))
}

// TestMetricsDocumented: the operator guide's metrics line of the CRL job
// names every refusal reason and the per-CA gauges with their labels.
func TestMetricsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/operator-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "| crl |") {
			line = l
		}
	}
	wants := []string{"`imagetrust_crl_age_seconds{issuer,key}`", "`imagetrust_crl_next_update_timestamp_seconds{issuer,key}`", "`imagetrust_crl_untrusted_images`", "`imagetrust_crl_lost_writes_total`", "`imagetrust_crl_local_flags_gone_total`"}
	for _, r := range Reasons {
		wants = append(wants, "`"+r+"`")
	}
	for _, want := range wants {
		if !strings.Contains(line, want) {
			t.Errorf("docs/operator-guide.md's crl metrics lack %s: %s", want, line)
		}
	}
}
