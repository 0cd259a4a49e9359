package glancesync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// indexServer serves an index of the given descriptor references; every
// other path answers a document of docSize bytes. It counts requests.
func indexServer(t *testing.T, refs []string, docSize int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var ix Index
	ix.Version = IndexVersion
	for _, r := range refs {
		ix.Bundles = append(ix.Bundles, IndexBundle{Descriptor: r})
	}
	body, err := json.Marshal(ix)
	if err != nil {
		t.Fatal(err)
	}
	doc := bytes.Repeat([]byte("x"), docSize)
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path == "/index.json" {
			_, _ = w.Write(body)
			return
		}
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// TestListingLimits: an index (or a directory) cannot make the sync read
// and hold without bound. Many entries naming one bundle cost one fetch of
// each document and list it once; more bundles, or more bytes, than the
// limits fail the listing as incomplete (ErrListingTooLarge), so that the
// pass retires nothing of the source's VOs.
func TestListingLimits(t *testing.T) {
	f := newTestFetcher(t)
	same := make([]string, 5000)
	for i := range same {
		same[i] = "a/x.json"
	}
	distinct := func(n int) []string {
		var r []string
		for i := 0; i < n; i++ {
			r = append(r, fmt.Sprintf("d/%d.json", i))
		}
		return r
	}
	for _, tc := range []struct {
		name      string
		refs      []string
		docSize   int
		limits    ListingLimits
		bundles   int
		maxCalls  int64
		wantLimit bool
	}{
		{name: "ok many entries naming one bundle", refs: same, docSize: 100, bundles: 1, maxCalls: 3},
		{name: "ok at the limits", refs: distinct(10), docSize: 1000, limits: ListingLimits{Bundles: 10, Bytes: 30000}, bundles: 10, maxCalls: 21},
		{name: "fail more bundles than the limit", refs: distinct(11), docSize: 100, limits: ListingLimits{Bundles: 10}, maxCalls: 1, wantLimit: true},
		// the requests in flight when the limit is crossed finish: up to
		// DefaultIndexParallel-1 more than one at a time would make
		{name: "fail more bytes than the limit", refs: distinct(50), docSize: 10 << 10, limits: ListingLimits{Bytes: 100 << 10}, maxCalls: 12 + DefaultIndexParallel - 1, wantLimit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, calls := indexServer(t, tc.refs, tc.docSize)
			src := &IndexSource{URL: srv.URL + "/index.json", AllowedVOs: []string{"atlas"}, Fetcher: f, Limits: tc.limits}
			got, skipped, err := src.List(context.Background())
			if tc.wantLimit {
				if !errors.Is(err, ErrListingTooLarge) || !strings.Contains(err.Error(), "incomplete") {
					t.Fatalf("err = %v, want ErrListingTooLarge", err)
				}
			} else if err != nil || len(got) != tc.bundles || len(skipped) != 0 {
				t.Fatalf("listed %d bundles (%v), err %v; want %d", len(got), skipped, err, tc.bundles)
			}
			if n := calls.Load(); n > tc.maxCalls {
				t.Fatalf("%d requests, want at most %d", n, tc.maxCalls)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		files  int
		limits ListingLimits
	}{
		{name: "fail directory of more descriptors than the limit", files: 11, limits: ListingLimits{Bundles: 10}},
		{name: "fail directory of more bytes than the limit", files: 10, limits: ListingLimits{Bytes: 50 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			doc := bytes.Repeat([]byte("x"), 5<<10)
			for i := 0; i < tc.files; i++ {
				for _, n := range []string{fmt.Sprintf("%d.json", i), fmt.Sprintf("%d.json.p7s", i)} {
					if err := os.WriteFile(filepath.Join(dir, n), doc, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			_, _, err := (&DirSource{Root: dir, AllowedVOs: []string{"atlas"}, Limits: tc.limits}).List(context.Background())
			if !errors.Is(err, ErrListingTooLarge) {
				t.Fatalf("err = %v, want ErrListingTooLarge", err)
			}
		})
	}
}

// TestIndexURLCredentialsRefused: an index URL with credentials is refused
// before any request, and neither the source's name nor the error shows
// the password.
func TestIndexURLCredentialsRefused(t *testing.T) {
	srv, calls := indexServer(t, []string{"a/x.json"}, 10)
	u := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1) + "/index.json"
	src := &IndexSource{URL: u, AllowedVOs: []string{"atlas"}, Fetcher: newTestFetcher(t)}
	t.Run("fail credentials in the index URL", func(t *testing.T) {
		_, _, err := src.List(context.Background())
		if !errors.Is(err, ErrCredentialsInURL) || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("err = %v, want ErrCredentialsInURL without the password", err)
		}
		if strings.Contains(src.Name(), "s3cret") {
			t.Fatalf("Name() = %s shows the password", src.Name())
		}
		if calls.Load() != 0 {
			t.Fatalf("%d requests made with the credentials", calls.Load())
		}
	})
}

// TestIndexEntryCredentialsRefused: an entry of the index (untrusted
// bytes) naming a URL with user information is skipped without a request,
// and neither the skip's key nor its error shows the password or a token
// given as the user name, whether the reference parses or not.
func TestIndexEntryCredentialsRefused(t *testing.T) {
	host := "127.0.0.1:1"
	refs := []string{
		"http://user:s3cret@" + host + "/a.json",
		"http://t0ken@" + host + "/b.json",
		"http://user:s3cret@" + host + "/%zz.json", // does not parse
		"//t0ken@" + host + "/c.json",              // scheme-relative
	}
	srv, calls := indexServer(t, refs, 10)
	src := &IndexSource{URL: srv.URL + "/index.json", AllowedVOs: []string{"atlas"}, Fetcher: newTestFetcher(t)}
	got, skipped, err := src.List(context.Background())
	if err != nil || len(got) != 0 {
		t.Fatalf("listed %d bundles, err %v; want every entry skipped", len(got), err)
	}
	if len(skipped) != len(refs) {
		t.Fatalf("skipped %v, want %d entries", skipped, len(refs))
	}
	for k, e := range skipped {
		for _, secret := range []string{"s3cret", "t0ken"} {
			if strings.Contains(k, secret) || strings.Contains(e.Error(), secret) {
				t.Errorf("skipped[%q] = %v shows %q", k, e, secret)
			}
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d requests, want the index's alone", n)
	}
	for _, r := range refs[:2] {
		if !errors.Is(skipped[maskedRef(r)], ErrCredentialsInURL) {
			t.Errorf("skipped[%s] = %v, want ErrCredentialsInURL", maskedRef(r), skipped[maskedRef(r)])
		}
	}
}

// TestListingTimeLimit: an index whose documents are answered slowly (here
// never: each request waits until the client gives up) cannot hold the
// pass for the sum of every request's own timeout and retries; past
// ListingLimits.Time the listing fails as incomplete (ErrListingTooLarge),
// naming the limit, so nothing of the source's VOs is retired. A listing
// the caller cancels still ends with the caller's error.
func TestListingTimeLimit(t *testing.T) {
	var ix Index
	ix.Version = IndexVersion
	for i := 0; i < 4; i++ {
		ix.Bundles = append(ix.Bundles, IndexBundle{Descriptor: fmt.Sprintf("d/%d.json", i)})
	}
	body, err := json.Marshal(ix)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/index.json" {
			_, _ = w.Write(body)
			return
		}
		<-r.Context().Done() // a descriptor never comes
	}))
	t.Cleanup(srv.Close)
	// each request may take an hour: only the listing's own limit ends it
	f, err := NewFetcher(HTTPOptions{RequestTimeout: time.Hour, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	src := &IndexSource{URL: srv.URL + "/index.json", AllowedVOs: []string{"atlas"}, Fetcher: f, Parallel: 2,
		Limits: ListingLimits{Time: 200 * time.Millisecond}}
	type result struct {
		bundles []*Bundle
		skipped map[string]error
		err     error
	}
	list := func(ctx context.Context, s Source) result {
		done := make(chan result, 1)
		go func() {
			b, sk, err := s.List(ctx)
			done <- result{b, sk, err}
		}()
		select {
		case r := <-done:
			return r
		case <-time.After(2 * time.Minute): // a guard, not a measure: the limit is 200 ms
			t.Fatal("the listing did not end at its time limit")
			return result{}
		}
	}
	r := list(context.Background(), src)
	if !errors.Is(r.err, ErrListingTooLarge) || !strings.Contains(r.err.Error(), "not listed within 200ms") {
		t.Fatalf("listing past its time: bundles %d, skipped %v, err %v; want ErrListingTooLarge", len(r.bundles), r.skipped, r.err)
	}
	if r.bundles != nil || r.skipped != nil {
		t.Fatalf("a listing over its time returned bundles %d, skipped %v", len(r.bundles), r.skipped)
	}

	// the caller's cancellation is the caller's error, not the limit's
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src.Limits.Time = time.Hour
	if r := list(ctx, src); !errors.Is(r.err, context.Canceled) || errors.Is(r.err, ErrListingTooLarge) {
		t.Fatalf("cancelled listing: err %v, want context.Canceled", r.err)
	}

	// a directory source: the same limit (seen between files)
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		name := filepath.Join(dir, fmt.Sprintf("%d.json", i))
		if err := os.WriteFile(name, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name+".p7s", []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ds := &DirSource{Root: dir, AllowedVOs: []string{"atlas"}}
	if r := list(ctx, ds); !errors.Is(r.err, context.Canceled) || errors.Is(r.err, ErrListingTooLarge) {
		t.Fatalf("cancelled directory listing: err %v, want context.Canceled", r.err)
	}
	if r := list(context.Background(), ds); r.err != nil || len(r.bundles) != 3 {
		t.Fatalf("directory listing within the default time: bundles %d, err %v", len(r.bundles), r.err)
	}
}

// TestDirSourceEntriesLimit: a directory tree is walked a batch of entries
// at a time, whatever its directories hold (here one of 2 500 files, more
// than a batch), without following symbolic links (a link looping to the
// tree's root); a tree of more files and directories of any kind than
// ListingLimits.Entries fails its listing as incomplete
// (ErrListingTooLarge) instead of being walked and held whole each pass;
// an unreadable subdirectory fails it as before.
func TestDirSourceEntriesLimit(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for _, rel := range []string{"a/1.json", "b/c/2.json", "3.json"} {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{p, p + ".p7s"} {
			if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want = append(want, p)
	}
	junk := filepath.Join(dir, "junk")
	if err := os.Mkdir(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2500; i++ {
		if err := os.WriteFile(filepath.Join(junk, fmt.Sprintf("%d.img", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(".", filepath.Join(dir, "b", "loop")); err != nil {
		t.Fatal(err)
	}

	ds := &DirSource{Root: dir, AllowedVOs: []string{"atlas"}}
	bundles, skipped, err := ds.List(context.Background())
	if err != nil || len(skipped) != 0 || len(bundles) != 3 {
		t.Fatalf("list: %d bundles, skipped %v, err %v; want 3", len(bundles), skipped, err)
	}
	var got []string
	for _, b := range bundles {
		got = append(got, b.Location)
	}
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("listed %v, want %v (sorted)", got, want)
	}

	// the tree holds 2 511 entries: a, a/1.json(.p7s), b, b/c,
	// b/c/2.json(.p7s), b/loop, 3.json(.p7s), junk and its 2 500 files
	const total = 2511
	ds.Limits.Entries = total
	if _, _, err := ds.List(context.Background()); err != nil {
		t.Fatalf("at the entries limit: %v", err)
	}
	ds.Limits.Entries = total - 1
	if _, _, err := ds.List(context.Background()); !errors.Is(err, ErrListingTooLarge) || !strings.Contains(err.Error(), "more than 2510 files and directories") {
		t.Fatalf("over the entries limit: err %v, want ErrListingTooLarge", err)
	}
	ds.Limits.Entries = 0

	if os.Geteuid() != 0 {
		if err := os.Chmod(filepath.Join(dir, "b"), 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(filepath.Join(dir, "b"), 0o755) })
		if _, _, err := ds.List(context.Background()); !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("unreadable subdirectory: err %v, want a permission error", err)
		}
	}
}
