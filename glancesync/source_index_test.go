package glancesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// docServer serves an index and its documents from memory, with the
// validators of its mode and answering conditional requests as HTTP says.
// It counts the requests (and per path), the conditional ones and the
// 304s, the bytes of the bodies it writes, the connections opened, and
// the most requests in flight at once.
type docServer struct {
	srv *httptest.Server
	// validators a 200 carries: "" none, "etag" a strong ETag (the
	// version's number), "lastmod" a Last-Modified (2026-01-01 plus the
	// version in hours), "both"
	validators string

	mu      sync.Mutex
	docs    map[string]*servedDoc // by path; absent: 404
	byPath  map[string]int
	version int // of the last document set

	requests, conditional, notModified atomic.Int64
	bodyBytes, conns                   atomic.Int64
	inFlight, maxInFlight              atomic.Int64
	// hold, when set, runs inside each request after it is counted in
	// flight (delays, barriers, blocking until the request is cancelled)
	hold func(r *http.Request)
	// answer, when set, may answer a request instead of the server (and
	// returns true when it did)
	answer func(w http.ResponseWriter, r *http.Request) bool
}

type servedDoc struct {
	body    []byte
	version int
}

func (d *servedDoc) etag() string { return fmt.Sprintf(`"v%d"`, d.version) }

func (d *servedDoc) modified() time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(d.version) * time.Hour)
}

