package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCanonicalUUID(t *testing.T) {
	const c = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	cases := []struct {
		name, in string
		ok       bool
	}{
		{"ok canonical", c, true},
		{"ok upper case", strings.ToUpper(c), true},
		{"ok no hyphens", strings.ReplaceAll(c, "-", ""), true},
		{"ok hyphens anywhere", "0f-1e2d3c4b5a49688776a5b4c3d2e1f-0", true},
		{"ok braces", "{" + c + "}", true},
		{"ok many braces", "{{" + c + "}", true},
		{"ok urn:uuid:", "urn:uuid:" + c, true},
		{"ok uuid: only", "uuid:" + c, true},
		{"ok urn inside", "0f1e2d3c-urn:4b5a-4968-8776-a5b4c3d2e1f0", true},
		{"ok mixed", "urn:uuid:{" + strings.ToUpper(strings.ReplaceAll(c, "-", "")) + "}", true},
		{"fail URN upper case", "URN:UUID:" + c, false},
		{"fail short", c[:35], false},
		{"fail long", c + "0", false},
		{"fail non-hex", strings.Replace(c, "f", "g", 1), false},
		{"fail whitespace", " " + c, false},
		{"fail underscore", strings.Replace(c, "-", "_", 1), false},
		{"fail url", "http://glance/v2/images/" + c, false},
		{"fail empty", "", false},
		{"fail unicode digit", strings.Replace(c, "0", "٠", 1), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := CanonicalUUID(tc.in)
			if ok != tc.ok || ok && got != c {
				t.Errorf("CanonicalUUID(%q) = %q, %v", tc.in, got, ok)
			}
		})
	}
}

func TestClassifyPath(t *testing.T) {
	cases := []struct {
		name, path      string
		kind            routeKind
		project, server string
		legacy, anom    bool
	}{
		{"ok create", "/v2.1/servers", routeCreate, "", "", false, false},
		{"ok create legacy", "/v2/servers", routeCreate, "", "", true, false},
		{"ok create project", "/v2.1/abc-123/servers", routeCreate, "abc-123", "", false, false},
		{"ok volumes boot", "/v2.1/os-volumes_boot", routeCreate, "", "", false, false},
		{"ok unversioned create", "/servers", routeCreate, "", "", false, false},
		{"ok action", "/v2.1/servers/x/action", routeAction, "", "x", false, false},
		{"ok action project", "/v2/p/os-volumes_boot/x/action", routeAction, "p", "x", true, false},
		{"ok escaped", "/v2.1/serv%65rs", routeCreate, "", "", false, false},
		{"ok escaped slash", "/v2.1/servers%2Fx%2Faction", routeAction, "", "x", false, false},
		{"ok json suffix", "/v2.1/servers/x/action.json", routeAction, "", "x", false, false},
		{"ok case", "/V2.1/Servers", routeCreate, "", "", false, false},
		{"ok other", "/v2.1/servers/x/metadata", routeOther, "", "", false, false},
		{"ok flavors", "/v2.1/flavors", routeOther, "", "", false, false},
		{"ok root", "/", routeVersion, "", "", false, false},
		{"ok version", "/v2.1", routeVersion, "", "", false, false},
		{"ok version slash", "/v2/", routeVersion, "", "", true, false},
		{"fail double slash", "/v2.1//servers", routeCreate, "", "", false, true},
		{"fail dot", "/v2.1/./servers", routeCreate, ".", "", false, true},
		{"fail trailing slash", "/v2.1/servers/", routeCreate, "", "", false, true},
		{"fail bad escape", "/v2.1/serv%zzers", routeOther, "", "", false, true},
		{"fail control", "/v2.1/servers%00", routeOther, "", "", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, anom := classifyPath(tc.path)
			if r.kind != tc.kind || r.project != tc.project || r.server != tc.server || r.legacyV2 != tc.legacy || anom != tc.anom {
				t.Errorf("classifyPath(%q) = %+v anomalous=%v", tc.path, r, anom)
			}
		})
	}
}

