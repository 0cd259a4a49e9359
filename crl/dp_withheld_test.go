package crl

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

const (
	dpA = "http://crl.example.org/a.crl"
	dpB = "http://crl.example.org/b.crl"
)

// dpWorld is a CA that partitions its CRLs by distribution point (a.crl,
// b.crl) and certificates naming a, b, both, neither, or b spelt in
// other case.
type dpWorld struct {
	ca                             *testpki.CA
	leafA, leafB, leafAB, leafNone *testpki.Leaf
	leafBUpper                     *testpki.Leaf
}

func newDPWorld(t *testing.T) *dpWorld {
	t.Helper()
	ca := testpki.NewRoot(t, "Partitioned CA")
	return &dpWorld{ca: ca,
		leafA:      ca.Leaf(testpki.Name("Creator A"), testpki.WithSerial(0xa), testpki.WithCRLDP(dpA)),
		leafB:      ca.Leaf(testpki.Name("Creator B"), testpki.WithSerial(0xb), testpki.WithCRLDP(dpB)),
		leafAB:     ca.Leaf(testpki.Name("Creator AB"), testpki.WithSerial(0xab), testpki.WithCRLDP(dpA, dpB)),
		leafNone:   ca.Leaf(testpki.Name("Creator None"), testpki.WithSerial(0xe)),
		leafBUpper: ca.Leaf(testpki.Name("Creator B upper"), testpki.WithSerial(0xbb), testpki.WithCRLDP("HTTP://CRL.EXAMPLE.ORG/b.crl")),
	}
}

// crl is a CRL of the CA: idp nil for a complete one; stale ones' nextUpdate
// passed nine days before t0.
func (w *dpWorld) crl(t *testing.T, n int64, stale bool, idp []byte, entries ...pki.Revoked) *List {
	t.Helper()
	tu, nu := t0.Add(-time.Hour), t0.Add(24*time.Hour)
	if stale {
		tu, nu = t0.Add(-10*24*time.Hour), t0.Add(-9*24*time.Hour)
	}
	return mustList(t, w.ca.CRL(pki.CRLTemplate{Number: n, ThisUpdate: tu, NextUpdate: nu, IDP: idp, Entries: entries}))
}

func (w *dpWorld) index(t *testing.T, ls ...*List) *Index {
	t.Helper()
	ix := &Index{}
	for _, l := range ls {
		if _, err := ix.AddList(l, w.ca.Cert, t0, "test"); err != nil {
			t.Fatal(err)
		}
	}
	return ix
}

