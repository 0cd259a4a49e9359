package glancesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// listingSpec is a VO listing to write.
type listingSpec struct {
	vo              string
	serial          uint64
	issued, expires time.Time
	ids             []string
}

// writeListing writes VO.listing.json and its .p7s, signed by the world's
// approver (a listing signer by default), at the root of dir.
func (w *world) writeListing(dir string, l listingSpec) {
	t := w.t
	t.Helper()
	if l.vo == "" {
		l.vo = "atlas"
	}
	if l.issued.IsZero() {
		l.issued = w.now.Add(-time.Minute)
	}
	if l.expires.IsZero() {
		l.expires = w.now.Add(7 * 24 * time.Hour)
	}
	if l.ids == nil {
		l.ids = []string{}
	}
	doc, err := json.Marshal(map[string]any{"version": 1, "vo": l.vo, "serial": l.serial,
		"issued": l.issued.UTC().Format(time.RFC3339), "expires": l.expires.UTC().Format(time.RFC3339), "images": l.ids})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := cms.Sign(doc, w.approver.Cert, w.approver.Key, cms.SignOptions{Chain: w.approver.Chain})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{l.vo + ".listing.json": doc, l.vo + ".listing.json.p7s": sig} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// signedOptions are e.options with atlas's listings signed, and the
// accepted serials kept in a state file of the test.
func (e *env) signedOptions(t *testing.T, w *world, dir string) Options {
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.VOs["atlas"] = config.VO{Visibility: "shared", Listing: "signed"}
	o.ListingStateFile = filepath.Join(t.TempDir(), "listing-state.json")
	o.Servers = unusedServers{}
	return o
}

func putBack(t *testing.T, p *published) {
	t.Helper()
	for name, b := range map[string][]byte{p.name + ".json": p.desc, p.name + ".json.p7s": p.sig} {
		if err := os.WriteFile(filepath.Join(p.dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func listingFailure(r *Report, vo string) string {
	for _, p := range r.ListingFailed {
		if p.VO == vo {
			return p.Reason
		}
	}
	return ""
}

func withheldIDs(r *Report) []string {
	var ids []string
	for _, w := range r.Withheld {
		ids = append(ids, w.ID)
	}
	return ids
}

// TestSignedListingWithdrawal is TestSourceWithdrawalIsTrusted for a VO
// with listing = "signed": a source that drops the newest bundle of a tag
// no longer retires it. The image stays current (the tag stays on it, the
// older image hidden), is reported withheld, and only a listing signed
// without it retires it. A source that then serves the older listing
// (which still names it) beside its bundle is refused as a rollback, from
// the serial kept across Syncers in the state file. Against the real
// Glance.
func TestSignedListingWithdrawal(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	ctx := context.Background()
	for _, retire := range []string{"hide", "delete"} {
		t.Run("retire "+retire, func(t *testing.T) {
			dir := t.TempDir()
			tag := "listing-withdraw-" + retire
			old := w.publish(dir, spec{vo: "atlas", tag: tag, created: w.now.Add(-2 * time.Hour)})
			cur := w.publish(dir, spec{vo: "atlas", tag: tag, created: w.now.Add(-time.Hour)})
			other := w.publish(dir, spec{vo: "atlas", tag: tag + "-other"})
			w.writeListing(dir, listingSpec{serial: 1, ids: []string{old.id, cur.id, other.id}})
			o := e.signedOptions(t, w, dir)
			o.Sync.Retire = retire
			if r := run(t, o); r.Errors != 0 || len(r.ListingFailed) != 0 {
				t.Fatalf("first pass: %+v %+v", r.ListingFailed, r.Outcomes)
			}
			if im := e.get(t, cur.id); im.Status != StatusActive || im.Hidden {
				t.Fatalf("current image: %s hidden %v", im.Status, im.Hidden)
			}

			// the source withholds the newest bundle: it stays current
			removeBundle(t, cur)
			r := run(t, o)
			if r.Errors != 0 || len(r.ListingFailed) != 0 {
				t.Fatalf("pass after the withholding: %+v %+v", r.ListingFailed, r.Outcomes)
			}
			if got := withheldIDs(r); !slices.Equal(got, []string{cur.id}) {
				t.Fatalf("withheld %v, want [%s]", got, cur.id)
			}
			if im := e.get(t, cur.id); im.Status != StatusActive || im.Hidden {
				t.Fatalf("withheld image: %s hidden %v, want active and shown", im.Status, im.Hidden)
			}
			switch retire {
			case "hide":
				if im := e.get(t, old.id); !im.Hidden {
					t.Fatal("the tag rolled back: the older image is shown while the newer one is withheld")
				}
			case "delete":
				if _, err := e.admin.Get(ctx, old.id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("the superseded image came back: %v", err)
				}
			}

			// the VO withdraws it, signed: retired
			w.writeListing(dir, listingSpec{serial: 2, ids: []string{old.id, other.id}})
			if r := run(t, o); r.Errors != 0 || len(r.ListingFailed) != 0 || len(r.Withheld) != 0 {
				t.Fatalf("pass after the signed withdrawal: %+v %+v %+v", r.ListingFailed, r.Withheld, r.Outcomes)
			}
			switch retire {
			case "hide":
				if im := e.get(t, cur.id); !im.Hidden {
					t.Fatal("withdrawn image not hidden")
				}
				if im := e.get(t, old.id); im.Hidden || im.Status != StatusActive {
					t.Fatalf("older image: %s hidden %v, want current again", im.Status, im.Hidden)
				}
			case "delete":
				if _, err := e.admin.Get(ctx, cur.id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("withdrawn image not deleted: %v", err)
				}
			}

			// a replay of the older listing, and the bundle: refused
			w.writeListing(dir, listingSpec{serial: 1, ids: []string{old.id, cur.id, other.id}})
			putBack(t, cur)
			r = run(t, o)
			if got := listingFailure(r, "atlas"); got != validator.ListingRolledBack {
				t.Fatalf("rolled back listing: failure %q, want %s (%+v)", got, validator.ListingRolledBack, r.ListingFailed)
			}
			if retire == "hide" {
				if im := e.get(t, cur.id); !im.Hidden {
					t.Fatal("a withdrawn image came back with a rolled back listing")
				}
			} else if _, err := e.admin.Get(ctx, cur.id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a withdrawn and deleted uuid came back: %v", err)
			}
		})
	}
}

// TestSignedListingWithdrawalDespiteJunk: a descriptor that does not parse
// in a tree shared by two VOs (another VO's junk, a file half rewritten)
// keeps the unsigned VO's images from being retired that pass, as before,
// but not a withdrawal its signed listing makes: the VO with a signed
// listing has its withdrawn image retired, and the image its listing still
// names kept. Against the real Glance.
func TestSignedListingWithdrawalDespiteJunk(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	gone := w.publish(dir, spec{vo: "atlas", tag: "junk-withdrawn"})
	kept := w.publish(dir, spec{vo: "atlas", tag: "junk-kept"})
	theirs := w.publish(dir, spec{vo: "cms", tag: "junk-unsigned"})
	w.writeListing(dir, listingSpec{serial: 1, ids: []string{gone.id, kept.id}})
	o := e.signedOptions(t, w, dir)
	o.Sources = []Source{&DirSource{Root: dir, AllowedVOs: []string{"atlas", "cms"}}}
	if r := run(t, o); r.Errors != 0 || len(r.ListingFailed) != 0 {
		t.Fatalf("first pass: %+v %+v", r.ListingFailed, r.Outcomes)
	}
	for _, id := range []string{gone.id, kept.id, theirs.id} {
		if im := e.get(t, id); im.Status != StatusActive || im.Hidden {
			t.Fatalf("%s after the first pass: %s hidden %v", id, im.Status, im.Hidden)
		}
	}

	// junk beside the bundles; atlas withdraws one image, signed; cms's
	// bundle leaves the tree, unsigned
	for name, b := range map[string][]byte{"junk.json": []byte("{\"uuid\": "), "junk.json.p7s": []byte("not a signature")} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removeBundle(t, gone)
	removeBundle(t, theirs)
	w.writeListing(dir, listingSpec{serial: 2, ids: []string{kept.id}})
	r := run(t, o)
	if len(r.ListingFailed) != 0 || len(r.Withheld) != 0 {
		t.Fatalf("pass with junk: failed %+v, withheld %+v", r.ListingFailed, r.Withheld)
	}
	if im := e.get(t, gone.id); !im.Hidden {
		t.Fatal("fail: the image atlas's signed listing withdrew is still shown: junk in the tree kept it")
	}
	if im := e.get(t, kept.id); im.Hidden || im.Status != StatusActive {
		t.Fatalf("the image the listing names: %s hidden %v, want current", im.Status, im.Hidden)
	}
	if im := e.get(t, theirs.id); im.Hidden {
		t.Fatal("the unsigned VO's image was retired on a listing with a descriptor that does not parse")
	}
}

// TestSignedListingRefusals: without a valid listing (missing, expired) a
// signed VO has nothing new mirrored and nothing retired, and the pass
// names it; a bundle its valid listing does not name is refused,
// not-in-listing, and not mirrored.
func TestSignedListingRefusals(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	ctx := context.Background()
	notMirrored := func(t *testing.T, id string) {
		t.Helper()
		if _, err := e.admin.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("image %s mirrored: %v", id, err)
		}
	}
	t.Run("bundle not in listing", func(t *testing.T) {
		dir := t.TempDir()
		in := w.publish(dir, spec{tag: "listing-in"})
		out := w.publish(dir, spec{tag: "listing-out"})
		w.writeListing(dir, listingSpec{serial: 5, ids: []string{in.id}})
		r := run(t, e.signedOptions(t, w, dir))
		if e.get(t, in.id).Status != StatusActive {
			t.Fatal("listed bundle not mirrored")
		}
		notMirrored(t, out.id)
		if o := r.Find(out.id); len(o) != 1 || o[0].Action != ActionRefused || o[0].Reason != ReasonNotInListing {
			t.Fatalf("outcomes of the unlisted bundle: %+v", o)
		}
	})
	for name, l := range map[string]*listingSpec{
		"missing listing": nil,
		"expired listing": {serial: 3, issued: w.now.Add(-48 * time.Hour), expires: w.now.Add(-time.Hour)},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			a := w.publish(dir, spec{tag: "listing-keep"})
			b := w.publish(dir, spec{tag: "listing-new"})
			// a first pass with a valid listing mirrors a
			w.writeListing(dir, listingSpec{serial: 2, ids: []string{a.id}})
			o := e.signedOptions(t, w, dir)
			run(t, o)
			removeBundle(t, a)
			os.Remove(filepath.Join(dir, "atlas.listing.json"))
			os.Remove(filepath.Join(dir, "atlas.listing.json.p7s"))
			want := validator.ListingMissing
			if l != nil {
				l.ids = []string{b.id} // a withdrawn, b new: neither may happen
				w.writeListing(dir, *l)
				want = validator.ListingExpired
			}
			r := run(t, o)
			if got := listingFailure(r, "atlas"); got != want {
				t.Fatalf("listing failure %q, want %s (%+v)", got, want, r.ListingFailed)
			}
			if im := e.get(t, a.id); im.Hidden || im.Status != StatusActive {
				t.Fatalf("image retired without a valid listing: %s hidden %v", im.Status, im.Hidden)
			}
			notMirrored(t, b.id)
		})
	}
	t.Run("withheld only when every source listed", func(t *testing.T) {
		// a source of the VO that cannot be listed: its bundles are not
		// missing, so nothing is reported withheld (nor retired)
		dir := t.TempDir()
		a := w.publish(dir, spec{tag: "listing-incomplete"})
		keep := w.publish(dir, spec{tag: "listing-incomplete-other"})
		w.writeListing(dir, listingSpec{serial: 1, ids: []string{a.id, keep.id}})
		o := e.signedOptions(t, w, dir)
		run(t, o)
		removeBundle(t, a)
		o.Sources = append(o.Sources, &DirSource{Root: filepath.Join(dir, "not-mounted"), AllowedVOs: []string{"atlas"}})
		r := run(t, o)
		if r.SourceErrors != 1 || len(r.Withheld) != 0 || len(r.ListingFailed) != 0 {
			t.Fatalf("source errors %d, withheld %+v, listing failures %+v", r.SourceErrors, r.Withheld, r.ListingFailed)
		}
		if im := e.get(t, a.id); im.Hidden || im.Status != StatusActive {
			t.Fatalf("image: %s hidden %v", im.Status, im.Hidden)
		}
	})
	t.Run("default config ignores a listing", func(t *testing.T) {
		// listing = "none": a listing file (even one leaving a bundle
		// out) changes nothing, and is not taken for a descriptor
		dir := t.TempDir()
		a := w.publish(dir, spec{tag: "listing-none"})
		w.writeListing(dir, listingSpec{serial: 1, ids: []string{}})
		o := e.options(t, w, map[string][]string{dir: {"atlas"}})
		r := run(t, o)
		if r.Errors != 0 || len(r.ListingFailed) != 0 || r.Count(ActionRefused) != 0 || r.Count(ActionSkipped) != 0 {
			t.Fatalf("pass: %+v %+v", r.ListingFailed, r.Outcomes)
		}
		if e.get(t, a.id).Status != StatusActive {
			t.Fatal("bundle not mirrored")
		}
	})
	t.Run("another VO's listing in a shared tree", func(t *testing.T) {
		// one repository carries the listings of all its VOs at its
		// root (formats.md); a site that reads it for atlas only must
		// not take cms.listing.json for a bundle: it would be refused
		// (sync --once exits 4) and make atlas's pass incomplete on
		// every pass
		dir := t.TempDir()
		a := w.publish(dir, spec{tag: "listing-shared"})
		gone := w.publish(dir, spec{tag: "listing-shared-gone"})
		w.writeListing(dir, listingSpec{serial: 1, ids: []string{a.id, gone.id}})
		w.writeListing(dir, listingSpec{vo: "cms", serial: 1, ids: []string{}})
		o := e.signedOptions(t, w, dir)
		if r := run(t, o); r.Errors != 0 || len(r.ListingFailed) != 0 || r.Count(ActionRefused) != 0 || r.Count(ActionSkipped) != 0 {
			t.Fatalf("pass: %+v %+v", r.ListingFailed, r.Outcomes)
		}
		w.writeListing(dir, listingSpec{serial: 2, ids: []string{a.id}})
		run(t, o)
		if im := e.get(t, gone.id); !im.Hidden {
			t.Fatal("the image atlas's listing withdrew is not retired: the other VO's listing made the pass incomplete")
		}
	})
}

// TestSignedListingIndex: an HTTPS index carries a VO's listing under
// "listings" (the signature at the document's URL + ".p7s" by default):
// the newest image withheld from the index stays current, and an index
// that drops its listings has nothing of the VO retired, and is named.
// Against the real Glance.
func TestSignedListingIndex(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	tag := "listing-index"
	old := w.publish(dir, spec{tag: tag, created: w.now.Add(-2 * time.Hour)})
	cur := w.publish(dir, spec{tag: tag, created: w.now.Add(-time.Hour)})
	w.writeListing(dir, listingSpec{serial: 1, ids: []string{old.id, cur.id}})
	writeIndex := func(ps []*published, listings []IndexListing) {
		ix := Index{Version: IndexVersion, Listings: listings}
		for _, p := range ps {
			ix.Bundles = append(ix.Bundles, IndexBundle{Descriptor: p.name + ".json"})
		}
		b, err := json.Marshal(ix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := NewFetcher(HTTPOptions{RequestTimeout: 10 * time.Second, DownloadTimeout: time.Minute, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	o := e.signedOptions(t, w, dir)
	o.Sources = []Source{&IndexSource{URL: srv.URL + "/index.json", AllowedVOs: []string{"atlas"}, Fetcher: f, AllowPrivate: true}}
	listing := []IndexListing{{Document: "atlas.listing.json"}}

	writeIndex([]*published{old, cur}, listing)
	if r := run(t, o); r.Errors != 0 || len(r.ListingFailed) != 0 {
		t.Fatalf("first pass: %+v %+v", r.ListingFailed, r.Outcomes)
	}
	writeIndex([]*published{old}, listing)
	r := run(t, o)
	if got := withheldIDs(r); !slices.Equal(got, []string{cur.id}) || len(r.ListingFailed) != 0 {
		t.Fatalf("withheld %v, listing failures %+v", got, r.ListingFailed)
	}
	if im := e.get(t, cur.id); im.Hidden || im.Status != StatusActive {
		t.Fatalf("withheld image: %s hidden %v", im.Status, im.Hidden)
	}
	if im := e.get(t, old.id); !im.Hidden {
		t.Fatal("the tag rolled back to the older image")
	}
	// the index drops the listing (and the newest bundle): nothing retired
	writeIndex([]*published{old}, nil)
	r = run(t, o)
	if got := listingFailure(r, "atlas"); got != validator.ListingMissing {
		t.Fatalf("listing failure %q, want %s", got, validator.ListingMissing)
	}
	if im := e.get(t, cur.id); im.Hidden || im.Status != StatusActive {
		t.Fatalf("image retired without a listing: %s hidden %v", im.Status, im.Hidden)
	}
	// the index names a listing that cannot be fetched: nothing retired,
	// and the VO's failure says which listing and why, not only that
	// none was served
	writeIndex([]*published{old}, []IndexListing{{Document: "gone.listing.json"}})
	r = run(t, o)
	var detail string
	for _, p := range r.ListingFailed {
		if p.VO == "atlas" {
			detail = p.Detail
		}
	}
	if !strings.Contains(detail, "gone.listing.json") || !strings.Contains(detail, "could not be read") {
		t.Fatalf("fail: listing failure detail %q does not name the listing that could not be fetched", detail)
	}
	if im := e.get(t, cur.id); im.Hidden || im.Status != StatusActive {
		t.Fatalf("image retired with an unreadable listing: %s hidden %v", im.Status, im.Hidden)
	}
}

// TestParseIndexListings: the index's optional "listings" key.
func TestParseIndexListings(t *testing.T) {
	for name, c := range map[string]struct{ doc, want string }{
		"ok no listings":    {`{"version":1,"bundles":[]}`, ""},
		"ok a listing":      {`{"version":1,"bundles":[],"listings":[{"document":"atlas.listing.json"}]}`, ""},
		"ok with signature": {`{"version":1,"bundles":[],"listings":[{"document":"a.json","signature":"a.sig"}]}`, ""},
		"fail no document":  {`{"version":1,"bundles":[],"listings":[{"signature":"a.sig"}]}`, "no document"},
		"fail unknown key":  {`{"version":1,"bundles":[],"listings":[{"document":"a","vo":"atlas"}]}`, "unknown field"},
		"fail too many":     {`{"version":1,"bundles":[],"listings":[` + strings.Repeat(`{"document":"a"},`, MaxIndexListings) + `{"document":"a"}]}`, "more than"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseIndex([]byte(c.doc))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestSignedListingCorruptedNewest: a source that, instead of withholding
// the newest bundle of a tag its VO's signed listing names, serves it
// broken (a signature that does not verify, a descriptor that does not
// parse) does not roll the tag back either: the image stays current and
// the older one hidden, as when the bundle is withheld. Before, a bundle
// refused for its signature kept the image from being withheld but not
// from dropping out of its tag, and an unparsable descriptor made the VO
// incomplete, which withheld nothing: the older image was shown again.
// Against the real Glance.
func TestSignedListingCorruptedNewest(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	for name, corrupt := range map[string]func(p *published) []byte{
		"bad signature": func(p *published) []byte {
			return p.desc // the descriptor, as the signature: does not parse as CMS
		},
		"unparsable descriptor": nil,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			tag := "listing-corrupt-" + strings.ReplaceAll(name, " ", "-")
			old := w.publish(dir, spec{vo: "atlas", tag: tag, created: w.now.Add(-2 * time.Hour)})
			cur := w.publish(dir, spec{vo: "atlas", tag: tag, created: w.now.Add(-time.Hour)})
			w.writeListing(dir, listingSpec{serial: 1, ids: []string{old.id, cur.id}})
			o := e.signedOptions(t, w, dir)
			if r := run(t, o); r.Errors != 0 || len(r.ListingFailed) != 0 {
				t.Fatalf("first pass: %+v %+v", r.ListingFailed, r.Outcomes)
			}
			if im := e.get(t, old.id); !im.Hidden {
				t.Fatal("older image not hidden after the first pass")
			}
			file, b := cur.name+".json.p7s", []byte(nil)
			if corrupt != nil {
				b = corrupt(cur)
			} else {
				file, b = cur.name+".json", []byte(`{"version":1,`)
			}
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			r := run(t, o)
			if len(r.ListingFailed) != 0 {
				t.Fatalf("listing failed: %+v", r.ListingFailed)
			}
			if im := e.get(t, cur.id); im.Status != StatusActive || im.Hidden {
				t.Fatalf("newest image: %s hidden %v, want active and shown", im.Status, im.Hidden)
			}
			if im := e.get(t, old.id); !im.Hidden {
				t.Fatal("the tag rolled back: the older image is shown again while the newest one's bundle is served broken")
			}
		})
	}
}

// TestBestListingConflictBelowHighest: two documents of one serial make
// that serial unusable, not the VO's listing: when a higher serial is
// served, it is taken, whatever the order of the documents (an index may
// name several listings; one source serving two old, conflicting listings
// first must not freeze a VO its other sources serve a newer listing of).
func TestBestListingConflictBelowHighest(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	read := func(l listingSpec) ListingDoc {
		dir := t.TempDir()
		w.writeListing(dir, l)
		doc, err := os.ReadFile(filepath.Join(dir, "atlas.listing.json"))
		if err != nil {
			t.Fatal(err)
		}
		sig, err := os.ReadFile(filepath.Join(dir, "atlas.listing.json.p7s"))
		if err != nil {
			t.Fatal(err)
		}
		return ListingDoc{VO: "atlas", Location: dir, Document: doc, Signature: sig}
	}
	id := func(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }
	x := read(listingSpec{serial: 5, ids: []string{id(1)}})
	y := read(listingSpec{serial: 5, ids: []string{id(2)}})
	z := read(listingSpec{serial: 6, ids: []string{id(3)}})
	for name, docs := range map[string][]ListingDoc{
		"conflict first": {x, y, z},
		"conflict last":  {z, x, y},
		"around":         {x, z, y},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := New(e.signedOptions(t, w, t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			l, prob := s.bestListing("atlas", docs, w.now)
			if prob != nil || l.Serial != 6 {
				t.Fatalf("best listing %+v, problem %+v; want serial 6", l, prob)
			}
		})
	}
	t.Run("conflict at the highest", func(t *testing.T) {
		s, err := New(e.signedOptions(t, w, t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		if _, prob := s.bestListing("atlas", []ListingDoc{z, x, y}[1:], w.now); prob == nil || prob.Reason != validator.ListingSerialReused {
			t.Fatalf("problem %+v, want %s", prob, validator.ListingSerialReused)
		}
	})
}