func newDocServer(t testing.TB) *docServer {
	t.Helper()
	s := &docServer{docs: map[string]*servedDoc{}, byPath: map[string]int{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *docServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	if s.hold != nil {
		s.hold(r)
	}
	inm, ims := r.Header.Get("If-None-Match"), r.Header.Get("If-Modified-Since")
	if inm != "" || ims != "" {
		s.conditional.Add(1)
	}
	s.mu.Lock()
	s.byPath[r.URL.Path]++
	d := s.docs[r.URL.Path]
	s.mu.Unlock()
	if s.answer != nil && s.answer(w, r) {
		return
	}
	if d == nil {
		http.NotFound(w, r)
		return
	}
	if s.validators == "etag" || s.validators == "both" {
		w.Header().Set("ETag", d.etag())
	}
	if s.validators == "lastmod" || s.validators == "both" {
		w.Header().Set("Last-Modified", d.modified().Format(http.TimeFormat))
	}
	// RFC 9110 13.2.2: If-None-Match first; If-Modified-Since without it
	unchanged := false
	if inm != "" {
		unchanged = w.Header().Get("ETag") != "" && inm == d.etag()
	} else if t, err := http.ParseTime(ims); err == nil && w.Header().Get("Last-Modified") != "" {
		unchanged = !d.modified().After(t)
	}
	if unchanged {
		s.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	n2, _ := w.Write(d.body)
	s.bodyBytes.Add(int64(n2))
}

// set serves body at path, as a new version.
func (s *docServer) set(path string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	s.docs[path] = &servedDoc{body: body, version: s.version}
}

// reset sets the counters to zero.
func (s *docServer) reset() {
	s.mu.Lock()
	clear(s.byPath)
	s.mu.Unlock()
	for _, c := range []*atomic.Int64{&s.requests, &s.conditional, &s.notModified, &s.bodyBytes, &s.conns, &s.maxInFlight} {
		c.Store(0)
	}
}

func (s *docServer) remove(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.docs, path)
}

// setIndex serves entries as /index.json.
func (s *docServer) setIndex(t testing.TB, entries []IndexBundle) {
	t.Helper()
	b, err := json.Marshal(Index{Version: IndexVersion, Bundles: entries})
	if err != nil {
		t.Fatal(err)
	}
	s.set("/index.json", b)
}

// bundles serves an index of n bundles d/NNN.json (with their signatures
// beside them) of about size bytes each, and returns the bytes the index,
// descriptors and signatures make together.
func (s *docServer) bundles(t testing.TB, n, size int) int64 {
	t.Helper()
	var entries []IndexBundle
	var total int64
	for i := range n {
		d := fmt.Sprintf("d/%03d.json", i)
		entries = append(entries, IndexBundle{Descriptor: d})
		desc, sig := docBody("descriptor", i, size), docBody("signature", i, size)
		s.set("/"+d, desc)
		s.set("/"+d+".p7s", sig)
		total += int64(len(desc) + len(sig))
	}
	s.setIndex(t, entries)
	s.mu.Lock()
	total += int64(len(s.docs["/index.json"].body))
	s.mu.Unlock()
	return total
}

// docBody is a document of at least size bytes naming what and i.
func docBody(what string, i, size int) []byte {
	b := []byte(fmt.Sprintf("%s %d;", what, i))
	for len(b) < size {
		b = append(b, '.')
	}
	return b
}

func (s *docServer) index() string { return s.srv.URL + "/index.json" }

// listing is a List result in comparable form (errors as text).
type listing struct {
	Bundles []string          // location, descriptor, signature
	Skipped map[string]string // location: error
	Err     string
}

func asListing(bs []*Bundle, skipped map[string]error, err error) listing {
	l := listing{Skipped: map[string]string{}}
	for _, b := range bs {
		l.Bundles = append(l.Bundles, b.Source+" "+b.Location+" "+string(b.Descriptor)+" "+string(b.Signature))
	}
	for k, e := range skipped {
		l.Skipped[k] = e.Error()
	}
	if err != nil {
		l.Err = err.Error()
	}
	return l
}

// referenceList is IndexSource.List as it was before the parallel fetch:
// every descriptor and signature fetched in index order, one at a time,
// without conditional requests. It is the reference the parallel listing
// must equal, and the baseline of BenchmarkIndexList.
func referenceList(ctx context.Context, s *IndexSource) ([]*Bundle, map[string]error, error) {
	base, err := url.Parse(s.URL)
	if err != nil {
		return nil, nil, err
	}
	b, err := s.Fetcher.GetSmall(ctx, s.URL, MaxIndexSize)
	if err != nil {
		return nil, nil, fmt.Errorf("source %s: %w", s.URL, err)
	}
	ix, err := ParseIndex(b)
	if err != nil {
		return nil, nil, fmt.Errorf("source %s: %w", s.URL, err)
	}
	lim := s.Limits.orDefaults()
	if len(ix.Bundles) > lim.Bundles {
		return nil, nil, fmt.Errorf("source %s: %w: the index lists %d bundles, the limit is %d", s.URL, ErrListingTooLarge, len(ix.Bundles), lim.Bundles)
	}
	read := int64(len(b))
	if read > lim.Bytes {
		return nil, nil, fmt.Errorf("source %s: %w: the index alone is %d bytes, the limit is %d", s.URL, ErrListingTooLarge, read, lim.Bytes)
	}
	type doc struct {
		b   []byte
		err error
	}
	docs := map[string]doc{}
	get := func(u string, limit int64) ([]byte, error) {
		if d, ok := docs[u]; ok {
			return d.b, d.err
		}
		b, err := s.Fetcher.GetSmall(ctx, u, limit)
		read += int64(len(b))
		docs[u] = doc{b, err}
		return b, err
	}
	var out []*Bundle
	skipped := map[string]error{}
	listed := map[string]bool{}
	for _, e := range ix.Bundles {
		du, err := resolveRef(base, e.Descriptor)
		if err != nil {
			skipped[maskedRef(e.Descriptor)] = err
			continue
		}
		sigRef := e.Signature
		if sigRef == "" {
			sigRef = e.Descriptor + ".p7s"
		}
		su, err := resolveRef(base, sigRef)
		if err != nil {
			skipped[maskedRef(e.Descriptor)] = err
			continue
		}
		if listed[du.String()+"\n"+su.String()] {
			continue
		}
		listed[du.String()+"\n"+su.String()] = true
		desc, err := get(du.String(), MaxDescriptorSize)
		if err == nil {
			var sig []byte
			sig, err = get(su.String(), MaxSignatureSize)
			if err != nil {
				err = fmt.Errorf("signature: %w", err)
			}
			if err == nil {
				out = append(out, &Bundle{Source: s.URL, Location: du.String(), Descriptor: desc, Signature: sig, VOs: s.AllowedVOs, opener: s})
			}
		}
		if read > lim.Bytes {
			return nil, nil, fmt.Errorf("source %s: %w: more than %d bytes of index, descriptors and signatures", s.URL, ErrListingTooLarge, lim.Bytes)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			skipped[du.String()] = err
		}
	}
	return out, skipped, nil
}

// messyIndex serves an index of n bundles with everything a listing must
// keep in order: descriptors and signatures missing (404), the same
// bundle named twice, a descriptor named with two signatures, one URL
// serving as a descriptor and as another entry's signature, an absolute
// URL, an explicit signature, and entries that do not resolve.
func messyIndex(t testing.TB, s *docServer, n int) {
	t.Helper()
	var entries []IndexBundle
	for i := range n {
		d := fmt.Sprintf("m/%03d.json", i)
		s.set("/"+d, docBody("descriptor", i, 50))
		s.set("/"+d+".p7s", docBody("signature", i, 50))
		e := IndexBundle{Descriptor: d}
		switch i % 10 {
		case 1:
			s.remove("/" + d) // descriptor missing
		case 2:
			s.remove("/" + d + ".p7s") // signature missing
		case 3:
			e.Descriptor = s.srv.URL + "/" + d // absolute
		case 4:
			e.Signature = "sig/" + fmt.Sprint(i) // explicit
			s.set("/sig/"+fmt.Sprint(i), docBody("explicit signature", i, 20))
		case 5:
			// the previous entry's descriptor as this one's signature
			e.Signature = fmt.Sprintf("m/%03d.json", i-1)
		}
		entries = append(entries, e)
		switch i % 7 {
		case 0:
			entries = append(entries, e) // named twice
		case 3:
			// the same descriptor with another (missing) signature
			entries = append(entries, IndexBundle{Descriptor: e.Descriptor, Signature: "nosig/" + fmt.Sprint(i)})
		case 5:
			entries = append(entries, IndexBundle{Descriptor: "http://u:p@127.0.0.1:1/x.json"}, IndexBundle{Descriptor: "ftp://host/x.json"})
		}
	}
	s.setIndex(t, entries)
}

// TestIndexListParallel: the descriptors and signatures of an index are
// fetched Parallel at a time, and the listing is the one the sequential
// fetch made (bundles in index order, the same skips and errors, each URL
// fetched once), whatever order the responses come in; no more requests
// than Parallel are ever in flight, and Parallel are.
func TestIndexListParallel(t *testing.T) {
	f := newTestFetcher(t)
	t.Run("ok same listing as one at a time, whatever the completion order", func(t *testing.T) {
		s := newDocServer(t)
		messyIndex(t, s, 60)
		ref := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f}
		want := asListing(referenceList(context.Background(), ref))
		if len(want.Bundles) < 30 || len(want.Skipped) < 10 || want.Err != "" {
			t.Fatalf("the reference listing is not the mix intended: %d bundles, %d skipped, %q", len(want.Bundles), len(want.Skipped), want.Err)
		}
		var seed atomic.Uint64
		s.hold = func(*http.Request) {
			// a random delay of up to 2 ms, so responses come back
			// out of order
			r := rand.New(rand.NewPCG(seed.Add(1), 7))
			time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond)
		}
		for _, par := range []int{1, 2, 3, 8, 32} {
			for round := range 3 {
				s.reset()
				src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f, Parallel: par}
				got := asListing(src.List(context.Background()))
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("Parallel %d, round %d: listing differs from the sequential one:\n got %v\nwant %v", par, round, got, want)
				}
				s.mu.Lock()
				for p, n := range s.byPath {
					if n != 1 {
						t.Errorf("Parallel %d: %s requested %d times", par, p, n)
					}
				}
				s.mu.Unlock()
			}
		}
	})
	for _, par := range []int{1, 3, DefaultIndexParallel} {
		t.Run(fmt.Sprintf("ok at most %d requests at once, and %d", par, par), func(t *testing.T) {
			s := newDocServer(t)
			s.bundles(t, 40, 100)
			// the barrier below waits as long as the test may run (no
			// fixed cap that a loaded machine could outlast before par
			// requests have arrived): a fetcher without a short request
			// timeout, and the test's own deadline for all of it
			ctx, cancel := untilTestDeadline(t)
			defer cancel()
			f, err := NewFetcher(HTTPOptions{RequestTimeout: time.Hour, DownloadTimeout: time.Hour, Retries: 2})
			if err != nil {
				t.Fatal(err)
			}
			// the first par requests of documents wait for one another
			// (a barrier, so that par are in flight together), the
			// rest take a millisecond each, so that requests overlap
			var waiting atomic.Int64
			all := make(chan struct{})
			var once sync.Once
			s.hold = func(r *http.Request) {
				if r.URL.Path == "/index.json" {
					return
				}
				if n := waiting.Add(1); n <= int64(par) {
					if n == int64(par) {
						once.Do(func() { close(all) })
					}
					select {
					case <-all:
					case <-ctx.Done(): // fewer than par at once: List fails below
					}
					return
				}
				time.Sleep(time.Millisecond)
			}
			src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f, Parallel: par}
			bs, skipped, err := src.List(ctx)
			if err != nil || len(bs) != 40 || len(skipped) != 0 {
				t.Fatalf("listed %d bundles, skipped %v, err %v", len(bs), skipped, err)
			}
			if m := s.maxInFlight.Load(); m != int64(par) {
				t.Fatalf("at most %d requests in flight at once, want %d", m, par)
			}
		})
	}
}

