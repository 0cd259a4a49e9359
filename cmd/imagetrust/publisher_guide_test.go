package main

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestParseWhenRefusesMinutes: "6m" is six months to a Registrar and six
// minutes to Go's time.ParseDuration; an --expires or --next-update that
// silently meant minutes would issue an image (or a CRL) that expires
// before it reaches a site. Days, years and hours are kept, and so are
// seconds (the e2e story registers an image for "40s").
func TestParseWhenRefusesMinutes(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90d":        now.AddDate(0, 0, 90),
		"1y":         now.AddDate(1, 0, 0),
		"2160h":      now.Add(2160 * time.Hour),
		"40s":        now.Add(40 * time.Second),
		"2027-06-30": time.Date(2027, 6, 30, 23, 59, 59, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"6m", "1h30m", "360m"} {
		if got, err := parseWhen(in, now); err == nil || !strings.Contains(err.Error(), "not months") {
			t.Errorf("parseWhen(%q) = %v, %v; want a refusal naming months", in, got, err)
		}
	}
}

// TestExpiresSixMonthsRefused: the Registrar's "--expires 6m" and the CA's
// "--next-update 6m" are usage errors (exit 2) and write nothing.
func TestExpiresSixMonthsRefused(t *testing.T) {
	dir := publish(t)
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "m.json")
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "m.json")
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "m.json")
	before, _ := os.ReadFile(filepath.Join(dir, "m.json.p7s"))
	code, out, errs := cli(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "6m", "m.json")
	if code != exitUsage || !strings.Contains(errs, "not months") {
		t.Fatalf("register --expires 6m: exit %d (want 2)\n%s%s", code, out, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "m.json.p7s"))
	if string(before) != string(after) {
		t.Fatal("a refused register changed m.json.p7s")
	}
	if _, err := os.Stat(filepath.Join(dir, "m.json.crt")); err == nil {
		t.Fatal("a refused register wrote m.json.crt")
	}
	crlBefore, _ := os.ReadFile(filepath.Join(dir, "pki", "registrar-ca.crl"))
	code, out, errs = cli(t, dir, "revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--crl", "pki/registrar-ca.crl", "--resign", "--next-update", "6m")
	if code != exitUsage || !strings.Contains(errs, "not months") {
		t.Fatalf("revoke --next-update 6m: exit %d (want 2)\n%s%s", code, out, errs)
	}
	crlAfter, _ := os.ReadFile(filepath.Join(dir, "pki", "registrar-ca.crl"))
	if string(crlBefore) != string(crlAfter) {
		t.Fatal("a refused revoke changed the CRL")
	}
}

// TestRevokeInit: a new CA (a Registrar CA made with openssl, or the next
// one of a rotation) needs a CRL at the sites before it revokes anything.
// --init issues it, empty and numbered 1, and the site's verify loads it;
// --init over an existing CRL is refused and leaves it alone; --resign of a
// missing CRL says to use --init.
func TestRevokeInit(t *testing.T) {
	dir := publish(t)
	rev := []string{"revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key"}
	with := func(more ...string) []string { return append(append([]string{}, rev...), more...) }
	code, out, errs := cli(t, dir, with("--crl", "new.crl", "--resign")...)
	if code != exitUsage || !strings.Contains(errs, "--init") {
		t.Fatalf("--resign of a missing CRL: exit %d (want 2), no hint of --init:\n%s%s", code, out, errs)
	}
	out = mustCLI(t, dir, with("--crl", "new.crl", "--init")...)
	if !strings.Contains(out, "CRL number 1, 0 entries") {
		t.Fatalf("--init: %s", out)
	}
	// the site uses it: the bundle verifies with the new CRL in place of the demo one
	if err := os.Rename(filepath.Join(dir, "new.crl"), filepath.Join(dir, "pki", "registrar-ca.crl")); err != nil {
		t.Fatal(err)
	}
	code, out, errs = cli(t, dir, "verify", "--config", "pki/imagetrust.toml", "w.json")
	if code != exitOK || !strings.Contains(out, "2 CRLs loaded") {
		t.Fatalf("verify with the --init CRL: exit %d\n%s%s", code, out, errs)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "pki", "registrar-ca.crl"))
	code, out, errs = cli(t, dir, with("--crl", "pki/registrar-ca.crl", "--init")...)
	if code != exitInvalid || !strings.Contains(errs, "--resign") {
		t.Fatalf("--init over an existing CRL: exit %d (want 1)\n%s%s", code, out, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "pki", "registrar-ca.crl"))
	if string(before) != string(after) {
		t.Fatal("--init changed an existing CRL")
	}
	if code, _, _ := cli(t, dir, with("--crl", "x.crl", "--init", "--resign")...); code != exitUsage {
		t.Fatalf("--init with --resign: exit %d, want 2", code)
	}
	if code, _, _ := cli(t, dir, with("--crl", "x.crl", "--init", "--serial", "01")...); code != exitUsage {
		t.Fatalf("--init with --serial: exit %d, want 2", code)
	}
}

