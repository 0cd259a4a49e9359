package crl

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// signedRecord adds to w's catalogue an image whose creator is leaf, issued
// by people (an intermediate of ca), and whose imagetrust_signature embeds
// leaf and the chain given, as a real record's does.
func (w *world) signedRecord(t *testing.T, id string, people *testpki.CA, ca *testpki.CA, leaf *testpki.Leaf, chain ...*x509.Certificate) {
	t.Helper()
	p7, err := cms.Sign([]byte(`{"uuid":"`+id+`"}`), leaf.Cert, leaf.Key, cms.SignOptions{Chain: chain})
	if err != nil {
		t.Fatal(err)
	}
	ref := func(role string, issuer *testpki.CA, serial *big.Int) ChainCert {
		return ChainCert{Role: role, Issuer: issuer.Cert.Subject.String(), Serial: serial.Text(16), AKI: hex.EncodeToString(issuer.Cert.SubjectKeyId)}
	}
	refs := []ChainCert{ref("image", w.registrar, big.NewInt(90)), ref("creator", people, leaf.Cert.SerialNumber)}
	if ca != nil {
		refs = append(refs, ref("creator-ca", ca, people.Cert.SerialNumber))
	}
	cj, _ := json.Marshal(refs)
	w.cat.images[id] = &Image{ID: id, Status: StatusActive, Properties: map[string]string{
		PropRecordVersion: "1", PropChain: string(cj), PropNotBefore: regTime, PropGlobalValidity: StateValid,
		PropSignature: base64.StdEncoding.EncodeToString(p7)}}
}

// TestJobEmbeddedIntermediate: the site's trust files hold only the root
// and the Registrar CA; the people CA that issued a creator is embedded in
// the record's signature. Its CRL (which revokes the creator) is accepted,
// while a CA of the same name that does not chain to the root, embedded in
// another record, neither becomes a CA nor gets its CRL accepted.
func TestJobEmbeddedIntermediate(t *testing.T) {
	w := newWorld(t)
	embedded := w.root.Intermediate("Embedded People CA")
	creator := embedded.Leaf(testpki.Name("Creator Embedded"), testpki.WithSerial(201))
	rogue := testpki.NewRoot(t, "Embedded People CA") // same name, not under the root
	rogueCreator := rogue.Leaf(testpki.Name("Creator Rogue"), testpki.WithSerial(202))
	w.signedRecord(t, "img-e", embedded, w.root, creator, embedded.Cert)
	w.signedRecord(t, "img-r", rogue, nil, rogueCreator, rogue.Cert)
	w.cat.images["img-bad"] = &Image{ID: "img-bad", Status: StatusActive, Properties: map[string]string{
		PropRecordVersion: "1", PropChain: w.cat.images["img-1"].Properties[PropChain], PropNotBefore: regTime,
		PropGlobalValidity: StateValid, PropSignature: "not base64 !"}}
	revokeCreator := crlT(embedded, 1, pki.Revoked{Serial: creator.Cert.SerialNumber, Time: t0.Add(-time.Hour), Reason: ReasonKeyCompromise})
	// the rogue's CRL names the genuine creator's serial under the same issuer name
	forged := crlT(rogue, 1, pki.Revoked{Serial: creator.Cert.SerialNumber, Reason: ReasonKeyCompromise})

	for _, tc := range []struct {
		name       string
		signature  bool // the record keeps its imagetrust_signature
		crl        []byte
		want       string
		wantReason string // of the refused CRL file, "" when accepted
	}{
		{"ok embedded intermediate's CRL revokes its creator", true, revokeCreator, StateRevoked, ""},
		{"fail forged intermediate of the same name", true, forged, StateValid, ReasonWrongIssuer},
		{"fail intermediate not embedded: its CRL has no CA", false, revokeCreator, StateValid, ReasonWrongIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.cat.images["img-e"].Status = StatusActive
			w.cat.images["img-e"].Properties[PropGlobalValidity] = StateValid
			saved := w.cat.images["img-e"].Properties[PropSignature]
			if !tc.signature {
				delete(w.cat.images["img-e"].Properties, PropSignature)
			}
			defer func() { w.cat.images["img-e"].Properties[PropSignature] = saved }()
			j := w.job(t, t.TempDir(), t0, true)
			j.cfg.CAs = []*x509.Certificate{w.root.Cert, w.registrar.Cert}
			j.cfg.Sources = append(j.cfg.Sources, Source{File: testpki.WriteFile(t, t.TempDir(), "people.crl", tc.crl)})
			w.serve(crlT(w.registrar, 1), 0, 0)
			rep := run(t, j)
			img := w.cat.get("img-e")
			if img.Properties[PropGlobalValidity] != tc.want {
				t.Fatalf("img-e: %+v (report %+v)", img, rep)
			}
			if tc.want == StateRevoked && (img.Status != StatusDeactivated || img.Properties[PropRevokedRole] != "creator") {
				t.Fatalf("img-e: %+v", img)
			}
			if wantCAs := map[bool]int{true: 1, false: 0}[tc.signature]; rep.EmbeddedCAs != wantCAs {
				t.Fatalf("embedded CAs %d, want %d", rep.EmbeddedCAs, wantCAs)
			}
			refused := ""
			for _, r := range rep.Refused {
				if r.Source != j.cfg.Sources[0].URL {
					refused = r.Reason
				}
			}
			if refused != tc.wantReason {
				t.Fatalf("CRL file refused with %q, want %q (%+v)", refused, tc.wantReason, rep.Refused)
			}
			if img := w.cat.get("img-r"); img.Properties[PropGlobalValidity] != StateValid {
				t.Fatalf("img-r: %+v", img)
			}
		})
	}
}

