package glancesync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestIndexListConditional: an index source remembers the documents of
// its last listing with their validators and asks for them again with
// If-None-Match / If-Modified-Since; a 304 that agrees with what is
// remembered reuses the remembered bytes, anything else is fetched whole
// or fails, never stale bytes in place of an error.
func TestIndexListConditional(t *testing.T) {
	const n = 20
	f := newTestFetcher(t)
	desc3 := fmt.Sprintf("/d/%03d.json", 3)
	// setup serves n bundles with the given validators and lists them
	// once (every document fetched whole) with a fresh source
	setup := func(t *testing.T, validators string) (*docServer, *IndexSource, listing) {
		t.Helper()
		s := newDocServer(t)
		s.validators = validators
		s.bundles(t, n, 200)
		src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f}
		first := asListing(src.List(context.Background()))
		if len(first.Bundles) != n || len(first.Skipped) != 0 || first.Err != "" {
			t.Fatalf("first listing: %d bundles, %v, %q", len(first.Bundles), first.Skipped, first.Err)
		}
		if c := s.conditional.Load(); c != 0 {
			t.Fatalf("first listing: %d conditional requests, nothing being remembered", c)
		}
		s.reset()
		return s, src, first
	}
	list := func(src *IndexSource) listing { return asListing(src.List(context.Background())) }
	// bundle returns the listed bundle of descriptor path p
	bundle := func(l listing, p string) string {
		for _, b := range l.Bundles {
			if strings.Contains(b, p+" ") {
				return b
			}
		}
		return ""
	}

	for _, v := range []string{"etag", "lastmod", "both"} {
		t.Run("ok nothing changed: no bodies the second time, validators "+v, func(t *testing.T) {
			s, src, first := setup(t, v)
			if got := list(src); !reflect.DeepEqual(got, first) {
				t.Fatalf("second listing differs:\n got %v\nwant %v", got, first)
			}
			all := int64(1 + 2*n)
			if r, c, nm, b := s.requests.Load(), s.conditional.Load(), s.notModified.Load(), s.bodyBytes.Load(); r != all || c != all || nm != all || b != 0 {
				t.Fatalf("%d requests, %d conditional, %d 304s, %d body bytes; want %d, %d, %d, 0", r, c, nm, b, all, all, all)
			}
		})
	}
	for _, v := range []string{"etag", "lastmod"} {
		t.Run("ok a changed document is fetched again, validators "+v, func(t *testing.T) {
			s, src, first := setup(t, v)
			s.set(desc3, []byte("descriptor 3, second version"))
			got := list(src)
			if b := bundle(got, desc3); !strings.Contains(b, "second version") {
				t.Fatalf("bundle %s: %q, want the second version", desc3, b)
			}
			if got.Bundles[3] = first.Bundles[3]; !reflect.DeepEqual(got, first) {
				t.Fatalf("the other bundles differ:\n got %v\nwant %v", got, first)
			}
			if b, nm := s.bodyBytes.Load(), s.notModified.Load(); b != int64(len("descriptor 3, second version")) || nm != 2*n {
				t.Fatalf("%d body bytes, %d 304s: want the one changed document, %d 304s", b, nm, 2*n)
			}
		})
	}
	t.Run("ok Last-Modified not a second before the answer's Date is not relied on", func(t *testing.T) {
		s := newDocServer(t)
		s.validators = "lastmod"
		s.bundles(t, n, 200)
		// Last-Modified in the future of the answer's Date: the
		// document could change again within the second it was served
		// and keep its date
		s.mu.Lock()
		for _, d := range s.docs {
			d.version = 24 * 365 * 100
		}
		s.mu.Unlock()
		src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f}
		first := list(src)
		s.reset()
		if got := list(src); !reflect.DeepEqual(got, first) || len(got.Bundles) != n {
			t.Fatalf("second listing differs:\n got %v\nwant %v", got, first)
		}
		if c, nm := s.conditional.Load(), s.notModified.Load(); c != 0 || nm != 0 {
			t.Fatalf("%d conditional requests, %d 304s; want none", c, nm)
		}
	})
	t.Run("fail a 304 to a request without validators", func(t *testing.T) {
		s := newDocServer(t)
		s.bundles(t, n, 200)
		s.answer = func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/index.json" {
				return false
			}
			w.WriteHeader(http.StatusNotModified)
			return true
		}
		src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f}
		got := list(src)
		if len(got.Bundles) != 0 || len(got.Skipped) != n || got.Err != "" {
			t.Fatalf("listed %d bundles, %d skipped, err %q; want every bundle skipped", len(got.Bundles), len(got.Skipped), got.Err)
		}
		for loc, e := range got.Skipped {
			if !strings.Contains(e, "304 Not Modified to a request without validators") {
				t.Fatalf("skipped[%s] = %s", loc, e)
			}
		}
		// the index too
		s.answer = func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusNotModified)
			return true
		}
		src = &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f}
		if _, _, err := src.List(context.Background()); err == nil || !strings.Contains(err.Error(), "without validators") {
			t.Fatalf("err = %v, want a 304 without validators refused", err)
		}
	})
	for _, tc := range []struct {
		name, validators, etag304 string
	}{
		{name: "ok a 304 with another ETag is not trusted: fetched whole", validators: "etag", etag304: "new"},
		{name: "ok a 304 with a strong ETag where only Last-Modified was remembered: fetched whole", validators: "lastmod", etag304: "new"},
		{name: "ok a 304 with another Last-Modified is not trusted: fetched whole", validators: "lastmod", etag304: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, src, _ := setup(t, tc.validators)
			s.set(desc3, []byte("descriptor 3, second version"))
			// the server says "not modified" to the conditional request,
			// but names the new version
			s.answer = func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != desc3 || (r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Modified-Since") == "") {
					return false
				}
				s.mu.Lock()
				d := s.docs[desc3]
				s.mu.Unlock()
				if tc.etag304 != "" {
					w.Header().Set("ETag", d.etag())
				} else {
					w.Header().Set("Last-Modified", d.modified().Format(http.TimeFormat))
				}
				w.WriteHeader(http.StatusNotModified)
				return true
			}
			got := list(src)
			if b := bundle(got, desc3); !strings.Contains(b, "second version") {
				t.Fatalf("bundle %s: %q, want the second version", desc3, b)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if c := s.byPath[desc3]; c != 2 {
				t.Fatalf("%s requested %d times, want 2 (the 304, then whole)", desc3, c)
			}
		})
	}
	t.Run("fail a document that cannot be fetched is not served from memory", func(t *testing.T) {
		s, src, _ := setup(t, "both")
		body := s.docs[desc3].body
		s.remove(desc3)
		got := list(src)
		if bundle(got, desc3) != "" || !strings.Contains(got.Skipped[s.srv.URL+desc3], "404") || got.Err != "" {
			t.Fatalf("listing %v, want %s skipped with its 404", got, desc3)
		}
		// forgotten: asked for whole once it is back
		s.set(desc3, body)
		s.reset()
		if got := list(src); len(got.Bundles) != n {
			t.Fatalf("third listing: %d bundles", len(got.Bundles))
		}
		// all but the forgotten descriptor and its signature (not asked
		// for in the listing where the descriptor failed)
		if c, want := s.conditional.Load(), int64(1+2*n-2); c != want {
			t.Fatalf("%d conditional requests, want %d", c, want)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.byPath[desc3] != 1 {
			t.Fatalf("%s requested %d times, want once", desc3, s.byPath[desc3])
		}
	})
	t.Run("ok an unreachable index keeps the descriptors remembered", func(t *testing.T) {
		s, src, first := setup(t, "etag")
		index := s.docs["/index.json"]
		s.remove("/index.json")
		if _, _, err := src.List(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
			t.Fatalf("err = %v, want the index's 404", err)
		}
		s.mu.Lock()
		s.docs["/index.json"] = index
		s.mu.Unlock()
		s.reset()
		if got := list(src); !reflect.DeepEqual(got, first) {
			t.Fatalf("listing after the outage differs:\n got %v\nwant %v", got, first)
		}
		// the index, which could not be fetched, is forgotten; the
		// descriptors and signatures are not
		if b, nm := s.bodyBytes.Load(), s.notModified.Load(); b != int64(len(index.body)) || nm != 2*n {
			t.Fatalf("%d body bytes, %d 304s; want the index's %d, %d", b, nm, len(index.body), 2*n)
		}
	})
	t.Run("ok only the last listing's documents are remembered", func(t *testing.T) {
		s := newDocServer(t)
		s.validators = "etag"
		src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f}
		for pass := range 5 {
			// each pass a new index of other bundles
			var entries []IndexBundle
			for i := range n {
				d := fmt.Sprintf("p%d/%03d.json", pass, i)
				entries = append(entries, IndexBundle{Descriptor: d})
				s.set("/"+d, docBody("descriptor", i, 100))
				s.set("/"+d+".p7s", docBody("signature", i, 100))
			}
			s.setIndex(t, entries)
			if got := list(src); len(got.Bundles) != n {
				t.Fatalf("pass %d: %d bundles", pass, len(got.Bundles))
			}
			src.mu.Lock()
			k := len(src.known)
			for u := range src.known {
				if u != s.index() && !strings.Contains(u, fmt.Sprintf("/p%d/", pass)) {
					t.Errorf("pass %d: %s still remembered", pass, u)
				}
			}
			src.mu.Unlock()
			if k != 1+2*n {
				t.Fatalf("pass %d: %d documents remembered, want %d", pass, k, 1+2*n)
			}
		}
	})
}

