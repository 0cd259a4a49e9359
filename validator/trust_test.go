package validator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestLoadTrustIGTFDir loads people CAs and their CRLs from an IGTF-style
// directory (<hash>.0 certificates, <hash>.r0 CRLs as fetch-crl writes them)
// and a Registrar CA from a file, and checks that the directory's CRL is used.
func TestLoadTrustIGTFDir(t *testing.T) {
	w := newWorld(t)
	b := w.bundle(bundleOpts{})
	dir := t.TempDir()
	igtf := filepath.Join(dir, "certificates")
	if err := os.MkdirAll(igtf, 0o755); err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, igtf, hashName(t, w.peopleRoot.Cert, "0"), testpki.CertPEM(w.peopleRoot.Cert))
	testpki.WriteFile(t, igtf, hashName(t, w.peopleSub.Cert, "0"), testpki.CertPEM(w.peopleSub.Cert))
	// the root may sign only imagetrust test names; the issuing CA only two people
	testpki.WriteFile(t, igtf, hashName(t, w.peopleRoot.Cert, "signing_policy"), []byte(`# EACL
 access_id_CA   X509   '/O=imagetrust test/CN=People Root'
 pos_rights     globus  CA:sign
 cond_subjects  globus  '"/O=imagetrust test/*"'
`))
	testpki.WriteFile(t, igtf, hashName(t, w.peopleSub.Cert, "namespaces"), []byte(`##############################################################################
#NAMESPACES-VERSION: 1.0
TO Issuer "/O=imagetrust test/CN=People Issuing CA" \
  PERMIT Subject "/O=imagetrust test/CN=(Alice Creator|Bob Approver)"
TO Issuer "/O=imagetrust test/CN=People Issuing CA" \
  DENY Subject "/O=imagetrust test/CN=Bob Approver"
`))
	// a signing_policy beside a namespaces file is not read
	testpki.WriteFile(t, igtf, hashName(t, w.peopleSub.Cert, "signing_policy"), []byte("garbage"))
	testpki.WriteFile(t, igtf, hashName(t, w.peopleRoot.Cert, "r0"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: revokeCRL(w.peopleRoot, 1)}))
	crlDER := revokeCRL(w.peopleSub, 3, pki.Revoked{Serial: w.creator.Cert.SerialNumber, Reason: crl.ReasonKeyCompromise})
	testpki.WriteFile(t, igtf, hashName(t, w.peopleSub.Cert, "r0"), crlDER) // DER works too
	reg := testpki.WriteFile(t, dir, "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
	toml := fmt.Sprintf(`[trust]
ca_dirs = [%q]
registrar_ca_files = [%q]
[vo.atlas]
creators = [%q]
approvers = ["CN=Bob Approver,O=imagetrust test"]
`, igtf, reg, cdn.OneLine())
	cfg, err := config.Parse([]byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	tr, warns, err := LoadTrust(cfg)
	if err != nil || len(warns) > 0 {
		t.Fatalf("LoadTrust: %v %v", err, warns)
	}
	r := tr.Verify(b.input(testNow))
	// Bob is inside the PERMIT but DENYed; Alice is permitted, and her
	// revocation (from the directory's .r0, in DER) is found.
	assertResult(t, r, false, failure{CheckApprover, ReasonOutsideNamespace}, failure{CheckRevocation, ReasonRevoked})
	if !r.Check(CheckCreator).OK {
		t.Fatalf("creator from the IGTF dir not trusted: %+v", r.Checks)
	}
	// a person the issuing CA may not name
	stranger := w.peopleSub.Leaf(testpki.Name("Mallory Stranger"))
	b2 := w.bundle(bundleOpts{creator: stranger})
	assertResult(t, tr.Verify(b2.input(testNow)), false, failure{CheckCreator, ReasonOutsideNamespace})
	// namespaces = "ignore" turns the constraints off
	cfg.Trust.Namespaces = "ignore"
	tr2, _, err := LoadTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c := tr2.Verify(b.input(testNow)).Check(CheckApprover); !c.OK {
		t.Fatalf("with namespaces = ignore: %+v", c)
	}
}

// TestLoadTrustPolicyNamesOtherCA: a CA whose namespaces file names no
// policy for the CA's own subject (a typo, a DN read otherwise, another
// CA's file) is not left unconstrained: it may issue no name, and LoadTrust
// warns, naming the file.
func TestLoadTrustPolicyNamesOtherCA(t *testing.T) {
	w := newWorld(t)
	igtf := t.TempDir()
	testpki.WriteFile(t, igtf, hashName(t, w.peopleRoot.Cert, "0"), testpki.CertPEM(w.peopleRoot.Cert))
	testpki.WriteFile(t, igtf, hashName(t, w.peopleSub.Cert, "0"), testpki.CertPEM(w.peopleSub.Cert))
	testpki.WriteFile(t, igtf, hashName(t, w.peopleSub.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=People Issuing CA Typo" \
  PERMIT Subject "/O=imagetrust test/.*"
`))
	testpki.WriteFile(t, igtf, hashName(t, w.peopleRoot.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=People Root" PERMIT Subject "/O=imagetrust test/.*"
`))
	reg := testpki.WriteFile(t, t.TempDir(), "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
	adn, _ := DNFromRaw(w.approver.Cert.RawSubject)
	cfg, err := config.Parse([]byte(fmt.Sprintf("[trust]\nca_dirs = [%q]\nregistrar_ca_files = [%q]\n[vo.atlas]\ncreators = [%q]\napprovers = [%q]\n",
		igtf, reg, cdn.OneLine(), adn.OneLine())))
	if err != nil {
		t.Fatal(err)
	}
	tr, warns, err := LoadTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], hashName(t, w.peopleSub.Cert, "namespaces")+" names no policy for its subject") {
		t.Fatalf("warnings %q", warns)
	}
	assertResult(t, tr.Verify(w.bundle(bundleOpts{}).input(testNow)), false,
		failure{CheckCreator, ReasonOutsideNamespace}, failure{CheckApprover, ReasonOutsideNamespace})
}

