package crl

import (
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestHoldKeptEdges: what does not lift a certificateHold recorded on an
// image (holdKept): nothing newer than the CRL that imposed it (no CRL at
// all, one of the same number again), the CRL of another CA of the same
// name when the record names no key to tell them apart, any CRL when the
// held certificate is no longer in the record; and for holds recorded
// before the scope was (no imagetrust_rev_crl_scope), a CRL not numbered
// above the recorded one.
func TestHoldKeptEdges(t *testing.T) {
	hold := pki.Revoked{Serial: big.NewInt(11), Time: t0.Add(-time.Hour), Reason: ReasonCertificateHold}
	// impose: the registrar's CRL 5 of scope idp holds the image certificate
	impose := func(t *testing.T, w *holdWorld, idp []byte) {
		t.Helper()
		if s := w.judgeWith(t, map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 5, -time.Hour, idp, hold)}}); s != StateHold ||
			w.img.Status != StatusDeactivated || w.img.Properties[PropRevCRLNumber] != "5" || w.img.Properties[PropRevCRLScope] == "" {
			t.Fatalf("hold not imposed: %s %s %v", s, w.img.Status, w.img.Properties)
		}
	}
	// legacy makes the recorded hold one of before the scope was recorded
	legacy := func(w *holdWorld) {
		delete(w.img.Properties, PropRevCRLScope)
		delete(w.img.Properties, PropRevCRLThisUpdate)
	}
	// noAKI drops the authority key identifiers from the image's record
	noAKI := func(t *testing.T, w *holdWorld) {
		var cc []ChainCert
		if err := json.Unmarshal([]byte(w.img.Properties[PropChain]), &cc); err != nil {
			t.Fatal(err)
		}
		for i := range cc {
			cc[i].AKI = ""
		}
		b, _ := json.Marshal(cc)
		w.img.Properties[PropChain] = string(b)
	}
	dpA := pki.IDPDistributionPoint("http://crl.example/a.crl")
	dpB := pki.IDPDistributionPoint("http://crl.example/b.crl")

	for _, tc := range []struct {
		name  string
		idp   []byte // the scope of the imposing CRL
		setup func(t *testing.T, w *holdWorld)
		next  func(w *holdWorld) map[*testpki.CA][][]byte
		want  string
	}{
		{name: "fail legacy hold, no CRL of the CA this run", setup: func(_ *testing.T, w *holdWorld) { legacy(w) },
			next: func(w *holdWorld) map[*testpki.CA][][]byte { return nil }, want: StateHold},
		{name: "fail legacy hold, a CRL of the same number without the entry", setup: func(_ *testing.T, w *holdWorld) { legacy(w) },
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 5, -time.Minute, nil)}}
			}, want: StateHold},
		{name: "fail legacy hold, an older-numbered CRL", setup: func(_ *testing.T, w *holdWorld) { legacy(w) },
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 4, -time.Minute, nil)}}
			}, want: StateHold},
		{name: "ok legacy hold lifted by CRL 6", setup: func(_ *testing.T, w *holdWorld) { legacy(w) },
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 6, -time.Minute, nil)}}
			}, want: StateValid},
		// (RFC 5280 5.2.3: CRL numbers count per scope; the record of a
		// legacy hold does not say which point imposed it)
		{name: "fail legacy hold of a distribution point, another point's CRL numbered above", idp: dpA,
			setup: func(_ *testing.T, w *holdWorld) { legacy(w) },
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 100, -time.Minute, dpB)}}
			}, want: StateHold},
		{name: "ok legacy hold of a distribution point lifted by a later complete CRL numbered above", idp: dpA,
			setup: func(_ *testing.T, w *holdWorld) { legacy(w) },
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 6, -time.Minute, nil)}}
			}, want: StateValid},
		{name: "fail scoped hold, no CRL of the CA this run",
			next: func(w *holdWorld) map[*testpki.CA][][]byte { return nil }, want: StateHold},
		{name: "fail distribution point hold, its CRL of the same number without the entry", idp: dpA,
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 5, -time.Minute, dpA)}}
			}, want: StateHold},
		// a complete CRL lifts the hold only when later than the imposing
		// CRL (the mutant "After(since)" -> "!Before(since)" in holdKept)
		{name: "fail distribution point hold, a complete CRL of the same thisUpdate without the entry", idp: dpA,
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 1, -time.Hour, nil)}}
			}, want: StateHold},
		{name: "ok distribution point hold lifted by a later complete CRL", idp: dpA,
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 1, -time.Minute, nil)}}
			}, want: StateValid},
		{name: "ok distribution point hold lifted by its CRL 6", idp: dpA,
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 6, -time.Minute, dpA)}}
			}, want: StateValid},
		{name: "fail record without key ids, newer CRL of a re-keyed CA of the same name", setup: noAKI,
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				rekeyed := w.regRoot.Intermediate("Hold Registrar CA")
				return map[*testpki.CA][][]byte{rekeyed: {holdCRL(rekeyed, 6, -time.Minute, nil)}}
			}, want: StateHold},
		{name: "ok record without key ids, newer CRL of the CA itself", setup: noAKI,
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 6, -time.Minute, nil)}}
			}, want: StateValid},
		{name: "fail held serial no longer in the record, newer CRL of its CA",
			setup: func(_ *testing.T, w *holdWorld) { w.img.Properties[PropRevSerial] = "7f" },
			next: func(w *holdWorld) map[*testpki.CA][][]byte {
				return map[*testpki.CA][][]byte{w.registrar: {holdCRL(w.registrar, 6, -time.Minute, nil)}}
			}, want: StateHold},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newHoldWorld(t)
			impose(t, w, tc.idp)
			if tc.setup != nil {
				tc.setup(t, w)
			}
			s := w.judgeWith(t, tc.next(w))
			if s != tc.want {
				t.Fatalf("state %s, want %s (%v)", s, tc.want, w.img.Properties)
			}
			wantStatus := StatusDeactivated
			if tc.want == StateValid {
				wantStatus = StatusActive
			}
			if w.img.Status != wantStatus {
				t.Fatalf("status %s, want %s", w.img.Status, wantStatus)
			}
		})
	}
}
