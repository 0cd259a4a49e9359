package validator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// chainsPKI is a site's PKI as the CRL job's records see it: a people root
// with a people CA under it, a Registrar root with a Registrar CA under
// it, and the CAs a site may add or remove beside them.
type chainsPKI struct {
	peopleRoot, peopleCA, regRoot, regCA *testpki.CA
	// otherPeople is another people root (a second IGTF CA), otherReg a
	// Registrar root of another site
	otherPeople, otherPeopleCA, otherReg *testpki.CA
	creator, approver, otherCreator      *testpki.Leaf
}

func newChainsPKI(t testing.TB) *chainsPKI {
	t.Helper()
	p := &chainsPKI{peopleRoot: testpki.NewRoot(t, "Trust People Root"), regRoot: testpki.NewRoot(t, "Trust Registrar Root"),
		otherPeople: testpki.NewRoot(t, "Trust Other People Root"), otherReg: testpki.NewRoot(t, "Trust Other Registrar Root")}
	p.peopleCA = p.peopleRoot.Intermediate("Trust People CA")
	p.regCA = p.regRoot.Intermediate("Trust Registrar CA")
	p.otherPeopleCA = p.otherPeople.Intermediate("Trust Other People CA")
	p.creator = p.peopleCA.Leaf(testpki.Name("Trust Creator"), testpki.WithSerial(301))
	p.approver = p.peopleCA.Leaf(testpki.Name("Trust Approver"), testpki.WithSerial(302))
	p.otherCreator = p.otherPeopleCA.Leaf(testpki.Name("Trust Other Creator"), testpki.WithSerial(303))
	return p
}

// record returns the catalogue properties of an image signed by creator
// and approver and registered by the image certificate issued by reg (a
// CA of either side), as `imagetrust sync` writes them: the three signers
// and their intermediates in imagetrust_signature, the chains below the
// roots in imagetrust_chain.
func (p *chainsPKI) record(t testing.TB, id string, serial int64, reg *testpki.CA, creator, approver *testpki.Leaf) map[string]string {
	t.Helper()
	img := reg.Leaf(testpki.Name("image "+id), testpki.WithSerial(serial), testpki.WithURIs("urn:uuid:"+id))
	content := []byte(`{"uuid":"` + id + `"}`)
	p7, err := cms.Sign(content, creator.Cert, creator.Key, cms.SignOptions{Chain: creator.Chain})
	if err == nil {
		p7, err = cms.AddSigner(p7, content, approver.Cert, approver.Key, cms.SignOptions{Chain: approver.Chain})
	}
	if err == nil {
		p7, err = cms.AddSigner(p7, content, img.Cert, img.Key, cms.SignOptions{Chain: img.Chain})
	}
	if err != nil {
		t.Fatal(err)
	}
	var chain []ChainEntry
	add := func(role string, leaf *testpki.Leaf) {
		for i, c := range append([]*x509.Certificate{leaf.Cert}, leaf.Chain...) {
			r := role
			if i > 0 {
				r += "-ca"
			}
			chain = append(chain, ChainEntry{Role: r, Issuer: c.Issuer.String(), Serial: serialHex(c), AKI: hex.EncodeToString(c.AuthorityKeyId)})
		}
	}
	add("image", img)
	add("creator", creator)
	add("approver", approver)
	cj, _ := json.Marshal(chain)
	return map[string]string{PropRecordVersion: RecordVersion, PropChain: string(cj), PropImageNotBefore: img.Cert.NotBefore.UTC().Format(time.RFC3339),
		PropGlobalValidity: GlobalValid, PropSignature: base64.StdEncoding.EncodeToString(p7)}
}

