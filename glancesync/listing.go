package glancesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/internal/fsutil"
	"github.com/imagetrust/imagetrust/validator"
)

// Signed VO listings (docs/glancesync.md, "Signed VO listings"): for a VO
// with listing = "signed", which of its images exist is what its newest
// valid listing says, not what the sources list. A bundle not in it is
// not mirrored; a catalogue image not in it is the VO's withdrawal and is
// retired; an image in it that no source lists is withheld, and kept. No
// valid listing: nothing of the VO is mirrored anew or retired.

// ReasonNotInListing: a bundle of a VO with signed listings whose uuid its
// valid listing does not name.
const ReasonNotInListing = "not-in-listing"

// ListingFileSuffix is the name of a VO's listing at a directory source's
// root after the VO's name: atlas.listing.json (and .p7s).
const ListingFileSuffix = ".listing.json"

// ListingDoc is one VO listing a source serves.
type ListingDoc struct {
	// VO is the VO it is served as (a directory source: its file name;
	// an index: the document's own vo field, "" when it does not parse).
	VO string
	// Location is where it was read, for logs.
	Location            string
	Document, Signature []byte
	// Err is why it could not be read.
	Err error

	// again, when set, reads the same pair once more (the directory's
	// files, the index's URLs): Syncer.rereadTorn.
	again func(ctx context.Context) ListingDoc
}

// ListingSource is a Source that may serve VO listings. Listings is called
// after a List that returned no error, in the same pass.
type ListingSource interface {
	Listings(ctx context.Context) []ListingDoc
}

// Listings implements ListingSource: VO.listing.json and its .p7s at the
// tree's root, for each VO the source may publish for.
func (d *DirSource) Listings(ctx context.Context) []ListingDoc {
	lim := d.Limits.orDefaults()
	var out []ListingDoc
	err := d.guard(ctx, "reading listings", lim.Time, func() error {
		d.hook("open", d.Root)
		root, err := os.OpenRoot(d.Root)
		if err != nil {
			return err
		}
		defer root.Close()
		for _, vo := range d.AllowedVOs {
			if doc, ok := d.readListing(root, vo); ok {
				out = append(out, doc)
			}
		}
		return nil
	})
	if err != nil {
		// out untouched: an abandoned call (a hung file system) may
		// still write it
		var failed []ListingDoc
		for _, vo := range d.AllowedVOs {
			failed = append(failed, ListingDoc{VO: vo, Location: d.listingLocation(vo), Err: err})
		}
		return failed
	}
	return out
}

func (d *DirSource) listingLocation(vo string) string { return d.Root + "/" + vo + ListingFileSuffix }

// readListing reads VO vo's listing and its .p7s in root; false when there
// is no listing of vo.
func (d *DirSource) readListing(root *os.Root, vo string) (ListingDoc, bool) {
	name := vo + ListingFileSuffix
	doc := ListingDoc{VO: vo, Location: d.listingLocation(vo)}
	doc.again = func(ctx context.Context) ListingDoc { return d.listingAgain(ctx, vo) }
	b, err := readLimited(root, name, validator.MaxListingSize, d.hook)
	if errors.Is(err, fs.ErrNotExist) {
		return doc, false
	}
	if err != nil {
		doc.Err = err
		return doc, true
	}
	doc.Document = b
	sig, err := readLimited(root, name+".p7s", MaxSignatureSize, d.hook)
	if errors.Is(err, fs.ErrNotExist) {
		err = errors.New("no .p7s beside the listing")
	}
	doc.Signature, doc.Err = sig, err
	return doc, true
}

// listingAgain reads VO vo's listing pair once more, as Listings does,
// within the same bounds (ListingDoc.again). A listing gone meanwhile is
// an error: the VO has no listing in this source this pass.
func (d *DirSource) listingAgain(ctx context.Context, vo string) ListingDoc {
	lim := d.Limits.orDefaults()
	var doc ListingDoc
	var found bool
	err := d.guard(ctx, "reading listings", lim.Time, func() error {
		d.hook("open", d.Root)
		root, err := os.OpenRoot(d.Root)
		if err != nil {
			return err
		}
		defer root.Close()
		doc, found = d.readListing(root, vo)
		return nil
	})
	switch {
	case err != nil:
		// doc untouched: an abandoned call may still write it
		return ListingDoc{VO: vo, Location: d.listingLocation(vo), Err: err}
	case !found:
		return ListingDoc{VO: vo, Location: d.listingLocation(vo), Err: errors.New("the listing was removed while it was read again")}
	}
	doc.again = nil // read twice: not a third time
	return doc
}