// TestIndexListLimitWithMemory: remembered documents count towards
// Limits.Bytes as fetched ones do, so the listing (over the limit or not)
// is the same whether nothing, some or everything is remembered, and the
// same as the sequential one without conditional requests.
func TestIndexListLimitWithMemory(t *testing.T) {
	f := newTestFetcher(t)
	s := newDocServer(t)
	s.validators = "etag"
	total := s.bundles(t, 30, 1000)
	for _, tc := range []struct {
		name  string
		limit int64
	}{
		{name: "fail one byte under the listing", limit: total - 1},
		{name: "ok exactly the listing", limit: total},
		{name: "ok one byte over the listing", limit: total + 1},
		{name: "fail half the listing", limit: total / 2},
	} {
		for _, par := range []int{1, DefaultIndexParallel} {
			t.Run(fmt.Sprintf("%s, Parallel %d", tc.name, par), func(t *testing.T) {
				lim := ListingLimits{Bytes: tc.limit}
				want := asListing(referenceList(context.Background(), &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f, Limits: lim}))
				if tooLarge := strings.Contains(want.Err, "incomplete"); tooLarge != strings.HasPrefix(tc.name, "fail") {
					t.Fatalf("reference listing: %q", want.Err)
				}
				// a source that remembers nothing, then what it
				// listed, then everything (a listing without limit)
				src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f, Limits: lim, Parallel: par}
				for round, name := range []string{"nothing remembered", "the last listing remembered", "everything remembered"} {
					if round == 2 {
						src.Limits = ListingLimits{}
						if _, _, err := src.List(context.Background()); err != nil {
							t.Fatal(err)
						}
						src.Limits = lim
					}
					s.reset()
					if got := asListing(src.List(context.Background())); !reflect.DeepEqual(got, want) {
						t.Fatalf("%s: listing differs:\n got %v\nwant %v", name, got, want)
					}
					if round == 2 && s.bodyBytes.Load() != 0 {
						t.Fatalf("%s: %d body bytes transferred", name, s.bodyBytes.Load())
					}
				}
			})
		}
	}
	t.Run("fail context cancelled with everything remembered", func(t *testing.T) {
		s := newDocServer(t)
		s.validators = "etag"
		s.bundles(t, 30, 1000)
		src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: f}
		if _, _, err := src.List(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var docs int
		s.hold = func(r *http.Request) {
			if r.URL.Path == "/index.json" {
				return
			}
			s.mu.Lock()
			docs++
			if docs == 5 {
				cancel()
			}
			s.mu.Unlock()
		}
		if _, _, err := src.List(ctx); !errors.Is(err, context.Canceled) || err != ctx.Err() {
			t.Fatalf("err = %v, want ctx.Err()", err)
		}
	})
}

