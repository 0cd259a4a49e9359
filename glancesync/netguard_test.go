package glancesync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestIndexForbiddenAddressesRefused: an index (unsigned: whoever serves it
// names the URLs) that names descriptors on link-local, metadata,
// unspecified or multicast addresses makes no connection there: each such
// entry is skipped with ErrAddressRefused, naming the check, without a
// retry, and the listing goes on (an entry's failure, not the listing's).
// 0.0.0.0 reaches the local host's listeners on Linux: the server, which
// every other entry reaches, counts no request for it. An index URL on such
// an address fails the listing, again without a request or a retry.
func TestIndexForbiddenAddressesRefused(t *testing.T) {
	var hits atomic.Int64
	var ix []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/index.json" {
			_, _ = w.Write(ix)
			return
		}
		_, _ = w.Write([]byte("doc " + r.URL.Path))
	}))
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	refused := map[string]string{
		"http://0.0.0.0:" + port + "/a.json":                 "unspecified",
		"http://[::]:" + port + "/b.json":                    "unspecified",
		"http://169.254.169.254/latest/meta-data/c.json":     "link-local",
		"http://[::ffff:169.254.169.254]/d.json":             "link-local",
		"http://[fe80::1]:" + port + "/e.json":               "link-local",
		"http://[fd00:ec2::254]/latest/f.json":               "a cloud metadata address",
		"http://224.0.0.1:" + port + "/g.json":               "multicast",
		"https://0.0.0.0:" + port + "/h.json":                "unspecified",
		"http://127.0.0.1:" + port + "/sig-elsewhere.json":   "", // its signature is refused
		"http://127.0.0.1:" + port + "/x.json":               "",
		"http://127.0.0.1:" + port + "/y.json?from=relative": "",
	}
	var doc Index
	doc.Version = IndexVersion
	for u := range refused {
		e := IndexBundle{Descriptor: u}
		if strings.Contains(u, "sig-elsewhere") {
			e.Signature = "http://169.254.169.254/sig.p7s"
		}
		doc.Bundles = append(doc.Bundles, e)
	}
	ix, _ = json.Marshal(doc)
	var logBuf bytes.Buffer
	f, err := NewFetcher(HTTPOptions{RequestTimeout: 5 * time.Second, DownloadTimeout: 5 * time.Second, Retries: 3,
		Logger: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	src := &IndexSource{URL: srv.URL + "/index.json", AllowedVOs: []string{"atlas"}, Fetcher: f}
	bundles, skipped, err := src.List(t.Context())
	if err != nil {
		t.Fatalf("listing: %v", err)
	}
	if len(bundles) != 2 {
		t.Errorf("%d bundles listed, want 2 (x.json, y.json)", len(bundles))
	}
	for u, class := range refused {
		if class == "" && !strings.Contains(u, "sig-elsewhere") {
			continue
		}
		err := skipped[u]
		if !errors.Is(err, ErrAddressRefused) {
			t.Errorf("%s: skipped with %v, want ErrAddressRefused", u, err)
			continue
		}
		if class == "" {
			class = "link-local"
		}
		if want := "is " + class + " (a source may not reach it)"; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it to say %q", u, err, want)
		}
	}
	// the index, x, y and their signatures, sig-elsewhere.json: 6
	if n := hits.Load(); n != 6 {
		t.Errorf("%d requests reached the server, want 6 (none for 0.0.0.0)", n)
	}
	if strings.Contains(logBuf.String(), "retrying") {
		t.Errorf("a refused address was retried:\n%s", logBuf.String())
	}

	hits.Store(0)
	logBuf.Reset()
	bad := &IndexSource{URL: "http://0.0.0.0:" + port + "/index.json", AllowedVOs: []string{"atlas"}, Fetcher: f}
	if _, _, err := bad.List(t.Context()); !errors.Is(err, ErrAddressRefused) || !strings.Contains(err.Error(), "refused: address 0.0.0.0 is unspecified") {
		t.Fatalf("index on 0.0.0.0: %v, want ErrAddressRefused", err)
	}
	if n := hits.Load(); n != 0 || strings.Contains(logBuf.String(), "retrying") {
		t.Fatalf("index on 0.0.0.0: %d requests reached the server; log:\n%s", n, logBuf.String())
	}
}

