package crl

import (
	"maps"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// otherRecordProperties are the record properties of an image
// (validator/record.go) outside JudgedProperties and the job's own
// (global validity, revocation details, deactivated_by). The sync's record
// repair keeps a valid verdict when only these were edited or lost, which
// holds only while Judge reads none of them.
var otherRecordProperties = []string{
	"imagetrust_uuid", "imagetrust_vo", "imagetrust_tag", "imagetrust_uri", "imagetrust_created",
	"imagetrust_sha512", "imagetrust_size", "imagetrust_image_serial", "imagetrust_image_issuer",
	"imagetrust_image_not_after", "imagetrust_image_fingerprint",
	"imagetrust_creator_subject", "imagetrust_creator_issuer", "imagetrust_creator_serial",
	"imagetrust_approver_subject", "imagetrust_approver_issuer", "imagetrust_approver_serial",
	"imagetrust_descriptor", "imagetrust_local_validity",
}

// TestJudgeReadsOnlyJudgedProperties: Judge's verdict on a record (valid,
// revoked through its creator, held through its Registrar CA) is the same
// whatever any other record property holds: absent, empty, or a value
// naming another certificate; and it changes when a JudgedProperties one
// is lost (so the test would see a read). A guard for the sync's repair
// rule (glancesync repairRecord keeps valid unless one of
// JudgedProperties was restored).
func TestJudgeReadsOnlyJudgedProperties(t *testing.T) {
	w := newHoldWorld(t)
	creatorSerial := func() *big.Int {
		// the creator's serial, as the chain names it (newHoldWorld: 101)
		return big.NewInt(101)
	}()
	crls := map[string]map[*testpki.CA][][]byte{
		"valid": {
			w.igtfRoot:  {holdCRL(w.igtfRoot, 1, -time.Hour, nil)},
			w.regRoot:   {holdCRL(w.regRoot, 1, -time.Hour, nil)},
			w.people:    {holdCRL(w.people, 1, -time.Hour, nil)},
			w.registrar: {holdCRL(w.registrar, 1, -time.Hour, nil)},
		},
		"revoked": {
			w.igtfRoot:  {holdCRL(w.igtfRoot, 1, -time.Hour, nil)},
			w.regRoot:   {holdCRL(w.regRoot, 1, -time.Hour, nil)},
			w.people:    {holdCRL(w.people, 1, -time.Hour, nil, pki.Revoked{Serial: creatorSerial, Time: t0.Add(-2 * time.Hour), Reason: ReasonKeyCompromise})},
			w.registrar: {holdCRL(w.registrar, 1, -time.Hour, nil)},
		},
		"hold": {
			w.igtfRoot:  {holdCRL(w.igtfRoot, 1, -time.Hour, nil)},
			w.regRoot:   {holdCRL(w.regRoot, 1, -time.Hour, nil, pki.Revoked{Serial: w.registrar.Cert.SerialNumber, Time: t0.Add(-2 * time.Hour), Reason: ReasonCertificateHold})},
			w.people:    {holdCRL(w.people, 1, -time.Hour, nil)},
			w.registrar: {holdCRL(w.registrar, 1, -time.Hour, nil)},
		},
	}
	base := maps.Clone(w.img.Properties)
	for _, k := range otherRecordProperties {
		if k != "imagetrust_local_validity" {
			base[k] = "a value of " + k // a whole record: every property there
		}
	}
	for _, want := range slices.Sorted(maps.Keys(crls)) {
		ix := &Index{}
		for ca, ders := range crls[want] {
			for _, der := range ders {
				if _, err := ix.AddList(mustList(t, der), ca.Cert, t0.Add(time.Hour), ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		judge := func(props map[string]string) (string, string) {
			img := w.img
			img.Properties = props
			state, _, why := Judge(ix, img, Policy{}, t0.Add(time.Hour))
			return state, why
		}
		state0, why0 := judge(maps.Clone(base))
		if state0 != want {
			t.Fatalf("%s: the record judged %s (%s)", want, state0, why0)
		}
		for _, k := range otherRecordProperties {
			for _, v := range []*string{nil, ptr(""), ptr("1"), ptr(`[{"role":"creator","issuer":"CN=Other","serial":"65"}]`), ptr("2020-01-01T00:00:00Z")} {
				props := maps.Clone(base)
				if v == nil {
					delete(props, k)
				} else {
					props[k] = *v
				}
				if s, why := judge(props); s != state0 || why != why0 {
					t.Errorf("ok %s record with %s edited: judged %s (%s), want %s (%s): Judge reads it; add it to JudgedProperties", want, k, s, why, state0, why0)
				}
			}
		}
		for _, k := range []string{PropChain, PropNotBefore} {
			props := maps.Clone(base)
			delete(props, k)
			s, why := judge(props)
			switch {
			case k == PropNotBefore && want != "valid":
				// a compromise, a hold: they apply whatever the
				// registration time, so they prove themselves without it
				if s != state0 {
					t.Errorf("ok %s record without %s: judged %s (%s), want %s: a revocation that applies whatever the dates is lost with the registration time", want, k, s, why, state0)
				}
			case s == state0:
				t.Errorf("fail %s record without %s still judged %s: the test no longer sees what Judge reads", want, k, s)
			}
		}
	}
}

func ptr(s string) *string { return &s }

// TestJudgeUnreadableRegistrationTime: a record whose
// imagetrust_image_not_before was edited or unset by hand is still revoked
// (or held) by a revocation that applies whatever the dates (the image
// certificate's, a compromise, a hold), so the job deactivates it rather
// than leaving it active as unknown until the sync restores the record; a
// revocation that applies only by the dates (affiliationChanged before the
// registration) cannot be told, and the record is unknown.
func TestJudgeUnreadableRegistrationTime(t *testing.T) {
	w := newHoldWorld(t)
	reg, err := time.Parse(time.RFC3339, regTime)
	if err != nil {
		t.Fatal(err)
	}
	creator := big.NewInt(101)
	empty := func(ca *testpki.CA) []byte { return holdCRL(ca, 1, -time.Hour, nil) }
	for _, c := range []struct {
		name      string
		notBefore *string // nil: unset
		people    pki.Revoked
		hold      bool // the Registrar CA held by its root
		want      string
	}{
		{"ok creator key compromise, registration time edited: revoked", ptr("edited-by-hand"), pki.Revoked{Serial: creator, Time: reg.Add(time.Hour), Reason: ReasonKeyCompromise}, false, StateRevoked},
		{"ok creator key compromise, registration time unset: revoked", nil, pki.Revoked{Serial: creator, Time: reg.Add(time.Hour), Reason: ReasonKeyCompromise}, false, StateRevoked},
		{"ok registrar CA held, registration time edited: hold", ptr("edited-by-hand"), pki.Revoked{}, true, StateHold},
		{"ok creator left before the registration, intact: revoked", ptr(regTime), pki.Revoked{Serial: creator, Time: reg.Add(-time.Hour), Reason: ReasonAffiliationChanged}, false, StateRevoked},
		{"fail creator left before the registration, registration time edited: unknown", ptr("edited-by-hand"), pki.Revoked{Serial: creator, Time: reg.Add(-time.Hour), Reason: ReasonAffiliationChanged}, false, StateUnknown},
		{"fail no revocation, registration time edited: unknown", ptr("edited-by-hand"), pki.Revoked{}, false, StateUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			var people, regRoot []pki.Revoked
			if c.people.Serial != nil {
				people = append(people, c.people)
			}
			if c.hold {
				regRoot = append(regRoot, pki.Revoked{Serial: w.registrar.Cert.SerialNumber, Time: t0.Add(-2 * time.Hour), Reason: ReasonCertificateHold})
			}
			ix := &Index{}
			for ca, der := range map[*testpki.CA][]byte{
				w.igtfRoot: empty(w.igtfRoot), w.registrar: empty(w.registrar),
				w.people:  holdCRL(w.people, 1, -time.Hour, nil, people...),
				w.regRoot: holdCRL(w.regRoot, 1, -time.Hour, nil, regRoot...),
			} {
				if _, err := ix.AddList(mustList(t, der), ca.Cert, t0.Add(time.Hour), ""); err != nil {
					t.Fatal(err)
				}
			}
			img := w.img
			img.Properties = maps.Clone(w.img.Properties)
			if c.notBefore == nil {
				delete(img.Properties, PropNotBefore)
			} else {
				img.Properties[PropNotBefore] = *c.notBefore
			}
			if state, _, why := Judge(ix, img, Policy{}, t0.Add(time.Hour)); state != c.want {
				t.Fatalf("judged %s (%s), want %s", state, why, c.want)
			}
		})
	}
}
