package validator

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// oneLine is the subject of c in OpenSSL's one-line form.
func oneLine(t testing.TB, c *x509.Certificate) string {
	t.Helper()
	dn, err := DNFromRaw(c.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	return dn.OneLine()
}

// permitAll is a .namespaces file letting the CA c issue any name: were
// c trusted, the leaves it issues would pass, so a refusal is the loader's.
func permitAll(t testing.TB, c *x509.Certificate) []byte {
	return []byte(fmt.Sprintf("TO Issuer %q PERMIT Subject \".*\"\n", oneLine(t, c)))
}

// hostileCase is one file (or a few) of a hostile CA directory: what the
// loader must say about it, and what Verify must say of a listed creator's
// name issued by its CA.
type hostileCase struct {
	name string
	// ca issues the leaf "Alice Creator" (a listed creator); nil: no leaf
	ca *testpki.CA
	// leaf issues the leaf itself, when not ca.Leaf("Alice Creator")
	leaf func() *testpki.Leaf
	// file is the name the one warning of the case names ("": none)
	file, warn string
	// reason is the creator check's reason for the leaf ("": valid)
	reason string
	// skip, if not empty, is why the case cannot run here
	skip string
}

// TestLoadTrustHostileCADir loads one directory holding two good CAs and
// every kind of bad file next to them: it loads, each bad file gets one
// warning naming it and the failed check (and nothing else is warned of),
// the good CAs keep exactly their constraints, and a listed creator's name
// issued under each bad CA is refused, for the named reason.
func TestLoadTrustHostileCADir(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	write := func(name string, b []byte) { testpki.WriteFile(t, dir, name, b) }
	symlink := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// the good CAs: the root may issue only the issuing CA, which may
	// issue only the creator and the approver
	write(hashName(t, w.peopleRoot.Cert, "0"), testpki.CertPEM(w.peopleRoot.Cert))
	write(hashName(t, w.peopleRoot.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=People Root" PERMIT Subject "/O=imagetrust test/CN=People Issuing CA"
`))
	write(hashName(t, w.peopleSub.Cert, "0"), testpki.CertPEM(w.peopleSub.Cert))
	write(hashName(t, w.peopleSub.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=People Issuing CA" PERMIT Subject "/O=imagetrust test/CN=(Alice Creator|Bob Approver)"
`))
	_, oldSub, _ := subjectHashes(w.peopleSub.Cert.RawSubject)
	subWide := permitAll(t, w.peopleSub.Cert) // what must never widen the issuing CA

	var cases []hostileCase
	add := func(c hostileCase) { cases = append(cases, c) }
	// a CA with a permit-all policy of its own, filed under its hash
	withPolicy := func(ca *testpki.CA) {
		write(hashName(t, ca.Cert, "namespaces"), permitAll(t, ca.Cert))
	}

	{
		ca := testpki.NewRoot(t, "", testpki.WithSubject(pkix.Name{}))
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		write(hashName(t, ca.Cert, "signing_policy"), []byte("access_id_CA X509 ''\ncond_subjects globus '\"*\"'\n"))
		add(hostileCase{name: "fail empty-subject CA", ca: ca, file: hashName(t, ca.Cert, "0"), warn: "skipped: empty subject", reason: ReasonCreatorUntrusted})
		// the policy file of a hash whose certificates were all skipped is
		// read (its CA may come as an intermediate): this one names no DN
		add(hostileCase{name: "fail policy file of a skipped CA that does not parse", file: hashName(t, ca.Cert, "signing_policy"), warn: "not used: issuer \"\": empty distinguished name"})
	}
	{
		ca := testpki.NewRoot(t, "Not A CA", testpki.WithoutCA())
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		withPolicy(ca)
		add(hostileCase{name: "fail certificate without basicConstraints CA", ca: ca, file: hashName(t, ca.Cert, "0"), warn: "skipped: not a CA certificate (no basicConstraints CA:TRUE)", reason: ReasonCreatorUntrusted})
	}
	{
		ca := testpki.NewRoot(t, "No CertSign CA", testpki.WithKeyUsage(x509.KeyUsageDigitalSignature|x509.KeyUsageCRLSign))
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		withPolicy(ca)
		add(hostileCase{name: "fail CA without keyCertSign", ca: ca, file: hashName(t, ca.Cert, "0"), warn: "without keyCertSign", reason: ReasonCreatorUntrusted})
	}
	{
		// loads (Verify judges chains at registration time) with a warning;
		// a name it issues after its end is refused
		ca := testpki.NewRoot(t, "Expired CA", testpki.WithValidity(testNow.AddDate(-5, 0, 0), testNow.AddDate(-1, 0, 0)))
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		withPolicy(ca)
		add(hostileCase{name: "fail expired CA", ca: ca, file: hashName(t, ca.Cert, "0"), warn: "expired", reason: ReasonCreatorUntrusted})
	}
	{
		ca := testpki.NewRoot(t, "Future CA", testpki.WithValidity(time.Now().AddDate(1, 0, 0), time.Now().AddDate(5, 0, 0)))
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		withPolicy(ca)
		add(hostileCase{name: "fail not-yet-valid CA", ca: ca, file: hashName(t, ca.Cert, "0"), warn: "not valid before", reason: ReasonCreatorUntrusted})
	}
	{
		// text after the block is ignored, as OpenSSL ignores it: the CA
		// loads, with exactly its own constraints
		ca := testpki.NewRoot(t, "Trailing Text CA")
		write(hashName(t, ca.Cert, "0"), append(testpki.CertPEM(ca.Cert), "\nsubject= /O=imagetrust test/CN=Trailing Text CA\n"...))
		write(hashName(t, ca.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=Trailing Text CA" PERMIT Subject "/O=imagetrust test/CN=Carol.*"
`))
		add(hostileCase{name: "ok PEM with trailing text loads with its own constraints", ca: ca, reason: ReasonOutsideNamespace})
	}
	{
		ca := testpki.NewRoot(t, "Trailing Garbage CA")
		write(hashName(t, ca.Cert, "0"), append(testpki.CertPEM(ca.Cert), "-----BEGIN CERTIFICATE-----\nnot base64 !!\n"...))
		withPolicy(ca)
		add(hostileCase{name: "fail PEM with a trailing broken block", ca: ca, file: hashName(t, ca.Cert, "0"), warn: "malformed PEM", reason: ReasonCreatorUntrusted})
	}
	{
		ca, other := testpki.NewRoot(t, "Two In One CA"), testpki.NewRoot(t, "Smuggled CA")
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert, other.Cert))
		withPolicy(ca)
		add(hostileCase{name: "fail two certificates in one file", ca: other, file: hashName(t, ca.Cert, "0"), warn: "2 certificates", reason: ReasonCreatorUntrusted})
	}
	{
		ca := testpki.NewRoot(t, "DER CA")
		write(hashName(t, ca.Cert, "0"), ca.Cert.Raw)
		withPolicy(ca)
		add(hostileCase{name: "fail DER instead of PEM", ca: ca, file: hashName(t, ca.Cert, "0"), warn: "not PEM", reason: ReasonCreatorUntrusted})
	}
	write("0badf001.0", nil)
	add(hostileCase{name: "fail 0-byte file", file: "0badf001.0", warn: "skipped: empty file"})
	{
		ca := testpki.NewRoot(t, "Huge CA")
		write(hashName(t, ca.Cert, "0"), append(testpki.CertPEM(ca.Cert), make([]byte, MaxCADirFile)...))
		withPolicy(ca)
		add(hostileCase{name: "fail file over the size limit", ca: ca, file: hashName(t, ca.Cert, "0"), warn: fmt.Sprintf("larger than %d bytes", MaxCADirFile), reason: ReasonCreatorUntrusted})
	}
	symlink("0badf002.0", "0badf002.0")
	add(hostileCase{name: "fail symlink loop", file: "0badf002.0", warn: "too many levels of symbolic links"})
	symlink("Gone-CA.pem", "0badf003.0")
	add(hostileCase{name: "fail dangling symlink", file: "0badf003.0", warn: "no such file or directory"})
	if err := os.Mkdir(filepath.Join(dir, "0badf004.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	add(hostileCase{name: "fail directory named <hash>.0", file: "0badf004.0", warn: "unreadable: a directory"})
	if err := os.Mkdir(filepath.Join(dir, "x.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	add(hostileCase{name: "ok directory named x.0 is no IGTF name and not read"})
	if err := syscall.Mkfifo(filepath.Join(dir, "0badf005.0"), 0o600); err != nil {
		t.Fatal(err)
	}
	add(hostileCase{name: "fail FIFO named <hash>.0 (read, it would block)", file: "0badf005.0", warn: "not a regular file"})
	{
		ca := testpki.NewRoot(t, "Unreadable CA")
		p := testpki.WriteFile(t, dir, hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		withPolicy(ca)
		c := hostileCase{name: "fail file unreadable by permission", ca: ca, reason: ReasonCreatorUntrusted}
		if os.Geteuid() == 0 {
			c.skip = "root reads any file"
			os.Remove(p)
			os.Remove(filepath.Join(dir, hashName(t, ca.Cert, "namespaces")))
		} else {
			if err := os.Chmod(p, 0); err != nil {
				t.Fatal(err)
			}
			c.file, c.warn = hashName(t, ca.Cert, "0"), "permission denied"
		}
		add(c)
	}
	// the issuing CA under its old hash too, as IGTF ships it: one CA, no warning
	symlink(hashName(t, w.peopleSub.Cert, "0"), oldSub+".0")
	symlink(hashName(t, w.peopleSub.Cert, "namespaces"), oldSub+".namespaces")
	add(hostileCase{name: "ok the same CA under its old hash keeps its constraints", ca: w.peopleSub,
		leaf: func() *testpki.Leaf { return w.peopleSub.Leaf(testpki.Name("Mallory Stranger")) }, reason: ReasonOutsideNamespace})
	// and under a hash that is not its own, with a policy letting it issue anything
	write("0badf006.0", testpki.CertPEM(w.peopleSub.Cert))
	write("0badf006.namespaces", subWide)
	add(hostileCase{name: "fail the same CA under a wrong hash, with a wider policy", ca: w.peopleSub, file: "0badf006.0", warn: "hashes to",
		leaf: func() *testpki.Leaf { return w.peopleSub.Leaf(testpki.Name("Mallory Stranger")) }, reason: ReasonOutsideNamespace})
	{
		// a rollover: the same name, another key, <hash>.0 and <hash>.1
		old, cur := testpki.NewRoot(t, "Rollover CA"), testpki.NewRoot(t, "Rollover CA")
		write(hashName(t, old.Cert, "0"), testpki.CertPEM(old.Cert))
		write(hashName(t, cur.Cert, "1"), testpki.CertPEM(cur.Cert))
		write(hashName(t, cur.Cert, "namespaces"), []byte(`TO Issuer "/O=imagetrust test/CN=Rollover CA" PERMIT Subject "/O=imagetrust test/CN=Carol.*"
`))
		add(hostileCase{name: "ok two CAs of one name and different keys, both constrained", ca: cur, reason: ReasonOutsideNamespace})
		add(hostileCase{name: "ok the new key of a rollover issues its namespace", ca: cur,
			leaf: func() *testpki.Leaf { return cur.Leaf(testpki.Name("Carol Rollover")) }, reason: ReasonCreatorNotListed})
		add(hostileCase{name: "ok the old key of a rollover issues its namespace", ca: old,
			leaf: func() *testpki.Leaf { return old.Leaf(testpki.Name("Carol Rollover")) }, reason: ReasonCreatorNotListed})
	}
	write("0badf007.namespaces", subWide)
	add(hostileCase{name: "fail namespaces for a hash with no certificate", file: "0badf007.namespaces", warn: "not read: there is no certificate 0badf007.0"})
	write("0badf008.signing_policy", []byte("access_id_CA X509 '/O=imagetrust test/CN=People Issuing CA'\ncond_subjects globus '\"*\"'\n"))
	add(hostileCase{name: "fail signing_policy for a hash with no certificate", file: "0badf008.signing_policy", warn: "not read: there is no certificate 0badf008.0"})
	{
		// and a good signing_policy beside it is not fallen back to
		ca := testpki.NewRoot(t, "Broken Policy CA")
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		write(hashName(t, ca.Cert, "namespaces"), []byte("TO Issuer \"/O=imagetrust test/CN=Broken Policy CA\" PERMIT Subject \"([\"\n"))
		write(hashName(t, ca.Cert, "signing_policy"), []byte("access_id_CA X509 '/O=imagetrust test/CN=Broken Policy CA'\ncond_subjects globus '\"*\"'\n"))
		add(hostileCase{name: "fail policy file that does not parse", ca: ca, file: hashName(t, ca.Cert, "namespaces"), warn: "not used: ", reason: ReasonOutsideNamespace})
	}
	{
		ca := testpki.NewRoot(t, "Empty Issuer Policy CA")
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		write(hashName(t, ca.Cert, "namespaces"), append(permitAll(t, ca.Cert), "TO Issuer \"\" PERMIT Subject \".*\"\n"...))
		add(hostileCase{name: "fail policy file with an issuer that is no name", ca: ca, file: hashName(t, ca.Cert, "namespaces"), warn: "empty distinguished name", reason: ReasonOutsideNamespace})
	}
	{
		ca := testpki.NewRoot(t, "Dangling Policy CA")
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		symlink("Gone.namespaces", hashName(t, ca.Cert, "namespaces"))
		write(hashName(t, ca.Cert, "signing_policy"), []byte("access_id_CA X509 '/O=imagetrust test/CN=Dangling Policy CA'\ncond_subjects globus '\"*\"'\n"))
		add(hostileCase{name: "fail dangling namespaces symlink beside a permissive signing_policy", ca: ca, file: hashName(t, ca.Cert, "namespaces"), warn: "not used: unreadable", reason: ReasonOutsideNamespace})
	}
	{
		// its file names the issuing CA (with any name) instead of itself
		ca := testpki.NewRoot(t, "Wrong Policy CA")
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		write(hashName(t, ca.Cert, "namespaces"), subWide)
		add(hostileCase{name: "fail CA whose policy file names another CA", ca: ca, file: hashName(t, ca.Cert, "namespaces"), warn: "names no policy for its subject", reason: ReasonOutsideNamespace})
	}
	{
		// what IGTF ships beside the hashes, and a CA not under a hash name
		ca := testpki.NewRoot(t, "Named Not Hashed CA")
		write("NamedNotHashed.pem", testpki.CertPEM(ca.Cert))
		write("NamedNotHashed.namespaces", permitAll(t, ca.Cert))
		write(hashName(t, w.peopleRoot.Cert, "crl_url"), []byte("http://ca.example/crl.der\n"))
		write(hashName(t, w.peopleRoot.Cert, "info"), []byte("alias = People Root\n"))
		write("README", []byte("junk"))
		add(hostileCase{name: "ok .pem, .info, .crl_url and other names are not read", ca: ca, reason: ReasonCreatorUntrusted})
	}
	{
		// any local user could put another CA in the file: skipped
		ca := testpki.NewRoot(t, "World Writable CA")
		p := testpki.WriteFile(t, dir, hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		withPolicy(ca)
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
		add(hostileCase{name: "fail CA file writable by every user", ca: ca, file: hashName(t, ca.Cert, "0"), warn: "skipped: a user other than root and the one this runs as could put another CA in it: writable by every user (mode 0666", reason: ReasonCreatorUntrusted})
	}
	{
		// any local user could widen the policy: the CA may issue no name
		ca := testpki.NewRoot(t, "World Writable Policy CA")
		write(hashName(t, ca.Cert, "0"), testpki.CertPEM(ca.Cert))
		p := testpki.WriteFile(t, dir, hashName(t, ca.Cert, "namespaces"), permitAll(t, ca.Cert))
		if err := os.Chmod(p, 0o646); err != nil {
			t.Fatal(err)
		}
		add(hostileCase{name: "fail policy file writable by every user", ca: ca, file: hashName(t, ca.Cert, "namespaces"), warn: "not used: a user other than root and the one this runs as could widen what its CA may issue: writable by every user (mode 0646", reason: ReasonOutsideNamespace})
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "0badf009.r0"), 0o600); err != nil {
		t.Fatal(err)
	}
	add(hostileCase{name: "fail FIFO named <hash>.r0", file: "0badf009.r0", warn: "not a regular file"})

	reg := testpki.WriteFile(t, t.TempDir(), "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	cfg, err := config.Parse([]byte(fmt.Sprintf("[trust]\nca_dirs = [%q]\nregistrar_ca_files = [%q]\n[vo.atlas]\ncreators = [%q]\napprovers = [%q]\n",
		dir, reg, oneLine(t, w.creator.Cert), oneLine(t, w.approver.Cert))))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var tr *Trust
	var warns []string
	go func() {
		defer close(done)
		tr, warns, err = LoadTrust(cfg)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("LoadTrust blocked")
	}
	if err != nil {
		t.Fatalf("LoadTrust: %v", err)
	}
	// exactly the good CAs pass, with exactly their constraints
	assertResult(t, tr.Verify(w.bundle(bundleOpts{}).input(testNow)), true)
	assertResult(t, tr.Verify(w.bundle(bundleOpts{creator: w.peopleSub.Leaf(testpki.Name("Mallory Stranger"))}).input(testNow)), false,
		failure{CheckCreator, ReasonOutsideNamespace})
	assertResult(t, tr.Verify(w.bundle(bundleOpts{creator: w.peopleRoot.Leaf(testpki.Name("Alice Creator"))}).input(testNow)), false,
		failure{CheckCreator, ReasonOutsideNamespace})
	warned := 0
	for _, c := range cases {
		if c.file != "" {
			warned++
		}
		t.Run(c.name, func(t *testing.T) {
			if c.skip != "" {
				t.Skip(c.skip)
			}
			var got []string
			for _, x := range warns {
				if f := filepath.Join(dir, c.file); c.file != "" && (strings.Contains(x, f+":") || strings.Contains(x, f+" ")) {
					got = append(got, x)
				}
			}
			if c.file != "" {
				if len(got) != 1 || !strings.Contains(got[0], c.warn) {
					t.Errorf("warnings naming %s: %q, want one with %q", c.file, got, c.warn)
				}
			}
			if c.ca == nil {
				return
			}
			leaf := c.ca.Leaf(testpki.Name("Alice Creator"))
			if c.leaf != nil {
				leaf = c.leaf()
			}
			r := tr.Verify(w.bundle(bundleOpts{creator: leaf}).input(testNow))
			if got := r.Check(CheckCreator); c.reason == "" && !r.Valid || c.reason != "" && (r.Valid || got.OK || got.Reason != c.reason) {
				t.Errorf("creator check %+v, want reason %q", got, c.reason)
			}
		})
	}
	if len(warns) != warned {
		t.Errorf("%d warnings, want %d:\n%s", len(warns), warned, strings.Join(warns, "\n"))
	}
}

// TestLoadTrustEmptyCADir: a directory from which no CA loads is an error
// naming it (and why), unless other people CAs are configured; then it is
// a warning.
func TestLoadTrustEmptyCADir(t *testing.T) {
	w := newWorld(t)
	bad := t.TempDir()
	testpki.WriteFile(t, bad, "0badf001.0", nil)
	empty := t.TempDir()
	good := t.TempDir()
	testpki.WriteFile(t, good, hashName(t, w.peopleRoot.Cert, "0"), testpki.CertPEM(w.peopleRoot.Cert))
	testpki.WriteFile(t, good, hashName(t, w.peopleRoot.Cert, "namespaces"), permitAll(t, w.peopleRoot.Cert))
	files := t.TempDir()
	people := testpki.WriteFile(t, files, "people.pem", testpki.CertPEM(w.peopleSub.Cert))
	reg := testpki.WriteFile(t, files, "registrar.pem", testpki.CertPEM(w.regRoot.Cert))
	for _, c := range []struct {
		name, toml, err, warn string
	}{
		{name: "fail every CA of the directory skipped", toml: fmt.Sprintf("ca_dirs = [%q]\nregistrar_ca_files = [%q]", bad, reg),
			err: "trust.ca_dirs " + bad + ": no CA certificate loaded, and no other people CA is configured: " + filepath.Join(bad, "0badf001.0") + ": skipped: empty file"},
		{name: "fail empty directory", toml: fmt.Sprintf("ca_dirs = [%q]", empty), err: "trust.ca_dirs " + empty + ": no CA certificate loaded"},
		{name: "fail missing directory", toml: fmt.Sprintf("ca_dirs = [%q]", filepath.Join(empty, "gone")), err: "no such file or directory"},
		{name: "ok other people CAs in ca_files", toml: fmt.Sprintf("ca_dirs = [%q]\nca_files = [%q]", bad, people),
			warn: "trust.ca_dirs " + bad + ": no CA certificate loaded from it"},
		{name: "ok other people CAs in another directory", toml: fmt.Sprintf("ca_dirs = [%q, %q]", empty, good),
			warn: "trust.ca_dirs " + empty + ": no CA certificate loaded from it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte("[trust]\n" + c.toml + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			tr, warns, err := LoadTrust(cfg)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || tr == nil {
				t.Fatal(err)
			}
			found := false
			for _, x := range warns {
				found = found || strings.Contains(x, c.warn)
			}
			if !found {
				t.Fatalf("warnings %q, want %q", warns, c.warn)
			}
		})
	}
}

// TestSubjectHashes: the hashes are OpenSSL's (`openssl x509 -subject_hash
// -subject_hash_old`, OpenSSL 3.0): case, white space and string types
// folded for the new one, the DER as it is for the old one.
func TestSubjectHashes(t *testing.T) {
	bmp := asn1BMP("Ex\u00e9  Z")
	for _, c := range []struct {
		name      string
		subject   pkix.Name
		hash, old string
	}{
		{"ok case and white space folded, UTF-8 kept", pkix.Name{CommonName: "  Mixed   CASE\tName  ", Organization: []string{"Ünïcode Örg"}}, "29a50253", "959365a2"},
		{"ok empty name", pkix.Name{}, "eea339da", "543b6ca4"},
		{"ok BMPString and a domain component", pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: []int{2, 5, 4, 3}, Value: bmp}, {Type: []int{0, 9, 2342, 19200300, 100, 1, 25}, Value: "ORG"}}}, "7d9a08d1", "b4ebce77"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, err := asn1MarshalName(c.subject)
			if err != nil {
				t.Fatal(err)
			}
			h, o, err := subjectHashes(raw)
			if err != nil || h != c.hash || o != c.old {
				t.Fatalf("got %s %s %v, want %s %s", h, o, err, c.hash, c.old)
			}
		})
	}
	if _, _, err := subjectHashes([]byte{0x30, 0x03, 0x31, 0x01}); err == nil {
		t.Error("fail malformed name: hashed")
	}
}

// TestLoadTrustIGTFBundle loads a real IGTF directory, if this machine has
// one: $IMAGETRUST_IGTF_DIR, or /etc/grid-security/certificates (the
// Debian igtf-policy-* packages; `dpkg-deb -x` of them and a copy of
// /usr/share/igtf-policy/*/ into one directory does too). Every CA loads
// (none skipped), and every CA has a policy of its own.
func TestLoadTrustIGTFBundle(t *testing.T) {
	dir := os.Getenv("IMAGETRUST_IGTF_DIR")
	if dir == "" {
		dir = "/etc/grid-security/certificates"
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.0")); len(m) == 0 {
		t.Skipf("no IGTF directory at %s", dir)
	}
	start := time.Now()
	ns := &Namespaces{}
	certs, crls, warns, err := readCADir(dir, ns, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d CAs, %d CRLs, %d issuers with a policy, in %v", dir, len(certs), len(crls), ns.Len(), time.Since(start))
	for _, x := range warns {
		if !strings.Contains(x, "expired") && !strings.Contains(x, "not valid before") {
			t.Errorf("warning: %s", x)
		}
	}
	for _, c := range certs {
		dn, _ := DNFromRaw(c.RawSubject)
		if p := ns.policyFor(dn); p == nil || len(p.permit) == 0 {
			t.Errorf("CA %q: no policy of its own", dn.OneLine())
		}
	}
}

// asn1BMP is s as an ASN.1 BMPString value.
func asn1BMP(s string) asn1.RawValue {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return asn1.RawValue{Tag: asn1.TagBMPString, Bytes: b}
}

// asn1MarshalName is the DER of a name, as a certificate holds it.
func asn1MarshalName(n pkix.Name) ([]byte, error) {
	return asn1.Marshal(n.ToRDNSequence())
}