// TestWithheldDistributionPointCRL: for a CA that partitions its CRLs by
// distribution point, a CRL that names a point speaks for a certificate
// (its staleness, require_crl) only when the certificate names that point
// (RFC 5280 6.3.3 (b)(2)(i)). So whoever withholds one point's CRLs while
// another's stay fresh makes the withheld point's certificates stale (and
// so unknown under refuse_stale), not its neighbours'; a certificate that
// names no point is spoken for by complete CRLs only; and a revocation is
// honoured from any CRL of the CA, whichever point it names (fail closed).
// On the code before it, a certificate naming b was judged by a's fresh
// CRL ("fail b ...": StaleFor nil) and one naming no point was covered by
// the partitions.
func TestWithheldDistributionPointCRL(t *testing.T) {
	w := newDPWorld(t)
	withheldB := w.crl(t, 1, true, pki.IDPDistributionPoint(dpB))
	freshB := w.crl(t, 2, false, pki.IDPDistributionPoint(dpB))
	freshA := w.crl(t, 40, false, pki.IDPDistributionPoint(dpA))
	staleA := w.crl(t, 39, true, pki.IDPDistributionPoint(dpA))
	complete := w.crl(t, 7, false, nil)
	completeStale := w.crl(t, 6, true, nil)
	userOnly := w.crl(t, 8, false, pki.IDPOnlyUserCerts)
	revokesBOnA := w.crl(t, 41, false, pki.IDPDistributionPoint(dpA),
		pki.Revoked{Serial: big.NewInt(0xb), Time: t0.Add(-2 * time.Hour), Reason: ReasonKeyCompromise})

	for _, tc := range []struct {
		name string
		leaf *testpki.Leaf
		crls []*List
		// stale: StaleFor's answer (its number, 0 for nil); covered: how
		// many CRLs speak for it (CoveringScope, HasCRLFor)
		stale, covered int64
		revoked        bool
	}{
		{"fail b: its point withheld, stale, while a's is fresh", w.leafB, []*List{withheldB, freshA}, 1, 1, false},
		{"ok a: a's CRL fresh, b's stale speaks not for it", w.leafA, []*List{withheldB, freshA}, 0, 1, false},
		{"ok b: its point's CRL fresh, a's stale", w.leafB, []*List{freshB, staleA}, 0, 1, false},
		{"ok ab: names both points, the newest (a's) decides", w.leafAB, []*List{withheldB, freshA}, 0, 2, false},
		{"fail ab: both its points stale", w.leafAB, []*List{withheldB, staleA}, 1, 2, false},
		{"fail none: only partitions, none speaks for it", w.leafNone, []*List{withheldB, freshA}, 0, 0, false},
		{"ok none: a complete CRL speaks for it, the stale partition not", w.leafNone, []*List{withheldB, complete}, 0, 1, false},
		{"fail none: its complete CRL stale, a partition fresh", w.leafNone, []*List{completeStale, freshA}, 6, 1, false},
		{"ok b: a newer complete CRL speaks for every certificate", w.leafB, []*List{withheldB, complete}, 0, 2, false},
		{"ok b: a user-only CRL naming no point speaks for it", w.leafB, []*List{withheldB, userOnly}, 0, 2, false},
		{"fail b: a's CRL lists it: revoked, whichever point", w.leafB, []*List{withheldB, revokesBOnA}, 1, 1, true},
		{"fail b: a's CRL lists it, b's withheld entirely", w.leafB, []*List{revokesBOnA}, 0, 0, true},
		{"fail B upper: URIs compare exactly, not case-folded", w.leafBUpper, []*List{freshB}, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := w.index(t, tc.crls...)
			ref := ChainRefs([]*x509.Certificate{tc.leaf.Cert, w.ca.Cert}, RoleCreator)[0]
			var got int64
			if s := ix.StaleFor(ref, t0, 0); s != nil {
				got = s.Header.Number.Int64()
			}
			if got != tc.stale {
				t.Errorf("StaleFor: CRL %d, want %d", got, tc.stale)
			}
			if n := int64(len(ix.CoveringScope(ref))); n != tc.covered {
				t.Errorf("CoveringScope: %d CRLs, want %d", n, tc.covered)
			}
			if has := ix.HasCRLFor(tc.leaf.Cert); has != (tc.covered > 0) {
				t.Errorf("HasCRLFor %v, want %v", has, tc.covered > 0)
			}
			rev := ix.CheckChain([]*x509.Certificate{tc.leaf.Cert, w.ca.Cert}, RoleCreator, t0.Add(-30*24*time.Hour), true)
			if (rev != nil) != tc.revoked {
				t.Errorf("CheckChain: %+v, want revoked %v", rev, tc.revoked)
			}
		})
	}

	// a Ref whose points are not known (built from a record alone) is
	// spoken for by every CRL of its kind, as before
	ref := ChainRefs([]*x509.Certificate{w.leafB.Cert, w.ca.Cert}, RoleCreator)[0]
	ref.DistributionPoints, ref.PointsKnown = nil, false
	if ix := w.index(t, withheldB, freshA); len(ix.CoveringScope(ref)) != 2 || ix.StaleFor(ref, t0, 0) != nil {
		t.Error("a Ref without known points: every partition speaks for it, the newest decides")
	}
}

// TestIDPURIs: the URIs of an issuingDistributionPoint's fullName, and
// none from other forms.
func TestIDPURIs(t *testing.T) {
	two := []byte{0x30, 0x0d, 0xa0, 0x0b, 0xa0, 0x09, 0x86, 0x01, 'x', 0x82, 0x01, 'h', 0x86, 0x01, 'y'}
	relative := []byte{0x30, 0x06, 0xa0, 0x04, 0xa1, 0x02, 0x31, 0x00}
	for _, tc := range []struct {
		name string
		v    []byte
		want []string
	}{
		{"ok one URI", pki.IDPDistributionPoint(dpA), []string{dpA}},
		{"ok two URIs, a dNSName skipped", two, []string{"x", "y"}},
		{"fail nameRelativeToCRLIssuer", relative, nil},
		{"fail only user certs", pki.IDPOnlyUserCerts, nil},
		{"fail truncated", pki.IDPDistributionPoint(dpA)[:10], nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := idpURIs(tc.v)
			if len(got) != len(tc.want) {
				t.Fatalf("%q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("%q, want %q", got, tc.want)
				}
			}
		})
	}
	if !idpNamesPoint(relative) {
		t.Error("a nameRelativeToCRLIssuer names a point (it matches no certificate's URI)")
	}
}