// TestPublisherMessagesNameGridDNs: with IGTF-style personal certificates
// (/DC=org/DC=example/OU=Users/CN=…) sign, approve and revoke name the
// signer as "CN=Alice Example,OU=Users,DC=example,DC=org", not with Go's
// "0.9.2342.19200300.100.1.25=#13076578616d706c65" for each DC, which no
// publisher can check against the certificate they meant to use.
func TestPublisherMessagesNameGridDNs(t *testing.T) {
	dir := publish(t)
	dc := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	person := func(cn string) pkix.Name {
		return pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: dc, Value: "org"}, {Type: dc, Value: "example"},
			{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "Users"}, {Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn}}}
	}
	ca := testpki.NewRoot(t, "Example Grid CA")
	for _, p := range []struct {
		name string
		leaf *testpki.Leaf
	}{{"alice", ca.Leaf(person("Alice Example"))}, {"bob", ca.Leaf(person("Bob Example"))}} {
		testpki.WriteFile(t, dir, p.name+".pem", testpki.CertPEM(p.leaf.Cert))
		testpki.WriteFile(t, dir, p.name+".key", testpki.KeyPEM(t, p.leaf.Key))
	}
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "g.json")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sign", "--cert", "alice.pem", "--key", "alice.key", "g.json"}, `as creator "CN=Alice Example,OU=Users,DC=example,DC=org"`},
		{[]string{"approve", "--cert", "bob.pem", "--key", "bob.key", "g.json"}, `as "CN=Bob Example,OU=Users,DC=example,DC=org"`},
	} {
		out := mustCLI(t, dir, c.args...)
		if !strings.Contains(out, c.want) {
			t.Errorf("%s: output lacks %s:\n%s", c.args[0], c.want, out)
		}
	}
	code, out, errs := cli(t, dir, "revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--crl", "pki/registrar-ca.crl", "--cert", "alice.pem")
	if code != exitUsage || !strings.Contains(errs, `issued by "CN=Example Grid CA`) || strings.Contains(errs, "0.9.2342") {
		t.Errorf("revoke --cert of another CA: exit %d\n%s%s", code, out, errs)
	}
}