// TestJobEmbeddedUnderIGTFRoot: the root the embedded intermediate chains
// to comes from an IGTF directory source, not from the configured CAs.
func TestJobEmbeddedUnderIGTFRoot(t *testing.T) {
	w := newWorld(t)
	embedded := w.root.Intermediate("Embedded People CA")
	creator := embedded.Leaf(testpki.Name("Creator Embedded"), testpki.WithSerial(201))
	w.signedRecord(t, "img-e", embedded, w.root, creator, embedded.Cert)
	dir := t.TempDir()
	testpki.WriteFile(t, dir, "0a1b2c3d.0", testpki.CertPEM(w.root.Cert))
	j := w.job(t, t.TempDir(), t0, true)
	j.cfg.CAs = []*x509.Certificate{w.registrar.Cert}
	j.cfg.Sources = append(j.cfg.Sources, Source{Dir: dir}, Source{File: testpki.WriteFile(t, t.TempDir(), "people.crl",
		crlT(embedded, 1, pki.Revoked{Serial: creator.Cert.SerialNumber, Time: t0.Add(-time.Hour), Reason: ReasonKeyCompromise}))})
	w.serve(crlT(w.registrar, 1), 0, 0)
	rep := run(t, j)
	if img := w.cat.get("img-e"); img.Properties[PropGlobalValidity] != StateRevoked || rep.EmbeddedCAs != 1 {
		t.Fatalf("img-e: %+v (report %+v)", img, rep)
	}
}

