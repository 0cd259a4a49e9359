package proxy

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/imagetrust/imagetrust/validator"
)

// heldGlance answers from inner, copying the image as the call begins
// (what Glance read then); its first call waits for release.
type heldGlance struct {
	inner   *memGlance
	calls   atomic.Int32
	started chan struct{}
	release chan struct{}
}

func (g *heldGlance) GetImage(ctx context.Context, id string) (*Image, error) {
	img, err := g.inner.GetImage(ctx, id)
	if err == nil {
		c := *img
		c.Properties = maps.Clone(img.Properties)
		img = &c
	}
	if g.calls.Add(1) == 1 {
		close(g.started)
		<-g.release
	}
	return img, err
}

func (g *heldGlance) ListTag(ctx context.Context, vo, tag string) ([]*Image, error) {
	return g.inner.ListTag(ctx, vo, tag)
}

// TestLookupJoinStale: a boot that joins a Glance lookup already under way
// (concurrent misses share one call) takes its answer only when the call
// began within proxy.cache_ttl before the boot came: the guide's "the
// proxy sees a change within proxy.cache_ttl" holds when a Glance call
// takes longer than the TTL (a slow Glance, a cache_ttl below
// lookup_timeout, or the cache disabled). Before, the boot of an image
// revoked after a slow call began was allowed with the call's answer,
// however long before the boot that call began.
func TestLookupJoinStale(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration // proxy.cache_ttl (negative: no cache)
		want int
		// calls is how many Glance calls the first boot and the joiners
		// make in all: those that find the call stale share one more (0:
		// not counted; with the cache disabled each may make one)
		calls int32
	}{
		{"ok joined within the TTL of the call's start", 30 * time.Second, http.StatusAccepted, 1},
		{"fail revoked during a slow lookup begun more than the TTL before the boot", 5 * time.Second, http.StatusForbidden, 2},
		{"fail revoked during a slow lookup, the cache disabled", -1, http.StatusForbidden, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := catalogue(t)
			g := &heldGlance{inner: f.glance, started: make(chan struct{}), release: make(chan struct{})}
			nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusAccepted)
			}))
			defer nova.Close()
			var mu sync.Mutex
			at := time.Now()
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return at }
			u, _ := url.Parse(nova.URL)
			m, err := NewMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(Options{Upstream: u, Lookup: g, Decider: f.trust, MirrorProject: mirrorProject,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock, CacheTTL: tc.ttl, Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			boot := func() int {
				req := httptest.NewRequest(http.MethodPost, "/v2.1/servers", strings.NewReader(serverBody(idGood)))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				p.ServeHTTP(w, req)
				return w.Code
			}
			first := make(chan int, 1)
			go func() { first <- boot() }()
			<-g.started
			// 10 s into the call, the CRL job flags the image, and a boot comes
			mu.Lock()
			at = at.Add(10 * time.Second)
			mu.Unlock()
			img, _ := f.glance.GetImage(t.Context(), idGood)
			rev := *img
			rev.Properties = maps.Clone(img.Properties)
			rev.Properties[validator.PropGlobalValidity] = validator.GlobalRevoked
			f.glance.put(&rev)
			const joiners = 4
			second := make(chan int, joiners)
			for range joiners {
				go func() { second <- boot() }()
			}
			// it joins the call under way: its miss counted, then a moment
			misses := func() float64 {
				var d dto.Metric
				_ = m.cache.WithLabelValues("miss").Write(&d)
				return d.GetCounter().GetValue()
			}
			for misses() < 1+joiners {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			close(g.release)
			if got := <-first; got != http.StatusAccepted {
				t.Errorf("the boot that began the call: %d, want 202", got)
			}
			for range joiners {
				if got := <-second; got != tc.want {
					t.Errorf("a boot 10 s later (TTL %s), after the revocation: %d, want %d (%d Glance calls)", tc.ttl, got, tc.want, g.calls.Load())
				}
			}
			if got := g.calls.Load(); tc.calls > 0 && got != tc.calls {
				t.Errorf("%d Glance calls, want %d (the boots that found the shared call stale ask again in one)", got, tc.calls)
			}
		})
	}
}