// chainsTrust is the Trust of these people and Registrar CAs.
func chainsTrust(t testing.TB, people, registrar []*testpki.CA) *Trust {
	t.Helper()
	certs := func(cas []*testpki.CA) []*x509.Certificate {
		var out []*x509.Certificate
		for _, c := range cas {
			out = append(out, c.Cert)
		}
		return out
	}
	tr, _, err := NewTrust(TrustOptions{People: certs(people), Registrar: certs(registrar)})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

type cas = []*testpki.CA

func TestCheckRecordChains(t *testing.T) {
	p := newChainsPKI(t)
	good := p.record(t, "11111111-0000-4000-8000-000000000001", 1, p.regCA, p.creator, p.approver)
	otherCreator := p.record(t, "11111111-0000-4000-8000-000000000002", 2, p.regCA, p.otherCreator, p.approver)
	byPeopleCA := p.record(t, "11111111-0000-4000-8000-000000000003", 3, p.peopleCA, p.creator, p.approver)
	// the creator's certificate expired before the image was registered:
	// its chain still leads to the people root (being valid at
	// registration is another check of Verify)
	old := time.Now().Add(-3 * 365 * 24 * time.Hour)
	expired := p.peopleCA.Leaf(testpki.Name("Trust Expired Creator"), testpki.WithSerial(304), testpki.WithValidity(old, old.Add(24*time.Hour)))
	late := p.record(t, "11111111-0000-4000-8000-000000000004", 4, p.regCA, expired, p.approver)
	// a Registrar intermediate with a key under the signers' minimum
	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakCA := p.regRoot.Intermediate("Trust Weak Registrar CA", testpki.WithSigner(weakKey))
	weak := p.record(t, "11111111-0000-4000-8000-000000000005", 5, weakCA, p.creator, p.approver)
	noImage := with(good, PropSignature, "")
	p7, err := cms.Sign([]byte("x"), p.creator.Cert, p.creator.Key, cms.SignOptions{Chain: p.creator.Chain})
	if err != nil {
		t.Fatal(err)
	}
	noImage[PropSignature] = base64.StdEncoding.EncodeToString(p7)
	site := chainsTrust(t, cas{p.peopleRoot, p.otherPeople}, cas{p.regRoot})
	for _, tc := range []struct {
		name   string
		trust  *Trust
		record map[string]string
		err    []string // substrings of the error; none: nil
	}{
		{"ok chains to the configured roots", site, good, nil},
		{"ok intermediates configured too", chainsTrust(t, cas{p.peopleRoot, p.peopleCA}, cas{p.regRoot, p.regCA}), good, nil},
		{"ok creator of the second people CA", site, otherCreator, nil},
		{"ok creator expired before registration", site, late, nil},
		{"fail Registrar root removed", chainsTrust(t, cas{p.peopleRoot}, cas{p.otherReg}), good,
			[]string{"image chain no longer leads to a configured Registrar CA", `issuer "CN=Trust Registrar Root,O=imagetrust test" is not trusted`, "image 11111111"}},
		{"fail only the Registrar intermediate configured", chainsTrust(t, cas{p.peopleRoot}, cas{p.regCA}), good,
			[]string{"image chain no longer leads to a configured Registrar CA", "Trust Registrar Root"}},
		{"fail people root removed", chainsTrust(t, cas{p.otherPeople}, cas{p.regRoot}), good,
			[]string{"chain no longer leads to a configured people CA", `issuer "CN=Trust People Root,O=imagetrust test" is not trusted`}},
		{"fail the creator's CA removed, the approver's kept", chainsTrust(t, cas{p.peopleRoot}, cas{p.regRoot}), otherCreator,
			[]string{"creator chain no longer leads to a configured people CA", `issuer "CN=Trust Other People Root,O=imagetrust test" is not trusted`, "Trust Other Creator"}},
		{"fail image certificate of a people CA", site, byPeopleCA,
			[]string{"image chain no longer leads to a configured Registrar CA", "Trust People Root"}},
		{"fail weak Registrar intermediate", site, weak,
			[]string{"image chain no longer leads to a configured Registrar CA", "every chain holds a weak key", "Trust Weak Registrar CA"}},
		{"fail no signature", site, with(good, PropSignature, ""), []string{"no imagetrust_signature"}},
		{"fail signature not base64", site, with(good, PropSignature, "not base64 !"), []string{"imagetrust_signature"}},
		{"fail signature not a SignedData", site, with(good, PropSignature, base64.StdEncoding.EncodeToString([]byte("junk"))), []string{"imagetrust_signature"}},
		{"fail signature too large", site, with(good, PropSignature, strings.Repeat("A", maxRecordSignatureB64+4)), []string{"larger than"}},
		{"fail no image signer", site, noImage, []string{"no signer of the record holds an image certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.trust.CheckRecordChains(tc.record)
			if len(tc.err) == 0 {
				if err != nil {
					t.Fatalf("CheckRecordChains: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckRecordChains: nil error")
			}
			for _, want := range tc.err {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

// with returns a copy of props with k set to v ("": removed).
func with(props map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for kk, vv := range props {
		out[kk] = vv
	}
	if v == "" {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

// TestCheckRecordChainsAgreesWithVerify: CheckRecordChains refuses a
// record exactly when Verify refuses one of its signers' chains
// (creator-untrusted, approver-untrusted, image-cert-untrusted,
// image-cert-from-people-ca), so that the CRL job's flag and the proxy
// agree on which records lead to the site's trust. Both build the chains
// with the same code; this holds the rest (which signer is which, which
// chain errors count) together.
func TestCheckRecordChainsAgreesWithVerify(t *testing.T) {
	w := newWorld(t)
	otherPeople := testpki.NewRoot(t, "Other People Root")
	otherReg := testpki.NewRoot(t, "Other Registrar CA")
	regSub := w.regRoot.Intermediate("Registrar Issuing CA")
	rogueCreator := otherPeople.Intermediate("People Issuing CA").Leaf(testpki.Name("Alice Creator"),
		testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0)))
	expired := w.peopleSub.Leaf(testpki.Name("Alice Creator"), testpki.WithValidity(testNow.AddDate(-2, 0, 0), testNow.AddDate(-1, 0, 0)))
	chainReasons := []string{ReasonCreatorUntrusted, ReasonApproverUntrusted, ReasonImageCertUntrusted, ReasonImageCertPeopleCA}

	peopleAll := cas{w.peopleRoot, w.peopleSub}
	for _, tc := range []struct {
		name              string
		people, registrar cas
		b                 bundleOpts
		untrusted         bool
	}{
		{"ok the site's trust", peopleAll, cas{w.regRoot}, bundleOpts{}, false},
		{"ok people root only, its intermediate embedded", peopleAll[:1], cas{w.regRoot}, bundleOpts{}, false},
		{"ok Registrar intermediate embedded", peopleAll, cas{w.regRoot}, bundleOpts{regCA: regSub}, false},
		{"ok creator expired at registration (another check)", peopleAll, cas{w.regRoot}, bundleOpts{creator: expired}, false},
		{"fail Registrar CA removed", peopleAll, cas{otherReg}, bundleOpts{}, true},
		{"fail only the Registrar intermediate configured", peopleAll, cas{regSub}, bundleOpts{regCA: regSub}, true},
		{"fail people CAs removed", cas{otherPeople}, cas{w.regRoot}, bundleOpts{}, true},
		{"fail creator of an untrusted CA", peopleAll, cas{w.regRoot}, bundleOpts{creator: rogueCreator}, true},
		{"fail image certificate of a people CA", peopleAll, cas{w.regRoot}, bundleOpts{regCA: w.peopleSub}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := chainsTrust(t, tc.people, tc.registrar)
			b := w.bundle(tc.b)
			var refused []string
			for _, c := range tr.Verify(b.input(w.now)).Failed() {
				if slices.Contains(chainReasons, c.Reason) {
					refused = append(refused, c.Name+": "+c.Reason+" ("+c.Detail+")")
				}
			}
			jobErr := tr.CheckRecordChains(map[string]string{PropSignature: base64.StdEncoding.EncodeToString(b.sig)})
			if (len(refused) > 0) != tc.untrusted || (jobErr != nil) != tc.untrusted {
				t.Fatalf("Verify refuses chains: %q; CheckRecordChains: %v; want untrusted %v", refused, jobErr, tc.untrusted)
			}
		})
	}
}

// TestAnchorCounts: the CRL job refuses a Trust with no people CA or no
// Registrar CA (crl.CheckTrust), counting roots and intermediates.
func TestAnchorCounts(t *testing.T) {
	p := newChainsPKI(t)
	for _, tc := range []struct {
		name              string
		people, registrar cas
		err               string
	}{
		{"ok roots and intermediates", cas{p.peopleRoot, p.peopleCA}, cas{p.regRoot, p.regCA}, ""},
		{"ok intermediates only", cas{p.peopleCA}, cas{p.regCA}, ""},
		{"fail nothing", nil, nil, "no people CA and no Registrar CA"},
		{"fail no people CA", nil, cas{p.regRoot}, "no people CA"},
		{"fail no Registrar CA", cas{p.peopleRoot}, nil, "no Registrar CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := chainsTrust(t, tc.people, tc.registrar)
			if np, nr := tr.AnchorCounts(); np != len(tc.people) || nr != len(tc.registrar) {
				t.Errorf("AnchorCounts %d, %d; want %d, %d", np, nr, len(tc.people), len(tc.registrar))
			}
			err := crl.CheckTrust(tr)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("CheckTrust: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, crl.ErrNoTrust) {
				t.Fatalf("error %v, want ErrNoTrust with %q", err, tc.err)
			}
		})
	}
}

// BenchmarkCheckRecordChains is what a record the CRL job has not judged
// before costs (a crl.Job remembers the verdict for the records of its
// last run).
func BenchmarkCheckRecordChains(b *testing.B) {
	p := newChainsPKI(b)
	tr := chainsTrust(b, cas{p.peopleRoot}, cas{p.regRoot})
	rec := p.record(b, "33333333-0000-4000-8000-000000000001", 1, p.regCA, p.creator, p.approver)
	for b.Loop() {
		if err := tr.CheckRecordChains(rec); err != nil {
			b.Fatal(err)
		}
	}
}
