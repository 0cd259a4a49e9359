package crl

import (
	"crypto/x509"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// signedCRL is a CRL with the certificate of the CA that signed it.
type signedCRL struct {
	ca  *x509.Certificate
	der []byte
}

// rekeyIndex is an index as the verifier's trust store keeps one
// (KeepFuture) of the given CRLs, accepted at now, and the CRLs as added.
func rekeyIndex(t *testing.T, now time.Time, crls ...signedCRL) (*Index, []*CRL) {
	t.Helper()
	ix := &Index{ClockSkew: 5 * time.Minute, KeepFuture: true}
	var out []*CRL
	for _, s := range crls {
		c, err := ix.AddList(mustList(t, s.der), s.ca, now, "")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return ix, out
}

// withoutImageAKI is img with the image certificate's authorityKeyIdentifier
// left out of its record (a certificate issued without one).
func withoutImageAKI(t *testing.T, img Image) Image {
	t.Helper()
	var chain []ChainCert
	if err := json.Unmarshal([]byte(img.Properties[PropChain]), &chain); err != nil {
		t.Fatal(err)
	}
	for i := range chain {
		if chain[i].Role == string(RoleImage) {
			chain[i].AKI = ""
		}
	}
	b, err := json.Marshal(chain)
	if err != nil {
		t.Fatal(err)
	}
	props := map[string]string{}
	for k, v := range img.Properties {
		props[k] = v
	}
	props[PropChain] = string(b)
	img.Properties = props
	return img
}

// TestStaleAcrossRekey: a sub-CA re-keyed under its name by the same
// parent, whose new key's CRL speaks for the old key's certificates
// (Covering) and releases their holds (rekeyReleases), stops publishing
// its old key's CRL, which goes stale. The state of the old key's
// certificates is judged by the new key's CRL then, under exactly the
// conditions on which that CRL covers and releases them (same name, same
// parent, key identifiers on both sides, speaking for every certificate
// of the kind, later and dated in time): StaleFor (the verifier's lookup
// and the job's refuse_stale) and Superseded (the job's stale warnings
// and age metric, the verifier's StaleCRLs). Before, staleness was judged
// per key, and under refuse_stale the old key's images became unknown for
// good. Where the new key's CRL does not speak for them, the old key's
// stale CRL still counts.
func TestStaleAcrossRekey(t *testing.T) {
	now := t0.Add(10 * 24 * time.Hour)
	type tc struct {
		name  string
		newCA func(t *testing.T, w *holdWorld) *testpki.CA
		tmpl  pki.CRLTemplate
		noAKI bool
		// fresh: the image's state is fresh; superseded: the old key's
		// CRL is superseded
		fresh, superseded bool
	}
	sameParent := func(t *testing.T, w *holdWorld) *testpki.CA { return w.regRoot.Intermediate("Hold Registrar CA") }
	later := pki.CRLTemplate{Number: 1, ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(7 * 24 * time.Hour)}
	with := func(f func(*pki.CRLTemplate)) pki.CRLTemplate { c := later; f(&c); return c }
	for _, c := range []tc{
		{"ok re-keyed by the same parent: the new key's later complete CRL", sameParent, later, false, true, true},
		{"ok re-keyed by the same parent: the new key's later CRL of user certificates, for an image certificate", sameParent,
			with(func(c *pki.CRLTemplate) { c.IDP = pki.IDPOnlyUserCerts }), false, true, false},
		{"fail re-keyed by the same parent: the new key's CRL of CA certificates only", sameParent,
			with(func(c *pki.CRLTemplate) { c.IDP = pki.IDPOnlyCACerts }), false, false, false},
		{"fail re-keyed by the same parent: the new key's CRL of one distribution point", sameParent,
			with(func(c *pki.CRLTemplate) { c.IDP = pki.IDPDistributionPoint("http://crl.example/a.crl") }), false, false, false},
		{"fail re-keyed by the same parent: the new key's CRL dated a day ahead of the clock", sameParent,
			with(func(c *pki.CRLTemplate) { c.ThisUpdate, c.NextUpdate = now.Add(24*time.Hour), now.Add(8*24*time.Hour) }), false, false, false},
		{"fail re-keyed by the same parent: the new key's CRL older than the old key's", sameParent,
			with(func(c *pki.CRLTemplate) { c.ThisUpdate, c.NextUpdate = t0.Add(-time.Hour), now.Add(30*24*time.Hour) }), false, false, false},
		{"fail re-keyed by the same parent: the image certificate has no authority key identifier", sameParent, later, true, false, true},
		{"fail the name under another parent of the same root", func(t *testing.T, w *holdWorld) *testpki.CA {
			return w.regRoot.Intermediate("Hold Other CA").Intermediate("Hold Registrar CA")
		}, later, false, false, false},
		{"fail a namesake under another root of the root's name", func(t *testing.T, w *holdWorld) *testpki.CA {
			return testpki.NewRoot(t, "Hold Registrar Root").Intermediate("Hold Registrar CA")
		}, later, false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newHoldWorld(t)
			var opts []testpki.Option
			img := w.img
			if c.noAKI {
				opts = append(opts, testpki.WithoutAKI())
				img = withoutImageAKI(t, img)
			}
			leaf := w.registrar.Leaf(testpki.Name("Image"), append(opts, testpki.WithSerial(11))...)
			if (len(leaf.Cert.AuthorityKeyId) == 0) != c.noAKI {
				t.Fatalf("image certificate's authority key identifier %x", leaf.Cert.AuthorityKeyId)
			}
			ref := ChainRefs([]*x509.Certificate{leaf.Cert, w.registrar.Cert, w.regRoot.Cert}, RoleImage)[0]
			fresh := func(ca *testpki.CA) signedCRL {
				return signedCRL{ca.Cert, ca.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(7 * 24 * time.Hour)})}
			}
			newCA := c.newCA(t, w)
			// the old key's last CRL, stale at now (nextUpdate t0+7d)
			old := signedCRL{w.registrar.Cert, w.registrar.CRL(pki.CRLTemplate{Number: 5, ThisUpdate: t0, NextUpdate: t0.Add(7 * 24 * time.Hour)})}
			ix, added := rekeyIndex(t, now, fresh(w.regRoot), fresh(w.igtfRoot), fresh(w.people), old, signedCRL{newCA.Cert, newCA.CRL(c.tmpl)})
			oldC := added[3]
			if !oldC.Stale(now, 0) {
				t.Fatal("the old key's CRL is not stale")
			}
			// the verifier's lookup
			if s := ix.StaleFor(ref, now, 0); (s == nil) != c.fresh || s != nil && s != oldC {
				t.Errorf("StaleFor: stale %v, want stale %v", s != nil, !c.fresh)
			}
			// the CRL job's verdict on the catalogue record
			want := StateUnknown
			if c.fresh {
				want = StateValid
			}
			if s, _, why := Judge(ix, img, Policy{RefuseStale: true}, now); s != want {
				t.Errorf("CRL job: %s (%s), want %s", s, why, want)
			}
			if s, _, why := Judge(ix, img, Policy{}, now); s != StateValid {
				t.Fatalf("CRL job without refuse_stale: %s (%s)", s, why)
			}
			// the stale warnings (the job's, the verifier's StaleCRLs)
			if got := ix.Superseded(oldC); got != c.superseded {
				t.Errorf("old key's CRL superseded %v", got)
			}
		})
	}
}