func TestEmbeddedCAs(t *testing.T) {
	root := testpki.NewRoot(t, "Embedded Root")
	mid := root.Intermediate("Mid CA")
	sub := mid.Intermediate("Sub CA")
	leaf := sub.Leaf(testpki.Name("Signer"))
	expiredMid := root.Intermediate("Old CA", testpki.WithValidity(t0.Add(-400*24*time.Hour), t0.Add(-30*24*time.Hour)))
	oldLeaf := expiredMid.Leaf(testpki.Name("Old Signer"), testpki.WithValidity(t0.Add(-300*24*time.Hour), t0.Add(-40*24*time.Hour)))
	record := func(l *testpki.Leaf, chain ...*x509.Certificate) Image {
		p7, err := cms.Sign([]byte("descriptor"), l.Cert, l.Key, cms.SignOptions{Chain: chain, SigningTime: l.Cert.NotBefore.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return Image{Properties: map[string]string{PropRecordVersion: "1", PropSignature: base64.StdEncoding.EncodeToString(p7)}}
	}
	tests := []struct {
		name          string
		imgs          []Image
		anchors       []*x509.Certificate
		want          []*x509.Certificate
		unchained     int
		unreadable    int
		wantTruncated bool
	}{
		{"ok chain of two intermediates", []Image{record(leaf, sub.Cert, mid.Cert)}, []*x509.Certificate{root.Cert}, []*x509.Certificate{sub.Cert, mid.Cert}, 0, 0, false},
		{"ok path split across records", []Image{record(leaf, sub.Cert), record(leaf, mid.Cert)}, []*x509.Certificate{root.Cert}, []*x509.Certificate{sub.Cert, mid.Cert}, 0, 0, false},
		{"ok anchors are not returned", []Image{record(leaf, sub.Cert, mid.Cert)}, []*x509.Certificate{root.Cert, mid.Cert}, []*x509.Certificate{sub.Cert}, 0, 0, false},
		{"ok expired intermediate, chained at its notBefore", []Image{record(oldLeaf, expiredMid.Cert)}, []*x509.Certificate{root.Cert}, []*x509.Certificate{expiredMid.Cert}, 0, 0, false},
		{"fail missing link", []Image{record(leaf, sub.Cert)}, []*x509.Certificate{root.Cert}, nil, 1, 0, false},
		{"fail other root", []Image{record(leaf, sub.Cert, mid.Cert)}, []*x509.Certificate{testpki.NewRoot(t, "Embedded Root").Cert}, nil, 2, 0, false},
		{"fail unreadable signatures", []Image{
			{Properties: map[string]string{PropRecordVersion: "1", PropSignature: "%%%"}},
			{Properties: map[string]string{PropRecordVersion: "1", PropSignature: base64.StdEncoding.EncodeToString([]byte("not CMS"))}},
		}, []*x509.Certificate{root.Cert}, nil, 0, 2, false},
		{"ok aliases and unsigned records are skipped", []Image{
			{Properties: map[string]string{PropRecordVersion: "1", PropAlias: "vo/tag", PropSignature: "%%%"}},
			{Properties: map[string]string{PropRecordVersion: "1"}},
		}, []*x509.Certificate{root.Cert}, nil, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := EmbeddedCAs(tc.imgs, tc.anchors, t0)
			if len(got.CAs) != len(tc.want) || got.Unchained != tc.unchained || got.Unreadable != tc.unreadable || got.Truncated != tc.wantTruncated {
				t.Fatalf("got %d CAs, %d unchained, %d unreadable, truncated %v", len(got.CAs), got.Unchained, got.Unreadable, got.Truncated)
			}
			for _, w := range tc.want {
				found := false
				for _, c := range got.CAs {
					found = found || c.Equal(w)
				}
				if !found {
					t.Fatalf("%s missing", w.Subject)
				}
			}
		})
	}
}

// threeSigned is a SignedData of "descriptor" signed by each leaf in turn,
// carrying chain: what a catalogue record's imagetrust_signature holds.
func threeSigned(tb testing.TB, leaves []*testpki.Leaf, chain ...*x509.Certificate) []byte {
	tb.Helper()
	var p7 []byte
	var err error
	for _, l := range leaves {
		opts := cms.SignOptions{Chain: chain}
		if p7 == nil {
			p7, err = cms.Sign([]byte("descriptor"), l.Cert, l.Key, opts)
		} else {
			p7, err = cms.AddSigner(p7, []byte("descriptor"), l.Cert, l.Key, opts)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	return p7
}

// benchRecords are n records of a root's people and Registrar
// intermediates, each with its own three-signer signature embedding both.
func benchRecords(b *testing.B, n int) (*testpki.CA, []Image) {
	root := testpki.NewRoot(b, "Bench Root")
	people, registrar := root.Intermediate("Bench People CA"), root.Intermediate("Bench Registrar CA")
	leaves := []*testpki.Leaf{people.Leaf(testpki.Name("Creator")), people.Leaf(testpki.Name("Approver")), registrar.Leaf(testpki.Name("Image"))}
	imgs := make([]Image, n)
	for i := range imgs {
		p7 := threeSigned(b, leaves, people.Cert, registrar.Cert)
		imgs[i] = Image{Properties: map[string]string{PropRecordVersion: "1", PropSignature: base64.StdEncoding.EncodeToString(p7)}}
	}
	return root, imgs
}

// BenchmarkEmbeddedCAs: what a CRL job run spends finding the embedded
// intermediates of 1000 records (three signers, two intermediates each,
// shared), per run.
func BenchmarkEmbeddedCAs(b *testing.B) {
	root, imgs := benchRecords(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		if got := EmbeddedCAs(imgs, []*x509.Certificate{root.Cert}, t0); len(got.CAs) != 2 {
			b.Fatalf("%d CAs", len(got.CAs))
		}
	}
}

// FuzzEmbeddedCAs feeds arbitrary bytes as a record's imagetrust_signature
// (base64-encoded as the catalogue holds it): EmbeddedCAs may not panic,
// and every CA it returns must chain to the anchor.
func FuzzEmbeddedCAs(f *testing.F) {
	root := testpki.NewRoot(f, "Fuzz Embedded Root")
	mid := root.Intermediate("Fuzz Mid CA")
	leaf := mid.Leaf(testpki.Name("Fuzz Signer"))
	p7, err := cms.Sign([]byte("descriptor"), leaf.Cert, leaf.Key, cms.SignOptions{Chain: []*x509.Certificate{mid.Cert}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p7)
	f.Add(p7[:len(p7)/2])
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		imgs := []Image{{Properties: map[string]string{PropRecordVersion: "1", PropSignature: base64.StdEncoding.EncodeToString(b)}}}
		for _, c := range EmbeddedCAs(imgs, []*x509.Certificate{root.Cert}, t0).CAs {
			if c.CheckSignatureFrom(root.Cert) != nil && c.CheckSignatureFrom(mid.Cert) != nil {
				t.Fatalf("returned %q, which neither the root nor its intermediate signed", c.Subject)
			}
		}
	})
}

// TestEmbeddedCAsStuffedBags: a record's certificate bag is not signed, so
// records may carry made-up CA certificates, some named as if an anchor
// had issued them. They never count against MaxEmbeddedCAs: the real
// intermediates, in a record read after more than MaxEmbeddedCAs of them,
// are still found.
func TestEmbeddedCAsStuffedBags(t *testing.T) {
	root := testpki.NewRoot(t, "Stuffed Root")
	mid := root.Intermediate("Stuffed Mid CA")
	sub := mid.Intermediate("Stuffed Sub CA")
	leaf := sub.Leaf(testpki.Name("Signer"))
	fake := testpki.NewRoot(t, "Stuffed Root") // the anchor's name, another key
	var junk []*x509.Certificate
	for i := range MaxEmbeddedCAs + 40 {
		issuer := fake.Cert
		if i%2 == 1 {
			issuer = nil // self-signed
		}
		c, err := pki.Issue(pki.Template{Subject: testpki.Name(fmt.Sprintf("Junk CA %d", i)), IsCA: true, MaxPathLen: -1},
			fake.Key.Public(), issuer, fake.Key)
		if err != nil {
			t.Fatal(err)
		}
		junk = append(junk, c)
	}
	record := func(chain ...*x509.Certificate) Image {
		p7, err := cms.Sign([]byte("descriptor"), leaf.Cert, leaf.Key, cms.SignOptions{Chain: chain, SigningTime: leaf.Cert.NotBefore.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return Image{Properties: map[string]string{PropRecordVersion: "1", PropSignature: base64.StdEncoding.EncodeToString(p7)}}
	}
	var imgs []Image
	for rest := junk; len(rest) > 0; {
		n := min(len(rest), maxPerRecord)
		imgs = append(imgs, record(rest[:n]...))
		rest = rest[n:]
	}
	imgs = append(imgs, record(sub.Cert, mid.Cert))
	got := EmbeddedCAs(imgs, []*x509.Certificate{root.Cert}, t0)
	if len(got.CAs) != 2 || got.Truncated || got.Unchained != MaxEmbeddedCAs+40 {
		t.Fatalf("got %d CAs, truncated %v, %d unchained", len(got.CAs), got.Truncated, got.Unchained)
	}
	// a record carrying more CA certificates than any real one: only the
	// first maxPerRecord are read
	got = EmbeddedCAs([]Image{record(append(junk[:maxPerRecord], sub.Cert, mid.Cert)...)}, []*x509.Certificate{root.Cert}, t0)
	if len(got.CAs) != 0 || !got.Truncated {
		t.Fatalf("over-full record: got %d CAs, truncated %v", len(got.CAs), got.Truncated)
	}
}

// TestJobEmptyCatalogueUnknownIssuer: on a catalogue with no record (a new
// site before its first sync; trust files that hold only the roots), a CRL
// whose issuer the job does not know judges no image: it is reported as
// not used, a warning, not refused (which made `crl --once` exit 4 run
// after run). With a record in the catalogue it is refused.
func TestJobEmptyCatalogueUnknownIssuer(t *testing.T) {
	w := newWorld(t)
	stranger := testpki.NewRoot(t, "Stranger CA").Intermediate("Stranger Issuing CA")
	w.serve(crlT(w.registrar, 1), 0, 0)
	file := testpki.WriteFile(t, t.TempDir(), "stranger.crl", crlT(stranger, 1))
	records := w.cat.images
	w.cat.images = map[string]*Image{}
	j := w.job(t, t.TempDir(), t0, true)
	j.cfg.Sources = append(j.cfg.Sources, Source{File: file})
	rep := run(t, j)
	if len(rep.Refused) != 0 || !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "stranger.crl not used") }) {
		t.Fatalf("empty catalogue: refused %+v, warnings %q; want none refused, stranger.crl not used", rep.Refused, rep.Warnings)
	}
	w.cat.images = records
	rep, _ = j.Run(context.Background(), false)
	if len(rep.Refused) != 1 || rep.Refused[0].Reason != ReasonWrongIssuer {
		t.Fatalf("catalogue with records: refused %+v, want stranger.crl as %s", rep.Refused, ReasonWrongIssuer)
	}
}
