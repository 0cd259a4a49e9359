package main

import (
	"bytes"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/validator"
)

// issueWithKey has the demonstration people CA in dir/pki issue
// dir/<file>.pem for subject on the key in dir/pki/<keyFile>.
func issueWithKey(t *testing.T, dir, file string, subject pkix.Name, keyFile string) {
	t.Helper()
	issueValid(t, dir, file, subject, keyFile, time.Now().Add(-time.Hour), time.Now().AddDate(0, 1, 0))
}

// issueValid is issueWithKey for a certificate valid from nb to na.
func issueValid(t *testing.T, dir, file string, subject pkix.Name, keyFile string, nb, na time.Time) {
	t.Helper()
	p := func(f string) string { return filepath.Join(dir, "pki", f) }
	cas, err := validator.ReadCertificates(p("people-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := pki.ReadPrivateKey(p("people-ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pki.ReadPrivateKey(p(keyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.Issue(pki.Template{Subject: subject, NotBefore: nb, NotAfter: na}, k.Public(), cas[0], caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file+".pem"), pki.EncodeCertPEM(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

// prepare describes w.qcow2 of dir as name and signs it as the creator,
// then, if approved, approves it: a bundle ready for the next step.
func prepare(t *testing.T, dir, name string, approved bool) {
	t.Helper()
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", name)
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", name)
	if approved {
		mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", name)
	}
}

// TestApproveRefusesTheCreator checks the two-person rule where approve
// applies it: a certificate for the creator's subject written another way,
// or for the creator's own key under another name, cannot approve.
func TestApproveRefusesTheCreator(t *testing.T) {
	dir := publish(t)
	prepare(t, dir, "x.json", false)
	issueWithKey(t, dir, "twin-key", pkix.Name{CommonName: "Alice Creator (2nd)", Organization: []string{"imagetrust demo"}, OrganizationalUnit: []string{"Users"}}, "creator.key")
	issueWithKey(t, dir, "twin-case", pkix.Name{CommonName: "alice   CREATOR", Organization: []string{"imagetrust demo"}, OrganizationalUnit: []string{"Users"}}, "approver.key")
	for _, tc := range []struct{ name, cert, key, want string }{
		{"fail the creator's key under another name", "twin-key.pem", "pki/creator.key", "holds the creator's key"},
		{"fail the creator's subject in other case and spacing", "twin-case.pem", "pki/approver.key", "has the creator's subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(filepath.Join(dir, "x.json.p7s"))
			code, _, errs := cli(t, dir, "approve", "--cert", tc.cert, "--key", tc.key, "x.json")
			if code != exitInvalid || !strings.Contains(errs, "creator-is-approver") || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d: %s", code, errs)
			}
			after, _ := os.ReadFile(filepath.Join(dir, "x.json.p7s"))
			if !bytes.Equal(before, after) {
				t.Fatal("x.json.p7s changed")
			}
		})
	}
}

// TestRegisterChecksTheCA: register refuses to sign with a certificate that
// is not a CA, and never dates an image certificate before its CA's
// notBefore (a chain every site would refuse).
func TestRegisterChecksTheCA(t *testing.T) {
	dir := publish(t)
	prepare(t, dir, "x.json", true)
	if code, _, errs := cli(t, dir, "register", "--ca", "pki/creator.pem", "--ca-key", "pki/creator.key", "--expires", "30d", "x.json"); code != exitUsage || !strings.Contains(errs, "not a CA certificate") {
		t.Fatalf("an end-entity certificate as CA: exit %d %s", code, errs)
	}
	// a descriptor dated hours ahead: every site would refuse it
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "f.json", "--created", time.Now().Add(3*time.Hour).UTC().Format(time.RFC3339))
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "f.json")
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "f.json")
	if code, _, errs := cli(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", "f.json"); code != exitInvalid || !strings.Contains(errs, "created-after-registration") {
		t.Fatalf("a descriptor created hours ahead: exit %d %s", code, errs)
	}
	// a Registrar CA made this very second
	k, err := pki.NewKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	ca, err := pki.Issue(pki.Template{Subject: pkix.Name{CommonName: "New Registrar CA"}, IsCA: true, MaxPathLen: 0, NotBefore: now, NotAfter: now.AddDate(1, 0, 0)}, k.Public(), nil, k)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := pki.EncodeKeyPEM(k)
	if err := os.WriteFile(filepath.Join(dir, "new-ca.pem"), pki.EncodeCertPEM(ca), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new-ca.key"), kp, 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "register", "--ca", "new-ca.pem", "--ca-key", "new-ca.key", "--expires", "30d", "x.json")
	cs, err := validator.ReadCertificates(filepath.Join(dir, "x.json.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if cs[0].NotBefore.Before(ca.NotBefore) {
		t.Fatalf("image notBefore %s before the CA's %s", cs[0].NotBefore, ca.NotBefore)
	}
	// a Registrar sub-CA whose issuer (in the --ca file, its chain)
	// expires first: an image certificate past the issuer's expiry would
	// be refused at every site (image-cert-untrusted), so register caps
	// --expires at every certificate of the file
	rootKey, err := pki.NewKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	root, err := pki.Issue(pki.Template{Subject: pkix.Name{CommonName: "Short Registrar Root"}, IsCA: true, MaxPathLen: 1, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 0, 20)}, rootKey.Public(), nil, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := pki.Issue(pki.Template{Subject: pkix.Name{CommonName: "Long Registrar Sub-CA"}, IsCA: true, MaxPathLen: 0, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)}, k.Public(), root, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub-ca.pem"), append(pki.EncodeCertPEM(sub), pki.EncodeCertPEM(root)...), 0o644); err != nil {
		t.Fatal(err)
	}
	prepare(t, dir, "y.json", true)
	if code, _, errs := cli(t, dir, "register", "--ca", "sub-ca.pem", "--ca-key", "new-ca.key", "--expires", "30d", "y.json"); code != exitUsage || !strings.Contains(errs, "Short Registrar Root") {
		t.Fatalf("--expires past the expiry of the CA's issuer: exit %d %s", code, errs)
	}
	mustCLI(t, dir, "register", "--ca", "sub-ca.pem", "--ca-key", "new-ca.key", "--expires", "10d", "y.json")
}

// TestRegisterWritesCertFirst: when the image certificate cannot be
// written, the .p7s stays unregistered (the Registrar has no certificate
// to revoke an image that would be registered).
func TestRegisterWritesCertFirst(t *testing.T) {
	dir := publish(t)
	prepare(t, dir, "x.json", true)
	if err := os.Mkdir(filepath.Join(dir, "x.json.crt"), 0o755); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "x.json.p7s"))
	code, _, errs := cli(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", "x.json")
	if code != exitInvalid || !strings.Contains(errs, "x.json.p7s is unchanged") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "x.json.p7s"))
	if !bytes.Equal(before, after) {
		t.Fatal("x.json.p7s was registered")
	}
}

