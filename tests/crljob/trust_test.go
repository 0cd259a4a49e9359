package crljob

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestTrustRemoved removes CAs from the site's [trust] and runs `imagetrust
// crl --once` against the real Glance: the images whose record no longer
// chains to a configured CA become unknown (never deactivated), with the
// reason in the report; when the CA comes back they are valid again; a
// revoked image stays revoked; a configuration with no Registrar CA at all
// is refused (exit 2) and writes nothing.
//
// The site has two Registrar CAs: the demo PKI's, which registers a and b,
// and a second one (made here, in code), which registers c.
func TestTrustRemoved(t *testing.T) {
	s := newSite(t, "a", "b")
	second := testpki.NewRoot(t, "imagetrust crl test second Registrar CA")
	testpki.WriteFile(t, filepath.Join(s.dir, "pki"), "registrar2.pem", testpki.CertPEM(second.Cert))
	testpki.WriteFile(t, filepath.Join(s.dir, "pki"), "registrar2.key", testpki.KeyPEM(t, second.Key))
	s.publishBy("c", 2, "registrar2", "--cert", "pki/creator.pem", "--key", "pki/creator.key")

	base, err := os.ReadFile(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	const demoReg = `registrar_ca_files = ["pki/registrar-ca.pem"]`
	if !strings.Contains(string(base), demoReg) {
		t.Fatalf("config lacks %s:\n%s", demoReg, base)
	}
	// setRegistrar writes the configuration with these Registrar CA files
	setRegistrar := func(files ...string) {
		t.Helper()
		q := make([]string, len(files))
		for i, f := range files {
			q[i] = `"pki/` + f + `.pem"`
		}
		cfg := strings.Replace(string(base), demoReg, "registrar_ca_files = ["+strings.Join(q, ", ")+"]", 1)
		if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setRegistrar("registrar-ca", "registrar2")
	s.mustRun("sync", "--config", s.cfg, "--once")
	if im := s.image("c"); im.Status != "active" || im.Properties[crl.PropGlobalValidity] != crl.StateValid ||
		!strings.Contains(im.Properties["imagetrust_image_issuer"], "second Registrar CA") {
		t.Fatalf("after sync, image c: %s %v", im.Status, im.Properties)
	}
	state := func(name string) (string, string) {
		im := s.image(name)
		return im.Properties[crl.PropGlobalValidity], string(im.Status)
	}
	expect := func(step string, want map[string]string) {
		t.Helper()
		for n, w := range want {
			st, status := state(n)
			wantStatus := "active"
			if w == crl.StateRevoked {
				wantStatus = "deactivated"
			}
			if st != w || status != wantStatus {
				t.Errorf("%s: image %s is %s/%s, want %s/%s", step, n, st, status, w, wantStatus)
			}
		}
	}
	warned := func(rep *crl.Report) bool {
		for _, w := range rep.Warnings {
			if strings.Contains(w, "no longer chains to a configured CA") {
				return true
			}
		}
		return false
	}

	// Everything trusted: nothing to change.
	w0 := s.glanceWrites()
	rep := s.crlRun(0)
	if rep.Images != 3 || rep.Untrusted != 0 || len(rep.Changes) != 0 || s.glanceWrites() != w0 {
		t.Fatalf("all trusted: %+v", rep)
	}

	t.Run("fail second Registrar CA removed: c unknown", func(t *testing.T) {
		setRegistrar("registrar-ca")
		before := s.snapshot()
		w0 := s.glanceWrites()
		rep := s.crlRun(0)
		ch := change(rep, s.ids["c"])
		if ch == nil || ch.From != crl.StateValid || ch.To != crl.StateUnknown || ch.Deactivate ||
			!strings.Contains(ch.Why, "image chain no longer leads to a configured Registrar CA") ||
			!strings.Contains(ch.Why, `issuer "CN=imagetrust crl test second Registrar CA`) {
			t.Fatalf("change of c: %+v (report %+v)", ch, rep)
		}
		if rep.Untrusted != 1 || len(rep.Changes) != 1 || !warned(rep) {
			t.Errorf("report: %+v", rep)
		}
		expect("removed", map[string]string{"a": crl.StateValid, "b": crl.StateValid, "c": crl.StateUnknown})
		s.unchanged(before, "a", "b")
		if w := s.glanceWrites(); w != w0+1 {
			t.Errorf("Glance logged %d writes, want 1 (c's flag)", w-w0)
		}
		// the human report says so too
		code, out, errs := s.run("crl", "--config", s.cfg, "--once")
		if code != 0 || !strings.Contains(out, "no longer chains to a configured CA (unknown): 1") {
			t.Errorf("crl --once: exit %d\n%s%s", code, out, errs)
		}
		// a rerun writes nothing
		w0 = s.glanceWrites()
		if rep := s.crlRun(0); len(rep.Changes) != 0 || rep.Untrusted != 1 || warned(rep) {
			t.Errorf("rerun: %+v", rep)
		}
		if w := s.glanceWrites(); w != w0 {
			t.Errorf("rerun: Glance logged %d writes", w-w0)
		}
	})

	t.Run("ok second Registrar CA back: c valid", func(t *testing.T) {
		setRegistrar("registrar-ca", "registrar2")
		rep := s.crlRun(0)
		if ch := change(rep, s.ids["c"]); ch == nil || ch.From != crl.StateUnknown || ch.To != crl.StateValid || ch.Reactivate || rep.Untrusted != 0 {
			t.Fatalf("change of c: %+v (report %+v)", ch, rep)
		}
		expect("restored", map[string]string{"a": crl.StateValid, "b": crl.StateValid, "c": crl.StateValid})
	})

	t.Run("fail demo Registrar CA rotated out: a unknown, revoked b stays revoked", func(t *testing.T) {
		s.revoke("registrar-ca", "--cert", "images/b.json.crt", "--reason", "keyCompromise")
		if rep := s.crlRun(0); change(rep, s.ids["b"]) == nil {
			t.Fatalf("b not revoked: %+v", rep)
		}
		setRegistrar("registrar2")
		before := s.snapshot()
		// exit 4: the demo Registrar CA's CRL, still served, has no CA now
		rep := s.crlRun(4)
		if !refusedWith(rep, crl.ReasonWrongIssuer) {
			t.Errorf("the removed CA's CRL was not refused: %+v", rep.Refused)
		}
		if ch := change(rep, s.ids["a"]); ch == nil || ch.To != crl.StateUnknown || ch.Deactivate ||
			!strings.Contains(ch.Why, `issuer "CN=imagetrust demo Registrar CA`) {
			t.Fatalf("change of a: %+v (report %+v)", ch, rep)
		}
		if len(rep.Changes) != 1 || rep.Untrusted != 1 {
			t.Errorf("report: %+v", rep)
		}
		expect("rotated", map[string]string{"a": crl.StateUnknown, "b": crl.StateRevoked, "c": crl.StateValid})
		s.unchanged(before, "b", "c")
	})

	t.Run("fail no Registrar CA at all: the run is refused", func(t *testing.T) {
		cfg := strings.Replace(string(base), demoReg, "", 1)
		if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		before := s.snapshot()
		w0 := s.glanceWrites()
		code, out, errs := s.run("crl", "--config", s.cfg, "--once")
		if code != 2 || !strings.Contains(errs, "no Registrar CA") {
			t.Errorf("exit %d, want 2 naming the missing Registrar CA\n%s%s", code, out, errs)
		}
		if w := s.glanceWrites(); w != w0 {
			t.Errorf("Glance logged %d writes", w-w0)
		}
		s.unchanged(before, "a", "b", "c")
	})

	t.Run("ok every CA back", func(t *testing.T) {
		setRegistrar("registrar-ca", "registrar2")
		rep := s.crlRun(0)
		if rep.Untrusted != 0 {
			b, _ := json.Marshal(rep)
			t.Errorf("report: %s", b)
		}
		expect("back", map[string]string{"a": crl.StateValid, "b": crl.StateRevoked, "c": crl.StateValid})
	})
}