// isListingFile reports whether rel, a path of the tree, is a VO's listing
// (a root file NAME.listing.json): never a bundle's descriptor. Any VO's,
// not only those of the source: one repository may carry the listings of
// all its VOs at its root (formats.md), and a site that reads it for some
// of them would otherwise take the others' for bundles and refuse them
// (descriptor-invalid, `sync --once` exit 4) on every pass.
func isListingFile(rel string) bool {
	vo, ok := strings.CutSuffix(rel, ListingFileSuffix)
	return ok && vo != "" && !strings.Contains(vo, "/")
}

// ListingProblem is a VO with listing = "signed" that had no valid listing
// in a pass (Report.ListingFailed).
type ListingProblem struct {
	VO string `json:"vo"`
	// Reason is one of validator.ListingReasons.
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

// WithheldImage is a catalogue image its VO's signed listing names that no
// source listed (Report.Withheld): kept, not retired.
type WithheldImage struct {
	ID  string `json:"id"`
	VO  string `json:"vo"`
	Tag string `json:"tag"`
}

// passListings is what a pass made of the signed listings.
type passListings struct {
	// valid are the accepted listings, by VO.
	valid map[string]*validator.Listing
	// failed are the signed VOs without one.
	failed map[string]bool
	// kept holds VO/uuid of the images the valid listings name that no
	// source served a bundle of that stands (valid, or refused only as
	// expired or revoked): whatever a source served instead (nothing, a
	// broken signature, a descriptor that does not parse), they stay
	// current in their tag, even in a pass a source of the VO failed.
	kept map[string]bool
	// unsourced are those of kept whose VO's sources all listed cleanly:
	// reported withheld.
	unsourced map[string]bool
}

func (s *Syncer) signed(vo string) bool { return s.o.VOs[vo].Listing == "signed" }

func (s *Syncer) anySigned(vos []string) bool {
	return slices.ContainsFunc(vos, s.signed)
}

// listingsOf reads the listings of src (a ListingSource, when one of its
// VOs has signed listings) into byVO.
func (s *Syncer) listingsOf(ctx context.Context, src Source, byVO map[string][]ListingDoc) {
	ls, ok := src.(ListingSource)
	if !ok || !s.anySigned(src.VOs()) {
		return
	}
	for _, doc := range s.rereadTorn(ctx, src, ls.Listings(ctx)) {
		if doc.VO == "" && doc.Err != nil {
			// (an index's listing that could not be fetched or parsed:
			// which VO it stands for is not known, so each signed VO of
			// the source without a listing is told why: its failure
			// names this one, not only "no listing")
			for _, v := range src.VOs() {
				if s.signed(v) {
					byVO[v] = append(byVO[v], ListingDoc{VO: v, Location: doc.Location, Err: fmt.Errorf("a listing of the source could not be read (of which VO is not known): %w", doc.Err)})
				}
			}
		}
		if doc.VO == "" || !slices.Contains(src.VOs(), doc.VO) {
			// an index's listing of a VO it may not publish for, or
			// one that does not parse: it stands for no VO
			detail := "not a VO the source may publish for"
			if doc.Err != nil {
				detail = doc.Err.Error()
			}
			s.log.Warn("listing ignored", "source", src.Name(), "location", capText(doc.Location, maxErrText), "vo", doc.VO, "detail", capText(detail, maxErrText))
			continue
		}
		byVO[doc.VO] = append(byVO[doc.VO], doc)
	}
}

// labelListingVOs exports Metrics.ListingFailure at 0 for every reason of
// every VO with signed listings that has no series yet (New), and drops
// the series of VOs a Syncer sharing the metrics had (before a reload)
// that have no signed listings now: the labels are the VOs configured
// now, times validator.ListingReasons, and a VO's value stays as the last
// pass left it across a reload.
func (s *Syncer) labelListingVOs() {
	m := s.m
	m.listingMu.Lock()
	defer m.listingMu.Unlock()
	for v := range m.listingVOs {
		if !s.signed(v) {
			m.ListingFailure.DeletePartialMatch(prometheus.Labels{"vo": v})
			delete(m.listingVOs, v)
		}
	}
	for v := range s.o.VOs {
		if s.signed(v) {
			for _, r := range validator.ListingReasons {
				m.ListingFailure.WithLabelValues(v, r)
			}
			m.listingVOs[v] = true
		}
	}
}

// setListingFailures sets Metrics.ListingFailure to what a pass that ran
// to its end found: 1 for the reason of each VO of failed, 0 for every
// other reason and VO with signed listings.
func (s *Syncer) setListingFailures(failed []ListingProblem) {
	bad := map[[2]string]bool{}
	for _, p := range failed {
		bad[[2]string{p.VO, p.Reason}] = true
	}
	for v := range s.o.VOs {
		if !s.signed(v) {
			continue
		}
		for _, r := range validator.ListingReasons {
			val := 0.0
			if bad[[2]string{v, r}] {
				val = 1
			}
			s.m.ListingFailure.WithLabelValues(v, r).Set(val)
		}
	}
}

// DefaultListingRereadWait is the default of Options.ListingRereadWait.
const DefaultListingRereadWait = 2 * time.Second

// rereadTorn returns docs, those of src's signed VOs whose signature does
// not verify over their document (listing-bad-signature) replaced by a
// second reading of the same pair, made after Options.ListingRereadWait
// (one wait for them all). A listing and its .p7s are two files, written
// one after the other (`imagetrust listing`, rsync, a web server's
// document root): a pass that reads between the two writes reads a torn
// pair, whose failure would keep the VO from every withdrawal and new
// image for a pass. Only the second reading is judged, counted and
// logged, whatever it is; a pair that still does not verify then fails
// as before. ctx ending during the wait leaves docs as they were read.
func (s *Syncer) rereadTorn(ctx context.Context, src Source, docs []ListingDoc) []ListingDoc {
	var torn []int
	now := s.o.Now()
	for i, d := range docs {
		if d.Err != nil || d.again == nil || !slices.Contains(src.VOs(), d.VO) || !s.signed(d.VO) {
			continue
		}
		if _, err := s.o.Trust.VerifyListing(d.Document, d.Signature, d.VO, now); err != nil && validator.ListingReason(err) == validator.ListingBadSignature {
			torn = append(torn, i)
		}
	}
	if len(torn) == 0 {
		return docs
	}
	wait := s.o.ListingRereadWait
	if wait <= 0 {
		wait = DefaultListingRereadWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return docs
	case <-t.C:
	}
	out := slices.Clone(docs)
	for _, i := range torn {
		s.log.Debug("listing signature does not verify: the pair is read again", "source", src.Name(), "location", capText(docs[i].Location, maxErrText), "vo", docs[i].VO)
		out[i] = docs[i].again(ctx)
	}
	return out
}

// applyListings judges the listings of each VO with signed listings, takes
// the valid one of highest serial (not below this host's baseline), and
// applies it to the pass: a valid bundle it does not name is refused
// (ReasonNotInListing); present, for the VO, becomes what it names (an
// image it does not name has left, one it names has not) and the VO is
// complete whatever its sources served; a VO without a
// valid listing is made incomplete (nothing of it retired), its bundles
// set aside, and it is reported.
func (s *Syncer) applyListings(byVO map[string][]ListingDoc, items []*item, present, complete map[string]bool, rp *reporter) *passListings {
	pl := &passListings{valid: map[string]*validator.Listing{}, failed: map[string]bool{}, kept: map[string]bool{}, unsourced: map[string]bool{}}
	var vos []string
	for v := range s.o.VOs {
		if s.signed(v) {
			vos = append(vos, v)
		}
	}
	sort.Strings(vos)
	now := s.o.Now()
	for _, v := range vos {
		l, prob := s.bestListing(v, byVO[v], now)
		if prob != nil {
			pl.failed[v] = true
			complete[v] = false
			s.log.Error("no valid signed listing of the VO: nothing of it is retired or mirrored anew this pass", "vo", v, "reason", prob.Reason, "detail", capText(prob.Detail, maxErrText))
			rp.mu.Lock()
			rp.r.ListingFailed = append(rp.r.ListingFailed, *prob)
			rp.mu.Unlock()
			// its bundles are set aside, unjudged (not refused: the VO
			// is reported once): nothing is mirrored, and the catalogue
			// images of the VO are left exactly as they are, none
			// unhidden or superseded on what the sources list (a source
			// serving an old listing and a withdrawn bundle would
			// otherwise bring the bundle's image back)
			for _, it := range items {
				if it.refused != "" || it.desc.VO != v {
					continue
				}
				it.refused, it.detail = prob.Reason, "VO "+v+" has no valid signed listing this pass: not mirrored, its image left as it is"
				rp.add(s.outcome(it, ActionSkipped, prob.Reason, it.detail))
			}
			continue
		}
		pl.valid[v] = l
		// the uuids of the VO a source served a bundle of that stands
		// (a bundle refused for its signature or its record is no
		// more the image's than a missing one: it is still withheld)
		served := map[string]bool{}
		for _, it := range items {
			if it.desc != nil && it.desc.VO == v && it.b.AllowsVO(v) && (it.refused == "" || RoutineRefusal(it.refused)) {
				served[it.desc.UUID] = true
			}
		}
		for _, it := range items {
			if it.refused != "" || it.desc.VO != v || l.Has(it.desc.UUID) {
				continue
			}
			it.refused = ReasonNotInListing
			it.detail = fmt.Sprintf("uuid not in VO %s's signed listing (serial %d, issued %s)", v, l.Serial, l.Issued)
			s.refuse(it, rp)
		}
		for k := range present {
			if strings.HasPrefix(k, v+"/") && !l.Has(strings.TrimPrefix(k, v+"/")) {
				delete(present, k)
			}
		}
		for _, u := range l.Images {
			// kept current whenever no bundle of it stands; reported
			// withheld only when every source of the VO listed cleanly
			// (an incomplete or empty source's bundles are not missing)
			if !served[u] {
				pl.kept[v+"/"+u] = true
				if complete[v] {
					pl.unsourced[v+"/"+u] = true
				}
			}
			present[v+"/"+u] = true
		}
		// the VO's signed word decides what has left, whatever else the
		// sources served: an unreadable bundle or a descriptor that does
		// not parse (another VO's junk in a shared tree, a file half
		// rewritten) can hide no image of it that the listing names, so it
		// no longer keeps a withdrawal the listing signs from retiring
		complete[v] = true
	}
	return pl
}

// bestListing returns the valid listing of VO v of highest serial among
// docs, recording it as this host's baseline, or why there is none.
func (s *Syncer) bestListing(v string, docs []ListingDoc, now time.Time) (*validator.Listing, *ListingProblem) {
	if len(docs) == 0 {
		return nil, &ListingProblem{VO: v, Reason: validator.ListingMissing, Detail: "no source of the VO serves a listing of it"}
	}
	var best *validator.Listing
	var conflict string // where best's serial is served with other contents
	var first *ListingProblem
	var details []string
	note := func(reason, loc string, err error) {
		if first == nil {
			first = &ListingProblem{VO: v, Reason: reason}
		}
		details = append(details, loc+": "+err.Error())
	}
	for _, d := range docs {
		if d.Err != nil {
			note(validator.ListingMissing, d.Location, d.Err)
			continue
		}
		l, err := s.o.Trust.VerifyListing(d.Document, d.Signature, v, now)
		if err != nil {
			note(validator.ListingReason(err), d.Location, err)
			continue
		}
		switch {
		case best == nil || l.Serial > best.Serial:
			best, conflict = l, ""
		case l.Serial == best.Serial && l.Digest != best.Digest:
			// two documents of one serial: neither is taken, unless
			// a higher serial is served (whatever the order)
			conflict = d.Location
		}
	}
	if best == nil {
		first.Detail = strings.Join(details, "; ")
		return nil, first
	}
	if conflict != "" {
		return nil, &ListingProblem{VO: v, Reason: validator.ListingSerialReused,
			Detail: fmt.Sprintf("%s: serial %d is served with two different contents", conflict, best.Serial)}
	}
	s.mu.Lock()
	base := s.listingBase[v]
	s.mu.Unlock()
	if err := validator.CheckListingSerial(best, base); err != nil {
		return nil, &ListingProblem{VO: v, Reason: validator.ListingReason(err), Detail: err.Error()}
	}
	if best.Serial != base.Serial {
		s.log.Info("signed listing accepted", "vo", v, "serial", best.Serial, "issued", best.Issued, "expires", best.Expires, "signer", best.Signer, "images", len(best.Images))
		s.saveListingBase(v, validator.ListingBaseline{Serial: best.Serial, Digest: best.Digest})
	}
	return best, nil
}

// listingStateMax bounds Options.ListingStateFile.
const listingStateMax = 1 << 20

// loadListingBase reads Options.ListingStateFile (New). A file that cannot
// be read or parsed is an error: the baseline it held would be lost, and a
// rolled back listing taken.
func (s *Syncer) loadListingBase() error {
	s.listingBase = map[string]validator.ListingBaseline{}
	path := s.o.ListingStateFile
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing state %s: %w", path, err)
	}
	if len(b) > listingStateMax {
		return fmt.Errorf("listing state %s: longer than %d bytes", path, listingStateMax)
	}
	if err := json.Unmarshal(b, &s.listingBase); err != nil {
		return fmt.Errorf("listing state %s: %w (remove it to start again from the serials the sources serve: a listing rolled back meanwhile would be taken)", path, err)
	}
	return nil
}

