package glancesync

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"maps"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/validator"
)

// TestBoundUUIDSquatStopped: with trust.require_bound_uuids off (the
// default), cms's bundle without uuid_seed under atlas's bound uuid is
// mirrored a pass before atlas's bound bundle is listed (the squatter's
// source is listed first and propagated faster). Against the real Glance:
//
//   - a --dry-run pass, once atlas's bundle is listed, only plans: its plan
//     says it would deactivate the squat; the image stays active, unmarked;
//   - the next pass deactivates the squat, marked
//     imagetrust_deactivated_by=sync-uuid-squat, logs one ERROR naming it
//     and both VOs, refuses atlas's bundle uuid-squatted with a detail that
//     tells the operator to delete the squat (exit 4 for --once: a
//     refusal that is not routine), counts it in
//     imagetrust_sync_squatted_images and
//     images_refused_total{reason="uuid-squatted"}; the gate refuses to
//     boot it (not-active), with or without the switch;
//   - a later pass of the same process writes nothing, logs no second
//     ERROR, and still refuses atlas's bundle;
//   - atlas's own unbound bundle under one of its bound uuids, mirrored a
//     pass before its bound bundle, is no squat (the same VO): refused
//     uuid-immutable as before, the image left active.
func TestBoundUUIDSquatStopped(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	o, atlasDir, cmsDir := squatOptions(t, e, w)
	o.Metrics = NewMetrics(nil)
	logger, logs := captureLogger(t)
	o.Logger = logger
	ctx := context.Background()

	s3, s5 := newSeed(t), newSeed(t)
	u3, u5 := validator.BoundUUID("atlas", s3), validator.BoundUUID("atlas", s5)
	w.publish(cmsDir, spec{vo: "cms", tag: "squat", id: u3, name: "c3"})
	w.publish(atlasDir, spec{vo: "atlas", tag: "own-unbound", id: u5, name: "a5u"})
	ours, err := o.Glance.List(ctx, o.MirrorProject, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := (&Syncer{o: o}).countSquatted(ours) // other tests' squats in the process's mirror project
	run(t, o)
	for _, c := range []struct{ id, vo string }{{u3, "cms"}, {u5, "atlas"}} {
		if im := e.get(t, c.id); im.Status != StatusActive || im.Props[validator.PropVO] != c.vo {
			t.Fatalf("image %s: %s of %q, want active of %s", c.id, im.Status, im.Props[validator.PropVO], c.vo)
		}
	}
	w.publish(atlasDir, spec{vo: "atlas", tag: "bound", id: u3, seed: s3, name: "a3"})
	w.publish(atlasDir, spec{vo: "atlas", tag: "own-bound", id: u5, seed: s5, name: "a5b"})

	only := func(r *Report, id, vo, action string) Outcome {
		t.Helper()
		var got []Outcome
		for _, oc := range r.Find(id) {
			if oc.VO == vo && oc.Action == action {
				got = append(got, oc)
			}
		}
		if len(got) != 1 {
			t.Fatalf("%s outcomes of %s of %s: %+v", action, vo, id, r.Find(id))
		}
		return got[0]
	}
	dryErrors := 0 // the dry run's Syncer logs its ERROR too
	squatErrors := func() int {
		n := -dryErrors
		for _, l := range logs.lines("catalogue image squats another VO's bound uuid") {
			if l.level == slog.LevelError {
				n++
				if l.attrs["image"] != u3 || l.attrs["squatter_vo"] != "cms" || l.attrs["owner_vo"] != "atlas" {
					t.Errorf("squat logged with %v", l.attrs)
				}
			}
		}
		return n
	}

	// the dry run plans it
	var plan bytes.Buffer
	dry := o
	dry.DryRun, dry.Plan = true, &plan
	r := run(t, dry)
	if oc := only(r, u3, "atlas", ActionRefused); oc.Reason != ReasonUUIDSquatted || !strings.Contains(oc.Detail, "would be deactivated") {
		t.Errorf("atlas's bundle in the dry run: %+v", oc)
	}
	if !strings.Contains(plan.String(), ActionSquatDeactivate+" "+u3+" cms/squat "+ReasonUUIDSquatted) || !strings.Contains(plan.String(), "would deactivate it") {
		t.Errorf("the plan does not say it would deactivate the squat:\n%s", plan.String())
	}
	if dryErrors = squatErrors(); dryErrors != 1 {
		t.Errorf("the dry run logged %d ERRORs for the squat, want 1", dryErrors)
	}
	if im := e.get(t, u3); im.Status != StatusActive || im.Props[crl.PropDeactivatedBy] != "" {
		t.Fatalf("squat after the dry run: %s, deactivated_by %q", im.Status, im.Props[crl.PropDeactivatedBy])
	}

	// the pass stops it
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r, err = s.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if oc := only(r, u3, "cms", ActionSquatDeactivate); oc.Reason != ReasonUUIDSquatted {
		t.Errorf("squat: %+v", oc)
	}
	oc := only(r, u3, "atlas", ActionRefused)
	if oc.Reason != ReasonUUIDSquatted || !strings.Contains(oc.Detail, "deactivated by the sync") || !strings.Contains(oc.Detail, "the operator deletes the squatting image") {
		t.Errorf("atlas's bundle: %+v, want refused %s saying what to do", oc, ReasonUUIDSquatted)
	}
	if RoutineRefusal(oc.Reason) {
		t.Errorf("%s is routine: sync --once would not exit 4", oc.Reason)
	}
	if oc := only(r, u3, "cms", ActionRefused); oc.Reason != ReasonDuplicateUUID {
		t.Errorf("the squatter's bundle beside atlas's bound one: %+v", oc)
	}
	for _, oc := range r.Find(u5) {
		if oc.Tag == "own-bound" && (oc.Action != ActionRefused || oc.Reason != ReasonUUIDImmutable) {
			t.Errorf("atlas's bound bundle over its own unbound image: %+v, want refused %s", oc, ReasonUUIDImmutable)
		}
	}
	if n := r.Count(ActionSquatDeactivate); n != 1 {
		t.Errorf("%d squats deactivated, want 1 (%+v)", n, r.Find(u5))
	}
	im := e.get(t, u3)
	if im.Status != StatusDeactivated || im.Props[crl.PropDeactivatedBy] != DeactivatedBySquat || im.Props[validator.PropVO] != "cms" {
		t.Fatalf("squat: %s, deactivated_by %q, vo %q; want deactivated, marked %s", im.Status, im.Props[crl.PropDeactivatedBy], im.Props[validator.PropVO], DeactivatedBySquat)
	}
	if im := e.get(t, u5); im.Status != StatusActive || im.Props[crl.PropDeactivatedBy] != "" {
		t.Errorf("atlas's own unbound image: %s, deactivated_by %q; want active, untouched", im.Status, im.Props[crl.PropDeactivatedBy])
	}
	if r.Squatted != base+1 || metricValue(t, o.Metrics.SquattedImages) != float64(base+1) {
		t.Errorf("squatted images: report %d, gauge %v, want %d+1", r.Squatted, metricValue(t, o.Metrics.SquattedImages), base)
	}
	if n := metricValue(t, o.Metrics.Refused.WithLabelValues(ReasonUUIDSquatted)); n != 2 {
		t.Errorf("images_refused_total{reason=%q} = %v, want 2 (the dry run's and the pass's)", ReasonUUIDSquatted, n)
	}
	if n := squatErrors(); n != 1 {
		t.Errorf("%d ERRORs for the squat, want 1", n)
	}
	// the gate boots active images only (with the switch on, it refuses
	// the unbound record before it looks at the status)
	pol := validator.BootPolicy{MirrorProject: e.project}
	for _, require := range []bool{false, true} {
		d := w.boundTrust(require).DecideBoot(validator.CatalogImage{ID: im.ID, Owner: im.Owner, Status: im.Status, Properties: im.Props}, pol, w.now)
		if d.Allowed || !require && !slices.Contains(d.Reasons, validator.DecisionNotActive) {
			t.Errorf("boot of the squat (require_bound_uuids %v): %+v, want refused %s", require, d, validator.DecisionNotActive)
		}
	}

	// a later pass changes nothing
	before := e.counter.reset()
	r, err = s.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.counter.reset() - before; n != 0 {
		t.Errorf("the pass after wrote %d times:\n%s", n, e.counter.log)
	}
	if oc := only(r, u3, "atlas", ActionRefused); oc.Reason != ReasonUUIDSquatted || !strings.Contains(oc.Detail, "deactivated by the sync already") {
		t.Errorf("atlas's bundle on the pass after: %+v", oc)
	}
	if n := r.Count(ActionSquatDeactivate); n != 0 {
		t.Errorf("the pass after deactivated %d squats", n)
	}
	if im := e.get(t, u3); im.Status != StatusDeactivated || im.Props[crl.PropDeactivatedBy] != DeactivatedBySquat {
		t.Errorf("squat after the pass after: %s, deactivated_by %q", im.Status, im.Props[crl.PropDeactivatedBy])
	}
	if r.Squatted != base+1 {
		t.Errorf("squatted images on the pass after: %d, want %d+1", r.Squatted, base)
	}
	if n := squatErrors(); n != 1 {
		t.Errorf("%d ERRORs for the squat after two passes, want 1 (once a process)", n)
	}
}

// TestSquatOf: what the sync takes for a squat (squatOf), and the
// fail-safe cases where it must not act: only the mirror project's image
// with data, under the uuid of a verified bundle bound to its VO, that
// carries the record of this uuid of another VO without uuid_seed.
func TestSquatOf(t *testing.T) {
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "pub")
	s := &Syncer{o: Options{Trust: w.boundTrust(false), MirrorProject: "mirror"}}
	judged := func(p *published) *item {
		t.Helper()
		return s.judge(&Bundle{Location: p.name, Descriptor: p.desc, Signature: p.sig, VOs: testVOs}, w.now)
	}
	seed := newSeed(t)
	u := validator.BoundUUID("atlas", seed)
	owner := judged(w.publish(dir, spec{vo: "atlas", tag: "bound", id: u, seed: seed, name: "owner"}))
	if owner.refused != "" {
		t.Fatalf("the owner's bundle: %s %s", owner.refused, owner.detail)
	}
	unsigned := judged(w.publish(dir, spec{vo: "atlas", tag: "bound", id: u, seed: seed, name: "unapproved", noApprover: true}))
	unboundOwner := judged(w.publish(dir, spec{vo: "atlas", tag: "unbound", id: u, name: "owner-unbound"}))
	record := func(p *published) map[string]string {
		t.Helper()
		it := judged(p)
		if it.refused != "" {
			t.Fatalf("%s: %s %s", p.name, it.refused, it.detail)
		}
		return it.record
	}
	squat := record(w.publish(dir, spec{vo: "cms", tag: "squat", id: u, name: "squat"}))
	sameVO := record(w.publish(dir, spec{vo: "atlas", tag: "old", id: u, name: "same-vo"}))
	otherID := record(w.publish(dir, spec{vo: "cms", tag: "other", name: "other-id"}))
	// the squat's record with a uuid_seed edited in (no bundle verifies
	// with it: only the record is read)
	var d map[string]any
	raw, _ := base64.StdEncoding.DecodeString(squat[validator.PropDescriptor])
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	d["uuid_seed"] = newSeed(t)
	raw, _ = json.Marshal(d)
	seeded := maps.Clone(squat)
	seeded[validator.PropDescriptor] = base64.StdEncoding.EncodeToString(raw)
	noRecord := maps.Clone(squat)
	delete(noRecord, validator.PropDescriptor)

	for _, tc := range []struct {
		name   string
		it     *item
		props  map[string]string
		owner  string
		status string
		want   bool
	}{
		{"ok another VO's unbound record, active", owner, squat, "mirror", StatusActive, true},
		{"ok another VO's unbound record, deactivated", owner, squat, "mirror", StatusDeactivated, true},
		{"fail the same VO's unbound record", owner, sameVO, "mirror", StatusActive, false},
		{"fail the image's record has a uuid_seed", owner, seeded, "mirror", StatusActive, false},
		{"fail the bound bundle did not verify", unsigned, squat, "mirror", StatusActive, false},
		{"fail the bundle is not bound", unboundOwner, squat, "mirror", StatusActive, false},
		{"fail not the mirror project's image", owner, squat, "another-project", StatusActive, false},
		{"fail no data", owner, squat, "mirror", StatusQueued, false},
		{"fail a record of another uuid", owner, otherID, "mirror", StatusActive, false},
		{"fail no record", owner, noRecord, "mirror", StatusActive, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := &Image{ID: u, Owner: tc.owner, Status: tc.status, Props: tc.props}
			vo, ok := s.squatOf(im, tc.it)
			if ok != tc.want || ok && vo != "cms" {
				t.Fatalf("squatOf = %q, %v; want %v", vo, ok, tc.want)
			}
		})
	}
}

