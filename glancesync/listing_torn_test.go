package glancesync

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/imagetrust/imagetrust/validator"
)

// listingPair returns the document and signature writeListing writes for l.
func (w *world) listingPair(l listingSpec) (doc, sig []byte) {
	t := w.t
	t.Helper()
	dir := t.TempDir()
	w.writeListing(dir, l)
	var err error
	if doc, err = os.ReadFile(filepath.Join(dir, "atlas.listing.json")); err != nil {
		t.Fatal(err)
	}
	if sig, err = os.ReadFile(filepath.Join(dir, "atlas.listing.json.p7s")); err != nil {
		t.Fatal(err)
	}
	return doc, sig
}

// gaugeValue is g's value.
func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// TestSignedListingTornPair: `imagetrust listing` writes a VO's listing,
// then its .p7s (rsync may bring either first); a pass that reads the
// pair between the two writes reads a document and a signature that do
// not go together. It reads the pair again, once, Options.ListingRereadWait
// after the first reading, and judges only the second reading: the
// withdrawal the new listing signs is retired and the image it adds
// mirrored in that very pass, and no failure is reported or logged. A
// pair still torn when read again fails once, listing-bad-signature
// (reported and logged once, the pair read twice, not more), and nothing of
// the VO is retired or mirrored anew; imagetrust_sync_listing_failure
// counts only that second reading. A source hook (the directory's file
// system hook, the index's HTTP handler) lands the other file between the
// two readings. Without the second reading the "ok" cases fail
// listing-bad-signature. Against the real Glance.
func TestSignedListingTornPair(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	const wait = 100 * time.Millisecond
	for _, c := range []struct {
		name  string
		index bool
		first string // the file of the new pair in place at the first reading
		lands bool   // the other file lands between the two readings
	}{
		{"ok directory, document first", false, "document", true},
		{"ok directory, signature first", false, "signature", true},
		{"ok index, document first", true, "document", true},
		{"fail directory, still torn", false, "document", false},
		{"fail index, still torn", true, "signature", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			tag := "listing-torn-" + strings.NewReplacer(" ", "-", ",", "").Replace(c.name)
			keep := w.publish(dir, spec{tag: tag + "-keep"})
			gone := w.publish(dir, spec{tag: tag + "-gone"})
			added := w.publish(dir, spec{tag: tag + "-new"})
			w.writeListing(dir, listingSpec{serial: 1, ids: []string{keep.id, gone.id}})
			newDoc, newSig := w.listingPair(listingSpec{serial: 2, ids: []string{keep.id, added.id}})

			var (
				mu    sync.Mutex
				armed bool
				reads []time.Time // readings of the document, once armed
			)
			land := func() {}
			// reading is called as the listing's document is read
			reading := func() {
				mu.Lock()
				defer mu.Unlock()
				if !armed {
					return
				}
				reads = append(reads, time.Now())
				if len(reads) == 2 && c.lands {
					land()
				}
			}
			o := e.signedOptions(t, w, dir)
			o.ListingRereadWait = wait
			o.Metrics = NewMetrics(nil)
			badSig := o.Metrics.ListingFailure.WithLabelValues("atlas", validator.ListingBadSignature)
			log, logs := captureLogger(t)
			o.Logger = log
			if c.index {
				files := http.FileServer(http.Dir(dir))
				srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/atlas.listing.json" {
						reading()
					}
					files.ServeHTTP(rw, r)
				}))
				t.Cleanup(srv.Close)
				ix := Index{Version: IndexVersion, Listings: []IndexListing{{Document: "atlas.listing.json"}}}
				for _, p := range []*published{keep, gone, added} {
					ix.Bundles = append(ix.Bundles, IndexBundle{Descriptor: p.name + ".json"})
				}
				b, err := json.Marshal(ix)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
					t.Fatal(err)
				}
				f, err := NewFetcher(HTTPOptions{RequestTimeout: 10 * time.Second, DownloadTimeout: time.Minute, Retries: 1})
				if err != nil {
					t.Fatal(err)
				}
				o.Sources = []Source{&IndexSource{URL: srv.URL + "/index.json", AllowedVOs: []string{"atlas"}, Fetcher: f, AllowPrivate: true}}
			} else {
				o.Sources = []Source{&DirSource{Root: dir, AllowedVOs: []string{"atlas"}, fsHook: func(op, name string) {
					if op == "read" && name == "atlas.listing.json" {
						reading()
					}
				}}}
			}
			if r := run(t, o); r.Errors != 0 || len(r.ListingFailed) != 0 {
				t.Fatalf("first pass: %+v %+v", r.ListingFailed, r.Outcomes)
			}
			if im := e.get(t, gone.id); im.Hidden || im.Status != StatusActive {
				t.Fatalf("first pass: image %s hidden %v", im.Status, im.Hidden)
			}

			// the new pair, torn: one file written, the other not yet
			write := func(name string, b []byte) {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Error(err)
				}
			}
			if c.first == "document" {
				write("atlas.listing.json", newDoc)
				land = func() { write("atlas.listing.json.p7s", newSig) }
			} else {
				write("atlas.listing.json.p7s", newSig)
				land = func() { write("atlas.listing.json", newDoc) }
			}
			mu.Lock()
			armed = true
			mu.Unlock()
			r := run(t, o)
			mu.Lock()
			got := slices.Clone(reads)
			mu.Unlock()
			if len(got) != 2 {
				t.Errorf("the document was read %d times in the pass, want 2", len(got))
			} else if d := got[1].Sub(got[0]); d < wait {
				t.Errorf("read again %v after the first reading, want at least %v", d, wait)
			}
			failedLines := len(logs.lines("no valid signed listing of the VO: nothing of it is retired or mirrored anew this pass"))
			if c.lands {
				if len(r.ListingFailed) != 0 || failedLines != 0 || gaugeValue(t, badSig) != 0 {
					t.Fatalf("fail: the torn pair made the listing fail (%d log lines): %+v", failedLines, r.ListingFailed)
				}
				if im := e.get(t, gone.id); !im.Hidden {
					t.Error("the withdrawn image is not retired in the pass that read the torn pair")
				}
				if im := e.get(t, added.id); im.Status != StatusActive {
					t.Errorf("the added image is %s, want active", im.Status)
				}
				return
			}
			if got := listingFailure(r, "atlas"); got != validator.ListingBadSignature || len(r.ListingFailed) != 1 || failedLines != 1 || gaugeValue(t, badSig) != 1 {
				t.Fatalf("listing failure %q (%d reported, %d logged, metric %v), want %s once", got, len(r.ListingFailed), failedLines, gaugeValue(t, badSig), validator.ListingBadSignature)
			}
			if im := e.get(t, gone.id); im.Hidden || im.Status != StatusActive {
				t.Errorf("image retired without a valid listing: %s hidden %v", im.Status, im.Hidden)
			}
			if _, err := e.admin.Get(context.Background(), added.id); !errors.Is(err, ErrNotFound) {
				t.Errorf("image mirrored without a valid listing: %v", err)
			}
		})
	}
}