// TestIndexListStops: a listing stops starting requests when its context
// ends (and returns ctx.Err() itself) or when it has read more than its
// byte limit (ErrListingTooLarge, as the sequential listing did); it then
// reads at most Parallel documents past the limit, those in flight.
func TestIndexListStops(t *testing.T) {
	f := newTestFetcher(t)
	t.Run("fail context cancelled mid-listing", func(t *testing.T) {
		s := newDocServer(t)
		s.bundles(t, 200, 100)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var docs atomic.Int64
		s.hold = func(r *http.Request) {
			if r.URL.Path == "/index.json" {
				return
			}
			if docs.Add(1) == 20 {
				cancel()
			}
			if docs.Load() >= 20 {
				<-r.Context().Done() // until the client gives up
			}
		}
		src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f}
		bs, skipped, err := src.List(ctx)
		if err != context.Canceled || bs != nil || skipped != nil {
			t.Fatalf("listed %d bundles, skipped %d, err %v; want context.Canceled alone", len(bs), len(skipped), err)
		}
		// the index, 19 answered, and the ones in flight when it ended
		if n := s.requests.Load(); n > 20+DefaultIndexParallel {
			t.Fatalf("%d requests, want at most %d", n, 20+DefaultIndexParallel)
		}
	})
	for _, par := range []int{1, 4, DefaultIndexParallel} {
		t.Run(fmt.Sprintf("fail more bytes than the limit, Parallel %d: at most %d documents read past it", par, par), func(t *testing.T) {
			s := newDocServer(t)
			const size = 10 << 10
			total := s.bundles(t, 100, size)
			limit := total / 4
			src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f, Parallel: par, Limits: ListingLimits{Bytes: limit}}
			_, _, err := src.List(context.Background())
			if !errors.Is(err, ErrListingTooLarge) {
				t.Fatalf("err = %v, want ErrListingTooLarge", err)
			}
			// each document is a few bytes over size
			if got, most := s.bodyBytes.Load(), limit+int64(par)*(size+32); got > most {
				t.Fatalf("read %d bytes, want at most %d (limit %d and %d documents)", got, most, limit, par)
			}
		})
	}
}
