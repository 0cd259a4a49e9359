package crl

import (
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

func warned(rep *Report, parts ...string) bool {
	return slices.ContainsFunc(rep.Warnings, func(w string) bool {
		for _, p := range parts {
			if !strings.Contains(w, p) {
				return false
			}
		}
		return true
	})
}

func usedNumbers(rep *Report, issuer string) (out []string) {
	for _, c := range rep.CRLs {
		if c.Issuer == issuer {
			out = append(out, c.Number)
		}
	}
	return out
}

// TestJobCacheLost: the cache keeps the rollback state; when it is lost,
// the CRL numbers recorded on the images the job flagged (number, and the
// CA, key and scope: imagetrust_revocation_crl_scope) still refuse an
// older CRL, and the run warns that the CA has no cached baseline.
func TestJobCacheLost(t *testing.T) {
	rev11 := pki.Revoked{Serial: big.NewInt(11), Time: t0.Add(-2 * time.Hour), Reason: ReasonKeyCompromise}
	reg := func(w *world) string { return w.registrar.Cert.Subject.String() }

	t.Run("fail older CRL after the cache is lost", func(t *testing.T) {
		w := newWorld(t)
		w.serve(crlT(w.registrar, 2, rev11), 0, 0)
		rep := run(t, w.job(t, t.TempDir(), t0, true))
		if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateRevoked || img.Properties[PropRevCRLNumber] != "2" || img.Properties[PropRevCRLScope] == "" {
			t.Fatalf("setup: img-1 %+v", img.Properties)
		}
		// a first run warns: no baseline (for each CA, once)
		if !warned(rep, "first CRL seen for CA "+reg(w), "no rollback baseline", "the cache at") {
			t.Fatalf("first run: warnings %q", rep.Warnings)
		}
		// the cache is lost; CRL 1, which would drop nothing flagged yet but
		// hides what CRL 2 added, is refused
		cache := t.TempDir()
		w.serve(crlT(w.registrar, 1), 0, 0)
		rep = run(t, w.job(t, cache, t0.Add(time.Minute), true))
		if len(rep.Refused) != 1 || rep.Refused[0].Reason != ReasonRollback ||
			!strings.Contains(rep.Refused[0].Error, "img-1") || !strings.Contains(rep.Refused[0].Error, cache+" was lost") {
			t.Fatalf("refused %+v", rep.Refused)
		}
		if got := usedNumbers(rep, reg(w)); len(got) != 0 {
			t.Fatalf("registrar CRLs used: %q", got)
		}
		// the refused CRL is no baseline: the cache has nothing of it
		if _, st, _ := (diskCache{dir: cache}).load(caKey(w.registrar.Cert)); st != nil {
			t.Fatalf("refused CRL cached: %+v", st)
		}
		// CRL 2 again (the number recorded) and then 3 are accepted, with
		// the warning naming the floor once
		w.serve(crlT(w.registrar, 2, rev11), 0, 0)
		rep = run(t, w.job(t, cache, t0.Add(2*time.Minute), true))
		if len(rep.Refused) != 0 || !slices.Equal(usedNumbers(rep, reg(w)), []string{"2"}) ||
			!warned(rep, "first CRL seen for CA "+reg(w), "CRL number 2, recorded on catalogue image img-1") {
			t.Fatalf("CRL 2 again: refused %+v, CRLs %+v, warnings %q", rep.Refused, rep.CRLs, rep.Warnings)
		}
		w.serve(crlT(w.registrar, 3, rev11, pki.Revoked{Serial: big.NewInt(13), Time: t0.Add(-time.Hour), Reason: ReasonKeyCompromise}), 0, 0)
		rep = run(t, w.job(t, cache, t0.Add(3*time.Minute), true))
		if len(rep.Refused) != 0 || len(rep.Warnings) != 0 || w.cat.get("img-3").Properties[PropGlobalValidity] != StateRevoked {
			t.Fatalf("CRL 3: refused %+v, warnings %q", rep.Refused, rep.Warnings)
		}
	})

	// a held image records a floor too (mutation testing: floorMarks
	// reading revoked images only survived every test)
	t.Run("fail older CRL after the cache is lost, the number recorded on a held image", func(t *testing.T) {
		w := newWorld(t)
		hold11 := pki.Revoked{Serial: big.NewInt(11), Time: t0.Add(-2 * time.Hour), Reason: ReasonCertificateHold}
		w.serve(crlT(w.registrar, 2, hold11), 0, 0)
		run(t, w.job(t, t.TempDir(), t0, true))
		if img := w.cat.get("img-1"); img.Properties[PropGlobalValidity] != StateHold || img.Properties[PropRevCRLNumber] != "2" {
			t.Fatalf("setup: img-1 %+v", img.Properties)
		}
		cache := t.TempDir()
		w.serve(crlT(w.registrar, 1), 0, 0)
		rep := run(t, w.job(t, cache, t0.Add(time.Minute), true))
		if len(rep.Refused) != 1 || rep.Refused[0].Reason != ReasonRollback || !strings.Contains(rep.Refused[0].Error, "img-1") {
			t.Fatalf("refused %+v", rep.Refused)
		}
		if got := usedNumbers(rep, reg(w)); len(got) != 0 {
			t.Fatalf("registrar CRLs used: %q", got)
		}
	})

	t.Run("fail cache restored from an older backup", func(t *testing.T) {
		w := newWorld(t)
		cache, backup := t.TempDir(), t.TempDir()
		crl1 := crlT(w.registrar, 1)
		w.serve(crl1, 0, 0)
		run(t, w.job(t, cache, t0, true))
		copyDir(t, cache, backup)
		w.serve(crlT(w.registrar, 2, rev11), 0, 0)
		run(t, w.job(t, cache, t0.Add(time.Minute), true))
		// the backup comes back, and CRL 1 is served again: both the
		// cached copy and the fetched one are refused, neither is used
		w.serve(crl1, 0, 0)
		rep := run(t, w.job(t, backup, t0.Add(2*time.Minute), true))
		if len(rep.Refused) != 2 || rep.Refused[0].Reason != ReasonRollback || !strings.HasPrefix(rep.Refused[0].Source, "cache:") ||
			rep.Refused[1].Reason != ReasonRollback || !strings.Contains(rep.Refused[1].Error, "old backup") {
			t.Fatalf("refused %+v", rep.Refused)
		}
		if got := usedNumbers(rep, reg(w)); len(got) != 0 {
			t.Fatalf("registrar CRLs used: %q", got)
		}
		if len(rep.Warnings) != 0 {
			t.Fatalf("warnings %q (the cache has a baseline)", rep.Warnings)
		}
	})

	t.Run("ok re-keyed CA of the same name numbers on its own", func(t *testing.T) {
		w := newWorld(t)
		rekeyed := w.root.Intermediate("Job Registrar CA") // same DN, new key
		if !slices.Equal(rekeyed.Cert.RawSubject, w.registrar.Cert.RawSubject) {
			t.Fatal("setup: the re-keyed CA has another name")
		}
		w.serve(crlT(w.registrar, 5, rev11), 0, 0)
		j := w.job(t, t.TempDir(), t0, true)
		j.cfg.CAs = append(j.cfg.CAs, rekeyed.Cert)
		run(t, j)
		if img := w.cat.get("img-1"); img.Properties[PropRevCRLNumber] != "5" {
			t.Fatalf("setup: img-1 %+v", img.Properties)
		}
		// cache lost: the new key's CRL 1 is accepted, the old key's CRL 1
		// refused
		w.serve(crlT(rekeyed, 1), 0, 0)
		j = w.job(t, t.TempDir(), t0.Add(time.Minute), true)
		j.cfg.CAs = append(j.cfg.CAs, rekeyed.Cert)
		old := testpki.WriteFile(t, t.TempDir(), "old-key.crl", crlT(w.registrar, 1))
		j.cfg.Sources = append(j.cfg.Sources, Source{File: old})
		rep := run(t, j)
		if len(rep.Refused) != 1 || rep.Refused[0].Source != old || rep.Refused[0].Reason != ReasonRollback {
			t.Fatalf("refused %+v", rep.Refused)
		}
		if got := usedNumbers(rep, reg(w)); !slices.Equal(got, []string{"1"}) || rep.CRLs[0].Source != w.srv.URL+"/registrar.crl" {
			t.Fatalf("registrar CRLs used: %+v", rep.CRLs)
		}
		if !warned(rep, "first CRL seen for CA "+reg(w)+" (key "+hexKey(rekeyed.Cert)+")") {
			t.Fatalf("warnings %q", rep.Warnings)
		}
	})

	t.Run("ok other scope of the same CA numbers on its own", func(t *testing.T) {
		w := newWorld(t)
		user := func(n int64, e ...pki.Revoked) []byte {
			return w.registrar.CRL(pki.CRLTemplate{Number: n, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), IDP: pki.IDPOnlyUserCerts, Entries: e})
		}
		w.serve(user(6, rev11), 0, 0)
		run(t, w.job(t, t.TempDir(), t0, true))
		if img := w.cat.get("img-1"); img.Properties[PropRevCRLNumber] != "6" {
			t.Fatalf("setup: img-1 %+v", img.Properties)
		}
		j := w.job(t, t.TempDir(), t0.Add(time.Minute), true)
		w.serve(crlT(w.registrar, 1), 0, 0) // the complete CRL: another scope
		userFile := testpki.WriteFile(t, t.TempDir(), "user.crl", user(2))
		j.cfg.Sources = append(j.cfg.Sources, Source{File: userFile})
		rep := run(t, j)
		if len(rep.Refused) != 1 || rep.Refused[0].Source != userFile || rep.Refused[0].Reason != ReasonRollback {
			t.Fatalf("refused %+v", rep.Refused)
		}
		if got := usedNumbers(rep, reg(w)); !slices.Equal(got, []string{"1"}) {
			t.Fatalf("registrar CRLs used: %q", got)
		}
	})

	t.Run("ok a record without the CRL's scope gives no floor", func(t *testing.T) {
		// flagged before imagetrust_revocation_crl_scope was recorded: the
		// number cannot be tied to one key and scope
		w := newWorld(t)
		p := w.cat.images["img-1"].Properties
		p[PropGlobalValidity], p[PropRevCRLNumber], p[PropRevokedRole], p[PropRevSerial] = StateRevoked, "9", "image", "b"
		w.cat.images["img-1"].Status = StatusDeactivated
		w.serve(crlT(w.registrar, 1), 0, 0)
		rep := run(t, w.job(t, t.TempDir(), t0, true))
		if len(rep.Refused) != 0 || !slices.Equal(usedNumbers(rep, reg(w)), []string{"1"}) {
			t.Fatalf("refused %+v, CRLs %+v", rep.Refused, rep.CRLs)
		}
	})

	t.Run("ok a valid image's leftovers and forged scopes give no floor", func(t *testing.T) {
		w := newWorld(t)
		w.serve(crlT(w.registrar, 7, rev11), 0, 0)
		run(t, w.job(t, t.TempDir(), t0, true))
		scope := w.cat.images["img-1"].Properties[PropRevCRLScope]
		// the same scope and a higher number on a valid image, an alias, a
		// malformed number: ignored
		w.cat.images["img-2"].Properties[PropRevCRLScope], w.cat.images["img-2"].Properties[PropRevCRLNumber] = scope, "50"
		w.cat.images["alias"].Properties[PropGlobalValidity] = StateRevoked
		w.cat.images["alias"].Properties[PropRevCRLScope], w.cat.images["alias"].Properties[PropRevCRLNumber] = scope, "50"
		f := catalogueFloor(w.cat.mustList(t))
		if len(f) != 1 || f[scope].number.String() != "7" || f[scope].image != "img-1" {
			t.Fatalf("floor %+v", f)
		}
		w.cat.images["img-1"].Properties[PropRevCRLNumber] = "-3"
		if f := catalogueFloor(w.cat.mustList(t)); len(f) != 0 {
			t.Fatalf("floor %+v", f)
		}
	})
}

