package glancesync

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/validator"
)

// boundTrust is the world's trust with trust.require_bound_uuids on or off.
func (w *world) boundTrust(require bool) *validator.Trust {
	cdn, _ := validator.DNFromRaw(w.creator.Cert.RawSubject)
	adn, _ := validator.DNFromRaw(w.approver.Cert.RawSubject)
	vos := map[string]*validator.VOPolicy{}
	for _, v := range testVOs {
		vos[v] = &validator.VOPolicy{Name: v, Creators: []validator.DN{cdn}, Approvers: []validator.DN{adn}}
	}
	tr, _, err := validator.NewTrust(validator.TrustOptions{
		People: []*x509.Certificate{w.peopleRoot.Cert}, Registrar: []*x509.Certificate{w.regRoot.Cert}, VOs: vos,
		RequireBoundUUIDs: require,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return tr
}

func newSeed(t *testing.T) string {
	t.Helper()
	s, err := validator.NewUUIDSeed()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBoundUUIDSquat reproduces the squat of docs/security-model.md ("One
// image id claimed by two VOs") against the real Glance: a cms bundle,
// listed before atlas's, under the uuid of an atlas bundle, with the same
// creator, approver and registrar authorised for both VOs.
//
// Default configuration: a cms bundle that copies atlas's uuid_seed is
// refused (uuid-not-bound), atlas's image is mirrored; bundles without a
// seed still mirror as before, and the unbound images are counted
// (imagetrust_sync_unbound_images). The squat by an unbound cms bundle
// mirrored a pass before atlas's bundle was listed is deactivated once
// atlas's bound bundle is (refused uuid-squatted; TestBoundUUIDSquatStopped
// has the details), so it is counted no more.
//
// trust.require_bound_uuids on: an unbound cms bundle under a new atlas
// uuid is refused and atlas's image is mirrored; the squat mirrored before
// the switch stays in Glance, deactivated (the sync refuses atlas's
// bundle, uuid-squatted), the gate refuses to boot it, and every unbound
// bundle is refused.
func TestBoundUUIDSquat(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	o, atlasDir, cmsDir := squatOptions(t, e, w)
	o.Metrics = NewMetrics(nil)

	// atlas announces bound uuids; cms copies them
	s1, s3 := newSeed(t), newSeed(t)
	u1, u3 := validator.BoundUUID("atlas", s1), validator.BoundUUID("atlas", s3)
	// the squat of u3 reaches the site a pass before atlas's bundle (the
	// squatter's source propagates faster): listed in one pass with it, the
	// bound bundle would take the uuid (TestBoundUUIDBeatsUnboundInOnePass)
	w.publish(cmsDir, spec{vo: "cms", tag: "no-seed", id: u3, name: "c3"})

	outcome := func(r *Report, id, vo string) Outcome {
		t.Helper()
		var got []Outcome
		for _, oc := range r.Find(id) {
			if oc.VO == vo {
				got = append(got, oc)
			}
		}
		if len(got) != 1 {
			t.Fatalf("outcomes of %s of %s: %+v", vo, id, r.Find(id))
		}
		return got[0]
	}
	wantVO := func(id, vo string) *Image {
		t.Helper()
		im := e.get(t, id)
		if im.Status != StatusActive || im.Props[validator.PropVO] != vo {
			t.Fatalf("image %s: %s, vo %q, want active of %s", id, im.Status, im.Props[validator.PropVO], vo)
		}
		return im
	}

	// the mirror project is the package's: other tests' unbound images
	// are counted too
	base := func() int {
		t.Helper()
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		ours, err := o.Glance.List(context.Background(), o.MirrorProject, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.countUnbound(ours)
	}()

	run(t, o) // (the squat alone)
	w.publish(atlasDir, spec{vo: "atlas", tag: "bound", id: u1, seed: s1, name: "a1"})
	a2 := w.publish(atlasDir, spec{vo: "atlas", tag: "unbound", name: "a2"}) // today's bundles
	w.publish(atlasDir, spec{vo: "atlas", tag: "squatted", id: u3, seed: s3, name: "a3"})
	w.publish(cmsDir, spec{vo: "cms", tag: "copied-seed", id: u1, seed: s1, name: "c1"})

	// pass 1, the default configuration
	r := run(t, o)
	if oc := outcome(r, u1, "cms"); oc.Action != ActionRefused || oc.Reason != validator.ReasonUUIDNotBound {
		t.Errorf("cms bundle with atlas's seed: %+v, want refused %s", oc, validator.ReasonUUIDNotBound)
	}
	wantVO(u1, "atlas")
	wantVO(a2.id, "atlas")
	wantSquat := func() *Image {
		t.Helper()
		im := e.get(t, u3)
		if im.Status != StatusDeactivated || im.Props[validator.PropVO] != "cms" || im.Props[crl.PropDeactivatedBy] != DeactivatedBySquat {
			t.Fatalf("squat %s: %s of %q, deactivated_by %q; want deactivated as a squat", u3, im.Status, im.Props[validator.PropVO], im.Props[crl.PropDeactivatedBy])
		}
		return im
	}
	wantSquat()
	if oc := outcome(r, u3, "atlas"); oc.Action != ActionRefused || oc.Reason != ReasonUUIDSquatted {
		t.Errorf("atlas bundle under the squatted uuid: %+v, want refused %s", oc, ReasonUUIDSquatted)
	}
	var cms []Outcome
	for _, oc := range r.Find(u3) {
		if oc.VO == "cms" {
			cms = append(cms, oc)
		}
	}
	if len(cms) != 2 || cms[0].Action != ActionRefused || cms[0].Reason != ReasonDuplicateUUID || cms[1].Action != ActionSquatDeactivate {
		t.Errorf("the squatter's bundle beside atlas's bound one, and its image: %+v, want refused %s, then %s", cms, ReasonDuplicateUUID, ActionSquatDeactivate)
	}
	if r.Unbound != base+1 || metricValue(t, o.Metrics.UnboundImages) != float64(base+1) {
		t.Errorf("unbound images: report %d, gauge %v, want %d+1 (atlas's a2; cms's squat is deactivated)", r.Unbound, metricValue(t, o.Metrics.UnboundImages), base)
	}

	// the site turns require_bound_uuids on; cms squats a new atlas uuid
	s4 := newSeed(t)
	u4 := validator.BoundUUID("atlas", s4)
	w.publish(atlasDir, spec{vo: "atlas", tag: "after-switch", id: u4, seed: s4, name: "a4"})
	w.publish(cmsDir, spec{vo: "cms", tag: "no-seed-2", id: u4, name: "c4"})
	o.Trust = w.boundTrust(true)
	r = run(t, o)
	if oc := outcome(r, u4, "cms"); oc.Action != ActionRefused || oc.Reason != validator.ReasonUUIDNotBound {
		t.Errorf("unbound cms bundle under atlas's new uuid: %+v, want refused %s", oc, validator.ReasonUUIDNotBound)
	}
	wantVO(u4, "atlas")
	for _, c := range []struct{ id, vo string }{{a2.id, "atlas"}, {u3, "cms"}} {
		if oc := outcome(r, c.id, c.vo); oc.Action != ActionRefused || oc.Reason != validator.ReasonUUIDNotBound {
			t.Errorf("unbound bundle %s of %s with the switch on: %+v", c.id, c.vo, oc)
		}
	}
	if oc := outcome(r, u3, "atlas"); oc.Action != ActionRefused || oc.Reason != ReasonUUIDSquatted {
		t.Errorf("atlas bundle under the uuid squatted before the switch: %+v, want refused %s", oc, ReasonUUIDSquatted)
	}
	// the squat mirrored before the switch is still in Glance,
	// deactivated: the gate refuses it with the switch or without
	pol := validator.BootPolicy{MirrorProject: e.project}
	sq := wantSquat()
	for _, tr := range []*validator.Trust{o.Trust, w.boundTrust(false)} {
		if d := tr.DecideBoot(validator.CatalogImage{ID: sq.ID, Owner: sq.Owner, Status: sq.Status, Properties: sq.Props}, pol, w.now); d.Allowed {
			t.Errorf("boot of the squat %s: %+v", u3, d)
		}
	}
	// the gate, re-verifying the records with the switch on, refuses the
	// unbound image, and boots the bound ones
	for _, c := range []struct {
		id, vo  string
		allowed bool
	}{{a2.id, "atlas", false}, {u1, "atlas", true}, {u4, "atlas", true}} {
		im := wantVO(c.id, c.vo)
		d := o.Trust.DecideBoot(validator.CatalogImage{ID: im.ID, Owner: im.Owner, Status: im.Status, Properties: im.Props}, pol, w.now)
		if d.Allowed != c.allowed || !c.allowed && !strings.Contains(d.Message, validator.ReasonUUIDNotBound) {
			t.Errorf("boot %s (%s): %+v, want allowed %v", c.id, c.vo, d, c.allowed)
		}
		if old := w.boundTrust(false).DecideBoot(validator.CatalogImage{ID: im.ID, Owner: im.Owner, Status: im.Status, Properties: im.Props}, pol, w.now); !old.Allowed {
			t.Errorf("boot %s (%s) with the switch off: %+v", c.id, c.vo, old)
		}
	}
	if r.Unbound != base+1 || metricValue(t, o.Metrics.UnboundImages) != float64(base+1) {
		t.Errorf("unbound images after the switch: report %d, gauge %v, want %d+1", r.Unbound, metricValue(t, o.Metrics.UnboundImages), base)
	}
}

// TestBoundUUIDBeatsUnboundInOnePass: with trust.require_bound_uuids off
// (the default), atlas publishes a bundle under a bound uuid and cms, as
// soon as it sees it, one without a seed under the same uuid, in a source
// the site lists first; the site's next pass lists both (real Glance).
// The bound bundle proves its uuid is atlas's (another VO would need a
// SHA-1 preimage), so it takes the uuid whatever the listing order, and
// the unbound one is refused duplicate-uuid. Before, the first listed
// took the uuid: the squatter's image was mirrored under atlas's uuid and
// atlas's bundle refused, so a bound uuid defended nothing in the one pass
// where both are new without the switch.
func TestBoundUUIDBeatsUnboundInOnePass(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	o, atlasDir, cmsDir := squatOptions(t, e, w)
	s1 := newSeed(t)
	u1 := validator.BoundUUID("atlas", s1)
	w.publish(cmsDir, spec{vo: "cms", tag: "no-seed", id: u1, name: "c1"})
	w.publish(atlasDir, spec{vo: "atlas", tag: "bound", id: u1, seed: s1, name: "a1"})
	r := run(t, o)
	im := e.get(t, u1)
	if im.Status != StatusActive || im.Props[validator.PropVO] != "atlas" {
		t.Fatalf("image %s: %s of %q, want atlas's, active (%+v)", u1, im.Status, im.Props[validator.PropVO], r.Find(u1))
	}
	for _, oc := range r.Find(u1) {
		if oc.VO == "cms" && (oc.Action != ActionRefused || oc.Reason != ReasonDuplicateUUID) {
			t.Errorf("cms's unbound bundle: %+v, want refused %s", oc, ReasonDuplicateUUID)
		}
	}
}

// squatOptions are the options of the squat tests: two directory sources,
// atlas's and cms's, cms's listed first (the squatter wins a uuid first
// come, first served), no aliases, the world's trust without the switch.
func squatOptions(t *testing.T, e *env, w *world) (o Options, atlasDir, cmsDir string) {
	t.Helper()
	root := t.TempDir()
	atlasDir, cmsDir = filepath.Join(root, "atlas"), filepath.Join(root, "cms")
	o = e.options(t, w, map[string][]string{atlasDir: {"atlas"}, cmsDir: {"cms"}})
	if filepath.Base(o.Sources[0].(*DirSource).Root) != "cms" {
		o.Sources[0], o.Sources[1] = o.Sources[1], o.Sources[0]
	}
	o.Sync.Aliases = new(bool)
	o.Trust = w.boundTrust(false)
	return o, atlasDir, cmsDir
}
