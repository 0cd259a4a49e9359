package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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
			if n := metricValue(t, g, "imagetrust_proxy_upstream_errors_total{}"); n != 0 {
				t.Errorf("a client hanging up counted %v upstream errors", n)
			}
		})
	}
}

// TestUpstreamErrorCounted: an upstream that cannot be reached still
// counts (the other side of TestClientGoneIsNoUpstreamError).
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
	if n := metricValue(t, g, "imagetrust_proxy_upstream_errors_total{}"); n != 2 {
		t.Errorf("upstream_errors_total = %v, want 2", n)
	}
}