func TestNamespacePolicies(t *testing.T) {
	ns := &Namespaces{}
	pols, err := ParseNamespaces([]byte(`TO Issuer "/DC=ch/DC=cern/CN=CERN Grid CA" \
   PERMIT Subject "/DC=ch/DC=cern/.*"
TO Issuer "/DC=ch/DC=cern/CN=CERN Grid CA" DENY Subject "/DC=ch/DC=cern/OU=Robots/.*"
`), "cern.namespaces")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ParseSigningPolicy([]byte(`access_id_CA X509 '/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth'
pos_rights globus CA:sign
cond_subjects globus '"/O=dutchgrid/O=users/*" "/O=dutchgrid/O=hosts/*"'
`), "nikhef.signing_policy")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(pols, sp...) {
		if err := ns.add(p); err != nil {
			t.Fatal(err)
		}
	}
	cern, _ := ParseDN("/DC=ch/DC=cern/CN=CERN Grid CA")
	nikhef, _ := ParseDN("CN=NIKHEF medium-security certification auth,O=NIKHEF,C=NL")
	other, _ := ParseDN("/CN=Other CA")
	cases := []struct {
		name    string
		issuer  DN
		subject string
		ok      bool
	}{
		{"ok permitted", cern, "/DC=ch/DC=cern/OU=Users/CN=Alice", true},
		{"fail denied", cern, "/DC=ch/DC=cern/OU=Robots/CN=bot", false},
		{"fail outside", cern, "/DC=org/DC=example/CN=Alice", false},
		{"fail anchored pattern", cern, "/O=x/DC=ch/DC=cern/CN=Alice", false},
		{"ok signing_policy glob", nikhef, "/O=dutchgrid/O=users/O=nikhef/CN=Jan", true},
		{"fail signing_policy outside", nikhef, "/O=dutchgrid/O=robots/CN=x", false},
		{"ok unconstrained issuer", other, "/CN=anything", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := ns.Check(c.issuer, c.subject); (err == nil) != c.ok {
				t.Fatalf("Check = %v, want ok=%v", err, c.ok)
			}
		})
	}
	for _, bad := range []string{"TO Issuer PERMIT", `TO Issuer "/CN=x" FOO Subject "/CN=y"`, `TO Issuer "/CN=x" PERMIT Subject "(["`} {
		if _, err := ParseNamespaces([]byte(bad), "bad"); err == nil {
			t.Errorf("fail %q: accepted", bad)
		}
	}
}

