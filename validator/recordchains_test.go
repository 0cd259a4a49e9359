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
	"github.com/imagetrust/imagetrust/internal/testsite"
)

// chainsPKI is the site's PKI of package testsite.
type chainsPKI struct{ *testsite.Site }

func newChainsPKI(t testing.TB) *chainsPKI { return &chainsPKI{testsite.New(t)} }

// record returns the catalogue properties of an image signed by creator
// and approver and registered by the image certificate issued by reg (a
// CA of either side), as `imagetrust sync` writes them: the three signers
// and their intermediates in imagetrust_signature, the chains below the
// roots in imagetrust_chain.
func (p *chainsPKI) record(t testing.TB, id string, serial int64, reg *testpki.CA, creator, approver *testpki.Leaf) map[string]string {
	t.Helper()
	s := testsite.Sign(t, id, serial, reg, creator, approver)
	var chain []ChainEntry
	for _, l := range s.Links {
		c := l.Cert
		chain = append(chain, ChainEntry{Role: l.Role, Issuer: c.Issuer.String(), Serial: serialHex(c), AKI: hex.EncodeToString(c.AuthorityKeyId)})
	}
	cj, _ := json.Marshal(chain)
	return map[string]string{PropRecordVersion: RecordVersion, PropChain: string(cj), PropImageNotBefore: s.Image.Cert.NotBefore.UTC().Format(time.RFC3339),
		PropGlobalValidity: GlobalValid, PropSignature: base64.StdEncoding.EncodeToString(s.Signature)}
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
	good := p.record(t, "11111111-0000-4000-8000-000000000001", 1, p.RegCA, p.Creator, p.Approver)
	otherCreator := p.record(t, "11111111-0000-4000-8000-000000000002", 2, p.RegCA, p.OtherCreator, p.Approver)
	byPeopleCA := p.record(t, "11111111-0000-4000-8000-000000000003", 3, p.PeopleCA, p.Creator, p.Approver)
	// the creator's certificate expired before the image was registered:
	// its chain still leads to the people root (being valid at
	// registration is another check of Verify)
	old := time.Now().Add(-3 * 365 * 24 * time.Hour)
	expired := p.PeopleCA.Leaf(testpki.Name("Trust Expired Creator"), testpki.WithSerial(304), testpki.WithValidity(old, old.Add(24*time.Hour)))
	late := p.record(t, "11111111-0000-4000-8000-000000000004", 4, p.RegCA, expired, p.Approver)
	// a Registrar intermediate with a key under the signers' minimum
	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakCA := p.RegRoot.Intermediate("Trust Weak Registrar CA", testpki.WithSigner(weakKey))
	weak := p.record(t, "11111111-0000-4000-8000-000000000005", 5, weakCA, p.Creator, p.Approver)
	noImage := with(good, PropSignature, "")
	p7, err := cms.Sign([]byte("x"), p.Creator.Cert, p.Creator.Key, cms.SignOptions{Chain: p.Creator.Chain})
	if err != nil {
		t.Fatal(err)
	}
	noImage[PropSignature] = base64.StdEncoding.EncodeToString(p7)
	site := chainsTrust(t, cas{p.PeopleRoot, p.OtherPeople}, cas{p.RegRoot})
	for _, tc := range []struct {
		name   string
		trust  *Trust
		record map[string]string
		err    []string // substrings of the error; none: nil
	}{
		{"ok chains to the configured roots", site, good, nil},
		{"ok intermediates configured too", chainsTrust(t, cas{p.PeopleRoot, p.PeopleCA}, cas{p.RegRoot, p.RegCA}), good, nil},
		{"ok creator of the second people CA", site, otherCreator, nil},
		{"ok creator expired before registration", site, late, nil},
		{"fail Registrar root removed", chainsTrust(t, cas{p.PeopleRoot}, cas{p.OtherRegistrar}), good,
			[]string{"image chain no longer leads to a configured Registrar CA", `issuer "CN=Trust Registrar Root,O=imagetrust test" is not trusted`, "image 11111111"}},
		{"fail only the Registrar intermediate configured", chainsTrust(t, cas{p.PeopleRoot}, cas{p.RegCA}), good,
			[]string{"image chain no longer leads to a configured Registrar CA", "Trust Registrar Root"}},
		{"fail people root removed", chainsTrust(t, cas{p.OtherPeople}, cas{p.RegRoot}), good,
			[]string{"chain no longer leads to a configured people CA", `issuer "CN=Trust People Root,O=imagetrust test" is not trusted`}},
		{"fail the creator's CA removed, the approver's kept", chainsTrust(t, cas{p.PeopleRoot}, cas{p.RegRoot}), otherCreator,
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
		{"ok roots and intermediates", cas{p.PeopleRoot, p.PeopleCA}, cas{p.RegRoot, p.RegCA}, ""},
		{"ok intermediates only", cas{p.PeopleCA}, cas{p.RegCA}, ""},
		{"fail nothing", nil, nil, "no people CA and no Registrar CA"},
		{"fail no people CA", nil, cas{p.RegRoot}, "no people CA"},
		{"fail no Registrar CA", cas{p.PeopleRoot}, nil, "no Registrar CA"},
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
	tr := chainsTrust(b, cas{p.PeopleRoot}, cas{p.RegRoot})
	rec := p.record(b, "33333333-0000-4000-8000-000000000001", 1, p.RegCA, p.Creator, p.Approver)
	for b.Loop() {
		if err := tr.CheckRecordChains(rec); err != nil {
			b.Fatal(err)
		}
	}
}
