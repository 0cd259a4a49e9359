package model

import (
	"slices"
	"sort"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/validator"
)

// check compares Glance with the model after a step (after names the
// kind of step), and checks the invariants that hold whatever the model
// says.
func (w *world) check(after string) {
	t := w.t
	t.Helper()
	ims := w.glanceImages()
	catalogue := map[string]*glancesync.Image{}
	aliases := map[string][]string{} // VO/TAG -> names of its alias images
	for id, im := range ims {
		if a := im.Props[validator.PropAlias]; a != "" {
			aliases[a] = append(aliases[a], im.Name)
			continue
		}
		if im.Props[validator.PropRecordVersion] == "" {
			t.Errorf("after %s: image %s of the mirror project without a record", after, short(id))
			continue
		}
		catalogue[id] = im
	}

	// Glance holds exactly the model's images, as the model says.
	for _, id := range w.imageIDs() {
		m := w.images[id]
		g := catalogue[id]
		if g == nil {
			t.Errorf("after %s: image %s (%s/%s, %s) missing from Glance; model: %+v", after, short(id), m.b.vo, m.b.tag, m.b.kind, *m)
			continue
		}
		got := [...]string{g.Status, boolStr(g.Hidden), g.Props[validator.PropGlobalValidity], g.Props[validator.PropLocalValidity], g.Props[crl.PropDeactivatedBy], g.Visibility}
		want := [...]string{m.status, boolStr(m.hidden), m.global, m.local, m.deactBy, visibility[m.b.vo]}
		if got != want {
			t.Errorf("after %s: image %s (%s/%s): Glance has status/hidden/global/local/deactivated_by/visibility %q, model %q", after, short(id), m.b.vo, m.b.tag, got, want)
		}
		// which certificate: one that makes the image revoked or held
		_, ok := g.Props[crl.PropRevokedRole]
		cause := g.Props[crl.PropRevokedRole] + " " + g.Props[crl.PropRevSerial] + " " + g.Props[crl.PropRevReason]
		if rh := m.global == crl.StateRevoked || m.global == crl.StateHold; rh && !m.causes[cause] || !rh && ok {
			t.Errorf("after %s: image %s (%s, global %s): role, serial, reason %q, model expects one of %v", after, short(id), m.b.kind, m.global, cause, m.causes)
		}
	}
	for id := range catalogue {
		if w.images[id] == nil {
			b := w.byID[id]
			what := "unknown to the model"
			if b != nil {
				what = b.kind + " bundle " + b.vo + "/" + b.tag
			}
			t.Errorf("after %s: Glance has image %s (%s, status %s) the model does not expect", after, short(id), what, catalogue[id].Status)
		}
	}

	// Independent of the model's bookkeeping: no image of a bundle that
	// failed verification, no active image of a bundle whose bytes were
	// refused, and (once the CRL job has run) no revoked image active or
	// flagged other than revoked.
	for id, g := range catalogue {
		b := w.byID[id]
		if b == nil {
			continue
		}
		switch {
		case b.kind != kindValid && !bytesBad(b.kind):
			t.Errorf("after %s: image %s of a %s bundle in Glance", after, short(id), b.kind)
		case bytesBad(b.kind) && g.Status == "active":
			t.Errorf("after %s: image %s of a %s bundle is active", after, short(id), b.kind)
		}
		st, _ := w.judge(b)
		if m := w.images[id]; m != nil && slices.Contains(crl.JudgedProperties, m.tampered) {
			// its registration time edited by hand: only what applies
			// whatever the dates is known to the job (the gate refuses
			// the edited record whatever the job says)
			st, _ = w.judgeAt(b, time.Time{})
		}
		if w.crlJobRan && st == crl.StateRevoked && after == "crl" {
			if g.Status == "active" || g.Props[validator.PropGlobalValidity] != crl.StateRevoked {
				t.Errorf("after the CRL job: revoked image %s is %s, global validity %q", short(id), g.Status, g.Props[validator.PropGlobalValidity])
			}
		}
	}

	// The gate, at the model's time and 400 days on, without CRLs (the
	// flags decide) and with the CRLs of now (the record's own check).
	plain, withCRLs := w.trust(false), w.trust(true)
	pol := validator.BootPolicy{MirrorProject: w.proj.ID}
	now := w.now()
	for _, at := range []time.Time{now, now.Add(400 * 24 * time.Hour)} {
		for id, g := range catalogue {
			m := w.images[id]
			if m == nil {
				continue
			}
			ci := validator.CatalogImage{ID: g.ID, Owner: g.Owner, Status: g.Status, Properties: g.Props}
			want := w.expectReasons(m, at)
			d := plain.DecideBoot(ci, pol, at)
			if d.Allowed != (len(want) == 0) || !slices.Equal(d.Reasons, want) {
				t.Errorf("after %s: gate at %s on %s (%s/%s, model %+v): allowed=%v reasons %v, model expects %v (%s)",
					after, at.Format(time.RFC3339), short(id), m.b.vo, m.b.tag, *m, d.Allowed, d.Reasons, want, d.Message)
			}
			// a record is restored from its verified bundle, only while a
			// source lists it (docs/glancesync.md, "A lost or edited record")
			if after == "sync" && g.Status == "active" && w.lastKeys[id] != nil && (slices.Contains(d.Reasons, validator.DecisionRecordTampered) || slices.Contains(d.Reasons, validator.DecisionRecordInvalid)) {
				t.Errorf("after a sync pass: active image %s has a record the gate refuses: %v", short(id), d.Reasons)
			}
			if st, _ := w.judge(m.b); st != "" {
				want = []string{validator.DecisionRecordInvalid}
			}
			if d := withCRLs.DecideBoot(ci, pol, at); !slices.Equal(d.Reasons, want) {
				t.Errorf("after %s: gate with CRLs at %s on %s: reasons %v, model expects %v (%s)", after, at.Format(time.RFC3339), short(id), d.Reasons, want, d.Message)
			}
		}
	}

	// Tag resolution: the newest bootable unhidden image of the tag.
	for _, vo := range vos {
		for _, tag := range tags {
			var cands []validator.CatalogImage
			for _, g := range catalogue {
				if !g.Hidden && g.Props[validator.PropVO] == vo && g.Props[validator.PropTag] == tag {
					cands = append(cands, validator.CatalogImage{ID: g.ID, Owner: g.Owner, Status: g.Status, Properties: g.Props})
				}
			}
			d, _ := plain.DecideTag(cands, pol, now)
			var best *mimage
			for _, id := range w.imageIDs() {
				m := w.images[id]
				if m.b.vo != vo || m.b.tag != tag || m.hidden || len(w.expectReasons(m, now)) > 0 {
					continue
				}
				if best == nil || newerImage(m, best) {
					best = m
				}
			}
			switch {
			case best == nil && d.Allowed:
				t.Errorf("after %s: tag %s/%s resolves to %s, model expects no bootable image", after, vo, tag, short(d.ImageID))
			case best != nil && (!d.Allowed || d.ImageID != best.b.id):
				t.Errorf("after %s: tag %s/%s resolves to %q (%v), model expects %s", after, vo, tag, d.ImageID, d.Reasons, short(best.b.id))
			}
		}
	}

	// Aliases: two per VO/TAG the model expects, named TAG and VO/TAG.
	for _, vo := range vos {
		for _, tag := range tags {
			k := vo + "/" + tag
			got := aliases[k]
			sort.Strings(got)
			var want []string
			if w.aliases[k] {
				want = []string{tag, k}
				sort.Strings(want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("after %s: alias images of %s: %v, model expects %v", after, k, got, want)
			}
			delete(aliases, k)
		}
	}
	for k, names := range aliases {
		t.Errorf("after %s: alias images of %s (%v) the model does not expect", after, k, names)
	}
}

// expectReasons is the model's boot decision on an image at a time: the
// reasons DecideBoot gives, in its order (none: allowed).
func (w *world) expectReasons(m *mimage, at time.Time) []string {
	if m.tampered != "" {
		return []string{validator.DecisionRecordTampered}
	}
	var r []string
	global := m.global
	if global == "" {
		global = "missing"
	}
	if global != crl.StateValid {
		r = append(r, validator.DecisionGlobalPrefix+global)
	}
	switch m.local {
	case "", validator.LocalRunAnyway:
	case validator.LocalBlacklist:
		r = append(r, validator.DecisionBlacklisted)
	default:
		r = append(r, validator.DecisionLocalUnknown)
	}
	if m.status != "active" {
		r = append(r, validator.DecisionNotActive)
	}
	if at.After(m.b.notAfter) && !(m.local == validator.LocalRunAnyway && m.global == crl.StateValid) {
		r = append(r, validator.DecisionExpired)
	}
	return r
}

func boolStr(b bool) string {
	if b {
		return "hidden"
	}
	return "shown"
}
