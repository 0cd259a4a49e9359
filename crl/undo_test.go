package crl

import (
	"math/big"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestJobUndoRechecksEverything: when a CRL stops listing what the job
// deactivated an image for (a hold withdrawn: gone from a newer CRL, or a
// removeFromCRL entry), the job reactivates the image only if nothing else
// keeps it down. Each case holds img-1 and img-2 by their image
// certificates in the Registrar CA's CRL (served over HTTP), with
// something else in the people CA's CRL (a file), then withdraws the
// Registrar CA's holds.
func TestJobUndoRechecksEverything(t *testing.T) {
	// registrarCRL holds img-1 and img-2 (reason certificateHold),
	// releases them (removeFromCRL) or lists nothing (0)
	registrarCRL := func(w *world, n int64, reason int) []byte {
		if reason == 0 {
			return crlT(w.registrar, n)
		}
		return crlT(w.registrar, n, pki.Revoked{Serial: big.NewInt(11), Time: t0.Add(-time.Hour), Reason: reason},
			pki.Revoked{Serial: big.NewInt(12), Time: t0.Add(-time.Hour), Reason: reason})
	}
	for _, c := range []struct {
		name string
		// people is the people CA's CRL while the Registrar CA's holds
		// are withdrawn (nil: an empty one)
		people func(w *world) []pki.Revoked
		// stale makes that CRL stale (nextUpdate + grace passed; the job
		// refuses stale CRLs)
		stale bool
		// setup changes the catalogue after the holds were applied
		setup func(w *world)
		// want: image -> status, global validity, marker
		want map[string][3]string
	}{
		{name: "ok nothing else: both reactivated",
			want: map[string][3]string{"img-1": {StatusActive, StateValid, ""}, "img-2": {StatusActive, StateValid, ""}}},
		{name: "fail the creator on hold in another CA's CRL: both stay down, on the creator's hold",
			people: func(w *world) []pki.Revoked {
				return []pki.Revoked{{Serial: w.creator1.Cert.SerialNumber, Time: t0.Add(-time.Hour), Reason: ReasonCertificateHold}}
			},
			want: map[string][3]string{"img-1": {StatusDeactivated, StateHold, DeactivatedByHold}, "img-2": {StatusDeactivated, StateHold, DeactivatedByHold}}},
		{name: "fail the creator revoked (keyCompromise) in another CA's CRL: both revoked for good",
			people: func(w *world) []pki.Revoked {
				return []pki.Revoked{{Serial: w.creator1.Cert.SerialNumber, Time: t0.Add(-time.Hour), Reason: ReasonKeyCompromise}}
			},
			want: map[string][3]string{"img-1": {StatusDeactivated, StateRevoked, ""}, "img-2": {StatusDeactivated, StateRevoked, ""}}},
		{name: "fail the people CA's CRL stale: unknown, both stay down, marked", stale: true,
			want: map[string][3]string{"img-1": {StatusDeactivated, StateUnknown, DeactivatedByHold}, "img-2": {StatusDeactivated, StateUnknown, DeactivatedByHold}}},
		{name: "fail blacklisted by the operator meanwhile: that one stays down, marked",
			setup: func(w *world) { w.cat.images["img-1"].Properties[PropLocalValidity] = "blacklist" },
			want:  map[string][3]string{"img-1": {StatusDeactivated, StateValid, DeactivatedByHold}, "img-2": {StatusActive, StateValid, ""}}},
		{name: "ok run-anyway set meanwhile is a flag too: left to the operator",
			setup: func(w *world) { w.cat.images["img-1"].Properties[PropLocalValidity] = "run-anyway" },
			want:  map[string][3]string{"img-1": {StatusDeactivated, StateValid, DeactivatedByHold}, "img-2": {StatusActive, StateValid, ""}}},
		{name: "fail deactivated by the operator (no marker: the sync's retirement removes it too): stays down",
			setup: func(w *world) { delete(w.cat.images["img-1"].Properties, PropDeactivatedBy) },
			want:  map[string][3]string{"img-1": {StatusDeactivated, StateValid, ""}, "img-2": {StatusActive, StateValid, ""}}},
		{name: "ok expired meanwhile: reactivated, as it was before the hold (the proxy refuses it as expired; run-anyway may boot it)",
			setup: func(w *world) {
				w.cat.images["img-1"].Properties["imagetrust_image_not_after"] = t0.Add(-time.Minute).Format(time.RFC3339)
			},
			want: map[string][3]string{"img-1": {StatusActive, StateValid, ""}, "img-2": {StatusActive, StateValid, ""}}},
	} {
		for _, release := range []bool{false, true} {
			how := "gone from a newer CRL"
			if release {
				how = "removeFromCRL"
			}
			t.Run(c.name+", "+how, func(t *testing.T) {
				w := newWorld(t)
				peopleDir := t.TempDir()
				peopleCRL := func(n int64, entries ...pki.Revoked) {
					testpki.WriteFile(t, peopleDir, "people.crl", crlT(w.people, n, entries...))
				}
				peopleCRL(1)
				j := w.job(t, t.TempDir(), t0, true)
				j.cfg.Sources = append(j.cfg.Sources, Source{File: peopleDir + "/people.crl"})
				w.serve(registrarCRL(w, 1, ReasonCertificateHold), 0, 0)
				run(t, j)
				for _, id := range []string{"img-1", "img-2"} {
					if img := w.cat.get(id); img.Status != StatusDeactivated || img.Properties[PropGlobalValidity] != StateHold ||
						img.Properties[PropDeactivatedBy] != DeactivatedByHold {
						t.Fatalf("%s not held: %+v", id, img)
					}
				}
				if c.setup != nil {
					c.setup(w)
				}
				if c.people != nil {
					peopleCRL(2, c.people(w)...)
				}
				if c.stale {
					testpki.WriteFile(t, peopleDir, "people.crl", w.people.CRL(pki.CRLTemplate{Number: 2,
						ThisUpdate: t0.Add(-10 * 24 * time.Hour), NextUpdate: t0.Add(-2 * time.Hour)}))
				}
				if release {
					w.serve(registrarCRL(w, 2, ReasonRemoveFromCRL), 0, 0)
				} else {
					w.serve(registrarCRL(w, 2, 0), 0, 0)
				}
				run(t, j)
				check := func(when string) {
					t.Helper()
					for id, want := range c.want {
						img := w.cat.get(id)
						if got := [3]string{img.Status, img.Properties[PropGlobalValidity], img.Properties[PropDeactivatedBy]}; got != want {
							t.Errorf("%s %s: %q, want %q (%v)", when, id, got, want, img.Properties)
						}
					}
					if img := w.cat.get("img-3"); img.Status != StatusActive || (img.Properties[PropGlobalValidity] != StateValid) != c.stale {
						t.Errorf("%s img-3 changed: %+v", when, img)
					}
				}
				check("after the withdrawal:")
				if c.people != nil {
					if img := w.cat.get("img-1"); img.Status == StatusDeactivated && img.Properties[PropGlobalValidity] == StateHold &&
						img.Properties[PropRevokedRole] != "creator" {
						t.Errorf("img-1 held, but its details name the %s, not the creator still held", img.Properties[PropRevokedRole])
					}
				}
				// a rerun changes nothing
				w.cat.takeWrites()
				if rep := run(t, j); w.cat.takeWrites() != 0 {
					t.Errorf("rerun wrote: %+v", rep.Changes)
				}
				check("after a rerun:")
			})
		}
	}
}
