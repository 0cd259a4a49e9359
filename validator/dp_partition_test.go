package validator

import (
	"testing"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestPartitionedCRLsRequireCRL: a people CA that partitions its CRLs by
// distribution point (each CRL's issuingDistributionPoint names one URI).
// The creator names point b, the approver point a. Under require_crl the
// verifier (the proxy's own check, imagetrust verify) takes a CRL of a
// point as the certificate's only when the certificate names that point
// (RFC 5280 6.3.3 (b)(2)(i)), as the CRL job does from the record
// (crl.Judge): with a's CRL alone the creator has no CRL, and with b's
// stale the job makes the record unknown under refuse_stale, while a
// revocation on a's CRL still revokes the creator. On the code before,
// a's CRL counted for the creator ("fail only a's CRL ..." was valid) and
// the job judged b's staleness by a's fresh CRL.
func TestPartitionedCRLsRequireCRL(t *testing.T) {
	const dpA, dpB = "http://crl.example/a.crl", "http://crl.example/b.crl"
	w := newWorld(t)
	w.creator = w.peopleSub.Leaf(testpki.Name("Alice Creator"), testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)), testpki.WithCRLDP(dpB))
	w.approver = w.peopleSub.Leaf(testpki.Name("Bob Approver"), testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)), testpki.WithCRLDP(dpA))
	w.requireCRL = true
	b := w.bundle(bundleOpts{})
	part := func(n int64, uri string, stale bool, revoked ...pki.Revoked) []byte {
		tu, nu := testNow.AddDate(0, 0, -1), testNow.AddDate(0, 0, 7)
		if stale {
			tu, nu = testNow.AddDate(0, 0, -10), testNow.AddDate(0, 0, -9)
		}
		return w.peopleSub.CRL(pki.CRLTemplate{Number: n, ThisUpdate: tu, NextUpdate: nu, IDP: pki.IDPDistributionPoint(uri), Entries: revoked})
	}
	complete := func(ca *testpki.CA) []byte {
		return ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: testNow.AddDate(0, 0, -1), NextUpdate: testNow.AddDate(0, 0, 7)})
	}
	base := [][]byte{complete(w.peopleRoot), complete(w.regRoot)}
	revokeCreator := pki.Revoked{Serial: w.creator.Cert.SerialNumber, Time: testNow.AddDate(0, -3, 0), Reason: crl.ReasonKeyCompromise}
	for _, tc := range []struct {
		name    string
		crls    [][]byte
		valid   bool
		revoked bool
	}{
		{"ok both points' CRLs", [][]byte{part(1, dpA, false), part(1, dpB, false)}, true, false},
		{"ok b's CRL stale: the verifier only warns (the job enforces)", [][]byte{part(1, dpA, false), part(1, dpB, true)}, true, false},
		{"fail only a's CRL: none for the creator, require_crl", [][]byte{part(1, dpA, false)}, false, false},
		{"fail a's CRL revokes the creator, who names b", [][]byte{part(1, dpA, false, revokeCreator), part(1, dpB, false)}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.crls = append(append([][]byte{}, base...), tc.crls...)
			r := w.trust().Verify(b.input(testNow))
			if r.Valid != tc.valid || (r.Revocation != nil) != tc.revoked {
				t.Fatalf("valid %v (%v), revocation %v", r.Valid, r.Err(), r.Revocation)
			}
		})
	}

	// the CRL job on the catalogue record: b's CRL withheld (stale) makes
	// it unknown under refuse_stale, a's alone unknown under require_crl
	w.crls = append(append([][]byte{}, base...), part(1, dpA, false), part(1, dpB, false))
	record, err := RecordProperties(w.trust().Verify(b.input(testNow)), b.desc, b.sig)
	if err != nil {
		t.Fatal(err)
	}
	job := func(p crl.Policy, ders ...[]byte) string {
		ix := &crl.Index{}
		for _, der := range ders {
			rl, err := crl.Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			ca := w.peopleSub.Cert
			switch rl.Issuer.CommonName {
			case w.peopleRoot.Cert.Subject.CommonName:
				ca = w.peopleRoot.Cert
			case w.regRoot.Cert.Subject.CommonName:
				ca = w.regRoot.Cert
			}
			if err := ix.Add(rl, ca, testNow); err != nil {
				t.Fatal(err)
			}
		}
		state, _, why := crl.Judge(ix, crl.Image{ID: "i", Status: crl.StatusActive, Properties: record}, p, testNow)
		t.Logf("job: %s (%s)", state, why)
		return state
	}
	refuse := crl.Policy{RefuseStale: true}
	if s := job(refuse, append(base, part(1, dpA, false), part(1, dpB, true))...); s != crl.StateUnknown {
		t.Errorf("fail job, b's CRL withheld: %s, want unknown", s)
	}
	if s := job(refuse, append(base, part(1, dpA, false), part(1, dpB, false))...); s != crl.StateValid {
		t.Errorf("ok job, both fresh: %s, want valid", s)
	}
	if s := job(crl.Policy{RequireCRL: true}, append(base, part(1, dpA, false))...); s != crl.StateUnknown {
		t.Errorf("fail job, only a's CRL under require_crl: %s, want unknown", s)
	}
}