// TestNamespaceSubCA: a CA without a policy of its own, below a CA that
// has one (a sub-CA no IGTF bundle ships, brought by the signature), is
// held to its constrained ancestor's namespace: the constrained Rogue Root
// cannot make a listed creator's name through such a sub-CA.
func TestNamespaceSubCA(t *testing.T) {
	w := newWorld(t)
	rogueRoot := testpki.NewRoot(t, "Rogue Root")
	rogueSub := rogueRoot.Intermediate("Rogue Root Sub")
	valid := testpki.WithValidity(testNow.AddDate(0, -6, 0), testNow.AddDate(0, 6, 0))
	ns := namespacesOf(t, `TO Issuer "/O=imagetrust test/CN=Rogue Root" PERMIT Subject "/O=imagetrust test/CN=Rogue Root.*"
TO Issuer "/O=imagetrust test/CN=People Root" PERMIT Subject "/O=imagetrust test/CN=People Issuing CA"
TO Issuer "/O=imagetrust test/CN=People Issuing CA" PERMIT Subject "/O=imagetrust test/CN=(Alice Creator|Bob Approver)"
`)
	alice, _ := DNFromRaw(w.creator.Cert.RawSubject)
	bob, _ := DNFromRaw(w.approver.Cert.RawSubject)
	rogueUser, _ := ParseDN("/O=imagetrust test/CN=Rogue Root User")
	tr, _, err := NewTrust(TrustOptions{
		People:     []*x509.Certificate{w.peopleRoot.Cert, w.peopleSub.Cert, rogueRoot.Cert},
		Registrar:  []*x509.Certificate{w.regRoot.Cert},
		VOs:        map[string]*VOPolicy{"atlas": {Name: "atlas", Creators: []DN{alice, rogueUser}, Approvers: []DN{bob}}},
		Namespaces: ns,
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		creator *testpki.Leaf
		ok      bool
	}{
		{"ok the real creator", w.creator, true},
		{"ok the sub-CA's subject within its ancestor's namespace", rogueSub.Leaf(testpki.Name("Rogue Root User"), valid), true},
		{"fail the root issues a listed name directly", rogueRoot.Leaf(testpki.Name("Alice Creator"), valid), false},
		{"fail the root's unlisted sub-CA issues a listed name", rogueSub.Leaf(testpki.Name("Alice Creator"), valid), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tr.Verify(w.bundle(bundleOpts{creator: c.creator}).input(testNow))
			if c.ok {
				assertResult(t, r, true)
				return
			}
			assertResult(t, r, false, failure{CheckCreator, ReasonOutsideNamespace})
		})
	}
}

