// Package model is a seeded, randomized, model-based test of the mirror
// against the real Keystone and Glance of internal/ostest: random
// sequences of publications (good and bad bundles), withdrawals,
// revocations, operator flags and edits, sync passes (in process, under a
// model clock that runs ahead of the real one) and CRL job runs (the built
// `imagetrust crl --once`), with the catalogue, the boot gate's decisions
// and tag resolution checked against a model after every step.
//
// IMAGETRUST_MODEL_SEED replays a run (the seed is logged at the start
// and on failure), IMAGETRUST_MODEL_STEPS sets its length (default 30).
package model

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/validator"
)

func TestMain(m *testing.M) { os.Exit(ostest.Main(m)) }

const (
	envSeed  = "IMAGETRUST_MODEL_SEED"
	envSteps = "IMAGETRUST_MODEL_STEPS"
)

// Signed record properties an operator may edit by hand (none that orders
// or finds the images of a tag: those the gate refuses as tampered too, but
// the model would have to follow the edited order).
var editable = []string{validator.PropURI, validator.PropSize, validator.PropApproverSubject, validator.PropImageFingerprint}

func TestModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envSeed); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", envSeed, err)
		}
		seed = v
	}
	steps := 30
	if s := os.Getenv(envSteps); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("%s=%q: want a positive number", envSteps, s)
		}
		steps = v
	}
	t.Logf("model test: seed %d, %d steps (replay with %s=%d %s=%d)", seed, steps, envSeed, seed, envSteps, steps)
	start := time.Now()
	w := newWorld(t, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d after %d steps; replay: %s=%d %s=%d\n%s", seed, len(w.history), envSeed, seed, envSteps, steps,
				strings.Join(w.history, "\n"))
			if w.lastLog != nil {
				t.Logf("last sync pass log:\n%s", w.lastLog)
			}
		}
	})
	ostest.Binary(t) // built before the clock matters

	// a few images to begin with
	for i := 0; i < 3; i++ {
		w.opPublish()
	}
	w.opSync()
	for i := 0; i < steps && !t.Failed(); i++ {
		w.step()
	}
	if !t.Failed() {
		// end with a sync pass and a CRL run, as a site would
		w.opSync()
		w.opCRL()
	}
	t.Logf("model test: %d steps, %d bundles, %d images in %s", len(w.history), len(w.bundles), len(w.images), time.Since(start).Round(time.Second))
}

// step makes one random operation and checks the invariants.
func (w *world) step() {
	type op struct {
		weight int
		ok     bool
		f      func()
	}
	active, withImage := 0, 0
	for _, im := range w.images {
		withImage++
		if im.status == "active" {
			active++
		}
	}
	ops := []op{
		{22, true, w.opPublish},
		{8, true, w.opPublishBad},
		{7, len(w.listed()) > 0, w.opRemove},
		{6, len(w.revocable()) > 0, w.opRevoke},
		{3, len(w.holds()) > 0, w.opRelease},
		{2, true, w.opNewerCRL},
		{8, withImage > 0, w.opLocal},
		{3, withImage > 0, w.opDelete},
		{4, len(w.editableImages()) > 0, w.opEdit},
		{20, true, w.opSync},
		{10, true, w.opCRL},
		{4, w.offset < 60*24*time.Hour, w.opAdvance},
	}
	total := 0
	for _, o := range ops {
		if o.ok {
			total += o.weight
		}
	}
	n := w.rng.IntN(total)
	for _, o := range ops {
		if !o.ok {
			continue
		}
		if n < o.weight {
			o.f()
			return
		}
		n -= o.weight
	}
}

func pick[T any](w *world, xs []T) T { return xs[w.rng.IntN(len(xs))] }

func (w *world) opPublish() {
	vo, tag := pick(w, vos), pick(w, tags)
	var srcs []int
	for s := range w.srcs {
		if allows(s, vo) {
			srcs = append(srcs, s)
		}
	}
	src := pick(w, srcs)
	created, what := w.newCreated()
	life := pick(w, []time.Duration{4 * 24 * time.Hour, 15 * 24 * time.Hour, 365 * 24 * time.Hour})
	b := w.publish(kindValid, vo, tag, src, created, life)
	w.logf("publish %s %s/%s in src%d (%s, created %s, expires in %s)", short(b.id), vo, tag, src, what, created.Format(time.RFC3339), life)
	w.check("publish")
}

// newCreated is a new version's created time, or now and then an older one.
func (w *world) newCreated() (time.Time, string) {
	if w.rng.IntN(4) == 0 {
		return w.created.Add(-time.Duration(1+w.rng.IntN(48)) * time.Hour), "older version"
	}
	w.created = w.created.Add(time.Duration(1+w.rng.IntN(60)) * time.Minute)
	return w.created, "new version"
}

