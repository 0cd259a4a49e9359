package crl

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// holdWorld is a site whose Registrar CA and people CA chain to two roots
// (as the Registrar's own root and an IGTF root do), each numbering its
// CRLs on its own.
type holdWorld struct {
	regRoot, igtfRoot, registrar, people *testpki.CA
	img                                  Image
}

func newHoldWorld(t *testing.T, subCA ...testpki.Option) *holdWorld {
	w := &holdWorld{regRoot: testpki.NewRoot(t, "Hold Registrar Root"), igtfRoot: testpki.NewRoot(t, "Hold IGTF Root")}
	w.registrar = w.regRoot.Intermediate("Hold Registrar CA", subCA...)
	w.people = w.igtfRoot.Intermediate("Hold People CA", subCA...)
	creator := w.people.Leaf(testpki.Name("Creator"), testpki.WithSerial(101))
	approver := w.people.Leaf(testpki.Name("Approver"), testpki.WithSerial(102))
	ref := func(role string, c *testpki.CA, serial *big.Int) ChainCert {
		return ChainCert{Role: role, Issuer: c.Cert.Subject.String(), Serial: serial.Text(16), AKI: hex.EncodeToString(c.Cert.SubjectKeyId)}
	}
	cj, _ := json.Marshal([]ChainCert{
		ref("image", w.registrar, big.NewInt(11)), ref("image-ca", w.regRoot, w.registrar.Cert.SerialNumber),
		ref("creator", w.people, creator.Cert.SerialNumber), ref("creator-ca", w.igtfRoot, w.people.Cert.SerialNumber),
		ref("approver", w.people, approver.Cert.SerialNumber), ref("approver-ca", w.igtfRoot, w.people.Cert.SerialNumber),
	})
	w.img = Image{ID: "img", Status: StatusActive, Properties: map[string]string{
		PropRecordVersion: "1", PropChain: string(cj), PropNotBefore: regTime, PropGlobalValidity: StateValid}}
	return w
}

// crl is a CRL of ca numbered n, issued at t0+at, of the scope idp.
func holdCRL(ca *testpki.CA, n int64, at time.Duration, idp []byte, entries ...pki.Revoked) []byte {
	return ca.CRL(pki.CRLTemplate{Number: n, ThisUpdate: t0.Add(at), NextUpdate: t0.Add(at + 7*24*time.Hour), IDP: idp, Entries: entries})
}