// TestFileNamesInURIs: describe writes an image file name with '%', '#',
// '?' or ' ' as a URI reference that verify (and the sync:
// validator.ImageLocation) read back as that very file.
func TestFileNamesInURIs(t *testing.T) {
	dir := publish(t)
	const img = "w #1 100%41?.qcow2"
	if err := os.WriteFile(filepath.Join(dir, img), bytes.Repeat([]byte("imagetrust"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "describe", img, "--vo", "demo", "--tag", "worker", "-o", "y.json")
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "y.json")
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "y.json")
	mustCLI(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", "y.json")
	code, out, _ := cli(t, dir, "verify", "--config", "pki/imagetrust.toml", "y.json")
	if code != exitOK || !strings.Contains(out, "sha512 matches") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
}

// TestPKIInitDottedVO: a VO name with dots (atlas.cern.ch) makes a
// configuration verify reads; a name no descriptor may carry is refused.
func TestPKIInitDottedVO(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "--vo", "atlas.cern.ch", "pki")
	if err := os.WriteFile(filepath.Join(dir, "w.qcow2"), bytes.Repeat([]byte("imagetrust"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "atlas.cern.ch", "--tag", "worker", "-o", "w.json")
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "w.json")
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "w.json")
	mustCLI(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", "w.json")
	if code, out, errs := cli(t, dir, "verify", "--config", "pki/imagetrust.toml", "w.json"); code != exitOK {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := cli(t, t.TempDir(), "pki", "init", "--vo", "a b", "pki"); code != exitUsage || !strings.Contains(errs, "--vo") {
		t.Fatalf("--vo 'a b': exit %d %s", code, errs)
	}
}

// TestApproveChecksTheImage: an approval vouches for the image's bytes, so
// approve hashes the image (where the uri points, or --image) and refuses
// one that does not match the descriptor, or a missing one, unless told
// --no-image-check.
func TestApproveChecksTheImage(t *testing.T) {
	dir := publish(t)
	prepare(t, dir, "x.json", false)
	img := filepath.Join(dir, "w.qcow2")
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	approve := []string{"approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key"}
	with := func(more ...string) []string { return append(append([]string{}, approve...), more...) }
	tampered := append([]byte{orig[0] ^ 1}, orig[1:]...)
	for _, tc := range []struct {
		name  string
		image []byte // w.qcow2's content (nil: removed)
		args  []string
		code  int
		want  string
	}{
		{"fail tampered image", tampered, with("x.json"), exitInvalid, "sha512"},
		{"fail image missing", nil, with("x.json"), exitInvalid, "no such file"},
		{"fail tampered copy given", orig, with("--image", "copy.qcow2", "x.json"), exitInvalid, "copy.qcow2"},
		{"ok unchecked on request", nil, with("--no-image-check", "x.json"), exitOK, "approved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(img)
			if tc.image != nil {
				if err := os.WriteFile(img, tc.image, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, "copy.qcow2"), tampered, 0o644); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, "x.json.p7s"))
			code, out, errs := cli(t, dir, tc.args...)
			if code != tc.code || !strings.Contains(out+errs, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q: %s%s", code, tc.code, tc.want, out, errs)
			}
			after, _ := os.ReadFile(filepath.Join(dir, "x.json.p7s"))
			if code != exitOK && !bytes.Equal(before, after) {
				t.Fatal("a refused approve changed x.json.p7s")
			}
		})
	}
	if err := os.WriteFile(img, orig, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPublishDescribeTitle: describe refuses a title with a control
// character (a line break or terminal escape would forge lines wherever
// the title is shown: inspect, Glance's image name), as a usage error,
// naming the field and writing nothing; ordinary UTF-8 is kept.
func TestPublishDescribeTitle(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.qcow2"), bytes.Repeat([]byte("imagetrust"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, title string
		code        int
	}{
		{"ok UTF-8", "Wörker ✓ 工作节点", exitOK},
		{"fail forged lines and colours", "ok\n  signature\tmatches (trust OK)\x1b[31m", exitUsage},
		{"fail C1 control", "a\u009bb", exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(filepath.Join(dir, "t.json"))
			code, _, errs := cli(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "--title", tc.title, "-o", "t.json")
			if code != tc.code {
				t.Fatalf("exit %d (want %d): %s", code, tc.code, errs)
			}
			_, statErr := os.Stat(filepath.Join(dir, "t.json"))
			if code == exitOK {
				if statErr != nil {
					t.Fatal(statErr)
				}
				return
			}
			if !strings.Contains(errs, "title") || strings.ContainsAny(errs, "\x1b\t\u009b") {
				t.Fatalf("error does not name the title, or echoes it: %q", errs)
			}
			if statErr == nil {
				t.Fatal("t.json was written")
			}
		})
	}
}

