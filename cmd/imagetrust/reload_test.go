package main

import (
	"crypto/x509"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/validator"
)

func TestRestartOnly(t *testing.T) {
	parse := func(s string) *itconfig.Config {
		t.Helper()
		c, err := itconfig.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := parse("[sync]\nlisten = \"127.0.0.1:9101\"\n[proxy]\nlisten = \"127.0.0.1:8774\"\nupstream = \"http://127.0.0.1:18774\"\n")
	cases := []struct {
		name, toml     string
		sections, keys []string
		want           []string
	}{
		{name: "ok nothing changed", toml: "[sync]\nlisten = \"127.0.0.1:9101\"\n[proxy]\nlisten = \"127.0.0.1:8774\"\nupstream = \"http://127.0.0.1:18774\"\n",
			sections: []string{"proxy", "contextualise", "log"}},
		{name: "ok a reloadable key changed", toml: "[sync]\nlisten = \"127.0.0.1:9101\"\ninterval = \"5m\"\n[proxy]\nlisten = \"127.0.0.1:8774\"\nupstream = \"http://127.0.0.1:18774\"\n",
			keys: []string{"sync.listen"}},
		{name: "fail sync listen", toml: "[sync]\nlisten = \"127.0.0.1:9102\"\n[proxy]\nlisten = \"127.0.0.1:8774\"\nupstream = \"http://127.0.0.1:18774\"\n",
			keys: []string{"sync.listen"}, sections: []string{"log"}, want: []string{"sync.listen"}},
		{name: "fail proxy section and log", toml: "[log]\nlevel = \"debug\"\n[proxy]\nlisten = \"127.0.0.1:8775\"\nupstream = \"http://127.0.0.1:18775\"\n",
			sections: []string{"proxy", "contextualise", "log"}, want: []string{"proxy.listen", "proxy.upstream", "log.level"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := restartOnly(base, parse(c.toml), c.sections, c.keys)
			slices.Sort(got)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("restartOnly = %q, want %q", got, want)
			}
		})
	}
}

func TestReloadMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	t0 := time.Unix(1000, 0)
	m := newReloadMetrics(reg, t0)
	value := func(g prometheus.Gauge) float64 {
		var d dto.Metric
		if err := g.Write(&d); err != nil {
			t.Fatal(err)
		}
		return d.GetGauge().GetValue()
	}
	check := func(ok, last float64) {
		t.Helper()
		if g := value(m.ok); g != ok {
			t.Fatalf("successful = %v, want %v", g, ok)
		}
		if g := value(m.last); g != last {
			t.Fatalf("timestamp = %v, want %v", g, last)
		}
	}
	check(1, 1000)
	m.done(errors.New("bad file"), t0.Add(time.Minute))
	check(0, 1000)
	m.done(nil, t0.Add(2*time.Minute))
	check(1, 1120)
}

// TestTrustStaleCRLsMetric: imagetrust_trust_stale_crls counts the CRLs of
// the trust store in use past their nextUpdate, now (not when loaded), and
// follows the store a reload puts in use.
func TestTrustStaleCRLsMetric(t *testing.T) {
	people, registrar := testpki.NewRoot(t, "People CA"), testpki.NewRoot(t, "Registrar CA")
	now := time.Now()
	store := func(next ...time.Time) *validator.Trust {
		var crls [][]byte
		for i, nu := range next {
			ca := people
			if i%2 == 1 {
				ca = registrar
			}
			crls = append(crls, ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: now.Add(-48 * time.Hour), NextUpdate: nu}))
		}
		tr, _, err := validator.NewTrust(validator.TrustOptions{People: []*x509.Certificate{people.Cert}, Registrar: []*x509.Certificate{registrar.Cert},
			CRLs: crls, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	var cur atomic.Pointer[validator.Trust]
	reg := prometheus.NewRegistry()
	registerTrustMetrics(reg, cur.Load)
	value := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "imagetrust_trust_stale_crls" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("imagetrust_trust_stale_crls not exported")
		return 0
	}
	if v := value(); v != 0 {
		t.Errorf("no store yet: %v", v)
	}
	cur.Store(store(now.Add(-time.Hour), now.Add(24*time.Hour)))
	if v := value(); v != 1 {
		t.Errorf("one stale CRL: %v", v)
	}
	cur.Store(store(now.Add(time.Hour), now.Add(24*time.Hour))) // a reload with fetch-crl's new CRLs
	if v := value(); v != 0 {
		t.Errorf("after the reload: %v", v)
	}
}