// dpRecord is a catalogue record whose creator is leaf, its
// imagetrust_signature embedding leaf (with its distribution points) when
// signed.
func (w *dpWorld) dpRecord(t *testing.T, leaf *testpki.Leaf, signed bool) Image {
	t.Helper()
	cj, _ := json.Marshal([]ChainCert{{Role: "creator", Issuer: w.ca.Cert.Subject.String(),
		Serial: leaf.Cert.SerialNumber.Text(16), AKI: hex.EncodeToString(w.ca.Cert.SubjectKeyId)}})
	props := map[string]string{PropRecordVersion: "1", PropChain: string(cj), PropNotBefore: regTime}
	if signed {
		p7, err := cms.Sign([]byte("descriptor"), leaf.Cert, leaf.Key, cms.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		props[PropSignature] = base64.StdEncoding.EncodeToString(p7)
	}
	return Image{ID: "img", Status: StatusActive, Properties: props}
}

// TestJudgeDistributionPoints: the CRL job (Judge, as Job.Run) reads the
// distribution points of a record's certificates from the certificates its
// imagetrust_signature embeds, and judges them by the same rule as the
// verifier: a certificate naming a withheld point is unknown under
// RefuseStale, one naming the fresh point valid; one naming no point, with
// only partitions, is unknown under RequireCRL and valid otherwise (as a
// CA without a CRL); a record without a signature keeps the rule of
// before (its points are not known). On the code before it, "fail b
// withheld ..." was valid.
func TestJudgeDistributionPoints(t *testing.T) {
	w := newDPWorld(t)
	ix := w.index(t, w.crl(t, 1, true, pki.IDPDistributionPoint(dpB)), w.crl(t, 40, false, pki.IDPDistributionPoint(dpA)),
		w.crl(t, 3, false, pki.IDPDistributionPoint("http://crl.example.org/c.crl"),
			pki.Revoked{Serial: big.NewInt(0xa), Time: t0.Add(-2 * time.Hour), Reason: ReasonKeyCompromise}))
	stale := Policy{RefuseStale: true}
	require := Policy{RequireCRL: true}
	for _, tc := range []struct {
		name   string
		leaf   *testpki.Leaf
		signed bool
		p      Policy
		want   string
	}{
		{"fail b withheld: unknown under refuse_stale", w.leafB, true, stale, StateUnknown},
		{"ok b withheld: valid without refuse_stale (a warning)", w.leafB, true, Policy{}, StateValid},
		{"ok ab: a fresh", w.leafAB, true, stale, StateValid},
		{"fail none: no CRL speaks for it, require_crl", w.leafNone, true, require, StateUnknown},
		{"ok none: no CRL speaks for it, no require_crl", w.leafNone, true, stale, StateValid},
		{"ok b unsigned record: points unknown, a's CRL speaks", w.leafB, false, stale, StateValid},
		{"fail a: revoked by c's CRL, a point it does not name", w.leafA, true, stale, StateRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, _, why := Judge(ix, w.dpRecord(t, tc.leaf, tc.signed), tc.p, t0)
			if state != tc.want {
				t.Fatalf("%s (%s), want %s", state, why, tc.want)
			}
		})
	}
}