// TestSquatNotReactivated: the CRL job never reactivates an image the sync
// deactivated as a squat (imagetrust_deactivated_by=sync-uuid-squat),
// whatever it judges the image (crl.Plan, the job's only source of
// reactivations; a write it found lost is planned again by Plan too), and
// keeps the mark unless it revokes the image (which never reactivates
// either); a crl-hold deactivation, the one it does reactivate, for
// contrast.
func TestSquatNotReactivated(t *testing.T) {
	for _, state := range []string{crl.StateValid, crl.StateHold, crl.StateUnknown, crl.StateRevoked} {
		for _, mark := range []string{DeactivatedBySquat, crl.DeactivatedByHold} {
			t.Run(state+" "+mark, func(t *testing.T) {
				img := crl.Image{ID: "x", Status: crl.StatusDeactivated, Properties: map[string]string{
					crl.PropGlobalValidity: crl.StateHold, crl.PropDeactivatedBy: mark}}
				var rev *crl.Revocation
				switch state {
				case crl.StateHold, crl.StateRevoked:
					reason := crl.ReasonCertificateHold
					if state == crl.StateRevoked {
						reason = 1 // keyCompromise
					}
					rev = &crl.Revocation{Ref: crl.Ref{Role: crl.RoleImage, Serial: big.NewInt(7)}, Role: crl.RoleImage, Reason: reason,
						RevokedAt: time.Now().Add(-time.Hour), CRLNumber: big.NewInt(2), Issuer: "CN=Registrar Root"}
				}
				ch := crl.Plan(img, state, rev, "test")
				if mark == crl.DeactivatedByHold {
					if want := state == crl.StateValid; (ch != nil && ch.Reactivate) != want {
						t.Fatalf("crl-hold image judged %s: %+v, reactivated want %v", state, ch, want)
					}
					return
				}
				if ch != nil && ch.Reactivate {
					t.Fatalf("squat judged %s reactivated: %+v", state, ch)
				}
				if ch != nil && slices.Contains(ch.Remove, crl.PropDeactivatedBy) && state != crl.StateRevoked {
					t.Fatalf("squat judged %s loses its mark: %+v", state, ch)
				}
			})
		}
	}
}