func (w *world) opPublishBad() {
	kind := pick(w, badKinds)
	vo, tag := pick(w, vos), pick(w, tags)
	if kind == kindWrongVO {
		vo = pick(w, []string{"alpha", "gamma"}) // beta: both sources may
	}
	var srcs []int
	for s := range w.srcs {
		if allows(s, vo) != (kind == kindWrongVO) {
			srcs = append(srcs, s)
		}
	}
	src := pick(w, srcs)
	created, _ := w.newCreated()
	b := w.publish(kind, vo, tag, src, created, 365*24*time.Hour)
	w.logf("publish bad %s (%s) %s/%s in src%d", short(b.id), kind, vo, tag, src)
	w.check("publish")
}

func (w *world) opRemove() {
	b := pick(w, w.listed())
	b.pub.Remove(w.t)
	b.listed = false
	w.logf("remove bundle %s (%s %s/%s) from src%d", short(b.id), b.kind, b.vo, b.tag, b.src)
	w.check("remove")
}

// revocable are the valid bundles whose image certificate the CRL does not
// list as revoked (held ones included), mirrored or listed.
func (w *world) revocable() []*bundle {
	var out []*bundle
	for _, b := range w.bundles {
		if b.kind == kindValid && !w.everRevoked[b.serial] && (w.images[b.id] != nil || b.listed) {
			out = append(out, b)
		}
	}
	return out
}

func (w *world) holds() []string {
	var out []string // in the order of publication, for replays
	for _, b := range w.bundles {
		if e, ok := w.entries[b.serial]; ok && e.reason == 6 {
			out = append(out, b.serial)
		}
	}
	return out
}

func (w *world) opRevoke() {
	b := pick(w, w.revocable())
	reason := pick(w, []int{1, 4, 6})
	if _, held := w.entries[b.serial]; held {
		reason = 1 // a hold made a revocation
	}
	w.entries[b.serial] = crlEntry{serial: b.serialN, at: time.Now().Add(-time.Minute), reason: reason}
	if reason != 6 {
		w.everRevoked[b.serial] = true
	}
	w.writeCRL()
	w.logf("CRL %d: image certificate of %s (%s/%s) %s", w.crlNumber, short(b.id), b.vo, b.tag, crl.ReasonName(reason))
	w.check("crl-file")
}

func (w *world) opRelease() {
	s := pick(w, w.holds())
	delete(w.entries, s)
	w.writeCRL()
	w.logf("CRL %d: hold of serial %s lifted", w.crlNumber, s)
	w.check("crl-file")
}

func (w *world) opNewerCRL() {
	w.writeCRL()
	w.logf("CRL %d: reissued, same entries", w.crlNumber)
	w.check("crl-file")
}

func (w *world) opLocal() {
	id := pick(w, w.imageIDs())
	im := w.images[id]
	v := pick(w, []string{validator.LocalBlacklist, validator.LocalRunAnyway, "Blacklist", ""})
	if v == "" {
		w.patch(id, glancesync.PatchOp{Name: validator.PropLocalValidity, Remove: true})
	} else {
		w.patch(id, glancesync.PatchOp{Name: validator.PropLocalValidity, Value: v})
	}
	im.local = v
	w.logf("operator: %s local validity %q (was %s, global %s)", short(id), v, im.status, im.global)
	w.check("operator")
}

func (w *world) opDelete() {
	id := pick(w, w.imageIDs())
	w.gdelete(id)
	w.deleteImage(id)
	w.logf("operator: delete image %s", short(id))
	w.check("operator")
}

func (w *world) editableImages() []string {
	var out []string
	for _, id := range w.imageIDs() {
		if im := w.images[id]; im.tampered == "" && im.status != "queued" {
			out = append(out, id)
		}
	}
	return out
}

func (w *world) opEdit() {
	id := pick(w, w.editableImages())
	prop := pick(w, editable)
	im := w.images[id]
	switch w.rng.IntN(2) {
	case 0:
		w.patch(id, glancesync.PatchOp{Name: prop, Value: "edited-by-hand"})
		w.logf("operator: edit %s of %s", prop, short(id))
	default:
		w.patch(id, glancesync.PatchOp{Name: prop, Remove: true})
		w.logf("operator: unset %s of %s", prop, short(id))
	}
	im.tampered = prop
	w.check("operator")
}

