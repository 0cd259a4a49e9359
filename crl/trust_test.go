package crl

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// trustPKI is a site's PKI as the verifier sees it: a people root with a
// people CA under it, a Registrar root with a Registrar CA under it, and
// the CAs a site may add or remove beside them.
type trustPKI struct {
	peopleRoot, peopleCA, regRoot, regCA *testpki.CA
	// otherPeople is another people root (a second IGTF CA), otherReg a
	// Registrar root of another site
	otherPeople, otherPeopleCA, otherReg *testpki.CA
	creator, approver, otherCreator      *testpki.Leaf
}

func newTrustPKI(t testing.TB) *trustPKI {
	t.Helper()
	p := &trustPKI{peopleRoot: testpki.NewRoot(t, "Trust People Root"), regRoot: testpki.NewRoot(t, "Trust Registrar Root"),
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
func (p *trustPKI) record(t testing.TB, id string, serial int64, reg *testpki.CA, creator, approver *testpki.Leaf, opts ...testpki.Option) map[string]string {
	t.Helper()
	img := reg.Leaf(testpki.Name("image "+id), append([]testpki.Option{testpki.WithSerial(serial), testpki.WithURIs("urn:uuid:" + id)}, opts...)...)
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
	var chain []ChainCert
	add := func(role string, leaf *testpki.Leaf) {
		certs := append([]*x509.Certificate{leaf.Cert}, leaf.Chain...)
		for i, c := range certs {
			r := role
			if i > 0 {
				r += "-ca"
			}
			chain = append(chain, ChainCert{Role: r, Issuer: c.Issuer.String(), Serial: c.SerialNumber.Text(16), AKI: hex.EncodeToString(c.AuthorityKeyId)})
		}
	}
	add("image", img)
	add("creator", creator)
	add("approver", approver)
	cj, _ := json.Marshal(chain)
	return map[string]string{PropRecordVersion: "1", PropChain: string(cj), PropNotBefore: img.Cert.NotBefore.UTC().Format(time.RFC3339),
		PropGlobalValidity: StateValid, PropSignature: base64.StdEncoding.EncodeToString(p7)}
}

func anchors(t testing.TB, people, registrar []*x509.Certificate) *Anchors {
	t.Helper()
	a, err := NewAnchors(people, registrar)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func certs(cas ...*testpki.CA) []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(cas))
	for _, c := range cas {
		out = append(out, c.Cert)
	}
	return out
}

func TestNewAnchors(t *testing.T) {
	p := newTrustPKI(t)
	leaf := p.creator.Cert
	for _, tc := range []struct {
		name              string
		people, registrar []*x509.Certificate
		err               string
	}{
		{"ok roots", certs(p.peopleRoot), certs(p.regRoot), ""},
		{"ok roots and intermediates", certs(p.peopleRoot, p.peopleCA), certs(p.regRoot, p.regCA), ""},
		{"fail nothing", nil, nil, "no people CA and no Registrar CA"},
		{"fail no people CA", nil, certs(p.regRoot), "no people CA"},
		{"fail no Registrar CA", certs(p.peopleRoot), nil, "no Registrar CA"},
		{"fail not a CA", []*x509.Certificate{leaf}, certs(p.regRoot), "not a CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAnchors(tc.people, tc.registrar)
			if tc.err == "" {
				if err != nil || a == nil {
					t.Fatalf("NewAnchors: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if strings.HasPrefix(tc.err, "no ") && !errors.Is(err, ErrNoTrust) {
				t.Fatalf("error %v is not ErrNoTrust", err)
			}
		})
	}
}

func TestCheckRecord(t *testing.T) {
	p := newTrustPKI(t)
	good := p.record(t, "11111111-0000-4000-8000-000000000001", 1, p.regCA, p.creator, p.approver)
	otherCreator := p.record(t, "11111111-0000-4000-8000-000000000002", 2, p.regCA, p.otherCreator, p.approver)
	byPeopleCA := p.record(t, "11111111-0000-4000-8000-000000000003", 3, p.peopleCA, p.creator, p.approver)
	// the creator's certificate expired before the image was registered:
	// its chain still leads to the people root (being valid at
	// registration is another check of the verifier)
	old := time.Now().Add(-3 * 365 * 24 * time.Hour)
	expired := p.peopleCA.Leaf(testpki.Name("Trust Expired Creator"), testpki.WithSerial(304), testpki.WithValidity(old, old.Add(24*time.Hour)))
	late := p.record(t, "11111111-0000-4000-8000-000000000004", 4, p.regCA, expired, p.approver)
	noImage := map[string]string{}
	for k, v := range good {
		noImage[k] = v
	}
	p7, err := cms.Sign([]byte("x"), p.creator.Cert, p.creator.Key, cms.SignOptions{Chain: p.creator.Chain})
	if err != nil {
		t.Fatal(err)
	}
	noImage[PropSignature] = base64.StdEncoding.EncodeToString(p7)
	without := func(props map[string]string, k, v string) map[string]string {
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
	site := anchors(t, certs(p.peopleRoot, p.otherPeople), certs(p.regRoot))
	for _, tc := range []struct {
		name   string
		a      *Anchors
		record map[string]string
		err    []string // substrings of the error; none: nil
	}{
		{"ok chains to the configured roots", site, good, nil},
		{"ok intermediates configured too", anchors(t, certs(p.peopleRoot, p.peopleCA), certs(p.regRoot, p.regCA)), good, nil},
		{"ok creator of the second people CA", site, otherCreator, nil},
		{"ok creator expired before registration", site, late, nil},
		{"fail Registrar root removed", anchors(t, certs(p.peopleRoot), certs(p.otherReg)), good,
			[]string{"image chain no longer leads to a configured Registrar CA", `issuer "CN=Trust Registrar Root,O=imagetrust test" is not trusted`, "image 11111111"}},
		{"fail only the Registrar intermediate configured", anchors(t, certs(p.peopleRoot), certs(p.regCA)), good,
			[]string{"image chain no longer leads to a configured Registrar CA", "Trust Registrar Root"}},
		{"fail people root removed", anchors(t, certs(p.otherPeople), certs(p.regRoot)), good,
			[]string{"chain no longer leads to a configured people CA", `issuer "CN=Trust People Root,O=imagetrust test" is not trusted`}},
		{"fail the creator's CA removed, the approver's kept", anchors(t, certs(p.peopleRoot), certs(p.regRoot)), otherCreator,
			[]string{"creator chain no longer leads to a configured people CA", `issuer "CN=Trust Other People Root,O=imagetrust test" is not trusted`, "Trust Other Creator"}},
		{"fail image certificate of a people CA", site, byPeopleCA,
			[]string{"image chain no longer leads to a configured Registrar CA", "Trust People Root"}},
		{"fail no signature", site, without(good, PropSignature, ""), []string{"no imagetrust_signature"}},
		{"fail signature not base64", site, without(good, PropSignature, "not base64 !"), []string{"imagetrust_signature"}},
		{"fail signature not a SignedData", site, without(good, PropSignature, base64.StdEncoding.EncodeToString([]byte("junk"))), []string{"imagetrust_signature"}},
		{"fail no image signer", site, noImage, []string{"no signer of the record holds an image certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.a.CheckRecord(tc.record)
			if len(tc.err) == 0 {
				if err != nil {
					t.Fatalf("CheckRecord: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckRecord: nil error")
			}
			for _, want := range tc.err {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

// trustSite is a catalogue of signed records and a job over it.
type trustSite struct {
	p   *trustPKI
	cat *memCatalog
	ids map[string]string // name -> id
}

func newTrustSite(t *testing.T) *trustSite {
	t.Helper()
	s := &trustSite{p: newTrustPKI(t), cat: &memCatalog{images: map[string]*Image{}}, ids: map[string]string{}}
	add := func(name, id string, serial int64, creator *testpki.Leaf) {
		s.ids[name] = id
		s.cat.images[id] = &Image{ID: id, Status: StatusActive, Properties: s.p.record(t, id, serial, s.p.regCA, creator, s.p.approver)}
	}
	add("a", "22222222-0000-4000-8000-00000000000a", 21, s.p.creator)
	add("b", "22222222-0000-4000-8000-00000000000b", 22, s.p.creator)
	add("c", "22222222-0000-4000-8000-00000000000c", 23, s.p.otherCreator)
	// d was revoked before: it stays revoked, trusted or not
	add("d", "22222222-0000-4000-8000-00000000000d", 24, s.p.creator)
	d := s.cat.images[s.ids["d"]]
	d.Status = StatusDeactivated
	d.Properties[PropGlobalValidity] = StateRevoked
	return s
}

func (s *trustSite) job(t *testing.T, a *Anchors, sources ...Source) (*Job, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := JobConfig{CAs: certs(s.p.peopleRoot, s.p.peopleCA, s.p.otherPeople, s.p.regRoot, s.p.regCA), Anchors: a,
		Sources: sources, CacheDir: t.TempDir(), Policy: Policy{Grace: time.Hour}, ClockSkew: 5 * time.Minute, Timeout: time.Second}
	j := NewJob(cfg, s.cat, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(reg))
	return j, reg
}

// gauge is the value of an unlabelled gauge of reg (-1: none).
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			var m *dto.Metric = mf.GetMetric()[0]
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func (s *trustSite) state(name string) (string, string) {
	img := s.cat.get(s.ids[name])
	return img.Properties[PropGlobalValidity], img.Status
}

// TestJobTrustRemoved: a CA leaves the site's trust, and the images whose
// records chain to it become unknown (never revoked, never deactivated),
// with the reason in the change, the report, the metrics and a warning for
// the mass change; when the CA comes back they are valid again. A revoked
// image stays revoked, a hold or revocation by a CRL still applies, and a
// trust that trusts nothing refuses the run.
func TestJobTrustRemoved(t *testing.T) {
	s := newTrustSite(t)
	p := s.p
	full := anchors(t, certs(p.peopleRoot, p.otherPeople), certs(p.regRoot))
	noReg := anchors(t, certs(p.peopleRoot, p.otherPeople), certs(p.otherReg))
	noOther := anchors(t, certs(p.peopleRoot), certs(p.regRoot))
	// the Registrar CA's CRLs holding, then revoking, c's image certificate
	// (its CRLs are accepted: JobConfig.CAs holds the Registrar CA whatever
	// the anchors)
	holdC := testpki.WriteFile(t, t.TempDir(), "hold.crl", crlT(p.regCA, 1, pki.Revoked{Serial: big.NewInt(23), Time: time.Now().Add(-time.Hour), Reason: ReasonCertificateHold}))
	revokeC := testpki.WriteFile(t, t.TempDir(), "reg.crl", crlT(p.regCA, 2, pki.Revoked{Serial: big.NewInt(23), Time: time.Now().Add(-time.Hour), Reason: ReasonKeyCompromise}))

	type want struct{ a, b, c, d string }
	for _, tc := range []struct {
		name      string
		a         *Anchors
		sources   []Source
		want      want
		untrusted int
		changes   int
		warn      bool
		whyOf     string // an image whose change must carry why
		why       string
	}{
		{"ok every record chains", full, nil, want{StateValid, StateValid, StateValid, StateRevoked}, 0, 0, false, "", ""},
		{"fail Registrar root removed: unknown, not deactivated", noReg, nil, want{StateUnknown, StateUnknown, StateUnknown, StateRevoked}, 3, 3, true,
			"a", `image chain no longer leads to a configured Registrar CA: issuer "CN=Trust Registrar Root,O=imagetrust test" is not trusted`},
		{"ok Registrar root back: valid again", full, nil, want{StateValid, StateValid, StateValid, StateRevoked}, 0, 3, false, "b", "no revocation applies"},
		{"fail one people CA removed: only its creator's image", noOther, nil, want{StateValid, StateValid, StateUnknown, StateRevoked}, 1, 1, true,
			"c", `creator chain no longer leads to a configured people CA: issuer "CN=Trust Other People Root,O=imagetrust test" is not trusted`},
		{"ok a CRL's hold stands over the missing trust", noReg, []Source{{File: holdC}}, want{StateUnknown, StateUnknown, StateHold, StateRevoked}, 2, 3, true,
			"c", "image certificate 17"},
		{"ok a CRL's revocation stands over the missing trust", noOther, []Source{{File: revokeC}}, want{StateValid, StateValid, StateRevoked, StateRevoked}, 0, 3, false,
			"c", "image certificate 17"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, reg := s.job(t, tc.a, tc.sources...)
			rep, err := j.Run(context.Background(), false)
			if err != nil {
				t.Fatalf("run: %v (%+v)", err, rep)
			}
			var got want
			for n, dst := range map[string]*string{"a": &got.a, "b": &got.b, "c": &got.c, "d": &got.d} {
				st, status := s.state(n)
				*dst = st
				// unknown never deactivates; only revoked and held ones are
				if wantDeact := st == StateRevoked || st == StateHold; (status == StatusDeactivated) != wantDeact {
					t.Errorf("image %s: %s and %s", n, st, status)
				}
			}
			if got != tc.want {
				t.Fatalf("states %+v, want %+v (report %+v)", got, tc.want, rep)
			}
			if rep.Untrusted != tc.untrusted || len(rep.Changes) != tc.changes {
				t.Errorf("untrusted %d, changes %d; want %d, %d: %+v", rep.Untrusted, len(rep.Changes), tc.untrusted, tc.changes, rep.Changes)
			}
			if v := gauge(t, reg, "imagetrust_crl_untrusted_images"); v != float64(tc.untrusted) {
				t.Errorf("imagetrust_crl_untrusted_images %v, want %d", v, tc.untrusted)
			}
			warned := false
			for _, w := range rep.Warnings {
				warned = warned || strings.Contains(w, "no longer chains to a configured CA")
			}
			if warned != tc.warn {
				t.Errorf("warned %v, want %v: %q", warned, tc.warn, rep.Warnings)
			}
			if tc.whyOf != "" {
				ch := change(rep, s.ids[tc.whyOf])
				if ch == nil || !strings.Contains(ch.Why, tc.why) || ch.To == StateUnknown && (ch.Deactivate || ch.Reactivate) {
					t.Fatalf("change of %s: %+v, want why %q", tc.whyOf, ch, tc.why)
				}
			}
			// a second run writes nothing and checks no chain again
			rep2, err := j.Run(context.Background(), false)
			if err != nil || len(rep2.Changes) != 0 || rep2.Untrusted != tc.untrusted {
				t.Fatalf("rerun: %v %+v", err, rep2)
			}
			if j.trusted.computed != 0 {
				t.Errorf("rerun checked %d records again", j.trusted.computed)
			}
		})
	}
	t.Run("fail a trust that trusts nothing refuses the run", func(t *testing.T) {
		s.cat.takeWrites()
		for _, a := range []*Anchors{{}, {peopleRoots: certs(p.peopleRoot)}} {
			j, _ := s.job(t, a)
			rep, err := j.Run(context.Background(), false)
			if !errors.Is(err, ErrNoTrust) || rep.Images != 0 || len(rep.Changes) != 0 {
				t.Fatalf("run: %v %+v", err, rep)
			}
		}
		if w := s.cat.takeWrites(); w != 0 {
			t.Fatalf("%d writes", w)
		}
	})
	t.Run("ok no anchors: no chain check", func(t *testing.T) {
		j, _ := s.job(t, nil)
		rep, err := j.Run(context.Background(), true)
		if err != nil || rep.Untrusted != 0 {
			t.Fatalf("run: %v %+v", err, rep)
		}
	})
}

// change finds a report's change of an image.
func change(rep *Report, id string) *Change {
	for i := range rep.Changes {
		if rep.Changes[i].ImageID == id {
			return &rep.Changes[i]
		}
	}
	return nil
}

// BenchmarkCheckRecord is what a record the job has not judged before
// costs (a Job remembers the verdict for the records of its last run).
func BenchmarkCheckRecord(b *testing.B) {
	p := newTrustPKI(b)
	a := anchors(b, certs(p.peopleRoot), certs(p.regRoot))
	rec := p.record(b, "33333333-0000-4000-8000-000000000001", 1, p.regCA, p.creator, p.approver)
	for b.Loop() {
		if err := a.CheckRecord(rec); err != nil {
			b.Fatal(err)
		}
	}
}
