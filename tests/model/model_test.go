// Package model is a seeded, randomized, model-based test of the mirror
// against the real Keystone and Glance of internal/ostest: random
// sequences of publications (good and bad bundles), withdrawals,
// revocations, operator flags and edits, sync passes (in process, under a
// model clock that runs ahead of the real one) and CRL job runs (the built
// `imagetrust crl --once`), with the catalogue, the boot gate's decisions
// and tag resolution checked against a model after every step.
//
// The site's PKI has two people CAs and a Registrar CA under two roots,
// three creators and two approvers, and a CRL for each of the five CAs.
// Revocations and holds hit image certificates, people (for any reason:
// dated ones fall between registrations) and intermediate CAs; holds are
// lifted by removeFromCRL or a CRL without them; a CRL can be reissued
// stale (past nextUpdate + crl.grace). A seed picks trust.strict and
// crl.stale. The model's expectations follow the documented rules
// (docs/publisher-guide.md, "What a revocation does at the sites";
// docs/catalogue.md; docs/operator-guide.md, "When a CRL goes stale";
// crl/doc.go), not the code.
//
// IMAGETRUST_MODEL_SEED replays a run (the seed is logged at the start
// and on failure), IMAGETRUST_MODEL_STEPS sets its length (default 30).
package model

import (
	"fmt"
	"math/big"
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
// the model would have to follow the edited order). One the CRL job judges
// (imagetrust_image_not_before, crl.JudgedProperties): while it is edited
// the job cannot read the record's registration time and judges it
// unknown, unless a revocation or hold that applies whatever the dates
// revokes or holds it, and the sync's repair drops a valid flag; the others leave the job's verdict
// as it is, and the repair keeps it.
var editable = []string{validator.PropURI, validator.PropSize, validator.PropApproverSubject, validator.PropImageFingerprint, validator.PropImageNotBefore}

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
	t.Logf("model test: trust.strict = %v, crl.stale = %s", w.strict, map[bool]string{true: "refuse", false: "warn"}[w.staleRefuse])
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
	var stats []string
	for k, n := range w.stats {
		stats = append(stats, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(stats)
	t.Logf("model test: CRL job transitions: %s", strings.Join(stats, "; "))
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
		{2, len(w.revocablePeople()) > 0, w.opRevokePerson},
		{1, len(w.revocableCAs()) > 0, w.opRevokeCA},
		{4, len(w.holds()) > 0, w.opRelease},
		{3 + 4*w.staleCRLs(), true, w.opNewerCRL},
		{2, true, w.opStaleCRL},
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
		if b.kind == kindValid && !w.final(crlReg, b.serial) && (w.images[b.id] != nil || b.listed) {
			out = append(out, b)
		}
	}
	return out
}

// hold is a certificateHold entry of a CRL.
type hold struct {
	crl    int
	serial string
}

func (w *world) holds() []hold {
	var out []hold // in a stable order, for replays
	for i, c := range w.crls {
		var ss []string
		for s, e := range c.entries {
			if e.reason == crl.ReasonCertificateHold {
				ss = append(ss, s)
			}
		}
		sort.Strings(ss)
		for _, s := range ss {
			out = append(out, hold{i, s})
		}
	}
	return out
}

func (w *world) opRevoke() {
	b := pick(w, w.revocable())
	// any reason counts for an image certificate, whatever its date (a
	// dated one may fall before the image's registration)
	msg := w.revoke(crlReg, b.serialN, []int{crl.ReasonKeyCompromise, crl.ReasonSuperseded, crl.ReasonAffiliationChanged,
		crl.ReasonCessationOfOperation, crl.ReasonCertificateHold, crl.ReasonCertificateHold})
	w.logf("%s of the image certificate of %s #%d (%s/%s)", msg, short(b.id), b.seq, b.vo, b.tag)
	w.check("crl-file")
}

// revokedAt is the date of a revocation of reason (a dated one falls
// before, between or after the registrations of the bundles published so
// far), turning a hold into it when held (docs/publisher-guide.md: dated
// at the hold's date or the new one, whichever is earlier).
func (w *world) revokedAt(reason int, prev crlEntry, held bool) (time.Time, string) {
	at := time.Now().Add(-time.Minute)
	what := "now"
	if dated(reason) {
		k := len(w.bundles) - 1
		if w.rng.IntN(3) != 0 {
			k = w.rng.IntN(len(w.bundles)+2) - 1
		}
		at = w.regBase.Add(time.Duration(k)*time.Minute + 30*time.Second)
		what = fmt.Sprintf("after the registration of bundle #%d", k)
	}
	if held && prev.at.Before(at) {
		at, what = prev.at, "at its hold's date"
	}
	return at, what
}

// revoke lists serial n in CRL i with reason (a hold becomes any
// revocation; a revocation is final) and issues the CRL.
func (w *world) revoke(i int, n *big.Int, reasons []int) string {
	s := hexSerial(n)
	prev, ok := w.crls[i].entries[s]
	held := ok && prev.reason == crl.ReasonCertificateHold
	reason := pick(w, reasons)
	for held && reason == crl.ReasonCertificateHold {
		reason = pick(w, reasons)
	}
	at, when := w.revokedAt(reason, prev, held)
	w.crls[i].entries[s] = crlEntry{serial: n, at: at, reason: reason}
	w.writeCRL(i, false)
	verb := ""
	if held {
		verb = "hold made "
	}
	return fmt.Sprintf("CRL %s %d: %s%s, dated %s", w.crls[i].name, w.crls[i].number, verb, crl.ReasonName(reason), when)
}

func (w *world) revocablePeople() []*person {
	var out []*person
	for _, p := range w.people {
		if !w.final(p.crl, hexSerial(p.leaf.Cert.SerialNumber)) {
			out = append(out, p)
		}
	}
	return out
}

// opRevokePerson revokes or holds a creator's or an approver's
// certificate in their CA's CRL.
func (w *world) opRevokePerson() {
	p := pick(w, w.revocablePeople())
	// holds and dated reasons most often: a compromise revokes every
	// image of the person for good, and the run would have little left
	msg := w.revoke(p.crl, p.leaf.Cert.SerialNumber, []int{
		crl.ReasonUnspecified, crl.ReasonKeyCompromise, crl.ReasonAffiliationChanged,
		crl.ReasonSuperseded, crl.ReasonCessationOfOperation, crl.ReasonPrivilegeWithdrawn,
		crl.ReasonCertificateHold, crl.ReasonCertificateHold, crl.ReasonCertificateHold, crl.ReasonCertificateHold})
	w.logf("%s of %s (%s)", msg, p.name, p.role)
	w.check("crl-file")
}

// caRef is an intermediate CA and the root CRL that speaks for it.
type caRef struct {
	issuer, crl int
}

func (w *world) revocableCAs() []caRef {
	var out []caRef
	for _, c := range []caRef{{crlPeople2, crlPeopleRoot}, {crlPeople2, crlPeopleRoot}, {crlPeople, crlPeopleRoot}, {crlReg, crlRegRoot}} {
		if !w.final(c.crl, hexSerial(w.crls[c.issuer].ca.Cert.SerialNumber)) {
			out = append(out, c)
		}
	}
	return out
}

// opRevokeCA revokes or holds an intermediate CA in its root's CRL.
func (w *world) opRevokeCA() {
	c := pick(w, w.revocableCAs())
	msg := w.revoke(c.crl, w.crls[c.issuer].ca.Cert.SerialNumber, []int{
		crl.ReasonCACompromise, crl.ReasonSuperseded, crl.ReasonCessationOfOperation,
		crl.ReasonCertificateHold, crl.ReasonCertificateHold, crl.ReasonCertificateHold})
	w.logf("%s of the intermediate %s", msg, w.crls[c.issuer].name)
	w.check("crl-file")
}

func (w *world) opRelease() {
	h := pick(w, w.holds())
	c := w.crls[h.crl]
	how := "gone from"
	if w.rng.IntN(2) == 0 {
		e := c.entries[h.serial]
		c.entries[h.serial] = crlEntry{serial: e.serial, at: time.Now().Add(-time.Minute), reason: crl.ReasonRemoveFromCRL}
		how = "removeFromCRL in"
	} else {
		delete(c.entries, h.serial)
	}
	w.writeCRL(h.crl, false)
	w.logf("CRL %s %d: hold of serial %s lifted (%s the CRL)", c.name, c.number, h.serial, how)
	w.check("crl-file")
}

func (w *world) staleCRLs() int {
	n := 0
	for _, c := range w.crls {
		if c.stale {
			n++
		}
	}
	return n
}

// opNewerCRL reissues a CRL, fresh: most often a stale one.
func (w *world) opNewerCRL() {
	i := w.rng.IntN(len(w.crls))
	var stale []int
	for j, c := range w.crls {
		if c.stale {
			stale = append(stale, j)
		}
	}
	if len(stale) > 0 && w.rng.IntN(3) != 0 {
		i = pick(w, stale)
	}
	w.writeCRL(i, false)
	w.logf("CRL %s %d: reissued, same entries", w.crls[i].name, w.crls[i].number)
	w.check("crl-file")
}

// opStaleCRL reissues a CRL whose nextUpdate (and grace) is past: its CA
// did not publish in time (the CRL job runs on the real clock, so the CRL
// is backdated rather than the clock advanced).
func (w *world) opStaleCRL() {
	i := w.rng.IntN(len(w.crls))
	w.writeCRL(i, true)
	w.logf("CRL %s %d: reissued stale (nextUpdate two days ago; crl.stale = %s)", w.crls[i].name, w.crls[i].number, map[bool]string{true: "refuse", false: "warn"}[w.staleRefuse])
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
	ex := w.modelCRL()
	gone := ex.gone
	code, rep, stderr := w.runCRL()
	t := w.t
	// the trust files hold only the roots, as docs/operator-guide.md
	// allows, and the job learns the intermediates from the records'
	// signatures: with no record left, their CRLs judge no image and are
	// not used, with a warning, not refused (TestCRLJobEmptyCatalogue);
	// with records, one of an intermediate no record carries is refused
	// (wrong-issuer: docs/operator-guide.md, "a CA taken out of [trust]")
	if n := countUnused(rep.Warnings); n != len(ex.unused) {
		t.Errorf("CRL job (%d images): %d warnings of an unused CRL, model expects %d %v: %q", len(w.images), n, len(ex.unused), ex.unused, rep.Warnings)
	}
	var refused []string
	for _, r := range rep.Refused {
		refused = append(refused, r.Source)
		if r.Reason != crl.ReasonWrongIssuer {
			t.Errorf("CRL job: refused %s: %s (%s), model expects only %s refusals", r.Source, r.Reason, r.Error, crl.ReasonWrongIssuer)
		}
	}
	sort.Strings(refused)
	sort.Strings(ex.refused)
	if !slices.Equal(refused, ex.refused) {
		t.Errorf("CRL job: refused %v, model expects %v", refused, ex.refused)
	}
	// in transit: every queued image whose flag the run turns revoked or
	// hold, and no image that is not queued, revoked or held
	for id := range ex.transit {
		if !slices.Contains(rep.InTransit, id) {
			t.Errorf("CRL job: queued image %s newly %s not reported in transit (%v)", short(id), w.images[id].global, rep.InTransit)
		}
	}
	for _, id := range rep.InTransit {
		if !ex.mayTransit[id] {
			t.Errorf("CRL job: image %s reported in transit, model expects no queued revoked or held image of that id", short(id))
		}
	}
	w.stats["job: images in transit"] += len(rep.InTransit)
	w.stats["job: CRLs refused"] += len(rep.Refused)
	w.stats["job: CRLs not used"] += len(ex.unused)
	if ex.stale {
		w.stats["job: stale CRL in use"]++
	}
	wantCode := 0
	if len(ex.refused) > 0 || ex.stale || len(rep.InTransit) > 0 {
		wantCode = 4
	}
	if code != wantCode || len(rep.Errors) > 0 || len(rep.LostWrites) > 0 {
		t.Errorf("CRL job: exit %d (model expects %d: refused %v, stale %v), errors %v, lost writes %+v, in transit %v\n%s", code, wantCode, ex.refused, ex.stale, rep.Errors, rep.LostWrites, rep.InTransit, stderr)
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