func (m *memCatalog) mustList(t *testing.T) []Image {
	imgs, err := m.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJobWarnsOnceWithoutBaseline: a CA without a cached baseline is warned
// of once; a CA the cache knows is not, nor a new scope of it.
func TestJobWarnsOnceWithoutBaseline(t *testing.T) {
	w := newWorld(t)
	cache := t.TempDir()
	w.serve(crlT(w.registrar, 1), 0, 0)
	j := w.job(t, cache, t0, true)
	people := testpki.WriteFile(t, t.TempDir(), "people.crl", crlT(w.people, 1))
	j.cfg.Sources = append(j.cfg.Sources, Source{File: people}, Source{File: people})
	rep := run(t, j)
	if len(rep.Warnings) != 2 || !warned(rep, w.registrar.Cert.Subject.String()) || !warned(rep, w.people.Cert.Subject.String()) {
		t.Fatalf("warnings %q", rep.Warnings)
	}
	w.serve(w.registrar.CRL(pki.CRLTemplate{Number: 1, ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(7 * 24 * time.Hour), IDP: pki.IDPDistributionPoint("http://b.example/r.crl")}), 0, 0)
	rep = run(t, j)
	if len(rep.Warnings) != 0 || len(rep.Refused) != 0 {
		t.Fatalf("second run: warnings %q, refused %+v", rep.Warnings, rep.Refused)
	}
}
