package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// hangingNova is an upstream that takes every request and answers none
// until the request is abandoned (or the test ends); arrived receives one
// value per request.
func hangingNova(t *testing.T) (*httptest.Server, chan struct{}) {
	arrived := make(chan struct{}, 16)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv, arrived
}

// waitMetric polls until the named series reaches want (the gate observes
// a request's duration once it has finished with it). The deadline only
// stops a broken test: nothing here measures time.
func waitMetric(t *testing.T, g *gateEnv, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(t, g, name) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %v", name, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClientGoneIsNoUpstreamError: a client that hangs up while Nova is
// still working is not an upstream error. imagetrust_proxy_upstream_errors_total
// is what the operator guide says to alert on; on the old code every
// abandoned request counted, so any user could raise that alert at will
// (and a busy site's impatient clients made it noise).
func TestClientGoneIsNoUpstreamError(t *testing.T) {
	f := catalogue(t)
	nova, arrived := hangingNova(t)
	g := newGate(t, f, nova.URL, nil)
	for _, c := range []struct {
		name, method, path, body, kind string
	}{
		{"pass-through", http.MethodGet, "/v2.1/servers/detail", "", "passthrough"},
		{"gated", http.MethodPost, "/v2.1/servers", serverBody(idGood), "gated"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			req, err := http.NewRequestWithContext(ctx, c.method, g.srv.URL+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			errc := make(chan error, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				errc <- err
			}()
			<-arrived // Nova has the request
			cancel()
			if err := <-errc; err == nil {
				t.Fatal("the request was answered")
			}
			waitMetric(t, g, "imagetrust_proxy_request_duration_seconds{kind="+c.kind+"}", 1)
			for _, svc := range UpstreamServices {
				if n := metricValue(t, g, "imagetrust_proxy_upstream_errors_total{service="+svc+"}"); n != 0 {
					t.Errorf("a client hanging up counted %v upstream errors of %s", n, svc)
				}
			}
		})
	}
}

// TestUpstreamErrorCounted: an upstream that cannot be reached still
// counts (the other side of TestClientGoneIsNoUpstreamError), under
// service="nova" alone.
func TestUpstreamErrorCounted(t *testing.T) {
	f := catalogue(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // nothing listens there now
	g := newGate(t, f, dead.URL, nil)
	resp, _ := do(t, http.MethodGet, g.srv.URL+"/v2.1/servers/detail", "", "", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	resp, _ = do(t, http.MethodPost, g.srv.URL+"/v2.1/servers", "application/json", serverBody(idGood), nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("gated: status %d, want 502", resp.StatusCode)
	}
	for _, svc := range UpstreamServices {
		want := 0.0
		if svc == "nova" {
			want = 2
		}
		if n := metricValue(t, g, "imagetrust_proxy_upstream_errors_total{service="+svc+"}"); n != want {
			t.Errorf("upstream_errors_total{service=%s} = %v, want %v", svc, n, want)
		}
	}
}

// downLookup is a Glance that cannot be asked.
type downLookup struct{ err error } // nil: Glance's connection refused

func (d downLookup) error() error {
	if d.err != nil {
		return d.err
	}
	return errors.New("glance: connection refused")
}

func (d downLookup) GetImage(context.Context, string) (*Image, error) {
	return nil, d.error()
}

func (d downLookup) ListTag(context.Context, string, string) ([]*Image, error) {
	return nil, d.error()
}

// TestUpstreamErrorsByService: imagetrust_proxy_upstream_errors_total
// says which upstream failed: Glance (the gate's image lookup), Keystone
// (a token's validation), Cinder (a volume's image), each under its own
// service label, every label at 0 from the start. Before, one unlabelled
// counter said only that something upstream failed.
func TestUpstreamErrorsByService(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	tok := func(v string) map[string]string { return map[string]string{"X-Auth-Token": v} }
	volume := `{"server":{"name":"vm","flavorRef":"1","networks":"none","block_device_mapping_v2":[{"boot_index":0,"source_type":"volume","destination_type":"volume","uuid":"b0000000-0000-4000-8000-000000000001"}]}}`
	for _, tc := range []struct {
		service string
		lookup  Lookup
		token   string
		body    string
		status  int
	}{
		{"keystone", nil, "down", serverBody(idGood), http.StatusServiceUnavailable},
		{"cinder", nil, "good-" + userProject, volume, http.StatusBadGateway},
		{"glance", downLookup{}, "good-" + userProject, serverBody(idGood), http.StatusBadGateway},
		// the lookup failed because the proxy's own token could not be
		// renewed: Keystone's fault, not Glance's
		{"keystone", downLookup{err: fmt.Errorf("glance: image x: Unable to re-authenticate: %w", ErrServiceLogin)}, "good-" + userProject, serverBody(idGood), http.StatusBadGateway},
	} {
		t.Run("ok "+tc.service+" "+tc.token, func(t *testing.T) {
			g := newGate(t, f, nova.srv.URL, func(o *Options) {
				o.Identity = hostileIdentity{}
				o.Volumes = hostileVolumes{}
				if tc.lookup != nil {
					o.Lookup = tc.lookup
				}
			})
			before := seriesOf(t, g.reg)
			for _, svc := range UpstreamServices {
				if v, ok := before["imagetrust_proxy_upstream_errors_total{service="+svc+"}"]; !ok || v != 0 {
					t.Errorf("at start upstream_errors_total{service=%s} = %v (exported %v), want 0", svc, v, ok)
				}
			}
			resp, body := do(t, http.MethodPost, g.srv.URL+"/v2.1/servers", "application/json", tc.body, tok(tc.token))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			for _, svc := range UpstreamServices {
				want := 0.0
				if svc == tc.service {
					want = 1
				}
				if n := metricValue(t, g, "imagetrust_proxy_upstream_errors_total{service="+svc+"}"); n != want {
					t.Errorf("upstream_errors_total{service=%s} = %v, want %v", svc, n, want)
				}
			}
			if after := seriesOf(t, g.reg); len(after) != len(before) {
				t.Errorf("%d series after, %d before", len(after), len(before))
			}
		})
	}
}

// hostileIdentity accepts tokens "good-…" (as the project the token
// names), cannot be asked for "down", and refuses every other token.
type hostileIdentity struct{}

func (hostileIdentity) Validate(_ context.Context, token string) (*Caller, error) {
	switch {
	case strings.HasPrefix(token, "good-"):
		return &Caller{UserID: "u-" + token, ProjectID: strings.TrimPrefix(token, "good-"), ExpiresAt: time.Now().Add(time.Hour)}, nil
	case token == "down":
		return nil, errors.New("keystone: connection refused")
	}
	return nil, ErrInvalidToken
}

// hostileVolumes answers by the volume id's first character.
type hostileVolumes struct{}

func (hostileVolumes) VolumeImage(_ context.Context, _, id string) (string, error) {
	switch id[0] % 5 {
	case 0:
		return "", ErrNotFound
	case 1:
		return "", nil
	case 2:
		return idGood, nil
	case 3:
		return "", errors.New("cinder: 500 " + id)
	}
	return id, nil
}

func (v hostileVolumes) SnapshotImage(ctx context.Context, token, id string) (string, error) {
	return v.VolumeImage(ctx, token, id)
}

// seriesOf lists every series of the imagetrust_ families of reg, as
// name{label=value,...}, with their values.
func seriesOf(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, fam := range fams {
		if !strings.HasPrefix(fam.GetName(), "imagetrust_") {
			continue
		}
		for _, m := range fam.GetMetric() {
			var l []string
			for _, lp := range m.GetLabel() {
				l = append(l, lp.GetName()+"="+lp.GetValue())
			}
			out[fam.GetName()+"{"+strings.Join(l, ",")+"}"] = sampleValue(m)
		}
	}
	return out
}

// TestMetricsBoundedUnderHostileInput: whatever a user sends (random
// methods, paths, image references, tags, tokens, volume ids, content
// types and bodies), the proxy makes no metric series beyond those it
// exports at start, and its lookup and token caches stay within
// CacheSize. A label value taken from a request would let any user grow
// the scrape, and the proxy's memory, without bound.
func TestMetricsBoundedUnderHostileInput(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	const cacheSize = 32
	g := newGate(t, f, nova.srv.URL, func(o *Options) {
		o.Identity = hostileIdentity{}
		o.Volumes = hostileVolumes{}
		o.CacheSize = cacheSize
	})
	before := seriesOf(t, g.reg)
	if len(before) == 0 {
		t.Fatal("no series at start")
	}

	rng := rand.New(rand.NewPCG(14, 2026))
	word := func(alphabet string, n int) string {
		b := make([]byte, 1+rng.IntN(n))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	const lower = "abcdefghijklmnopqrstuvwxyz0123456789-_."
	uuid := func() string {
		const hex = "0123456789abcdef"
		b := []byte("xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx")
		for i := range b {
			if b[i] == 'x' {
				b[i] = hex[rng.IntN(16)]
			}
		}
		return string(b)
	}
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	// mostly a well-formed boot, so that most requests reach a decision;
	// one dimension or more hostile in the rest
	usual := func() bool { return rng.IntN(10) < 7 }
	ref := func() string {
		return pick(uuid(), idGood, idRevoked, idBlack, idExpired, idQueued, idSnapshot, idTampered, idAlias, idUnknown,
			"atlas/el9", "atlas/"+word(lower, 20), word(lower, 12)+"/"+word(lower, 12), word(lower, 40),
			"http://glance/v2/images/"+uuid(), "{"+strings.ToUpper(uuid())+"}", "", "\u00e9\u202e"+word(lower, 8))
	}
	body := func() string {
		switch rng.IntN(8) {
		case 0:
			return `{"rebuild":{"imageRef":` + jsonString(ref()) + `}}`
		case 1:
			return `{"rescue":{"rescue_image_ref":` + jsonString(ref()) + `}}`
		case 2:
			return `{"server":{"name":"vm","flavorRef":"1","networks":"none","block_device_mapping_v2":[{"boot_index":0,"source_type":` +
				jsonString(pick("volume", "snapshot", "image", word(lower, 8))) + `,"destination_type":"volume","uuid":` + jsonString(pick(uuid(), ref())) + `}]}}`
		case 3:
			return word(lower+"{}[]\":,", 200)
		case 4:
			return `{"` + word(lower, 30) + `":{"imageRef":` + jsonString(ref()) + `}}`
		}
		return serverBody(ref())
	}
	path := func() string {
		if usual() {
			return pick("/v2.1/servers", "/v2.1/"+userProject+"/servers", "/v2.1/servers/"+uuid()+"/action")
		}
		switch rng.IntN(10) {
		case 0:
			return "/v2.1/" + word(lower, 32) + "/servers"
		case 1, 2:
			return "/v2.1/servers/" + pick(uuid(), word(lower, 20)) + "/action"
		case 3:
			return "/" + word(lower+"/%", 60)
		case 4:
			return "/v2.1/servers/../" + word(lower, 10)
		case 5:
			return "/v2.1/servers?_method=" + word("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 8)
		case 6:
			return "/v2.1//servers/"
		case 7:
			return "/" + word(lower, 4) + "/"
		}
		return "/v2.1/servers"
	}
	method := func() string {
		if usual() {
			return "POST"
		}
		return pick("GET", "POST", "POST", "POST", "post", "PoSt", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
			word("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 12))
	}
	seen := map[int]bool{}
	for i := 0; i < 1000; i++ {
		req, err := http.NewRequest(method(), g.srv.URL+path(), strings.NewReader(body()))
		if err != nil {
			continue // not a request a client can send
		}
		if ct := pick("application/json", "application/json", "application/json", "application/json", "text/plain", "application/json; charset=latin1", word(lower+"/;=", 30), ""); ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if tok := pick("good-"+word("0123456789abcdef", 32), "good-"+userProject, "good-"+userProject, "good-"+userProject, "down", word(lower, 40), ""); tok != "" {
			req.Header.Set("X-Auth-Token", tok)
		}
		if rng.IntN(20) == 0 {
			req.Header.Set("Content-Encoding", word(lower, 10))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		seen[resp.StatusCode] = true
	}
	after := seriesOf(t, g.reg)
	for s := range after {
		if _, ok := before[s]; !ok {
			t.Errorf("series made by a request: %s", s)
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d series at start, %d after hostile requests", len(before), len(after))
	}
	// the requests did go through the gate's many paths
	moved := 0
	for s, v := range after {
		if strings.HasPrefix(s, "imagetrust_proxy_decisions_total{") && v > 0 {
			moved++
		}
	}
	if moved < 15 || len(seen) < 5 {
		t.Errorf("the requests reached only %d decision series and %d statuses %v: the test no longer exercises the gate", moved, len(seen), seen)
	}
	if n := after["imagetrust_proxy_decisions_total{outcome=refused,reason=other}"] + after["imagetrust_proxy_decisions_total{outcome=error,reason=other}"]; n != 0 {
		t.Errorf("%v decisions counted as reason=other: a reason is missing from DecisionReasons", n)
	}
	if n := g.proxy.lookup.(*cachedLookup).cache.len(); n > cacheSize {
		t.Errorf("lookup cache holds %d entries, CacheSize is %d", n, cacheSize)
	}
	if n := g.proxy.identity.(*cachedIdentity).cache.len(); n > cacheSize {
		t.Errorf("token cache holds %d entries, CacheSize is %d", n, cacheSize)
	}
}

// TestDecisionReasonOutsideTheListIsOther: a reason no code path should
// give (a new Decider, a new refusal someone forgot to list) still makes
// no new series.
func TestDecisionReasonOutsideTheListIsOther(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	before := len(seriesOf(t, reg))
	m.decision("refused", "free text from somewhere")
	m.decision("allowed", "a-future-note") // panicked: "allowed" listed no other
	m.decision("maybe", "ok")
	m.observe("kind-"+strings.Repeat("x", 10), 1)
	after := seriesOf(t, reg)
	if len(after) != before {
		t.Fatalf("%d series, want %d", len(after), before)
	}
	if after["imagetrust_proxy_decisions_total{outcome=refused,reason=other}"] != 1 || after["imagetrust_proxy_decisions_total{outcome=error,reason=other}"] != 1 ||
		after["imagetrust_proxy_decisions_total{outcome=allowed,reason=other}"] != 1 {
		t.Fatalf("unlisted reasons not counted as other: %v", after)
	}
}

// TestMetricsLint: the proxy's metrics follow Prometheus's naming rules
// (promlint: _total on counters, base units, help text, no reserved
// suffixes on gauges).
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