func TestLoadTrustErrors(t *testing.T) {
	dir := t.TempDir()
	bad := testpki.WriteFile(t, dir, "bad.pem", []byte("not a certificate"))
	// each error names the setting, so that the operator knows which list
	// to fix (the same file may be named in two)
	for _, c := range []struct{ name, toml, want string }{
		{"fail missing CA file", `[trust]
ca_files = ["/nonexistent/ca.pem"]`, "trust.ca_files: /nonexistent/ca.pem"},
		{"fail garbage CA file", fmt.Sprintf(`[trust]
ca_files = [%q]`, bad), "trust.ca_files: " + bad},
		{"fail missing registrar CA file", `[trust]
registrar_ca_files = ["/nonexistent/registrar.pem"]`, "trust.registrar_ca_files: /nonexistent/registrar.pem"},
		{"fail garbage registrar CA file", fmt.Sprintf(`[trust]
registrar_ca_files = [%q]`, bad), "trust.registrar_ca_files: " + bad},
		{"fail missing CRL file", `[trust]
crl_files = ["/nonexistent/ca.crl"]`, "trust.crl_files: /nonexistent/ca.crl"},
		{"fail bad creator DN", `[vo.x]
creators = ["CN"]`, "vo.x.creators"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(c.toml))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := LoadTrust(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to name %q", err, c.want)
			}
		})
	}
}

// TestLoadTrustWarnsWeakCA: a configured CA with a key below the signers'
// minimum loads (an IGTF directory may carry a legacy CA) but is warned
// of, since no chain through it verifies.
func TestLoadTrustWarnsWeakCA(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	root := testpki.NewRoot(t, "Weak Root", testpki.WithSigner(weak))
	dir := t.TempDir()
	f := testpki.WriteFile(t, dir, "weak.pem", testpki.CertPEM(root.Cert))
	cfg, err := config.Parse([]byte(fmt.Sprintf("[trust]\nca_files = [%q]\n", f)))
	if err != nil {
		t.Fatal(err)
	}
	_, warns, err := LoadTrust(cfg)
	if err != nil || len(warns) != 1 || !strings.Contains(warns[0], "Weak Root") || !strings.Contains(warns[0], "1024") {
		t.Fatalf("LoadTrust: %v, warnings %q", err, warns)
	}
}

// namespacesOf is the Namespaces of an IGTF .namespaces file's text.
func namespacesOf(t *testing.T, text string) *Namespaces {
	t.Helper()
	return namespacesFrom(t)(ParseNamespaces([]byte(text), "test.namespaces"))
}

// namespacesFrom returns a function that takes what ParseNamespaces or
// ParseSigningPolicy returns and makes Namespaces of the policies, failing
// t on an error.
func namespacesFrom(t *testing.T) func(pols []*nsPolicy, err error) *Namespaces {
	return func(pols []*nsPolicy, err error) *Namespaces {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		ns := &Namespaces{}
		for _, p := range pols {
			if err := ns.add(p); err != nil {
				t.Fatal(err)
			}
		}
		return ns
	}
}