// TestJobWithheldDistributionPoint: through Job.Run (CRL files, the
// catalogue of memCatalog), the withheld point's image becomes unknown,
// its neighbour on the fresh point stays valid.
func TestJobWithheldDistributionPoint(t *testing.T) {
	w := newDPWorld(t)
	cat := &memCatalog{images: map[string]*Image{}}
	for id, leaf := range map[string]*testpki.Leaf{"img-a": w.leafA, "img-b": w.leafB} {
		img := w.dpRecord(t, leaf, true)
		img.ID = id
		img.Properties[PropGlobalValidity] = StateValid
		cat.images[id] = &img
	}
	dir := t.TempDir()
	b := w.ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-10 * 24 * time.Hour), NextUpdate: t0.Add(-9 * 24 * time.Hour), IDP: pki.IDPDistributionPoint(dpB)})
	a := w.ca.CRL(pki.CRLTemplate{Number: 40, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(24 * time.Hour), IDP: pki.IDPDistributionPoint(dpA)})
	j := NewJob(JobConfig{
		CAs:     []*x509.Certificate{w.ca.Cert},
		Sources: []Source{{File: testpki.WriteFile(t, dir, "a.crl", a)}, {File: testpki.WriteFile(t, dir, "b.crl", b)}},
		Policy:  Policy{RefuseStale: true}, ClockSkew: 5 * time.Minute, Timeout: time.Second, Retries: 1, CacheDir: t.TempDir(),
	}, cat, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	j.Now = func() time.Time { return t0 }
	rep := run(t, j)
	if got := cat.get("img-b").Properties[PropGlobalValidity]; got != StateUnknown {
		t.Errorf("img-b (names the withheld point): %s, want unknown (%+v)", got, rep.Changes)
	}
	if got := cat.get("img-a").Properties[PropGlobalValidity]; got != StateValid {
		t.Errorf("img-a (names the fresh point): %s, want valid (%+v)", got, rep.Changes)
	}
	if len(j.points.prev) != 2 {
		t.Errorf("%d signatures' points remembered, want both records'", len(j.points.prev))
	}
	// with complete CRLs only, the points change nothing: no signature is
	// read for them, none remembered
	complete := w.ca.CRL(pki.CRLTemplate{Number: 41, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(24 * time.Hour)})
	cfg := j.cfg
	cfg.Sources, cfg.CacheDir = []Source{{File: testpki.WriteFile(t, dir, "all.crl", complete)}}, t.TempDir()
	j = NewJob(cfg, cat, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	j.Now = func() time.Time { return t0 }
	run(t, j)
	if len(j.points.prev) != 0 {
		t.Errorf("%d signatures' points remembered without a partitioned CRL", len(j.points.prev))
	}
	if got := cat.get("img-b").Properties[PropGlobalValidity]; got != StateValid {
		t.Errorf("img-b under a fresh complete CRL: %s, want valid", got)
	}
}

// TestJobHoldOnAnotherPoint: a CA puts a certificate naming b on hold in
// its CRL of point a (a revocation counts from any CRL of the CA); a's
// next CRL, which no longer lists it, lifts the hold, as a CRL of the
// scope that imposed it numbered above it, though a's CRLs do not speak
// for the certificate's staleness. (Judging holds by the CRLs that speak
// for the certificate kept such a hold for good.)
func TestJobHoldOnAnotherPoint(t *testing.T) {
	w := newDPWorld(t)
	cat := &memCatalog{images: map[string]*Image{}}
	img := w.dpRecord(t, w.leafB, true)
	img.Properties[PropGlobalValidity] = StateValid
	cat.images[img.ID] = &img
	dir := t.TempDir()
	freshB := w.ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-2 * time.Hour), NextUpdate: t0.Add(24 * time.Hour), IDP: pki.IDPDistributionPoint(dpB)})
	hold := pki.Revoked{Serial: w.leafB.Cert.SerialNumber, Time: t0.Add(-3 * time.Hour), Reason: ReasonCertificateHold}
	a1 := w.ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-2 * time.Hour), NextUpdate: t0.Add(24 * time.Hour), IDP: pki.IDPDistributionPoint(dpA), Entries: []pki.Revoked{hold}})
	a2 := w.ca.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(24 * time.Hour), IDP: pki.IDPDistributionPoint(dpA)})
	aFile := testpki.WriteFile(t, dir, "a.crl", a1)
	j := NewJob(JobConfig{
		CAs:     []*x509.Certificate{w.ca.Cert},
		Sources: []Source{{File: aFile}, {File: testpki.WriteFile(t, dir, "b.crl", freshB)}},
		Policy:  Policy{RefuseStale: true}, ClockSkew: 5 * time.Minute, Timeout: time.Second, Retries: 1, CacheDir: t.TempDir(),
	}, cat, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	j.Now = func() time.Time { return t0 }
	run(t, j)
	if got := cat.get(img.ID); got.Properties[PropGlobalValidity] != StateHold || got.Status != StatusDeactivated {
		t.Fatalf("fail hold on a's CRL: %s/%s, want hold, deactivated", got.Status, got.Properties[PropGlobalValidity])
	}
	testpki.WriteFile(t, dir, "a.crl", a2)
	rep := run(t, j)
	if got := cat.get(img.ID); got.Properties[PropGlobalValidity] != StateValid || got.Status != StatusActive {
		t.Fatalf("ok a's next CRL lifts the hold: %s/%s, want valid, active (%+v)", got.Status, got.Properties[PropGlobalValidity], rep.Changes)
	}
}

