package validator

import (
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestBoundUUIDKnownAnswer: the derivation is RFC 9562's version 5 of
// VO "\n" seed in UUIDNamespace, as any other implementation computes it
// (the value is Python's uuid.uuid5 of the same namespace and name).
func TestBoundUUIDKnownAnswer(t *testing.T) {
	got := BoundUUID("atlas", "00112233445566778899aabbccddeeff")
	if got != "7989320e-faec-56d8-9794-e0d4b591edc3" {
		t.Fatalf("BoundUUID = %s", got)
	}
	u := uuid.MustParse(got)
	if u.Version() != 5 || u.Variant() != uuid.RFC4122 || !canonicalUUID.MatchString(got) {
		t.Fatalf("%s: version %d variant %v", got, u.Version(), u.Variant())
	}
	if BoundUUID("cms", "00112233445566778899aabbccddeeff") == got {
		t.Fatal("two VOs, one seed, one uuid")
	}
	seed, err := NewUUIDSeed()
	if err != nil || !ValidUUIDSeed(seed) {
		t.Fatalf("NewUUIDSeed = %q, %v", seed, err)
	}
}

// bindWorld is the test PKI with a trust whose two VOs, atlas and cms,
// authorise the same creator and approver: what stops a cms bundle under
// an atlas uuid is then the binding alone (docs/security-model.md, "One
// image id claimed by two VOs").
func bindTrust(t *testing.T, w *world, require bool) *Trust {
	t.Helper()
	cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
	adn, _ := DNFromRaw(w.approver.Cert.RawSubject)
	tr, _, err := NewTrust(TrustOptions{
		People:    []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert},
		Registrar: []*x509.Certificate{w.regRoot.Cert},
		VOs: map[string]*VOPolicy{
			"atlas": {Name: "atlas", Creators: []DN{cdn}, Approvers: []DN{adn}},
			"cms":   {Name: "cms", Creators: []DN{cdn}, Approvers: []DN{adn}},
		},
		RequireBoundUUIDs: require,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// bind makes a descriptor bound: seed, and the uuid of vo and seed.
func bind(vo, seed string) func(map[string]any) {
	return func(d map[string]any) {
		d["uuid_seed"] = seed
		d["uuid"] = BoundUUID(vo, seed)
	}
}

// TestVerifyBoundUUID: a descriptor with a uuid_seed verifies only when its
// uuid is the one its own VO and seed give, whatever the site's switch
// says; with trust.require_bound_uuids, one without a seed is refused too.
// The image certificate always names the descriptor's uuid: the
// registrar is the squatter's accomplice.
func TestVerifyBoundUUID(t *testing.T) {
	w := newWorld(t)
	off, on := bindTrust(t, w, false), bindTrust(t, w, true)
	const atlasSeed = "00112233445566778899aabbccddeeff"
	atlasUUID := BoundUUID("atlas", atlasSeed)
	cases := []struct {
		name      string
		opts      bundleOpts
		wantOff   string // "" valid; else the descriptor check's reason
		wantOn    string
		detailHas string
	}{
		{name: "ok bound", opts: bundleOpts{mutateDesc: bind("atlas", atlasSeed)}},
		{name: "ok bound, another VO's own seed", opts: bundleOpts{vo: "cms", mutateDesc: bind("cms", atlasSeed)}},
		{name: "ok unbound without the switch, fail with it", opts: bundleOpts{},
			wantOn: ReasonUUIDNotBound, detailHas: "require_bound_uuids"},
		{name: "fail seed of another VO (cms under atlas's uuid and seed)", opts: bundleOpts{vo: "cms", mutateDesc: bind("atlas", atlasSeed)},
			wantOff: ReasonUUIDNotBound, wantOn: ReasonUUIDNotBound, detailHas: atlasUUID},
		{name: "fail uuid altered", opts: bundleOpts{mutateDesc: func(d map[string]any) {
			bind("atlas", atlasSeed)(d)
			d["uuid"] = "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f"
		}}, wantOff: ReasonUUIDNotBound, wantOn: ReasonUUIDNotBound},
		{name: "fail seed altered", opts: bundleOpts{mutateDesc: func(d map[string]any) {
			bind("atlas", atlasSeed)(d)
			d["uuid_seed"] = "10112233445566778899aabbccddeeff"
		}}, wantOff: ReasonUUIDNotBound, wantOn: ReasonUUIDNotBound},
		{name: "fail vo altered (atlas's binding, VO renamed)", opts: bundleOpts{vo: "cms", mutateDesc: func(d map[string]any) {
			bind("atlas", atlasSeed)(d)
		}}, wantOff: ReasonUUIDNotBound, wantOn: ReasonUUIDNotBound},
		{name: "fail seed malformed (upper case)", opts: bundleOpts{mutateDesc: func(d map[string]any) {
			d["uuid_seed"] = strings.ToUpper(atlasSeed)
			d["uuid"] = BoundUUID("atlas", strings.ToUpper(atlasSeed))
		}}, wantOff: ReasonDescriptorInvalid, wantOn: ReasonDescriptorInvalid, detailHas: "uuid_seed"},
		{name: "fail seed malformed (short)", opts: bundleOpts{mutateDesc: bind("atlas", atlasSeed[1:])},
			wantOff: ReasonDescriptorInvalid, wantOn: ReasonDescriptorInvalid, detailHas: "uuid_seed"},
		{name: "fail seed malformed (long)", opts: bundleOpts{mutateDesc: bind("atlas", atlasSeed+"0")},
			wantOff: ReasonDescriptorInvalid, wantOn: ReasonDescriptorInvalid, detailHas: "uuid_seed"},
		{name: "fail seed malformed (not hex)", opts: bundleOpts{mutateDesc: bind("atlas", "g0112233445566778899aabbccddeeff")},
			wantOff: ReasonDescriptorInvalid, wantOn: ReasonDescriptorInvalid, detailHas: "uuid_seed"},
		{name: "fail seed malformed (line feed)", opts: bundleOpts{mutateDesc: bind("atlas", "0011223344556677\n8899aabbccddeef")},
			wantOff: ReasonDescriptorInvalid, wantOn: ReasonDescriptorInvalid, detailHas: "uuid_seed"},
		{name: "fail seed empty", opts: bundleOpts{mutateDesc: func(d map[string]any) { d["uuid_seed"] = "" }},
			wantOff: ReasonDescriptorInvalid, wantOn: ReasonDescriptorInvalid, detailHas: "uuid_seed"},
		{name: "fail seed null", opts: bundleOpts{mutateDesc: func(d map[string]any) { d["uuid_seed"] = nil }},
			wantOff: ReasonDescriptorInvalid, wantOn: ReasonDescriptorInvalid, detailHas: "uuid_seed"},
		{name: "fail seed a number", opts: bundleOpts{mutateDesc: func(d map[string]any) { d["uuid_seed"] = 1 }},
			wantOff: ReasonDescriptorInvalid, wantOn: ReasonDescriptorInvalid, detailHas: "uuid_seed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := w.bundle(c.opts)
			for _, sw := range []struct {
				name string
				tr   *Trust
				want string
			}{{"switch off", off, c.wantOff}, {"switch on", on, c.wantOn}} {
				r := sw.tr.Verify(b.input(testNow))
				if sw.want == "" {
					assertResult(t, r, true)
					continue
				}
				assertResult(t, r, false, failure{CheckDescriptor, sw.want})
				if sw.want == ReasonUUIDNotBound && len(r.Failed()) != 1 {
					// the descriptor is kept: every other check passes
					t.Errorf("%s: failed checks %+v, want the descriptor's alone", sw.name, r.Failed())
				}
				var vf *VerificationFailure
				if !errors.As(r.Err(), &vf) || vf.Reasons[0] != sw.want {
					t.Errorf("%s: Err() = %v, want %s first", sw.name, r.Err(), sw.want)
				}
				if d := r.Check(CheckDescriptor).Detail; !strings.Contains(d, c.detailHas) {
					t.Errorf("%s: detail %q does not name %q", sw.name, d, c.detailHas)
				}
				if sw.want == ReasonUUIDNotBound && (r.Descriptor == nil || !errors.Is(r.Descriptor.checkBinding(sw.tr.requireBound), ErrUUIDNotBound)) {
					t.Errorf("%s: descriptor %+v", sw.name, r.Descriptor)
				}
			}
		})
	}
}

// TestDecideBootUnbound: the gate re-verifies a catalogue record with the
// site's switch: an unbound image mirrored before require_bound_uuids was
// turned on (a squat among them) boots no more once it is; a bound one
// still does.
func TestDecideBootUnbound(t *testing.T) {
	w := newWorld(t)
	off, on := bindTrust(t, w, false), bindTrust(t, w, true)
	pol := BootPolicy{MirrorProject: mirror}
	unbound := catalogImage(t, off, w.bundle(bundleOpts{vo: "cms"}))
	bound := catalogImage(t, off, w.bundle(bundleOpts{mutateDesc: bind("atlas", "00112233445566778899aabbccddeeff")}))
	if d := off.DecideBoot(unbound, pol, testNow); !d.Allowed {
		t.Fatalf("switch off, unbound: %+v", d)
	}
	d := on.DecideBoot(unbound, pol, testNow)
	if d.Allowed || len(d.Reasons) != 1 || d.Reasons[0] != DecisionRecordInvalid || !strings.Contains(d.Message, "uuid-not-bound") {
		t.Fatalf("switch on, unbound: %+v", d)
	}
	for _, tr := range []*Trust{off, on} {
		if d := tr.DecideBoot(bound, pol, testNow); !d.Allowed {
			t.Fatalf("bound: %+v", d)
		}
	}
}

// TestFormatsExampleBound: the descriptor example of docs/formats.md is a
// bound one, as `imagetrust describe` writes it, and its uuid is the one
// the documented derivation gives.
func TestFormatsExampleBound(t *testing.T) {
	b, err := os.ReadFile("../docs/formats.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "```json\n")
	j := strings.Index(doc[i+8:], "```")
	if i < 0 || j < 0 {
		t.Fatal("no JSON example in docs/formats.md")
	}
	d, err := ParseDescriptor([]byte(doc[i+8 : i+8+j]))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Bound() {
		t.Fatalf("example uuid %s, seed %s: want %s", d.UUID, d.UUIDSeed, BoundUUID(d.VO, d.UUIDSeed))
	}
	if !strings.Contains(doc, UUIDNamespace.String()) {
		t.Fatalf("docs/formats.md does not give the namespace %s", UUIDNamespace)
	}
}