// TestLoadTrustCAWithoutPolicyFile: a CA of an IGTF directory with neither
// a .namespaces nor a .signing_policy file (one copied in by hand during a
// rollover, say) is not left unconstrained: it may issue no name, and
// LoadTrust warns once for the directory, naming it. With namespaces =
// "ignore" it is unconstrained and nothing is said; in trust.ca_files it is
// unconstrained as documented.
func TestLoadTrustCAWithoutPolicyFile(t *testing.T) {
	w := newWorld(t)
	igtf := t.TempDir()
	testpki.WriteFile(t, igtf, hashName(t, w.peopleRoot.Cert, "0"), testpki.CertPEM(w.peopleRoot.Cert))
	testpki.WriteFile(t, igtf, hashName(t, w.peopleRoot.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=People Root" PERMIT Subject "/O=imagetrust test/.*"
`))
	// the issuing CA of the creator and the approver: no policy file
	testpki.WriteFile(t, igtf, hashName(t, w.peopleSub.Cert, "0"), testpki.CertPEM(w.peopleSub.Cert))
	reg := testpki.WriteFile(t, t.TempDir(), "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	cdn, _ := DNFromRaw(w.creator.Cert.RawSubject)
	adn, _ := DNFromRaw(w.approver.Cert.RawSubject)
	load := func(t *testing.T, extra string) (*Trust, []string) {
		cfg, err := config.Parse([]byte(fmt.Sprintf("[trust]\nca_dirs = [%q]\nregistrar_ca_files = [%q]\n%s\n[vo.atlas]\ncreators = [%q]\napprovers = [%q]\n",
			igtf, reg, extra, cdn.OneLine(), adn.OneLine())))
		if err != nil {
			t.Fatal(err)
		}
		tr, warns, err := LoadTrust(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return tr, warns
	}
	t.Run("fail CA without a policy file issues no name", func(t *testing.T) {
		tr, warns := load(t, "")
		if len(warns) != 1 || !strings.Contains(warns[0], "1 CAs have no .namespaces or .signing_policy file") ||
			!strings.Contains(warns[0], "People Issuing CA") || !strings.Contains(warns[0], hashName(t, w.peopleSub.Cert, "")) {
			t.Fatalf("warnings %q", warns)
		}
		assertResult(t, tr.Verify(w.bundle(bundleOpts{}).input(testNow)), false,
			failure{CheckCreator, ReasonOutsideNamespace}, failure{CheckApprover, ReasonOutsideNamespace})
	})
	t.Run("ok namespaces ignored", func(t *testing.T) {
		tr, warns := load(t, `namespaces = "ignore"`)
		if len(warns) != 0 {
			t.Fatalf("warnings %q", warns)
		}
		if r := tr.Verify(w.bundle(bundleOpts{}).input(testNow)); !r.Check(CheckCreator).OK || !r.Check(CheckApprover).OK {
			t.Fatalf("%+v", r.Failed())
		}
	})
	t.Run("ok policy in the file of another CA of the directory", func(t *testing.T) {
		// the root's file names its issuing CA's namespace too (a policy
		// file for a hash with no certificate is not read: TestLoadTrustHostileCADir)
		rootNS := filepath.Join(igtf, hashName(t, w.peopleRoot.Cert, "namespaces"))
		old, err := os.ReadFile(rootNS)
		if err != nil {
			t.Fatal(err)
		}
		testpki.WriteFile(t, igtf, filepath.Base(rootNS), append(append([]byte{}, old...), `TO Issuer "/O=imagetrust test/CN=People Issuing CA" PERMIT Subject "/O=imagetrust test/.*"
`...))
		defer os.WriteFile(rootNS, old, 0o600)
		tr, warns := load(t, "")
		if len(warns) != 0 {
			t.Fatalf("warnings %q", warns)
		}
		if r := tr.Verify(w.bundle(bundleOpts{}).input(testNow)); !r.Check(CheckCreator).OK {
			t.Fatalf("%+v", r.Failed())
		}
	})
}

// TestLoadTrustCAWithoutPolicyFileOddName: the empty policy of a CA
// without policy files holds whatever its name: one with a backslash, whose
// one-line text parses back to another name (CN=Evil\CA read as
// CN=EvilCA), was left unconstrained while the warning said it may issue
// no name.
func TestLoadTrustCAWithoutPolicyFileOddName(t *testing.T) {
	root := testpki.NewRoot(t, `Evil\CA`)
	dir := t.TempDir()
	testpki.WriteFile(t, dir, hashName(t, root.Cert, "0"), testpki.CertPEM(root.Cert))
	ns := &Namespaces{}
	_, _, warns, err := readCADir(dir, ns, true, time.Time{})
	if err != nil || len(warns) != 1 {
		t.Fatalf("readCADir: %v, warnings %q", err, warns)
	}
	leaf := root.Leaf(testpki.Name("anyone at all"))
	if err := ns.CheckChain([]*x509.Certificate{leaf.Cert, root.Cert}); err == nil {
		t.Fatal("fail a CA without policy files issued a name")
	}
}

// hashName is the name of a CA's file of type ext in an OpenSSL hashed
// directory: <subject hash>.ext ("" for the hash alone).
func hashName(t testing.TB, c *x509.Certificate, ext string) string {
	t.Helper()
	h, _, err := subjectHashes(c.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	if ext == "" {
		return h
	}
	return h + "." + ext
}