func TestRequestMicroversion(t *testing.T) {
	cases := []struct {
		name   string
		std    []string
		legacy []string
		v2     bool
		want   microversion
		ok     bool
	}{
		{"ok none", nil, nil, false, microversion{2, 1}, true},
		{"ok standard", []string{"compute 2.57"}, nil, false, microversion{2, 57}, true},
		{"ok last compute wins", []string{"compute 2.10, volume 3.5", "compute 2.60"}, nil, false, microversion{2, 60}, true},
		{"ok standard before legacy", []string{"compute 2.3"}, []string{"2.90"}, false, microversion{2, 3}, true},
		{"ok legacy", nil, []string{"2.40, 2.58"}, false, microversion{2, 58}, true},
		{"ok latest", []string{"COMPUTE latest"}, nil, false, microversion{2, 1 << 30}, true},
		{"ok v2 ignores headers", []string{"compute 2.90"}, nil, true, microversion{2, 1}, true},
		{"fail garbage", []string{"compute 2.x"}, nil, false, microversion{}, false},
		{"fail leading zero", []string{"compute 2.057"}, nil, false, microversion{}, false},
		// Python's whitespace on eventlet's Latin-1 text: no-break space
		// (0xa0) and NEL (0x85) separate and are stripped, as nova-api
		// reads them (TestMicroversionMatchesNova)
		{"ok no-break space separates", []string{"compute\xa02.57"}, nil, false, microversion{2, 57}, true},
		{"ok NEL separates", []string{"compute\x852.57"}, nil, false, microversion{2, 57}, true},
		{"ok no-break space stripped", []string{"\xa0compute 2.57\xa0"}, nil, false, microversion{2, 57}, true},
		{"ok no-break space in a later item", []string{"compute 2.57, foo\xa0bar"}, nil, false, microversion{2, 57}, true},
		{"ok legacy no-break space stripped", nil, []string{"2.58\xa0"}, false, microversion{2, 58}, true},
		{"ok repeated headers joined", []string{"compute 2.3", "volume 3.1"}, nil, false, microversion{2, 3}, true},
		// the last compute item is Nova's, even one it refuses
		{"fail last compute item three words", []string{"compute 2.60, compute 2.57 x"}, nil, false, microversion{}, false},
		{"fail legacy last item empty", nil, []string{"2.58,"}, false, microversion{}, false},
		{"fail latest in capitals", []string{"compute LATEST"}, nil, false, microversion{}, false},
		{"fail signed minor", []string{"compute 2.-0"}, nil, false, microversion{}, false},
		{"fail plus minor", []string{"compute 2.+5"}, nil, false, microversion{}, false},
		{"fail huge", []string{"compute 2.99999999999999999999"}, nil, false, microversion{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.std {
				h.Add("OpenStack-API-Version", v)
			}
			for _, v := range tc.legacy {
				h.Add("X-OpenStack-Nova-API-Version", v)
			}
			got, ok := requestMicroversion(h, tc.v2)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %v %v", got, ok)
			}
		})
	}
}

// slowGlance counts calls and blocks each until released.
type slowGlance struct {
	inner   Lookup
	calls   atomic.Int32
	release chan struct{}
}

func (s *slowGlance) GetImage(ctx context.Context, id string) (*Image, error) {
	s.calls.Add(1)
	<-s.release
	return s.inner.GetImage(ctx, id)
}

func (s *slowGlance) ListTag(ctx context.Context, vo, tag string) ([]*Image, error) {
	s.calls.Add(1)
	<-s.release
	return s.inner.ListTag(ctx, vo, tag)
}

func TestCachedLookup(t *testing.T) {
	f := catalogue(t)
	now := time.Now()
	clock := func() time.Time { return now }
	t.Run("ok ttl", func(t *testing.T) {
		g := newMemGlance()
		img, _ := f.glance.GetImage(t.Context(), idGood)
		g.put(img)
		c := newCachedLookup(g, 30*time.Second, 10, clock, nil)
		for range 3 {
			if _, err := c.GetImage(t.Context(), idGood); err != nil {
				t.Fatal(err)
			}
			if _, err := c.GetImage(t.Context(), idUnknown); !errors.Is(err, ErrNotFound) {
				t.Fatalf("absent image: %v", err)
			}
		}
		if g.calls != 2 {
			t.Errorf("%d Glance calls, want 2", g.calls)
		}
		now = now.Add(31 * time.Second)
		_, _ = c.GetImage(t.Context(), idGood)
		if g.calls != 3 {
			t.Errorf("%d Glance calls after the TTL, want 3", g.calls)
		}
	})
	t.Run("ok ttl from the call's start", func(t *testing.T) {
		// a Glance call that takes 20 s of a 30 s TTL: its answer may show
		// Glance as it was when the call began, so it is served 10 s more
		var mu sync.Mutex
		at := now
		clk := func() time.Time { mu.Lock(); defer mu.Unlock(); return at }
		g := &clockGlance{inner: f.glance, during: func() { mu.Lock(); at = at.Add(20 * time.Second); mu.Unlock() }}
		c := newCachedLookup(g, 30*time.Second, 10, clk, nil)
		_, _ = c.GetImage(t.Context(), idGood)
		mu.Lock()
		at = at.Add(11 * time.Second)
		mu.Unlock()
		_, _ = c.GetImage(t.Context(), idGood)
		if g.calls != 2 {
			t.Errorf("%d Glance calls 31 s after the first call began, want 2", g.calls)
		}
	})
	t.Run("ok errors not cached", func(t *testing.T) {
		g := newMemGlance()
		g.fail = errors.New("glance down")
		c := newCachedLookup(g, 30*time.Second, 10, clock, nil)
		_, err1 := c.GetImage(t.Context(), idGood)
		_, err2 := c.GetImage(t.Context(), idGood)
		if err1 == nil || err2 == nil || g.calls != 2 {
			t.Errorf("errors %v %v, %d calls", err1, err2, g.calls)
		}
	})
	t.Run("ok bounded", func(t *testing.T) {
		c := newCachedLookup(f.glance, time.Minute, 3, clock, nil)
		for _, id := range []string{idGood, idNewer, idRevoked, idBlack, idExpired} {
			_, _ = c.GetImage(t.Context(), id)
		}
		if n := c.cache.len(); n != 3 {
			t.Errorf("cache holds %d entries, want 3", n)
		}
	})
	t.Run("ok singleflight", func(t *testing.T) {
		s := &slowGlance{inner: f.glance, release: make(chan struct{})}
		c := newCachedLookup(s, time.Minute, 10, clock, nil)
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.ListTag(context.Background(), "atlas", "el9"); err != nil {
					t.Error(err)
				}
			}()
		}
		for s.calls.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // let the others join the flight (a late one would hit the cache)
		close(s.release)
		wg.Wait()
		if n := s.calls.Load(); n != 1 {
			t.Errorf("%d Glance calls for 50 concurrent lookups, want 1", n)
		}
	})
}