func (w *world) opAdvance() {
	d := pick(w, []time.Duration{2 * 24 * time.Hour, 7 * 24 * time.Hour})
	w.offset += d
	w.logf("clock: +%s (model time %s)", d, w.now().Format(time.RFC3339))
	w.check("clock")
}

func (w *world) opSync() {
	retire := pick(w, []string{"keep", "hide", "hide", "delete", "delete"})
	ingest := pick(w, []string{"import", "upload"})
	crls := w.rng.IntN(2) == 0
	checker := w.rng.IntN(2) == 0
	aliasesOn := w.rng.IntN(10) != 0
	w.logf("sync pass: retire=%s ingest=%s trust-crls=%v servers-checker=%v aliases=%v", retire, ingest, crls, checker, aliasesOn)
	before := w.glanceImages()
	ex := w.modelSync(retire, crls, checker, aliasesOn)
	r := w.runSync(retire, ingest, crls, checker, aliasesOn)
	t := w.t
	if r.Errors != 0 {
		t.Errorf("sync pass: %d errors", r.Errors)
	}
	bad, routine := map[string]bool{}, map[string]bool{}
	for _, o := range r.Outcomes {
		switch {
		case o.Action == glancesync.ActionFailed:
			t.Errorf("sync pass: failed outcome %+v", o)
		case o.Action == glancesync.ActionSkipped && o.Reason == glancesync.ReasonUnreadable:
			t.Errorf("sync pass: unreadable bundle %+v", o)
		case o.Action == glancesync.ActionRefused && glancesync.RoutineRefusal(o.Reason):
			routine[o.ID] = true
		case o.Action == glancesync.ActionRefused:
			bad[o.ID] = true
		}
	}
	if joinIDs(bad) != joinIDs(ex.bad) {
		t.Errorf("sync pass: exit-relevant refusals %s, model expects %s\n%s", joinIDs(bad), joinIDs(ex.bad), outcomes(r))
	}
	if joinIDs(routine) != joinIDs(ex.routine) {
		t.Errorf("sync pass: routine refusals %s, model expects %s\n%s", joinIDs(routine), joinIDs(ex.routine), outcomes(r))
	}
	w.flagsKept("sync pass", before)
	w.check("sync")
}

func outcomes(r *glancesync.Report) string {
	var b strings.Builder
	for _, o := range r.Outcomes {
		id := o.ID
		if len(id) > 8 {
			id = short(id)
		}
		fmt.Fprintf(&b, "  %s %s/%s %s %s %s\n", id, o.VO, o.Tag, o.Action, o.Reason, o.Detail)
	}
	return b.String()
}

func (w *world) opCRL() {
	w.logf("CRL job run")
	before := w.glanceImages()
	empty := len(w.images) == 0
	gone := w.modelCRL()
	code, rep, stderr := w.runCRL()
	t := w.t
	if empty {
		// the trust files hold only the roots, as docs/operator-guide.md
		// allows, and the job learns the intermediates from the records'
		// signatures: with no record left, their CRLs judge no image and
		// are not used, with a warning, not refused (TestCRLJobEmptyCatalogue)
		if n := countUnused(rep.Warnings); n != 2 {
			t.Errorf("CRL job on an empty catalogue: %d warnings of an unused CRL, want 2: %q", n, rep.Warnings)
		}
	}
	if code != 0 || len(rep.Errors) > 0 || len(rep.Refused) > 0 || len(rep.LostWrites) > 0 || len(rep.InTransit) > 0 {
		t.Errorf("CRL job: exit %d, errors %v, refused %+v, lost writes %+v, in transit %v\n%s", code, rep.Errors, rep.Refused, rep.LostWrites, rep.InTransit, stderr)
	}
	var got []string
	for _, g := range rep.LocalFlagsGone {
		got = append(got, g.ImageID)
	}
	sort.Strings(got)
	sort.Strings(gone)
	if !slices.Equal(got, gone) {
		t.Errorf("CRL job: local flags gone %v, model expects %v", got, gone)
	}
	w.flagsKept("CRL job", before)
	w.check("crl")
}

// flagsKept: neither the sync nor the CRL job ever writes an operator's
// local flag (an image they delete takes it along).
func (w *world) flagsKept(who string, before map[string]*glancesync.Image) {
	after := w.glanceImages()
	for id, b := range before {
		a := after[id]
		if a == nil {
			continue
		}
		bv, bok := b.Props[validator.PropLocalValidity]
		av, aok := a.Props[validator.PropLocalValidity]
		if bv != av || bok != aok {
			w.t.Errorf("%s changed the local flag of %s: %q -> %q", who, short(id), bv, av)
		}
	}
}