// TestPrivateAddressesNeedTheSourceOnThem: loopback and private addresses
// are reached only by a source whose own URL is on one (a loopback source
// reaching loopback and private, a private one private only), or with
// AllowPrivate. The address checked is the one dialled: "localhost", a
// name, is refused like 127.0.0.1 to a source on a public address, and a
// source named "localhost" is on loopback.
func TestPrivateAddressesNeedTheSourceOnThem(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("doc"))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	byName := "http://localhost:" + u.Port() + "/x.json"
	f := newTestFetcher(t)
	ctx := t.Context()
	for _, tc := range []struct {
		source       string
		allowPrivate bool
		ok           bool
	}{
		{"https://192.0.2.10/index.json", false, false},
		{"https://[2001:db8::1]/index.json", false, false},
		{"https://10.1.2.3/index.json", false, false}, // private does not reach loopback
		{"https://192.0.2.10/index.json", true, true},
		{"http://127.0.0.1:1/index.json", false, true},
		{"http://[::1]/index.json", false, true},
		{"http://localhost/index.json", false, true},
		{"", false, false}, // a directory source
		{"", true, true},
	} {
		g := f.forSource(tc.source, tc.allowPrivate)
		for _, target := range []string{srv.URL + "/x.json", byName} {
			b, err := g.GetSmall(ctx, target, MaxDescriptorSize)
			if tc.ok {
				if err != nil || string(b) != "doc" {
					t.Errorf("source %q (allow_private %v), GET %s: %q, %v", tc.source, tc.allowPrivate, target, b, err)
				}
				continue
			}
			if !errors.Is(err, ErrAddressRefused) || !strings.Contains(err.Error(), "is loopback (a source may reach it only when its own URL is on such an address, or with allow_private)") {
				t.Errorf("source %q, GET %s: %v, want refused as loopback", tc.source, target, err)
			}
		}
	}
	// a private source reaches private addresses (no server there: the
	// policy alone), a public one does not; neither reaches link-local
	priv := netip.MustParseAddr("10.9.9.9")
	for _, tc := range []struct {
		p    *addrPolicy
		a    netip.Addr
		want bool
	}{
		{&addrPolicy{sourceHost: "10.1.2.3"}, priv, true},
		{&addrPolicy{sourceHost: "fd00::2"}, priv, true},
		{&addrPolicy{sourceHost: "127.0.0.1"}, priv, true},
		{&addrPolicy{sourceHost: "192.0.2.10"}, priv, false},
		{&addrPolicy{sourceHost: "10.1.2.3"}, netip.MustParseAddr("169.254.169.254"), false},
		{&addrPolicy{sourceHost: "10.1.2.3", allowPrivate: true}, netip.MustParseAddr("fd00:ec2::254"), false},
		{&addrPolicy{sourceHost: "192.0.2.10"}, netip.MustParseAddr("192.0.2.99"), true},
	} {
		if err := tc.p.check(ctx, tc.a); (err == nil) != tc.want {
			t.Errorf("source %s (allow %v) to %s: %v, want allowed %v", tc.p.sourceHost, tc.p.allowPrivate, tc.a, err, tc.want)
		}
	}
}

// TestDirSourceImageOnLoopbackRefused: a directory source's descriptor
// (published by whoever writes the tree) naming an http uri on a loopback
// address is not downloaded unless the source allows private addresses.
func TestDirSourceImageOnLoopbackRefused(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("image"))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	for _, allow := range []bool{false, true} {
		d := &DirSource{Root: dir, AllowedVOs: []string{"atlas"}, Fetcher: newTestFetcher(t), AllowPrivate: allow}
		b := &Bundle{Source: dir, Location: filepath.Join(dir, "x.json"), opener: d}
		rc, _, err := b.OpenImage(context.Background(), srv.URL+"/x.img")
		if !allow {
			if !errors.Is(err, ErrAddressRefused) {
				t.Fatalf("image on 127.0.0.1 from a directory source: %v, want ErrAddressRefused", err)
			}
			if hits.Load() != 0 {
				t.Fatal("the image's server was reached")
			}
			continue
		}
		if err != nil {
			t.Fatalf("with AllowPrivate: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != "image" {
			t.Fatalf("with AllowPrivate: %q, %v", got, err)
		}
	}
}

// TestImageOnForbiddenAddressFails: against the real Glance, a descriptor
// whose uri names a forbidden address (0.0.0.0, which would reach the sync
// host's own listeners) fails that image, once: the refusal is not
// retried by the HTTP client nor attempted again in the pass, no request
// reaches the server, and the other image of the source is mirrored.
func TestImageOnForbiddenAddressFails(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("image"))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	dir := filepath.Join(t.TempDir(), "atlas")
	bad := w.publish(dir, spec{vo: "atlas", tag: "meta", image: []byte("image"), uri: "http://0.0.0.0:" + u.Port() + "/x.img"})
	good := w.publish(dir, spec{vo: "atlas", tag: "fine"})
	var logBuf bytes.Buffer
	var mu sync.Mutex
	f, err := NewFetcher(HTTPOptions{RequestTimeout: 5 * time.Second, DownloadTimeout: 5 * time.Second, Retries: 3,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logBuf}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	o := e.options(t, w, nil)
	o.Sources = []Source{&DirSource{Root: dir, AllowedVOs: []string{"atlas"}, Fetcher: f, AllowPrivate: true}}
	o.Sync.Retire = "keep"
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []Outcome
	for _, oc := range r.Find(bad.id) {
		if oc.Action != ActionAlias {
			out = append(out, oc)
		}
	}
	if len(out) != 1 || out[0].Action != ActionFailed || !strings.Contains(out[0].Detail, "refused: address 0.0.0.0 is unspecified (a source may not reach it)") || r.Errors != 1 {
		t.Fatalf("%d errors, outcomes %+v; want one failure naming the refusal", r.Errors, out)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests reached the server through 0.0.0.0", n)
	}
	mu.Lock()
	logged := logBuf.String()
	mu.Unlock()
	if n := strings.Count(logged, "performing request"); n != 1 || strings.Contains(logged, "retrying") {
		t.Errorf("%d requests made for the refused image, want 1 and no retry:\n%s", n, logged)
	}
	if im := e.get(t, good.id); im.Status != StatusActive {
		t.Errorf("the other image: %s, want active", im.Status)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