// TestJudgeInjectedNamesake: whoever can write a record's
// imagetrust_signature (a mirror credential) appends to its certificate
// bag, which no signature covers, a certificate of their own making with
// the issuer name and serial of the real signer's, no
// authorityKeyIdentifier, and the fresh point a as its distribution point,
// while the real certificate names the withheld point b. The signature
// still verifies (the signer is found first, by issuer and serial, so the
// gate re-verifies the record as before), but the CRL job saw two
// namesakes disagreeing on their points and fell back on every CRL of the
// kind: a's fresh CRL then spoke for the certificate and the image stayed
// valid under refuse_stale. A legitimate signature never embeds two
// certificates of one issuer and serial (RFC 5280 4.1.2.2) that disagree,
// so the job now judges such a record unknown. Fails on the code before
// it (valid).
func TestJudgeInjectedNamesake(t *testing.T) {
	w := newDPWorld(t)
	impostor := testpki.NewRoot(t, "Partitioned CA") // same name, own key
	fake := impostor.Leaf(testpki.Name("Creator B"), testpki.WithSerial(0xb), testpki.WithCRLDP(dpA), testpki.WithoutAKI(),
		testpki.WithURIs("urn:x:"+strings.Repeat("p", 512))) // (longer: DER sorts it after the signer's)
	p7, err := cms.Sign([]byte("descriptor"), w.leafB.Cert, w.leafB.Key, cms.SignOptions{Chain: []*x509.Certificate{fake.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	sd, err := cms.Parse(p7)
	if err != nil || len(sd.Signers) != 1 || !sd.Signers[0].Certificate.Equal(w.leafB.Cert) || sd.Signers[0].Verify([]byte("descriptor")) != nil {
		t.Fatalf("the bag with the namesake no longer verifies as the real signer's: %v", err)
	}
	img := w.dpRecord(t, w.leafB, true)
	img.Properties[PropSignature] = base64.StdEncoding.EncodeToString(p7)
	ix := w.index(t, w.crl(t, 1, true, pki.IDPDistributionPoint(dpB)), w.crl(t, 40, false, pki.IDPDistributionPoint(dpA)))
	state, _, why := Judge(ix, img, Policy{RefuseStale: true}, t0)
	if state != StateUnknown {
		t.Fatalf("record whose bag holds a namesake naming the fresh point: %s (%s), want unknown", state, why)
	}
	// a namesake that agrees (the signer's certificate embedded twice)
	// changes nothing: the withheld point still makes it unknown, and the
	// fresh point's certificate stays valid
	p7, err = cms.Sign([]byte("descriptor"), w.leafA.Cert, w.leafA.Key, cms.SignOptions{Chain: []*x509.Certificate{w.leafA.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	img = w.dpRecord(t, w.leafA, true)
	img.Properties[PropSignature] = base64.StdEncoding.EncodeToString(p7)
	if state, _, why := Judge(ix, img, Policy{RefuseStale: true}, t0); state != StateValid {
		t.Fatalf("a's certificate embedded twice: %s (%s), want valid", state, why)
	}
}

// TestStaleWhenNoPointSpeaks: a CA's partitioned CRLs name points none of
// which a certificate names (the CA moved its CRLs to another URL, or
// spells it otherwise in its CRLs than in the certificate), and every CRL
// of the CA is withheld. No CRL speaks for the certificate by its points,
// and the job took it for a CA without CRLs: valid under refuse_stale,
// however old the CA's CRLs, so withholding them all hid every later
// revocation without the staleness ever showing (before partitions were
// told apart the CA's newest CRL of the kind judged it: stale, unknown).
// Now a certificate no CRL of its CA speaks for by its points is judged
// stale by the CA's newest CRL of its kind, as before: never fresher than
// that, and the withheld point's own stale CRL still decides when it has
// one (TestJudgeDistributionPoints).
func TestStaleWhenNoPointSpeaks(t *testing.T) {
	w := newDPWorld(t)
	allStale := w.index(t, w.crl(t, 1, true, pki.IDPDistributionPoint(dpB)), w.crl(t, 2, true, pki.IDPDistributionPoint(dpA)))
	stale := Policy{RefuseStale: true}
	for _, leaf := range []*testpki.Leaf{w.leafBUpper, w.leafNone} {
		img := w.dpRecord(t, leaf, true)
		if state, _, why := Judge(allStale, img, stale, t0); state != StateUnknown {
			t.Errorf("%s, every CRL of its CA stale: %s (%s), want unknown", leaf.Cert.Subject.CommonName, state, why)
		}
		r := ChainRefs([]*x509.Certificate{leaf.Cert, w.ca.Cert}, RoleCreator)[0]
		if c := allStale.StaleFor(r, t0, 0); c == nil {
			t.Errorf("%s: StaleFor nil with every CRL of its CA stale", leaf.Cert.Subject.CommonName)
		}
	}
	// one of them fresh: the CA's newest word is fresh, as before
	fresh := w.index(t, w.crl(t, 1, true, pki.IDPDistributionPoint(dpB)), w.crl(t, 40, false, pki.IDPDistributionPoint(dpA)))
	if state, _, why := Judge(fresh, w.dpRecord(t, w.leafBUpper, true), stale, t0); state != StateValid {
		t.Errorf("b spelt otherwise, a fresh: %s (%s), want valid", state, why)
	}
}

// TestJobConfiguredIntermediatePoints: an intermediate CA of a record's
// chain that the signature does not embed (the trust files hold it) is
// judged by the distribution points its configured certificate names, as
// the verifier judges the certificates it has: its root partitions its
// CRLs of CA certificates by point, and whoever withholds the point the
// intermediate names makes the image unknown under refuse_stale, not
// valid by the other point's fresh CRL. On the code before it, its points
// were not known and every CRL of its kind spoke for it ("fail ...": valid).
func TestJobConfiguredIntermediatePoints(t *testing.T) {
	root := testpki.NewRoot(t, "Partitioned Root")
	inter := root.Intermediate("Configured People CA", testpki.WithCRLDP(dpB))
	leaf := inter.Leaf(testpki.Name("Creator"), testpki.WithSerial(0x51))
	p7, err := cms.Sign([]byte("descriptor"), leaf.Cert, leaf.Key, cms.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cj, _ := json.Marshal([]ChainCert{
		{Role: "creator", Issuer: inter.Cert.Subject.String(), Serial: leaf.Cert.SerialNumber.Text(16), AKI: hex.EncodeToString(inter.Cert.SubjectKeyId)},
		{Role: "creator-ca", Issuer: root.Cert.Subject.String(), Serial: inter.Cert.SerialNumber.Text(16), AKI: hex.EncodeToString(root.Cert.SubjectKeyId)},
	})
	fresh := func(ca *testpki.CA, n int64, idp []byte) []byte {
		return ca.CRL(pki.CRLTemplate{Number: n, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(24 * time.Hour), IDP: idp})
	}
	staleB := root.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-10 * 24 * time.Hour), NextUpdate: t0.Add(-9 * 24 * time.Hour), IDP: pki.IDPDistributionPoint(dpB)})
	for _, tc := range []struct {
		name string
		cas  []*x509.Certificate
		crls [][]byte
		want string
	}{
		{"fail its point's CRL withheld, the other point's fresh", []*x509.Certificate{root.Cert, inter.Cert},
			[][]byte{staleB, fresh(root, 40, pki.IDPDistributionPoint(dpA)), fresh(inter, 1, nil)}, StateUnknown},
		{"ok its point's CRL fresh", []*x509.Certificate{root.Cert, inter.Cert},
			[][]byte{fresh(root, 2, pki.IDPDistributionPoint(dpB)), fresh(root, 40, pki.IDPDistributionPoint(dpA)), fresh(inter, 1, nil)}, StateValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			props := map[string]string{PropRecordVersion: "1", PropChain: string(cj), PropNotBefore: regTime,
				PropSignature: base64.StdEncoding.EncodeToString(p7), PropGlobalValidity: StateValid}
			cat := &memCatalog{images: map[string]*Image{"img": {ID: "img", Status: StatusActive, Properties: props}}}
			dir := t.TempDir()
			var srcs []Source
			for i, b := range tc.crls {
				srcs = append(srcs, Source{File: testpki.WriteFile(t, dir, strings.Repeat("c", i+1)+".crl", b)})
			}
			j := NewJob(JobConfig{CAs: tc.cas, Sources: srcs, Policy: Policy{RefuseStale: true}, ClockSkew: 5 * time.Minute,
				Timeout: time.Second, Retries: 1, CacheDir: t.TempDir()}, cat, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
			j.Now = func() time.Time { return t0 }
			rep := run(t, j)
			if got := cat.get("img").Properties[PropGlobalValidity]; got != tc.want {
				t.Fatalf("%s, want %s (%+v, refused %+v)", got, tc.want, rep.Changes, rep.Refused)
			}
		})
	}
}