// TestIndexListingsConditional: an index source remembers the signed
// listing (document and signature) of each VO it may publish for, and
// asks for it again with conditions: a 304 reuses the bytes read before,
// a changed document is fetched whole, an error stays an error (and is
// forgotten: the next request has no conditions). A listing of another VO
// is not remembered, nor is one that does not parse, and a second reading
// (a torn pair) is made without conditions. Before, every listing was
// fetched whole every pass.
func TestIndexListingsConditional(t *testing.T) {
	const doc, sig, other = "/atlas.listing.json", "/atlas.listing.json.p7s", "/cms.listing.json"
	listingDoc := func(vo string, serial int) []byte {
		return fmt.Appendf(nil, `{"version":1,"vo":%q,"serial":%d,"issued":"2026-01-01T00:00:00Z","expires":"2026-01-08T00:00:00Z","images":[]}`, vo, serial)
	}
	s := newDocServer(t)
	s.validators = "etag"
	s.bundles(t, 1, 100)
	s.set(doc, listingDoc("atlas", 1))
	s.set(sig, []byte("signature 1"))
	s.set(other, listingDoc("cms", 1))
	s.set(other+".p7s", []byte("cms signature"))
	ix := `{"version":1,"bundles":[{"descriptor":"d/000.json"}],"listings":[{"document":"atlas.listing.json"},{"document":"cms.listing.json"}]}`
	s.set("/index.json", []byte(ix))
	var mu sync.Mutex
	conditional := map[string]int{} // by path, the conditional requests
	fail := ""
	s.answer = func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("If-None-Match") != "" {
			conditional[r.URL.Path]++
		}
		if r.URL.Path == fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	src := &IndexSource{URL: s.index(), AllowedVOs: []string{"atlas"}, Fetcher: newTestFetcher(t)}
	// pass lists and reads the listings; it returns atlas's and the
	// conditional requests by path
	pass := func(step string) (ListingDoc, map[string]int) {
		t.Helper()
		mu.Lock()
		clear(conditional)
		mu.Unlock()
		s.reset()
		if _, _, err := src.List(context.Background()); err != nil {
			t.Fatalf("%s: list: %v", step, err)
		}
		var atlas ListingDoc
		for _, d := range src.Listings(context.Background()) {
			if d.Location == s.srv.URL+doc {
				atlas = d
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return atlas, maps.Clone(conditional)
	}
	same := func(step string, d ListingDoc, wantDoc []byte, wantSig string) {
		t.Helper()
		if d.Err != nil || string(d.Document) != string(wantDoc) || string(d.Signature) != wantSig || d.VO != "atlas" {
			t.Fatalf("%s: listing %q / %q (VO %q, err %v), want %q / %q", step, d.Document, d.Signature, d.VO, d.Err, wantDoc, wantSig)
		}
	}

	d, c := pass("first")
	same("first", d, listingDoc("atlas", 1), "signature 1")
	if c[doc]+c[sig] != 0 {
		t.Fatalf("first: conditional requests %v with nothing remembered", c)
	}

	d, c = pass("ok unchanged")
	same("ok unchanged", d, listingDoc("atlas", 1), "signature 1")
	if c[doc] != 1 || c[sig] != 1 || c[other] != 0 {
		t.Fatalf("ok unchanged: conditional requests %v, want one for atlas's document and signature, none for cms's listing", c)
	}
	// every document 304 but cms's listing, fetched whole
	if b, want := s.bodyBytes.Load(), int64(len(listingDoc("cms", 1))+len("cms signature")); b != want {
		t.Fatalf("ok unchanged: %d body bytes, want %d (cms's listing only)", b, want)
	}

	s.set(doc, listingDoc("atlas", 2))
	s.set(sig, []byte("signature 2"))
	d, _ = pass("ok changed")
	same("ok changed", d, listingDoc("atlas", 2), "signature 2")

	fail = sig
	d, _ = pass("fail signature unavailable")
	if d.Err == nil || d.Signature != nil {
		t.Fatalf("fail signature unavailable: err %v, signature %q: remembered bytes in place of an error", d.Err, d.Signature)
	}
	fail = ""
	d, c = pass("ok after the error")
	same("ok after the error", d, listingDoc("atlas", 2), "signature 2")
	if c[doc] != 0 || c[sig] != 0 {
		t.Fatalf("ok after the error: conditional requests %v: the failed pair is remembered", c)
	}

	// a second reading (ListingDoc.again) asks without conditions
	mu.Lock()
	clear(conditional)
	mu.Unlock()
	again := d.again(context.Background())
	same("again", again, listingDoc("atlas", 2), "signature 2")
	if c := conditional[doc] + conditional[sig]; c != 0 {
		t.Fatalf("again: %d conditional requests", c)
	}
}
