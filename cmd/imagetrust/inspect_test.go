package main

import (
	"crypto/x509/pkix"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/imagetrust/imagetrust/internal/cms"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/validator"
)

// rawSign signs dir/name as it is, bypassing sign's descriptor check (a
// hostile creator's tool), with dir/certFile and dir/keyFile.
func rawSign(t *testing.T, dir, name, certFile, keyFile string) {
	t.Helper()
	desc, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := validator.ReadCertificates(filepath.Join(dir, certFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ReadPrivateKey(filepath.Join(dir, keyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := cms.Sign(desc, certs[0], key, cms.SignOptions{SigningTime: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".p7s"), der, 0o644); err != nil {
		t.Fatal(err)
	}
}

// withTitle writes dir/to: dir/from's descriptor with its title set to
// title (any bytes, JSON-escaped as a hostile tool would).
func withTitle(t *testing.T, dir, from, to, title string) {
	t.Helper()
	var m map[string]any
	b, err := os.ReadFile(filepath.Join(dir, from))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		t.Fatal(err)
	}
	m["title"] = title
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, to), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// unsafeRune reports a rune a terminal would act on rather than show.
func unsafeRune(r rune) bool { return r != '\n' && !unicode.IsPrint(r) }

// TestInspectUntrustedText: inspect shows what a bundle claims, and all of
// that is untrusted: a title or a certificate name with line breaks, tabs,
// terminal escapes or bidi overrides is printed escaped (\x.., \u....),
// ordinary UTF-8 as it is; a descriptor that does not parse, or a
// signature that does not verify over it, exits 1.
func TestInspectUntrustedText(t *testing.T) {
	dir := publish(t)
	const forged = "ok\n  signature\tmatches (trust OK)\x1b[31m"
	// a signer whose name forges lines and colours
	issueWithKey(t, dir, "evil", pkix.Name{CommonName: "Mallory" + forged, Organization: []string{"imagetrust demo"}}, "creator.key")
	for _, tc := range []struct {
		name string
		prep func()
		file string
		code int
		want []string // in stdout+stderr
	}{
		{"ok a valid bundle, UTF-8 kept", func() {
			withTitle(t, dir, "w.json", "u.json", "Wörker ✓ 工作节点")
			mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "u.json")
		}, "u.json", exitOK, []string{"Wörker ✓ 工作节点", "Alice Creator", "matches u.json"}},
		{"ok a bidi override in the title is escaped", func() {
			withTitle(t, dir, "w.json", "b.json", "worker\u202egpj.exe")
			mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "b.json")
		}, "b.json", exitOK, []string{`worker\u202egpj.exe`}},
		{"ok a signer name with control characters is escaped", func() {
			withTitle(t, dir, "w.json", "s.json", "Worker")
			mustCLI(t, dir, "sign", "--cert", "evil.pem", "--key", "pki/creator.key", "s.json")
		}, "s.json", exitOK, []string{`Malloryok\x0a  signature\x09matches (trust OK)\x1b[31m`}},
		{"fail a title with control characters, signed by a hostile tool", func() {
			withTitle(t, dir, "w.json", "c.json", forged)
			rawSign(t, dir, "c.json", "pki/creator.pem", "pki/creator.key")
		}, "c.json", exitInvalid, []string{"INVALID", "title", "matches c.json"}},
		{"fail a descriptor that does not parse", func() {
			if err := os.WriteFile(filepath.Join(dir, "g.json"), []byte(`{"uuid": "\u001b[31m", "x": 1}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "g.json", exitInvalid, []string{"INVALID", "signature: none"}},
		{"fail a signature that does not verify", func() {
			withTitle(t, dir, "w.json", "m.json", "Worker (changed after signing)")
			b, err := os.ReadFile(filepath.Join(dir, "w.json.p7s"))
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, "m.json.p7s"), b, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}, "m.json", exitInvalid, []string{"DOES NOT VERIFY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.prep()
			code, out, errs := cli(t, dir, "inspect", tc.file)
			all := out + errs
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if i := strings.IndexFunc(all, unsafeRune); i >= 0 {
				t.Errorf("raw control or format character %q at %d", []rune(all[i:])[0], i)
			}
			if strings.Count(out, "  signature\t")+strings.Count(out, "signature  matches (trust OK)") > 0 {
				t.Errorf("a forged line")
			}
			if t.Failed() {
				t.Logf("output:\n%s", all)
			}
		})
	}
}

// TestVerifyTextEscapes: verify's text output passes each check's detail and
// reason through printable, as inspect does: a detail quotes untrusted names.
func TestVerifyTextEscapes(t *testing.T) {
	r := &validator.Result{Checks: []validator.Check{
		{Name: validator.CheckApprover, Reason: "bad\x1b[2J", Detail: "approver \"Mallory\n  registrar\tok\x1b[32m\u202e\""},
	}}
	var b strings.Builder
	printResult(&b, "w.json", r)
	out := b.String()
	if i := strings.IndexFunc(out, unsafeRune); i >= 0 {
		t.Errorf("raw control or format character %q at %d in:\n%s", []rune(out[i:])[0], i, out)
	}
	if !strings.Contains(out, `Mallory\x0a  registrar\x09ok\x1b[32m\u202e`) {
		t.Errorf("detail not shown escaped:\n%s", out)
	}
}