// saveListingBase records base as VO v's baseline, in memory and (unless
// a dry run) in Options.ListingStateFile.
func (s *Syncer) saveListingBase(v string, base validator.ListingBaseline) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listingBase[v] = base
	if s.o.ListingStateFile == "" || s.o.DryRun {
		return
	}
	b, err := json.MarshalIndent(s.listingBase, "", "  ")
	if err == nil {
		err = fsutil.WriteFileAtomic(s.o.ListingStateFile, append(b, '\n'), 0o644)
	}
	if err != nil {
		// kept in memory: this process still refuses a rollback
		s.log.Error("cannot record the accepted listing serial: another run may take a rolled back listing", "file", s.o.ListingStateFile, "vo", v, "err", err)
		s.m.Errors.Inc()
	}
}

// withheld returns the catalogue images (active, of the mirror project,
// not aliases) that a valid listing names and no source served a bundle
// of that stands (passListings.kept), and reports those of them whose
// VO's sources all listed cleanly (passListings.unsourced), sorted by id.
func (s *Syncer) withheld(ours []*Image, pl *passListings, rp *reporter) map[string]*Image {
	out := map[string]*Image{}
	var list []WithheldImage
	for _, im := range ours {
		if im.Props[validator.PropAlias] != "" || im.Props[validator.PropUUID] == "" || im.Status != StatusActive {
			continue
		}
		if im.Owner != "" && im.Owner != s.o.MirrorProject {
			continue
		}
		vo := im.Props[validator.PropVO]
		if !pl.kept[vo+"/"+im.ID] {
			continue
		}
		out[im.ID] = im
		if !pl.unsourced[vo+"/"+im.ID] {
			continue
		}
		list = append(list, WithheldImage{ID: im.ID, VO: vo, Tag: im.Props[validator.PropTag]})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	for _, w := range list {
		s.log.Warn("image in its VO's signed listing but listed by no source (withheld?): kept as it is, not retired", "image", w.ID, "vo", w.VO, "tag", w.Tag)
	}
	rp.mu.Lock()
	rp.r.Withheld = list
	rp.mu.Unlock()
	return out
}

// withheldAway reports, under retire = "delete", whether a bundle with no
// image in Glance is older than a withheld image of its tag (and names
// it): mirrored, it would be superseded, and deleted, at once.
func (s *Syncer) withheldAway(it *item, withheld map[string]*Image) (string, bool) {
	if s.o.Sync.Retire != "delete" {
		return "", false
	}
	for _, im := range withheld {
		if im.Props[validator.PropVO] == it.desc.VO && im.Props[validator.PropTag] == it.desc.Tag && imageCreated(im).After(it.desc.CreatedTime) {
			return im.ID, true
		}
	}
	return "", false
}