// TestPublishSignerValidity: sign and approve refuse a certificate outside
// its validity now, and register one of the bundle's signers outside its
// validity at the registration time (what every site's signer-time check
// refuses), naming the check, exit 1 and writing nothing.
func TestPublishSignerValidity(t *testing.T) {
	dir := publish(t)
	now := time.Now()
	person := func(cn string) pkix.Name {
		return pkix.Name{CommonName: cn, Organization: []string{"imagetrust demo"}, OrganizationalUnit: []string{"Users"}}
	}
	// expired yesterday, and valid only from tomorrow
	issueValid(t, dir, "creator-expired", person("Alice Creator"), "creator.key", now.AddDate(0, -1, 0), now.Add(-24*time.Hour))
	issueValid(t, dir, "creator-future", person("Alice Creator"), "creator.key", now.Add(24*time.Hour), now.AddDate(0, 1, 0))
	issueValid(t, dir, "approver-expired", person("Bob Approver"), "approver.key", now.AddDate(0, -1, 0), now.Add(-24*time.Hour))
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "s.json")
	// a.json: signed by a valid creator, to be approved
	prepare(t, dir, "a.json", false)
	// r.json: signed with the expired certificate by another tool, approved
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "r.json")
	rawSign(t, dir, "r.json", "creator-expired.pem", "pki/creator.key")
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "r.json")
	register := []string{"register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d"}
	for _, tc := range []struct {
		name  string
		args  []string
		file  string // the bundle it may not change
		code  int
		wants []string
	}{
		{"fail sign with a creator certificate expired yesterday", []string{"sign", "--cert", "creator-expired.pem", "--key", "pki/creator.key", "s.json"}, "s.json",
			exitInvalid, []string{"check signer-validity", "creator certificate", "expired " + now.Add(-24*time.Hour).UTC().Format("2006-01-02T"), "sign with a certificate valid now"}},
		{"fail sign with a creator certificate valid from tomorrow", []string{"sign", "--cert", "creator-future.pem", "--key", "pki/creator.key", "s.json"}, "s.json",
			exitInvalid, []string{"check signer-validity", "not yet valid until " + now.Add(24*time.Hour).UTC().Format("2006-01-02T"), "sign after then"}},
		{"fail approve with an approver certificate expired yesterday", []string{"approve", "--cert", "approver-expired.pem", "--key", "pki/approver.key", "a.json"}, "a.json",
			exitInvalid, []string{"check signer-validity", "approver certificate", "expired"}},
		{"fail register a bundle whose creator certificate expired", append(register[:len(register):len(register)], "r.json"), "r.json",
			exitInvalid, []string{"check signer-time (signer-invalid-at-registration)", "creator certificate", "is not valid at registration", "nothing written"}},
		{"ok sign with a valid certificate", []string{"sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "s.json"}, "s.json",
			exitOK, []string{"signed s.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p7 := filepath.Join(dir, tc.file+".p7s")
			before, _ := os.ReadFile(p7)
			code, out, errs := cli(t, dir, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d (want %d): %s%s", code, tc.code, out, errs)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out+errs, w) {
					t.Errorf("output lacks %q: %s%s", w, out, errs)
				}
			}
			if code == exitOK {
				return
			}
			if after, _ := os.ReadFile(p7); !bytes.Equal(before, after) {
				t.Errorf("%s changed", p7)
			}
			if _, err := os.Stat(filepath.Join(dir, tc.file+".crt")); err == nil {
				t.Errorf("%s.crt written", tc.file)
			}
		})
	}
}

