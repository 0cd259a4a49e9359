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

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/internal/testsite"
)

// trustPKI is the site's PKI of package testsite.
type trustPKI struct{ *testsite.Site }

func newTrustPKI(t testing.TB) *trustPKI { return &trustPKI{testsite.New(t)} }

// record returns the catalogue properties of an image signed by creator
// and approver and registered by the image certificate issued by reg (a
// CA of either side), as `imagetrust sync` writes them: the three signers
// and their intermediates in imagetrust_signature, the chains below the
// roots in imagetrust_chain.
func (p *trustPKI) record(t testing.TB, id string, serial int64, reg *testpki.CA, creator, approver *testpki.Leaf, opts ...testpki.Option) map[string]string {
	t.Helper()
	s := testsite.Sign(t, id, serial, reg, creator, approver, opts...)
	var chain []ChainCert
	for _, l := range s.Links {
		c := l.Cert
		chain = append(chain, ChainCert{Role: l.Role, Issuer: c.Issuer.String(), Serial: c.SerialNumber.Text(16), AKI: hex.EncodeToString(c.AuthorityKeyId)})
	}
	cj, _ := json.Marshal(chain)
	return map[string]string{PropRecordVersion: "1", PropChain: string(cj), PropNotBefore: s.Image.Cert.NotBefore.UTC().Format(time.RFC3339),
		PropGlobalValidity: StateValid, PropSignature: base64.StdEncoding.EncodeToString(s.Signature)}
}

// stubChecker is a ChainChecker whose verdicts are given: why it refuses
// each record, by its imagetrust_signature.
type stubChecker struct {
	people, registrar int
	refuse            map[string]string
}

func (c *stubChecker) CheckRecordChains(props map[string]string) error {
	if why, ok := c.refuse[props[PropSignature]]; ok {
		return errors.New(why)
	}
	return nil
}

func (c *stubChecker) AnchorCounts() (int, int) { return c.people, c.registrar }

// refusing returns a checker trusting one CA on each side that refuses the
// records of the images named with why.
func (s *trustSite) refusing(why string, names ...string) *stubChecker {
	c := &stubChecker{people: 1, registrar: 1, refuse: map[string]string{}}
	for _, n := range names {
		c.refuse[s.cat.images[s.ids[n]].Properties[PropSignature]] = why
	}
	return c
}

func certs(cas ...*testpki.CA) []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(cas))
	for _, c := range cas {
		out = append(out, c.Cert)
	}
	return out
}

func TestCheckTrust(t *testing.T) {
	for _, tc := range []struct {
		name              string
		people, registrar int
		err               string
	}{
		{"ok both sides", 1, 1, ""},
		{"ok intermediates too", 2, 3, ""},
		{"fail nothing", 0, 0, "no people CA and no Registrar CA"},
		{"fail no people CA", 0, 1, "no people CA (trust.ca_files, trust.ca_dirs)"},
		{"fail no Registrar CA", 1, 0, "no Registrar CA (trust.registrar_ca_files)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTrust(&stubChecker{people: tc.people, registrar: tc.registrar})
			if tc.err == "" {
				if err != nil {
					t.Fatalf("CheckTrust: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrNoTrust) {
				t.Fatalf("error %v, want ErrNoTrust with %q", err, tc.err)
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
		s.cat.images[id] = &Image{ID: id, Status: StatusActive, Properties: s.p.record(t, id, serial, s.p.RegCA, creator, s.p.Approver)}
	}
	add("a", "22222222-0000-4000-8000-00000000000a", 21, s.p.Creator)
	add("b", "22222222-0000-4000-8000-00000000000b", 22, s.p.Creator)
	add("c", "22222222-0000-4000-8000-00000000000c", 23, s.p.OtherCreator)
	// d was revoked before: it stays revoked, trusted or not
	add("d", "22222222-0000-4000-8000-00000000000d", 24, s.p.Creator)
	d := s.cat.images[s.ids["d"]]
	d.Status = StatusDeactivated
	d.Properties[PropGlobalValidity] = StateRevoked
	return s
}

func (s *trustSite) job(t *testing.T, c ChainChecker, sources ...Source) (*Job, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := JobConfig{CAs: certs(s.p.PeopleRoot, s.p.PeopleCA, s.p.OtherPeople, s.p.RegRoot, s.p.RegCA), Chains: c,
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
	// the verdicts validator.Trust gives these records when the Registrar
	// root, or the other people root, leaves the trust (TestCheckRecordChains
	// there)
	full := s.refusing("")
	noReg := s.refusing(`image chain no longer leads to a configured Registrar CA: issuer "CN=Trust Registrar Root,O=imagetrust test" is not trusted (certificate "CN=image …", serial …)`, "a", "b", "c", "d")
	noOther := s.refusing(`creator chain no longer leads to a configured people CA: issuer "CN=Trust Other People Root,O=imagetrust test" is not trusted (certificate "CN=Trust Other Creator,O=imagetrust test", serial 12f)`, "c")
	// the Registrar CA's CRLs holding, then revoking, c's image certificate
	// (its CRLs are accepted: JobConfig.CAs holds the Registrar CA whatever
	// the anchors)
	holdC := testpki.WriteFile(t, t.TempDir(), "hold.crl", crlT(p.RegCA, 1, pki.Revoked{Serial: big.NewInt(23), Time: time.Now().Add(-time.Hour), Reason: ReasonCertificateHold}))
	revokeC := testpki.WriteFile(t, t.TempDir(), "reg.crl", crlT(p.RegCA, 2, pki.Revoked{Serial: big.NewInt(23), Time: time.Now().Add(-time.Hour), Reason: ReasonKeyCompromise}))

	type want struct{ a, b, c, d string }
	for _, tc := range []struct {
		name      string
		c         ChainChecker
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
			j, reg := s.job(t, tc.c, tc.sources...)
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
		for _, c := range []*stubChecker{{}, {people: 1}, {registrar: 1}} {
			j, _ := s.job(t, c)
			rep, err := j.Run(context.Background(), false)
			if !errors.Is(err, ErrNoTrust) || rep.Images != 0 || len(rep.Changes) != 0 {
				t.Fatalf("run: %v %+v", err, rep)
			}
		}
		if w := s.cat.takeWrites(); w != 0 {
			t.Fatalf("%d writes", w)
		}
	})
	t.Run("ok no checker: no chain check", func(t *testing.T) {
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
