package crljob

import (
	"crypto"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/pki"
)

// issuingCA makes, under pki init's people root, an issuing CA and a
// creator certificate from it with the demonstration creator's DN (so the
// VO lists still name it), and writes pki/people-sub.{pem,key} and
// pki/creator-sub.{pem,key}. The site's trust files keep the root only.
func (s *site) issuingCA() {
	t := s.t
	p := func(name string) string { return filepath.Join(s.dir, "pki", name) }
	root := readCert(t, p("people-ca.pem"))
	rootKey, err := pki.ReadPrivateKey(p("people-ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	subKey, _ := pki.NewKey(pki.ECDSAP256)
	sub, err := pki.Issue(pki.Template{Subject: pkix.Name{Organization: []string{"imagetrust crl test"}, CommonName: "People Issuing CA"},
		IsCA: true}, subKey.Public(), root, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, _ := pki.NewKey(pki.ECDSAP256)
	leaf, err := pki.Issue(pki.Template{Subject: readCert(t, p("creator.pem")).Subject}, leafKey.Public(), sub, subKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]crypto.Signer{"people-sub": subKey, "creator-sub": leafKey} {
		kp, err := pki.EncodeKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p(name+".key"), kp, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range map[string][]byte{"people-sub.pem": pki.EncodeCertPEM(sub), "creator-sub.pem": pki.EncodeCertPEM(leaf)} {
		if err := os.WriteFile(p(name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// publishSub publishes images/NAME.json as publish does, but signed by the
// creator of the issuing CA, whose certificate is embedded (sign --chain).
func (s *site) publishSub(name string, i int) {
	s.t.Helper()
	s.publishWith(name, i, "--cert", "pki/creator-sub.pem", "--key", "pki/creator-sub.key", "--chain", "pki/people-sub.pem")
}

// setConfig rewrites the site's imagetrust.toml with edit.
func (s *site) setConfig(edit func(string) string) {
	s.t.Helper()
	b, err := os.ReadFile(s.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.cfg, []byte(edit(string(b))), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// TestEmbeddedIntermediate: the site trusts pki init's people root only;
// image "e" is signed by a creator whose issuing CA only the signature
// embeds. When that CA revokes the creator:
//   - the CRL job (its CRL among the sources) accepts the CRL, flags and
//     deactivates "e", and leaves "a" (pki init's creator) alone;
//   - the sync, given that CRL in trust.crl_files, refuses to mirror "f",
//     signed by the same creator (reason revoked; a refused bundle is an
//     outcome of the pass, not an error: exit 0).
func TestEmbeddedIntermediate(t *testing.T) {
	s := newSite(t, "a")
	s.issuingCA()
	s.publishSub("e", 1)
	s.mustRun("sync", "--config", s.cfg, "--once")
	if im := s.image("e"); im.Status != "active" || im.Properties[crl.PropGlobalValidity] != crl.StateValid {
		t.Fatalf("image e after sync: %s %v", im.Status, im.Properties[crl.PropGlobalValidity])
	}
	if rep := s.crlRun(0); rep.EmbeddedCAs != 1 || len(rep.Changes) != 0 {
		t.Fatalf("before revocation: %+v", rep)
	}

	s.revoke("people-sub", "--cert", "pki/creator-sub.pem", "--reason", "keyCompromise")
	s.setConfig(func(c string) string { return c + "[[crl.source]]\nurl = \"" + s.crls.srv.URL + "/people-sub.crl\"\n" })
	rep := s.crlRun(0)
	if rep.EmbeddedCAs != 1 || len(rep.Refused) != 0 || len(rep.Changes) != 1 || change(rep, s.ids["e"]) == nil {
		t.Fatalf("after revocation: %+v", rep)
	}
	im := s.image("e")
	if im.Status != "deactivated" || im.Properties[crl.PropGlobalValidity] != crl.StateRevoked || im.Properties[crl.PropRevokedRole] != "creator" {
		t.Fatalf("image e: %s %v", im.Status, im.Properties)
	}
	if im := s.image("a"); im.Status != "active" || im.Properties[crl.PropGlobalValidity] != crl.StateValid {
		t.Fatalf("image a: %s %v", im.Status, im.Properties[crl.PropGlobalValidity])
	}

	// The sync sees the same CRL in trust.crl_files, for the chain that
	// brings its issuer.
	s.publishSub("f", 2)
	s.setConfig(func(c string) string {
		return strings.Replace(c, "[trust]\n", "[trust]\ncrl_files = [\"pki/people-sub.crl\"]\n", 1)
	})
	code, out, errs := s.run("sync", "--config", s.cfg, "--once")
	// exit 0: revoked bundles are routine (exit 4 is for other refusals)
	if code != 0 || !strings.Contains(out+errs, `msg="bundle refused" image=`+s.ids["f"]) || !strings.Contains(out+errs, "reason=revoked") {
		t.Fatalf("sync of an image whose creator is revoked: exit %d\n%s%s", code, out, errs)
	}
	if s.exists("f") {
		t.Fatal("image f is in Glance")
	}
}

// TestSyncExitCodes: `sync --once` exits 4 when it refuses a bundle for a
// reason other than expiry or revocation (here, image bytes that differ from
// the signed ones), after mirroring the rest, and 0 again once the source
// is clean.
func TestSyncExitCodes(t *testing.T) {
	s := newSite(t, "a")
	s.publish("b", 1)
	s.publish("c", 2)
	raw := filepath.Join(s.dir, "images", "c.raw")
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0xff
	if err := os.WriteFile(raw, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := s.run("sync", "--config", s.cfg, "--once")
	if code != 4 || !strings.Contains(out+errs, "image="+s.ids["c"]) || !strings.Contains(out+errs, "reason=sha512-mismatch") {
		t.Fatalf("sync of a tampered image: exit %d, want 4\n%s%s", code, out, errs)
	}
	// (left queued, without data, for a later pass to try again)
	if s.exists("c") && s.image("c").Status == "active" {
		t.Fatal("the tampered image c is active in Glance")
	}
	if im := s.image("b"); im.Status != "active" {
		t.Fatalf("image b beside the refused one: %s", im.Status)
	}
	if strings.Contains(out+errs, "alias=demo/c") {
		t.Fatalf("an alias was made for tag c, which has no image\n%s%s", out, errs)
	}
	for _, f := range []string{"c.json", "c.json.p7s", "c.raw"} {
		if err := os.Remove(filepath.Join(s.dir, "images", f)); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errs := s.run("sync", "--config", s.cfg, "--once"); code != 0 {
		t.Fatalf("sync of a clean source: exit %d\n%s%s", code, out, errs)
	}
}