// judgeWith runs the job's decision for w.img on an index of the given
// CRLs (of each CA, in order) and applies the change to w.img.
func (w *holdWorld) judgeWith(t *testing.T, crls map[*testpki.CA][][]byte) string {
	t.Helper()
	ix := &Index{}
	for ca, ders := range crls {
		for _, der := range ders {
			if _, err := ix.AddList(mustList(t, der), ca.Cert, t0.Add(time.Hour), ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	state, rev, why := Judge(ix, w.img, Policy{}, t0.Add(time.Hour))
	if c := Plan(w.img, state, rev, why); c != nil {
		for k, v := range c.Set {
			w.img.Properties[k] = v
		}
		for _, k := range c.Remove {
			delete(w.img.Properties, k)
		}
		switch {
		case c.Deactivate:
			w.img.Status = StatusDeactivated
		case c.Reactivate:
			w.img.Status = StatusActive
		}
	}
	return state
}

// TestHoldLiftedOnlyByItsCA: a hold is lifted by a newer CRL of the CA and
// scope that imposed it, whatever the numbers of other CAs' CRLs (which
// count on their own), and not by a CRL of another distribution point of
// the same CA.
func TestHoldLiftedOnlyByItsCA(t *testing.T) {
	hold := func(serial *big.Int) pki.Revoked {
		return pki.Revoked{Serial: serial, Time: t0.Add(-time.Hour), Reason: ReasonCertificateHold}
	}

	t.Run("ok held intermediate released by its root's CRL 51, the other root at 2", func(t *testing.T) {
		w := newHoldWorld(t)
		if s := w.judgeWith(t, map[*testpki.CA][][]byte{
			w.igtfRoot: {holdCRL(w.igtfRoot, 50, -time.Hour, nil, hold(w.people.Cert.SerialNumber))},
			w.regRoot:  {holdCRL(w.regRoot, 1, -time.Hour, nil)},
		}); s != StateHold || w.img.Status != StatusDeactivated || w.img.Properties[PropRevCRLScope] == "" {
			t.Fatalf("hold not imposed: %s %v", s, w.img.Properties)
		}
		if s := w.judgeWith(t, map[*testpki.CA][][]byte{
			w.igtfRoot: {holdCRL(w.igtfRoot, 51, -time.Minute, nil)},
			w.regRoot:  {holdCRL(w.regRoot, 2, -time.Minute, nil)},
		}); s != StateValid || w.img.Status != StatusActive || w.img.Properties[PropRevCRLScope] != "" {
			t.Fatalf("released hold kept: %s %s %v", s, w.img.Status, w.img.Properties)
		}
	})

	t.Run("ok held intermediate released while another root's intermediate has its serial", func(t *testing.T) {
		// both roots number their sub-CAs from 1: two "ca" certificates of
		// the record have serial 1, and the held one is the people CA
		w := newHoldWorld(t, testpki.WithSerial(1))
		if s := w.judgeWith(t, map[*testpki.CA][][]byte{
			w.igtfRoot: {holdCRL(w.igtfRoot, 50, -time.Hour, nil, hold(w.people.Cert.SerialNumber))},
			w.regRoot:  {holdCRL(w.regRoot, 1, -time.Hour, nil)},
		}); s != StateHold {
			t.Fatalf("hold not imposed: %s", s)
		}
		if s := w.judgeWith(t, map[*testpki.CA][][]byte{
			w.igtfRoot: {holdCRL(w.igtfRoot, 51, -time.Minute, nil)},
			w.regRoot:  {holdCRL(w.regRoot, 2, -time.Minute, nil)},
		}); s != StateValid || w.img.Status != StatusActive {
			t.Fatalf("released hold kept: %s %s", s, w.img.Status)
		}
	})

	t.Run("fail held image, only another distribution point's CRL in hand", func(t *testing.T) {
		w := newHoldWorld(t)
		a, b := pki.IDPDistributionPoint("http://crl.example/a.crl"), pki.IDPDistributionPoint("http://crl.example/b.crl")
		roots := map[*testpki.CA][][]byte{w.regRoot: {holdCRL(w.regRoot, 1, -time.Hour, nil)}, w.igtfRoot: {holdCRL(w.igtfRoot, 1, -time.Hour, nil)}}
		with := func(reg ...[]byte) map[*testpki.CA][][]byte {
			m := map[*testpki.CA][][]byte{w.registrar: reg}
			for k, v := range roots {
				m[k] = v
			}
			return m
		}
		if s := w.judgeWith(t, with(holdCRL(w.registrar, 5, -time.Hour, a, hold(big.NewInt(11))))); s != StateHold {
			t.Fatalf("hold not imposed: %s", s)
		}
		if s := w.judgeWith(t, with(holdCRL(w.registrar, 100, -time.Minute, b))); s != StateHold || w.img.Status != StatusDeactivated {
			t.Fatalf("hold lifted by distribution point b's CRL: %s %s", s, w.img.Status)
		}
		// the same distribution point's next CRL lifts it
		if s := w.judgeWith(t, with(holdCRL(w.registrar, 6, -time.Minute, a))); s != StateValid || w.img.Status != StatusActive {
			t.Fatalf("hold kept after distribution point a's CRL 6: %s %s", s, w.img.Status)
		}
	})

	t.Run("ok hold from a distribution point lifted by the CA's newer complete CRL", func(t *testing.T) {
		w := newHoldWorld(t)
		a := pki.IDPDistributionPoint("http://crl.example/a.crl")
		roots := map[*testpki.CA][][]byte{w.regRoot: {holdCRL(w.regRoot, 1, -time.Hour, nil)}, w.igtfRoot: {holdCRL(w.igtfRoot, 1, -time.Hour, nil)}}
		roots[w.registrar] = [][]byte{holdCRL(w.registrar, 5, -time.Hour, a, hold(big.NewInt(11)))}
		if s := w.judgeWith(t, roots); s != StateHold {
			t.Fatalf("hold not imposed: %s", s)
		}
		roots[w.registrar] = [][]byte{holdCRL(w.registrar, 1, -time.Minute, nil)}
		if s := w.judgeWith(t, roots); s != StateValid {
			t.Fatalf("hold kept after the CA's newer complete CRL: %s", s)
		}
	})

	// a CA re-keyed under its name by the same parent: its new key's CRL
	// speaks for the old key's certificates (Covering, RFC 5280 6.3.3), so
	// the hold of the old key's last CRL is lifted by a later complete CRL
	// of the new key that does not list it (RFC 5280 5.3.1), whether the
	// old key's CRL is still loaded (the lookup, as the verifier asks) or
	// gone (the recorded hold, holdKept)
	rekeyedHold := func(t *testing.T, keepOld bool, newCA func(w *holdWorld) *testpki.CA, at time.Duration, idp []byte) (*holdWorld, string) {
		w := newHoldWorld(t)
		roots := map[*testpki.CA][][]byte{w.regRoot: {holdCRL(w.regRoot, 1, -time.Hour, nil)}, w.igtfRoot: {holdCRL(w.igtfRoot, 1, -time.Hour, nil)}}
		old := holdCRL(w.registrar, 5, -time.Hour, nil, hold(big.NewInt(11)))
		roots[w.registrar] = [][]byte{old}
		if s := w.judgeWith(t, roots); s != StateHold || w.img.Status != StatusDeactivated {
			t.Fatalf("hold not imposed: %s %s", s, w.img.Status)
		}
		if !keepOld {
			delete(roots, w.registrar)
		}
		rekeyed := newCA(w)
		roots[rekeyed] = [][]byte{holdCRL(rekeyed, 1, at, idp)}
		return w, w.judgeWith(t, roots)
	}
	sameParent := func(w *holdWorld) *testpki.CA { return w.regRoot.Intermediate("Hold Registrar CA") }
	for _, keepOld := range []bool{false, true} {
		t.Run(fmt.Sprintf("ok re-keyed by the same parent: the new key's later complete CRL lifts the hold (old CRL loaded %v)", keepOld), func(t *testing.T) {
			w, s := rekeyedHold(t, keepOld, sameParent, -time.Minute, nil)
			if s != StateValid || w.img.Status != StatusActive || w.img.Properties[PropDeactivatedBy] != "" {
				t.Fatalf("hold kept after the re-keyed CA's later CRL: %s %s %v", s, w.img.Status, w.img.Properties)
			}
		})
		t.Run(fmt.Sprintf("fail re-keyed by the same parent: the new key's CRL is older than the hold (old CRL loaded %v)", keepOld), func(t *testing.T) {
			if _, s := rekeyedHold(t, keepOld, sameParent, -2*time.Hour, nil); s != StateHold {
				t.Fatalf("hold lifted by an older CRL: %s", s)
			}
		})
		t.Run(fmt.Sprintf("fail re-keyed by the same parent: the new key's CRL names a distribution point (old CRL loaded %v)", keepOld), func(t *testing.T) {
			if _, s := rekeyedHold(t, keepOld, sameParent, -time.Minute, pki.IDPDistributionPoint("http://crl.example/a.crl")); s != StateHold {
				t.Fatalf("hold lifted by one distribution point's CRL: %s", s)
			}
		})
		t.Run(fmt.Sprintf("fail same name under another root (old CRL loaded %v)", keepOld), func(t *testing.T) {
			twin := func(w *holdWorld) *testpki.CA {
				return testpki.NewRoot(t, "Hold Registrar Root").Intermediate("Hold Registrar CA")
			}
			if _, s := rekeyedHold(t, keepOld, twin, -time.Minute, nil); s != StateHold {
				t.Fatalf("hold lifted by a namesake's CRL: %s", s)
			}
		})
	}
}