// TestJobRekeyedCAOldKeyStale: the CRL job, run after run: the registrar
// CA, re-keyed under its name by the same parent, publishes only its new
// key's CRL; the old key's last CRL (still served, or cached) goes stale.
// Under refuse_stale the old key's images stay valid (the new key's fresh
// complete CRL speaks for them), the old key's CRL is reported superseded
// and not warned of as stale (nor counted in the age metric). The name
// re-keyed under another parent does not speak for them: the images become
// unknown, with the warning.
func TestJobRekeyedCAOldKeyStale(t *testing.T) {
	later := t0.Add(10 * 24 * time.Hour) // the old key's CRL's nextUpdate is t0+7d
	for _, c := range []struct {
		name  string
		newCA func(w *world) *testpki.CA
		state string
	}{
		{"ok re-keyed by the same parent", func(w *world) *testpki.CA { return w.root.Intermediate("Job Registrar CA") }, StateValid},
		{"fail the name under another parent", func(w *world) *testpki.CA { return w.otherCA.Intermediate("Job Registrar CA") }, StateUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			cache := t.TempDir()
			w.serve(crlT(w.registrar, 1), 0, 0)
			run(t, w.job(t, cache, t0, true))
			if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateValid {
				t.Fatalf("img-1 at t0: %s", img.Properties[PropGlobalValidity])
			}
			rekeyed := c.newCA(w)
			j := w.job(t, cache, later, true)
			j.cfg.CAs = append(j.cfg.CAs, rekeyed.Cert)
			j.cfg.Sources = append(j.cfg.Sources, Source{File: testpki.WriteFile(t, t.TempDir(), "rekeyed.crl",
				rekeyed.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: later.Add(-time.Hour), NextUpdate: later.Add(7 * 24 * time.Hour)}))})
			rep := run(t, j)
			if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != c.state {
				t.Fatalf("img-1: %s, want %s (CRLs %+v)", img.Properties[PropGlobalValidity], c.state, rep.CRLs)
			}
			var superseded bool
			for _, u := range rep.CRLs {
				if u.Stale {
					superseded = u.Superseded
				}
			}
			stale := slices.ContainsFunc(rep.Warnings, func(s string) bool { return strings.Contains(s, "is stale") })
			if want := c.state == StateUnknown; stale != want || superseded == want {
				t.Fatalf("stale warning %v, old key's CRL superseded %v: %q", stale, superseded, rep.Warnings)
			}
		})
	}
}
