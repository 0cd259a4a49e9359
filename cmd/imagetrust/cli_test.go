package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/imagetrust/imagetrust/internal/oserr"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/validator"
)

// cli runs imagetrust in-process in dir and returns its exit code and output.
func cli(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.Chdir(wd) }()
	code := run(context.Background(), &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}, args)
	return code, out.String(), errb.String()
}

func mustCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	code, out, errs := cli(t, dir, args...)
	if code != 0 {
		t.Fatalf("imagetrust %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// publish runs the whole publisher flow in a new directory.
func publish(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	if err := os.WriteFile(filepath.Join(dir, "w.qcow2"), bytes.Repeat([]byte("imagetrust"), 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "w.json", "--title", "Worker", "--property", "hw_firmware_type=uefi")
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "w.json")
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "--hash", "sha384", "w.json")
	out := mustCLI(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", "w.json")
	if !strings.Contains(out, "serial=") {
		t.Fatalf("register did not print the serial: %s", out)
	}
	return dir
}

func TestPublisherFlow(t *testing.T) {
	dir := publish(t)
	code, out, _ := cli(t, dir, "verify", "--config", "pki/imagetrust.toml", "w.json")
	if code != exitOK || !strings.Contains(out, "VALID") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, dir, "verify", "--config", "pki/imagetrust.toml", "--json", "w.json")
	var res struct {
		Valid  bool `json:"valid"`
		Checks []struct {
			Check string `json:"check"`
			OK    bool   `json:"ok"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || !res.Valid || len(res.Checks) != 9 {
		t.Fatalf("verify --json: exit %d err %v\n%s", code, err, out)
	}
	out = mustCLI(t, dir, "inspect", "w.json")
	for _, want := range []string{"Alice Creator", "Bob Approver", "urn:uuid:", "3 signers"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
}

func TestVerifyExitCodes(t *testing.T) {
	dir := publish(t)
	cases := []struct {
		name string
		args []string
		prep func()
		code int
		want string
	}{
		{"fail expired is exit 3", []string{"verify", "--config", "pki/imagetrust.toml", "--at", "2099-01-01T00:00:00Z", "w.json"}, nil, exitExpired, "EXPIRED"},
		{"fail not yet valid is exit 1", []string{"verify", "--config", "pki/imagetrust.toml", "--at", "2001-01-01T00:00:00Z", "w.json"}, nil, exitInvalid, "not-yet-valid"},
		{"fail usage is exit 2", []string{"verify", "w.json", "extra"}, nil, exitUsage, ""},
		{"fail bad config is exit 2", []string{"verify", "--config", "nope.toml", "w.json"}, nil, exitUsage, ""},
		{"fail tampered image is exit 1", []string{"verify", "--config", "pki/imagetrust.toml", "w.json"}, func() {
			f, _ := os.OpenFile(filepath.Join(dir, "w.qcow2"), os.O_WRONLY, 0)
			_, _ = f.WriteAt([]byte("X"), 5)
			_ = f.Close()
		}, exitInvalid, "sha512-mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.prep != nil {
				c.prep()
			}
			code, out, errs := cli(t, dir, c.args...)
			if code != c.code || !strings.Contains(out+errs, c.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, c.code, c.want, out, errs)
			}
		})
	}
}

func TestPublisherErrors(t *testing.T) {
	dir := publish(t)
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "x.json")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"fail approve before sign", []string{"approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "x.json"}, "x.json.p7s"},
		{"fail wrong key for cert", []string{"sign", "--cert", "pki/creator.pem", "--key", "pki/approver.key", "x.json"}, "does not belong"},
		{"fail creator approves", []string{"approve", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "w.json"}, "expected 1"},
		{"fail register twice", []string{"register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "1d", "w.json"}, "expected 2"},
		{"fail sign over existing", []string{"sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "w.json"}, "exists"},
		{"fail weak hash", []string{"sign", "--force", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "--hash", "sha1", "x.json"}, "sha1"},
		{"fail expiry in the past", []string{"register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "2001-01-01", "w.json"}, "not in the future"},
		{"fail bad uuid", []string{"describe", "w.qcow2", "--vo", "demo", "--tag", "t", "--uuid", "nope", "-o", "y.json"}, "--uuid"},
		{"fail unknown disk format", []string{"describe", "pki/creator.pem", "--vo", "demo", "--tag", "t", "-o", "y.json"}, "disk format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := os.ReadFile(filepath.Join(dir, "w.json.p7s"))
			code, out, errs := cli(t, dir, c.args...)
			if code == 0 || !strings.Contains(errs, c.want) {
				t.Fatalf("exit %d, stderr lacks %q:\n%s%s", code, c.want, out, errs)
			}
			if strings.Contains(errs, "panic") || strings.Contains(errs, "goroutine") {
				t.Fatalf("stack trace in output: %s", errs)
			}
			after, _ := os.ReadFile(filepath.Join(dir, "w.json.p7s"))
			if !bytes.Equal(before, after) {
				t.Fatal("a refused command changed w.json.p7s")
			}
		})
	}
}

func TestRevokeThenVerify(t *testing.T) {
	dir := publish(t)
	mustCLI(t, dir, "revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--crl", "pki/registrar-ca.crl", "--cert", "w.json.crt", "--reason", "superseded")
	code, out, _ := cli(t, dir, "verify", "--config", "pki/imagetrust.toml", "w.json")
	if code != exitInvalid || !strings.Contains(out, "revoked") {
		t.Fatalf("verify after revoke: exit %d\n%s", code, out)
	}
}

func TestEncryptedKeyWithPassFile(t *testing.T) {
	openssl := needOpenSSL(t)
	dir := publish(t)
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "e.json")
	if err := os.WriteFile(filepath.Join(dir, "pass"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, form := range [][]string{
		{"pkcs8", "-topk8", "-v2", "aes256"},
		{"pkcs8", "-topk8", "-v2", "aes128", "-v2prf", "hmacWithSHA512"},
	} {
		args := append([]string{form[0], "-in", filepath.Join(dir, "pki/creator.key"), "-out", filepath.Join(dir, "enc.key"), "-passout", "pass:s3cret"}, form[1:]...)
		if msg, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v %s", args, err, msg)
		}
		mustCLI(t, dir, "sign", "--force", "--cert", "pki/creator.pem", "--key", "enc.key", "--key-pass-file", "pass", "e.json")
		if err := os.WriteFile(filepath.Join(dir, "bad"), []byte("wrong\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, errs := cli(t, dir, "sign", "--force", "--cert", "pki/creator.pem", "--key", "enc.key", "--key-pass-file", "bad", "e.json"); code == 0 || !strings.Contains(errs, "passphrase") {
			t.Fatalf("wrong passphrase: exit %d %s", code, errs)
		}
	}
}

func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is required in CI")
		}
		t.Skip("openssl not installed")
	}
	return p
}

// TestOpenSSLOnlyBundle runs docs/recipes/openssl-publish.sh, which makes a
// whole bundle with openssl and coreutils only, and verifies it.
func TestOpenSSLOnlyBundle(t *testing.T) {
	needOpenSSL(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "img.qcow2")
	if err := os.WriteFile(img, bytes.Repeat([]byte{7}, 123457), 0o644); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs("../../docs/recipes/openssl-publish.sh")
	cmd := exec.Command("bash", script, dir, img, "atlas", "worker")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	code, out, errs := cli(t, dir, "verify", "--config", "imagetrust.toml", "image.json")
	if code != exitOK {
		t.Fatalf("imagetrust verify of an openssl-made bundle: exit %d\n%s%s", code, out, errs)
	}
}

// TestOpenSSLVerifiesOurBundle checks the other direction with the command
// docs/publisher-guide.md gives.
func TestOpenSSLVerifiesOurBundle(t *testing.T) {
	openssl := needOpenSSL(t)
	dir := publish(t)
	cas := append(must(os.ReadFile(filepath.Join(dir, "pki/people-ca.pem"))), must(os.ReadFile(filepath.Join(dir, "pki/registrar-ca.pem")))...)
	if err := os.WriteFile(filepath.Join(dir, "cas.pem"), cas, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", "w.json.p7s", "-content", "w.json", "-CAfile", "cas.pem", "-purpose", "any", "-out", os.DevNull)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, out)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestRevokeRefusesRekeyedCA: a CA of the same name with another key (the
// Registrar re-keyed) cannot revoke a certificate the old key signed: sites
// match CRL entries by issuer name and key, so its CRL would revoke nothing.
func TestRevokeRefusesRekeyedCA(t *testing.T) {
	dir := publish(t)
	old, err := validator.ReadCertificates(filepath.Join(dir, "pki/registrar-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.Issue(pki.Template{Subject: old[0].Subject, IsCA: true, MaxPathLen: -1}, key.Public(), nil, key)
	if err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, dir, "pki/registrar-ca2.pem", testpki.CertPEM(ca))
	testpki.WriteFile(t, dir, "pki/registrar-ca2.key", testpki.KeyPEM(t, key))
	code, _, errs := cli(t, dir, "revoke", "--ca", "pki/registrar-ca2.pem", "--ca-key", "pki/registrar-ca2.key", "--crl", "pki/registrar-ca2.crl", "--cert", "w.json.crt")
	if code != exitUsage || !strings.Contains(errs, "was not signed by the key of --ca") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "pki/registrar-ca2.crl")); err == nil {
		t.Fatal("a CRL was written")
	}
}

func TestRevokeRefusesAnotherCAsKey(t *testing.T) {
	dir := publish(t)
	before, _ := os.ReadFile(filepath.Join(dir, "pki/registrar-ca.crl"))
	code, _, errs := cli(t, dir, "revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/people-ca.key", "--crl", "pki/registrar-ca.crl", "--cert", "w.json.crt")
	if code != exitUsage || !strings.Contains(errs, "does not belong") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "pki/registrar-ca.crl"))
	if !bytes.Equal(before, after) {
		t.Fatal("the CRL changed")
	}
}

// cliEnv is cli with the environment vars.
func cliEnv(t *testing.T, dir string, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.Chdir(wd) }()
	code := run(context.Background(), &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }}, args)
	return code, out.String(), errb.String()
}

// TestCLIExitCodes checks the documented rule across subcommands: 2 for a
// usage or configuration error (a key not matching its certificate, a
// file named on the command line that can't be read, no cloud configured,
// the proxy's TLS key pair), 1 for what was read and failed a check (a
// bundle's signature or image missing or wrong); and the subcommand's
// name before every message. No case needs OpenStack: the auth_url given
// is a local server that counts requests, and none may reach it.
func TestCLIExitCodes(t *testing.T) {
	dir := publish(t)
	prepare(t, dir, "x.json", false)
	prepare(t, dir, "y.json", true)
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "u.json")
	var hits atomic.Int32
	keystone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer keystone.Close()
	cloud := map[string]string{"OS_AUTH_URL": keystone.URL + "/v3", "OS_USERNAME": "u", "OS_PASSWORD": "p",
		"OS_PROJECT_NAME": "p", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"}
	nProxy := 0
	proxyCfg := func(rest string) string {
		p, _ := proxyConfig(t, dir, "upstream = \"http://127.0.0.1:1\"\n"+rest)
		nProxy++
		to := filepath.Join(dir, "pki", fmt.Sprintf("proxy%d.toml", nProxy))
		if err := os.Rename(p, to); err != nil {
			t.Fatal(err)
		}
		return to
	}
	noRegistrar := func(path string) string {
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		return withoutRegistrar(t, path)
	}
	certFile, keyFile, _ := testpki.TLSServer(t, dir, "proxy")
	_, otherKey, _ := testpki.TLSServer(t, t.TempDir(), "other")
	reg := []string{"register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d"}
	with := func(base []string, more ...string) []string { return append(append([]string{}, base...), more...) }
	for _, tc := range []struct {
		name string
		vars map[string]string
		args []string
		code int
		want string
	}{
		// a key that does not match its certificate: configuration
		{"fail sign with another's key is 2", nil, []string{"sign", "--force", "--cert", "pki/creator.pem", "--key", "pki/approver.key", "u.json"}, exitUsage, "sign: --key pki/approver.key does not belong to --cert"},
		{"fail approve with another's key is 2", nil, []string{"approve", "--no-image-check", "--cert", "pki/approver.pem", "--key", "pki/creator.key", "x.json"}, exitUsage, "approve: --key pki/creator.key does not belong"},
		{"fail register with another CA's key is 2", nil, []string{"register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/people-ca.key", "--expires", "30d", "y.json"}, exitUsage, "does not belong"},
		{"fail revoke with another CA's key is 2", nil, []string{"revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/people-ca.key", "--crl", "pki/registrar-ca.crl", "--resign"}, exitUsage, "does not belong"},
		// a file named on the command line that can't be read: usage
		{"fail describe a missing image is 2", nil, []string{"describe", "missing.qcow2", "--vo", "demo", "--tag", "worker"}, exitUsage, "describe: open missing.qcow2"},
		{"fail sign a missing descriptor is 2", nil, []string{"sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "missing.json"}, exitUsage, "sign: open missing.json"},
		{"fail sign with a missing --cert is 2", nil, []string{"sign", "--force", "--cert", "missing.pem", "--key", "pki/creator.key", "u.json"}, exitUsage, "missing.pem"},
		{"fail sign with a missing --key is 2", nil, []string{"sign", "--force", "--cert", "pki/creator.pem", "--key", "missing.key", "u.json"}, exitUsage, "missing.key"},
		{"fail approve a missing descriptor is 2", nil, []string{"approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "missing.json"}, exitUsage, "approve: open missing.json"},
		{"fail approve with a missing --image is 2", nil, []string{"approve", "--image", "missing.qcow2", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "x.json"}, exitUsage, "approve: --image: open missing.qcow2"},
		{"fail register a missing descriptor is 2", nil, with(reg, "missing.json"), exitUsage, "register: open missing.json"},
		{"fail verify a missing descriptor is 2", nil, []string{"verify", "--config", "pki/imagetrust.toml", "missing.json"}, exitUsage, "verify: open missing.json"},
		{"fail verify with a missing --image is 2", nil, []string{"verify", "--config", "pki/imagetrust.toml", "--image", "missing.qcow2", "w.json"}, exitUsage, "verify: --image: open missing.qcow2"},
		{"fail inspect a missing descriptor is 2", nil, []string{"inspect", "missing.json"}, exitUsage, "inspect: open missing.json"},
		{"fail revoke a missing --cert is 2", nil, []string{"revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--crl", "pki/registrar-ca.crl", "--cert", "missing.crt"}, exitUsage, "missing.crt"},
		{"fail revoke --resign a missing --crl is 2", nil, []string{"revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--crl", "missing.crl", "--resign"}, exitUsage, "revoke: --crl: open missing.crl"},
		// a bundle read and found wanting: a failed check
		{"fail verify an unsigned descriptor is 1", nil, []string{"verify", "--config", "pki/imagetrust.toml", "u.json"}, exitInvalid, "verify: check signatures: u.json is not signed: there is no u.json.p7s: the creator signs first (imagetrust sign)"},
		{"fail approve an unsigned descriptor is 1", nil, []string{"approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "u.json"}, exitInvalid, "u.json.p7s"},
		// the daemons' configuration: no cloud, a bad file, the TLS key pair
		{"fail sync without a cloud is 2", nil, []string{"sync", "--once", "--config", "pki/imagetrust.toml"}, exitUsage, "sync: no cloud"},
		{"fail crl without a cloud is 2", nil, []string{"crl", "--once", "--config", "pki/imagetrust.toml"}, exitUsage, "crl: no cloud"},
		{"fail proxy without a cloud is 2", nil, []string{"proxy", "--config", proxyCfg("")}, exitUsage, "proxy: no cloud"},
		// a trust store no image can chain to: a site-wide outage from one
		// edit, refused as the CRL job refuses it (crl.ErrNoTrust)
		{"fail sync with no Registrar CA is 2, before Keystone", cloud, []string{"sync", "--once", "--config", noRegistrar("pki/imagetrust.toml")}, exitUsage, "no Registrar CA (trust.registrar_ca_files)"},
		{"fail sync --dry-run with no Registrar CA is 2, before Keystone", cloud, []string{"sync", "--dry-run", "--config", noRegistrar("pki/imagetrust.toml")}, exitUsage, "no Registrar CA (trust.registrar_ca_files)"},
		{"fail proxy with no Registrar CA is 2, before Keystone", cloud, []string{"proxy", "--config", noRegistrar(proxyCfg(""))}, exitUsage, "no Registrar CA (trust.registrar_ca_files)"},
		{"fail sync with a missing config says sync", nil, []string{"sync", "--once", "--config", "missing.toml"}, exitUsage, "sync: config"},
		{"fail proxy with a missing tls_cert is 2, before Keystone", cloud, []string{"proxy", "--config", proxyCfg(fmt.Sprintf("tls_cert = %q\ntls_key = %q\n", filepath.Join(dir, "missing.pem"), keyFile))}, exitUsage, "proxy.tls_cert"},
		{"fail proxy with a mismatched tls_key is 2, before Keystone", cloud, []string{"proxy", "--config", proxyCfg(fmt.Sprintf("tls_cert = %q\ntls_key = %q\n", certFile, otherKey))}, exitUsage, "proxy.tls_key"},
		{"fail proxy with tls_cert alone is 2, before Keystone", cloud, []string{"proxy", "--config", proxyCfg(fmt.Sprintf("tls_cert = %q\n", certFile))}, exitUsage, "proxy.tls_cert and proxy.tls_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			code, out, errs := cliEnv(t, dir, tc.vars, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d (want %d), stderr lacks %q:\n%s%s", code, tc.code, tc.want, out, errs)
			}
			if n := hits.Load() - before; n > 0 {
				t.Fatalf("%d requests to the auth_url", n)
			}
		})
	}
}

// TestCLIAuthURLSecrets: a password (or a token) in auth_url is refused at
// configuration time, never echoed and never sent (exit 2, no request),
// from the OS_* variables and from clouds.yaml alike, as the index and
// CRL source URLs are; and an auth_url pointing at some web server logs at
// most oserr.MaxText bytes of gophercloud's error (which holds the page).
func TestCLIAuthURLSecrets(t *testing.T) {
	dir := publish(t)
	lockFileIn(t, dir)
	var hits atomic.Int32
	keystone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer keystone.Close()
	page := strings.Repeat("<p>the intranet home page, with internal links</p>\n", 400) + "END OF THE PAGE"
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, page)
	}))
	defer web.Close()
	host := strings.TrimPrefix(keystone.URL, "http://")
	vars := func(authURL string) map[string]string {
		return map[string]string{"OS_AUTH_URL": authURL, "OS_USERNAME": "u", "OS_PASSWORD": "p",
			"OS_PROJECT_NAME": "p", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"}
	}
	yaml := fmt.Sprintf("clouds:\n  c:\n    auth:\n      auth_url: http://admin:hunter2@%s/v3\n      username: u\n      password: p\n      project_name: p\n      user_domain_name: Default\n      project_domain_name: Default\n", host)
	testpki.WriteFile(t, dir, "clouds.yaml", []byte(yaml))
	for _, tc := range []struct {
		name   string
		vars   map[string]string
		cmd    string
		code   int
		want   string
		secret string // never in the output
	}{
		{"fail OS_AUTH_URL with a password", vars("http://user:hunter2@" + host + "/v3"), "sync", exitUsage, "sync: auth_url: not a URL without credentials", "hunter2"},
		{"fail OS_AUTH_URL with a token as the user", vars("http://gAAAAtok3n@" + host + "/v3"), "crl", exitUsage, "crl: auth_url: not a URL without credentials", "gAAAAtok3n"},
		{"fail clouds.yaml auth_url with a password", map[string]string{"OS_CLOUD": "c", "OS_CLIENT_CONFIG_FILE": filepath.Join(dir, "clouds.yaml")}, "sync", exitUsage, "auth_url: not a URL without credentials", "hunter2"},
		{"fail auth_url at a web page: the error is capped", vars(web.URL + "/v3"), "sync", exitInvalid, "more bytes", "END OF THE PAGE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			code, out, errs := cliEnv(t, dir, tc.vars, tc.cmd, "--once", "--config", "pki/imagetrust.toml")
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d (want %d), stderr lacks %q:\n%s%s", code, tc.code, tc.want, out, errs)
			}
			if strings.Contains(out+errs, tc.secret) {
				t.Fatalf("the output holds %q:\n%s%s", tc.secret, out, errs)
			}
			if len(errs) > 4*oserr.MaxText {
				t.Fatalf("%d bytes of log", len(errs))
			}
			if n := hits.Load() - before; n > 0 {
				t.Fatalf("%d requests to the auth_url", n)
			}
		})
	}
	if r := redactURL("http://user:hunter2@keystone:5000/v3"); strings.Contains(r, "hunter2") || !strings.Contains(r, "keystone:5000") {
		t.Fatalf("redactURL: %s", r)
	}
}