// TestPublishDescribeOverSigned: describe refuses to replace a descriptor
// that is signed (NAME.json.p7s) or registered (NAME.json.crt), as sign
// refuses to replace a signature: exit 1, naming the file, the descriptor
// unchanged; --force replaces it and warns that the signature is dead.
func TestPublishDescribeOverSigned(t *testing.T) {
	dir := publish(t) // w.json: signed, approved, registered
	prepare(t, dir, "s.json", false)
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "u.json")
	describe := func(more ...string) []string {
		return append([]string{"describe", "w.qcow2", "--vo", "demo", "--tag", "worker"}, more...)
	}
	for _, tc := range []struct {
		name string
		args []string
		file string
		code int
		want string
	}{
		{"ok an unsigned descriptor is replaced", describe("-o", "u.json"), "u.json", exitOK, "wrote u.json"},
		{"fail a signed descriptor", describe("-o", "s.json"), "s.json", exitInvalid, "s.json.p7s exists"},
		{"fail a registered descriptor", describe("-o", "w.json"), "w.json", exitInvalid, "w.json.p7s and w.json.crt exist"},
		{"ok --force replaces a signed one, warning", describe("--force", "-o", "s.json"), "s.json", exitOK, "warning: s.json.p7s no longer matches s.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(filepath.Join(dir, tc.file))
			code, out, errs := cli(t, dir, tc.args...)
			if code != tc.code || !strings.Contains(out+errs, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q: %s%s", code, tc.code, tc.want, out, errs)
			}
			after, _ := os.ReadFile(filepath.Join(dir, tc.file))
			if changed := !bytes.Equal(before, after); changed != (code == exitOK) {
				t.Fatalf("%s changed: %v, exit %d", tc.file, changed, code)
			}
		})
	}
}

// TestApproveKeyBeforeImage: approve reads and checks the approver's key
// before it hashes the image, so a wrong key (or passphrase) is told
// without first reading a large image; the image is still checked.
func TestApproveKeyBeforeImage(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	if err := os.WriteFile(filepath.Join(dir, "a.qcow2"), bytes.Repeat([]byte("imagetrust"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "describe", "a.qcow2", "--vo", "demo", "--tag", "worker", "-o", "a.json")
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "a.json")
	// the image changes after description: its check would fail
	if err := os.WriteFile(filepath.Join(dir, "a.qcow2"), []byte("other bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := cli(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/creator.key", "a.json")
	if code != exitUsage || !strings.Contains(errs, "does not belong to --cert") || strings.Contains(errs, "check image") {
		t.Fatalf("wrong key: exit %d: %s", code, errs)
	}
	code, _, errs = cli(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "a.json")
	if code != exitInvalid || !strings.Contains(errs, "check image") {
		t.Fatalf("changed image: exit %d: %s", code, errs)
	}
}

// TestRegisterRefusesPeopleCA: the CA that issued the creator's or the
// approver's certificate (or a CA above it in the chain the signature
// carries) is a people CA to every site that accepts these signers, and
// sites refuse an image certificate it issues (image-cert-from-people-ca):
// register refuses it, saying to use the Registrar CA, and writes nothing.
func TestRegisterRefusesPeopleCA(t *testing.T) {
	dir := publish(t)
	prepare(t, dir, "x.json", true)
	before, _ := os.ReadFile(filepath.Join(dir, "x.json.p7s"))
	code, _, errs := cli(t, dir, "register", "--ca", "pki/people-ca.pem", "--ca-key", "pki/people-ca.key", "--expires", "30d", "x.json")
	if code != exitUsage || !strings.Contains(errs, "people CA") || !strings.Contains(errs, "issued the ") || !strings.Contains(errs, "Registrar CA") {
		t.Fatalf("the people CA as Registrar CA: exit %d %s", code, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "x.json.p7s"))
	if !bytes.Equal(before, after) {
		t.Fatal("x.json.p7s changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "x.json.crt")); err == nil {
		t.Fatal("x.json.crt written")
	}
	mustCLI(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", "x.json")
}