// TestApproveTellsWhatToDo: approving (or registering) a descriptor nobody
// signed, or one edited after it was signed, is refused (exit 1) with the
// step to take, not only "no such file or directory" or a digest mismatch.
func TestApproveTellsWhatToDo(t *testing.T) {
	dir := publish(t)
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "u.json")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "u.json"}, "u.json is not signed: there is no u.json.p7s: the creator signs first (imagetrust sign)"},
		{[]string{"register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", "u.json"}, "the creator signs first (imagetrust sign)"},
	} {
		code, out, errs := cli(t, dir, c.args...)
		if code != exitInvalid || !strings.Contains(errs, c.want) {
			t.Errorf("%s of an unsigned descriptor: exit %d (want 1), stderr lacks %q:\n%s%s", c.args[0], code, c.want, out, errs)
		}
	}
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "u.json")
	b, _ := os.ReadFile(filepath.Join(dir, "u.json"))
	if err := os.WriteFile(filepath.Join(dir, "u.json"), []byte(strings.Replace(string(b), `"worker"`, `"worker2"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "u.json")
	if code != exitInvalid || !strings.Contains(errs, "imagetrust sign --force u.json") {
		t.Errorf("approve of an edited descriptor: exit %d (want 1), no hint:\n%s%s", code, out, errs)
	}
}

// TestPSSWithECDSAKeyIsUsage: --pss with an ECDSA key is a bad option
// (exit 2, as the guide's exit rule says), named as such, not a failed
// check from deep in the CMS code.
func TestPSSWithECDSAKeyIsUsage(t *testing.T) {
	dir := publish(t)
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "p.json")
	code, out, errs := cli(t, dir, "sign", "--pss", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "p.json")
	if code != exitUsage || !strings.Contains(errs, "--pss is for RSA keys") {
		t.Fatalf("sign --pss with an ECDSA key: exit %d (want 2)\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "p.json.p7s")); err == nil {
		t.Fatal("a refused sign wrote p.json.p7s")
	}
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "p.json")
	code, out, errs = cli(t, dir, "approve", "--pss", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "p.json")
	if code != exitUsage || !strings.Contains(errs, "--pss is for RSA keys") {
		t.Fatalf("approve --pss with an ECDSA key: exit %d (want 2)\n%s%s", code, out, errs)
	}
}

// TestDescribeWarnsURIOutsideDescriptorDir: describing an image into a
// descriptor of another directory (-o pub/w.json for ./w.qcow2) writes the
// uri "../w.qcow2", which every site refuses (an image outside the published
// directory). describe still writes it (the publisher may be about to move
// things) but warns, saying what to do; an image below the descriptor's
// directory gives no warning.
func TestDescribeWarnsURIOutsideDescriptorDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pub", "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"w.qcow2", "pub/images/w.qcow2"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("imagetrust"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, _, errs := cli(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "pub/out.json")
	if code != exitOK || !strings.Contains(errs, "warning: the uri ../w.qcow2 leaves the directory of pub/out.json") || !strings.Contains(errs, "--uri") {
		t.Fatalf("describe outside: exit %d\n%s", code, errs)
	}
	code, _, errs = cli(t, dir, "describe", "pub/images/w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "pub/in.json")
	if code != exitOK || errs != "" {
		t.Fatalf("describe below: exit %d\n%s", code, errs)
	}
}

// TestVerifySkipNamesFailedCheck: verify of a bundle not yet registered (the
// publisher guide's "Everyone: verify", run one step early) skips the checks
// that need the image certificate; each skip line names the check that
// failed, not "prerequisite-failed: " and nothing after it.
func TestVerifySkipNamesFailedCheck(t *testing.T) {
	dir := publish(t)
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "n.json")
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "n.json")
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "n.json")
	code, out, errs := cli(t, dir, "verify", "--config", "pki/imagetrust.toml", "n.json")
	if code != exitInvalid {
		t.Fatalf("verify of an unregistered bundle: exit %d (want 1)\n%s%s", code, out, errs)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " skip ") && strings.HasSuffix(strings.TrimRight(line, " "), ":") {
			t.Errorf("a skip line ends in a bare colon: %q", line)
		}
	}
	for _, check := range []string{"signer-time", "expiry"} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == check {
				found = strings.Contains(line, "skip  prerequisite-failed: not judged, as registrar failed")
			}
		}
		if !found {
			t.Errorf("the %s line does not name the failed registrar check:\n%s", check, out)
		}
	}
}

// TestVerifyWithoutConfigSaysConfig: a publisher who types "imagetrust
// verify worker.json" without --config (publisher guide, "Everyone:
// verify") reads the site default /etc/imagetrust/imagetrust.toml, absent
// on a publisher's machine; the refusal (exit 2) says to name the site's
// configuration with --config.
func TestVerifyWithoutConfigSaysConfig(t *testing.T) {
	if _, err := os.Stat("/etc/imagetrust/imagetrust.toml"); err == nil {
		t.Skip("this machine has /etc/imagetrust/imagetrust.toml")
	}
	dir := publish(t)
	code, out, errs := cli(t, dir, "verify", "w.json")
	if code != exitUsage || !strings.Contains(errs, "/etc/imagetrust/imagetrust.toml") || !strings.Contains(errs, "with --config") {
		t.Fatalf("verify without --config: exit %d (want 2)\n%s%s", code, out, errs)
	}
}

// TestVerifyWrongConfigHint: verify against the configuration of another
// site (another PKI, or one without the bundle's VO; publisher guide,
// "Everyone: verify") fails the trust checks with x509 text a publisher
// can't act on; a line on stderr names the checks and the --config file
// that judged them. A valid bundle, or one failing for its own reasons
// (not registered), gets no such line.
func TestVerifyWrongConfigHint(t *testing.T) {
	dir := publish(t)
	mustCLI(t, dir, "pki", "init", "--vo", "cms", "other")
	if err := os.WriteFile(filepath.Join(dir, "pki", "novo.toml"), []byte(strings.ReplaceAll(string(must(os.ReadFile(filepath.Join(dir, "pki", "imagetrust.toml")))), "[vo.demo]", "[vo.cms]")), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "n.json")
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "n.json")
	for _, c := range []struct {
		name, config, file string
		want               []string // "" : no hint
	}{
		{"fail another PKI", "other/imagetrust.toml", "w.json", []string{"creator (creator-untrusted)", "registrar (image-cert-untrusted)", "other/imagetrust.toml", "the site you publish for"}},
		{"fail the VO not configured", "pki/novo.toml", "w.json", []string{"creator (unknown-vo)", "pki/novo.toml"}},
		{"ok the site's configuration", "pki/imagetrust.toml", "w.json", nil},
		{"ok not registered: no hint", "pki/imagetrust.toml", "n.json", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, out, errs := cli(t, dir, "verify", "--config", c.config, c.file)
			if c.want == nil {
				if strings.Contains(errs, "you publish for") {
					t.Errorf("a hint about the configuration:\n%s%s", out, errs)
				}
				return
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s%s", w, out, errs)
				}
			}
		})
	}
}

// TestListingGivenToVerifyOrInspect: a listing signer who checks the
// listing just written (publisher guide, "Listing signer") with verify or
// inspect got only `unknown field "expires"`; both now say on stderr that
// the file is a VO listing, not a descriptor, and where it is checked.
// A descriptor gets no such line.
func TestListingGivenToVerifyOrInspect(t *testing.T) {
	dir := publish(t)
	mustCLI(t, dir, "listing", "--vo", "demo", "--expires", "7d", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "--out", "demo.listing.json", "w.json")
	for _, c := range []struct {
		name string
		args []string
		hint bool
	}{
		{"fail verify of a listing", []string{"verify", "--config", "pki/imagetrust.toml", "demo.listing.json"}, true},
		{"fail inspect of a listing", []string{"inspect", "demo.listing.json"}, true},
		{"ok verify of a descriptor", []string{"verify", "--config", "pki/imagetrust.toml", "w.json"}, false},
		{"ok inspect of a descriptor", []string{"inspect", "w.json"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := cli(t, dir, c.args...)
			got := strings.Contains(errs, "demo.listing.json is a VO listing (imagetrust listing), not an image descriptor")
			if got != c.hint || (c.hint && code != exitInvalid) {
				t.Errorf("exit %d, hint %v (want %v):\n%s%s", code, got, c.hint, out, errs)
			}
		})
	}
}