// TestSquatFoundHeld: a squat the CRL job deactivated for a
// certificateHold (imagetrust_deactivated_by=crl-hold) before the owner's
// bound bundle is listed is marked sync-uuid-squat instead (real Glance),
// so that the job, judging the image valid again once the hold is lifted,
// does not reactivate it (crl.Plan on the image as Glance holds it); it
// is not deactivated again.
func TestSquatFoundHeld(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	o, atlasDir, cmsDir := squatOptions(t, e, w)
	ctx := context.Background()
	seed := newSeed(t)
	u := validator.BoundUUID("atlas", seed)
	w.publish(cmsDir, spec{vo: "cms", tag: "held-squat", id: u, name: "c6"})
	run(t, o)
	if err := e.admin.Patch(ctx, u, []PatchOp{{Name: crl.PropGlobalValidity, Value: crl.StateHold}, {Name: crl.PropDeactivatedBy, Value: crl.DeactivatedByHold}}); err != nil {
		t.Fatal(err)
	}
	if err := e.admin.Deactivate(ctx, u); err != nil {
		t.Fatal(err)
	}
	w.publish(atlasDir, spec{vo: "atlas", tag: "bound", id: u, seed: seed, name: "a6"})
	r := run(t, o)
	var got []Outcome
	for _, oc := range r.Find(u) {
		if oc.Action == ActionSquatDeactivate {
			got = append(got, oc)
		}
	}
	if len(got) != 1 || !strings.Contains(got[0].Detail, "found deactivated (was "+crl.PropDeactivatedBy+"="+crl.DeactivatedByHold+")") {
		t.Errorf("the held squat: %+v", r.Find(u))
	}
	im := e.get(t, u)
	if im.Status != StatusDeactivated || im.Props[crl.PropDeactivatedBy] != DeactivatedBySquat {
		t.Fatalf("held squat: %s, deactivated_by %q; want deactivated, marked %s", im.Status, im.Props[crl.PropDeactivatedBy], DeactivatedBySquat)
	}
	if ch := crl.Plan(crl.Image{ID: im.ID, Status: im.Status, Properties: im.Props}, crl.StateValid, nil, "hold lifted"); ch != nil && ch.Reactivate {
		t.Errorf("the CRL job, the hold lifted, would reactivate the squat: %+v", ch)
	}
}