func TestMedianCI(t *testing.T) {
	eleven := []float64{11, 1, 10, 2, 9, 3, 8, 4, 7, 5, 6}
	for _, tc := range []struct {
		name           string
		q              []float64
		lo, hi, covers float64
		ok             bool
	}{
		{"ok 11 rounds: x(2) and x(10), 1-2*12/2048", eleven, 2, 10, 1 - 24.0/2048, true},
		{"ok 6 rounds: min and max, 1-2/64", []float64{3, 1, 2, 6, 5, 4}, 1, 6, 1 - 2.0/64, true},
		{"ok 7 rounds: min and max, 1-2/128", []float64{3, 1, 2, 6, 5, 4, 7}, 1, 7, 1 - 2.0/128, true},
		{"fail 5 rounds: too few for 95%", []float64{1, 2, 3, 4, 5}, 0, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi, c, ok := medianCI(tc.q)
			if ok != tc.ok || lo != tc.lo || hi != tc.hi || math.Abs(c-tc.covers) > 1e-12 {
				t.Fatalf("medianCI = %v, %v, %v, %v; want %v, %v, %v, %v", lo, hi, c, ok, tc.lo, tc.hi, tc.covers, tc.ok)
			}
		})
	}
}

func TestMethodOverride(t *testing.T) {
	// routes acts only when the raw query holds the literal _method and the
	// decoded query has a _method key
	for q, want := range map[string]bool{
		"": false, "_method": true, "x=1&_method=POST": true, "_method=PUT;x=1": true,
		"%5Fmethod=POST&x=_method": true, "%5fMeThOd=POST&y=_method": true, "_METHOD=post&_method": true,
		// ReverseProxy re-encodes a query with ';' or a bad escape: %5F
		// becomes the literal
		"%5Fmethod=POST&x;": true, "%5Fmethod=POST&x=%zz": true, "%5Fmethod=POST": true,
		"_meth%6Fd=POST&x;": true, "_m%65thod=POST&x=%zz": true, "a=%20&b=1": false,
		"_METHOD=post": false, "a=_method": false, "name=Payment_Method": false, "a=%5Fx": false,
		"name=my_method": false, "method=POST": false, "__method=1": false, "limit=10&marker=abc": false,
	} {
		if got := methodOverride(q); got != want {
			t.Errorf("methodOverride(%q) = %v, want %v", q, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { methodOverride("limit=10&Marker=ABC&sort_key=created&name=Payment_Method") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestCollapsedVersion(t *testing.T) {
	for path, want := range map[string]bool{
		"": true, "/": true, "//": true, "///": true, "/v2.1": true, "//v2.1": true, "/v2.1//": true, "//V2//": true,
		"/v2.1/servers": false, "//v2.1//servers": false, "/./v2.1": false, "/v2.1.json": false, "/v3": false, "/x/v2.1": false,
	} {
		if got := collapsedVersion(path); got != want {
			t.Errorf("collapsedVersion(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestHTTPErrorLog(t *testing.T) {
	var buf bytes.Buffer
	l := httpErrorLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	l.Printf("http: TLS handshake error from %s: %v", "192.0.2.1:5678", "EOF")
	l.Printf("http: panic serving %v: %v", "192.0.2.1:5678", "boom\nsecond line")
	l.Printf("http: Accept error: %v; retrying in %v", "too many files", "5ms")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec struct{ Level, Msg, Detail string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if rec.Msg != "http server" {
			t.Errorf("message %q is not constant", rec.Msg)
		}
		got = append(got, rec.Level+" "+rec.Detail)
	}
	want := []string{"INFO http: TLS handshake error from 192.0.2.1:5678: EOF", "ERROR http: panic serving 192.0.2.1:5678: boom\nsecond line",
		"WARN http: Accept error: too many files; retrying in 5ms"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("records %q, want %q", got, want)
	}
}

// clockGlance runs during (moving a test clock) inside every call.
type clockGlance struct {
	inner  Lookup
	during func()
	calls  int
}

func (g *clockGlance) GetImage(ctx context.Context, id string) (*Image, error) {
	g.calls++
	g.during()
	return g.inner.GetImage(ctx, id)
}

func (g *clockGlance) ListTag(ctx context.Context, vo, tag string) ([]*Image, error) {
	g.calls++
	g.during()
	return g.inner.ListTag(ctx, vo, tag)
}
