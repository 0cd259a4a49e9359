package validator

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestStaleCRLsRekeyedCA: a people CA re-keyed under its own name by the
// same root publishes only its new key's CRL, which speaks for the old
// key's certificates; the old key's last CRL goes stale. The trust store
// no longer warns of it (StaleCRLs, imagetrust_trust_stale_crls: it would
// stay above 0 for good, the alert of a service not reloaded), and the CRL
// job under refuse_stale keeps the old key's images valid, on the same
// conditions on which the new key's CRL covers them and lifts their holds
// (crl.Index.Superseded, StaleFor): a CRL of the name under another parent,
// of one distribution point, dated ahead of the clock, or older than the
// old key's, does not speak for them, and the stale CRL still counts.
func TestStaleCRLsRekeyedCA(t *testing.T) {
	w := newWorld(t)
	b := w.bundle(bundleOpts{})
	rekeyed := w.peopleRoot.Intermediate("People Issuing CA")
	otherParent := w.peopleRoot.Intermediate("People Other CA").Intermediate("People Issuing CA")
	vos := w.trust().vos
	fresh := func(ca *testpki.CA) []byte {
		return ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)})
	}
	// the old key's last CRL, stale at testNow
	old := w.peopleSub.CRL(pki.CRLTemplate{Number: 9, ThisUpdate: testNow.AddDate(0, 0, -20), NextUpdate: testNow.AddDate(0, 0, -10)})
	trust := func(crls ...[]byte) *Trust {
		tr, _, err := NewTrust(TrustOptions{
			People:    []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert, rekeyed.Cert, otherParent.Cert},
			Registrar: []*x509.Certificate{w.regRoot.Cert},
			CRLs:      crls, VOs: vos, Now: testNow, ClockSkew: 5 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	record, err := RecordProperties(trust(fresh(w.peopleRoot), fresh(w.peopleSub), fresh(w.regRoot)).Verify(b.input(testNow)), b.desc, b.sig)
	if err != nil {
		t.Fatal(err)
	}
	// the CRL job's verdict under refuse_stale, from the same CRLs (a CRL
	// dated ahead of the clock it refuses, as it does)
	job := func(signed map[*testpki.CA][]byte) string {
		ix := &crl.Index{ClockSkew: 5 * time.Minute}
		for ca, der := range signed {
			rl, err := crl.Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			var ce *crl.Error
			if err := ix.Add(rl, ca.Cert, testNow); err != nil && !(errors.As(err, &ce) && ce.Reason == crl.ReasonFuture) {
				t.Fatal(err)
			}
		}
		state, _, _ := crl.Judge(ix, crl.Image{ID: "i", Status: crl.StatusActive, Properties: record}, crl.Policy{RefuseStale: true}, testNow)
		return state
	}
	onePoint := pki.IDPDistributionPoint("http://crl.example/a.crl")
	for _, c := range []struct {
		name      string
		ca        *testpki.CA
		tmpl      pki.CRLTemplate
		superseds bool
	}{
		{"ok the new key's later complete CRL", rekeyed, pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)}, true},
		{"fail the new key's later CRL of one distribution point", rekeyed, pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7), IDP: onePoint}, false},
		{"fail the new key's CRL dated a day ahead", rekeyed, pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, 1), NextUpdate: testNow.AddDate(0, 0, 8)}, false},
		{"fail the new key's CRL older than the old key's", rekeyed, pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -30), NextUpdate: testNow.AddDate(0, 0, 7)}, false},
		{"fail the name's CRL under another parent", otherParent, pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			newer := c.ca.CRL(c.tmpl)
			tr := trust(fresh(w.peopleRoot), old, newer, fresh(w.regRoot))
			// (still valid: the verifier warns of a stale CRL, refuses
			// nothing for it)
			if r := tr.Verify(b.input(testNow)); !r.Valid {
				t.Fatal(r.Err())
			}
			stale := tr.StaleCRLs(testNow)
			if got := len(stale) == 1 && strings.Contains(stale[0], "People Issuing CA"); got == c.superseds || len(stale) > 1 {
				t.Errorf("StaleCRLs %q", stale)
			}
			want := crl.StateUnknown
			if c.superseds {
				want = crl.StateValid
			}
			if s := job(map[*testpki.CA][]byte{w.peopleRoot: fresh(w.peopleRoot), w.peopleSub: old, c.ca: newer, w.regRoot: fresh(w.regRoot)}); s != want {
				t.Errorf("CRL job: %s, want %s", s, want)
			}
		})
	}
}
