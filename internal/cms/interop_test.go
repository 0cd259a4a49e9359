package cms

import (
	"bytes"
	"crypto"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// The tests in this file run the real openssl command (OpenSSL 3) in both
// directions. The recipes they use are written up in testdata/OPENSSL-RECIPES.md.

// opensslDir is a temporary directory holding the test PKI and the descriptor
// as files, and runs openssl in it.
type opensslDir struct {
	t   *testing.T
	dir string
	bin string
}

func newOpensslDir(t *testing.T, p *testPKI) *opensslDir {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not on PATH")
	}
	d := &opensslDir{t: t, dir: t.TempDir(), bin: bin}
	testpki.WriteFile(t, d.dir, "desc.json", descriptor)
	testpki.WriteFile(t, d.dir, "ca.pem", testpki.CertPEM(p.root.Cert))
	testpki.WriteFile(t, d.dir, "inter.pem", testpki.CertPEM(p.inter.Cert))
	for name, l := range map[string]*testpki.Leaf{"creator": p.creator, "approver": p.approver, "image": p.image} {
		testpki.WriteFile(t, d.dir, name+".pem", testpki.CertPEM(l.Cert))
		testpki.WriteFile(t, d.dir, name+".key", testpki.KeyPEM(t, l.Key))
	}
	return d
}

// run runs openssl with args in the directory and returns its combined output and error.
func (d *opensslDir) run(args ...string) (string, error) {
	d.t.Helper()
	cmd := exec.Command(d.bin, args...)
	cmd.Dir = d.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs openssl and fails the test if it fails.
func (d *opensslDir) must(args ...string) {
	d.t.Helper()
	if out, err := d.run(args...); err != nil {
		d.t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (d *opensslDir) read(name string) []byte {
	d.t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, name))
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

func (d *opensslDir) write(name string, b []byte) {
	d.t.Helper()
	testpki.WriteFile(d.t, d.dir, name, b)
}

// verify runs openssl cms -verify on a DER file against ca.pem.
func (d *opensslDir) verify(name string) (string, error) {
	d.t.Helper()
	return d.run("cms", "-verify", "-binary", "-inform", "DER", "-in", name, "-content", "desc.json",
		"-CAfile", "ca.pem", "-purpose", "any", "-out", os.DevNull)
}

// verifyAll parses b and verifies every signer over the descriptor; it
// returns the signers' common names.
func verifyAll(t *testing.T, b []byte) []string {
	t.Helper()
	sd, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var names []string
	for _, s := range sd.Signers {
		if err := s.Verify(descriptor); err != nil {
			t.Errorf("Verify %s: %v", s.Certificate.Subject.CommonName, err)
		}
		names = append(names, s.Certificate.Subject.CommonName+"/"+s.SignatureAlgorithm.String())
	}
	return names
}

func TestInteropOpensslMadeVerifiesHere(t *testing.T) {
	p := newTestPKI(t)
	d := newOpensslDir(t, p)
	sign := []string{"cms", "-sign", "-binary", "-in", "desc.json", "-certfile", "inter.pem", "-outform", "DER"}
	resign := []string{"cms", "-resign", "-binary", "-inform", "DER", "-outform", "DER"}

	cases := []struct {
		name  string
		steps [][]string
		out   string
		want  int // signers
	}{
		{"ok sign then resign twice (RSA v1.5, ECDSA P-256, ECDSA P-384, SHA-256)", [][]string{
			append(sign, "-signer", "creator.pem", "-inkey", "creator.key", "-md", "sha256", "-out", "s1.p7s"),
			append(resign, "-in", "s1.p7s", "-signer", "approver.pem", "-inkey", "approver.key", "-md", "sha256", "-out", "s2.p7s"),
			append(resign, "-in", "s2.p7s", "-signer", "image.pem", "-inkey", "image.key", "-md", "sha256", "-out", "s3.p7s"),
		}, "s3.p7s", 3},
		{"ok RSA-PSS SHA-512 creator then resign ECDSA", [][]string{
			append(sign, "-signer", "creator.pem", "-inkey", "creator.key", "-keyopt", "rsa_padding_mode:pss", "-md", "sha512", "-out", "p1.p7s"),
			append(resign, "-in", "p1.p7s", "-signer", "approver.pem", "-inkey", "approver.key", "-md", "sha512", "-out", "p2.p7s"),
		}, "p2.p7s", 2},
		{"ok two signers in one command, PSS SHA-384 with explicit salt", [][]string{
			append(sign, "-signer", "creator.pem", "-inkey", "creator.key", "-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:48",
				"-signer", "image.pem", "-inkey", "image.key", "-md", "sha384", "-out", "m.p7s"),
		}, "m.p7s", 2},
		{"ok PEM output", [][]string{
			{"cms", "-sign", "-binary", "-in", "desc.json", "-certfile", "inter.pem", "-signer", "approver.pem", "-inkey", "approver.key", "-md", "sha256", "-outform", "PEM", "-out", "s.pem"},
		}, "s.pem", 1},
		{"ok no signed attributes", [][]string{
			append(sign, "-noattr", "-signer", "creator.pem", "-inkey", "creator.key", "-md", "sha256", "-out", "n.p7s"),
		}, "n.p7s", 1},
		{"ok subject key identifier sid", [][]string{
			append(sign, "-keyid", "-signer", "approver.pem", "-inkey", "approver.key", "-md", "sha384", "-out", "k.p7s"),
		}, "k.p7s", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d.t = t
			for _, s := range c.steps {
				d.must(s...)
			}
			names := verifyAll(t, d.read(c.out))
			if len(names) != c.want {
				t.Errorf("got signers %v, want %d", names, c.want)
			}
			t.Logf("signers: %v", names)
		})
	}
}

func TestInteropOpensslMadeRefusedHere(t *testing.T) {
	p := newTestPKI(t)
	d := newOpensslDir(t, p)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"fail SHA-1", []string{"-md", "sha1", "-outform", "DER"}, "SHA-1"},
		{"fail MD5", []string{"-md", "md5", "-outform", "DER"}, "MD5"},
		{"fail SHA-224", []string{"-md", "sha224", "-outform", "DER"}, "SHA-224"},
		{"fail streamed BER", []string{"-md", "sha256", "-stream", "-outform", "PEM"}, "indefinite-length"},
		{"fail attached content", []string{"-md", "sha256", "-nodetach", "-outform", "DER"}, "detached"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d.t = t
			args := append([]string{"cms", "-sign", "-binary", "-in", "desc.json", "-signer", "creator.pem", "-inkey", "creator.key", "-out", "bad"}, c.args...)
			if out, err := d.run(args...); err != nil {
				t.Skipf("this openssl cannot make it: %v\n%s", err, out)
			}
			_, err := Parse(d.read("bad"))
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a *cms.Error containing %q", err, c.want)
			}
		})
	}
}

func TestInteropSignedWithoutBinary(t *testing.T) {
	p := newTestPKI(t)
	d := newOpensslDir(t, p)
	d.must("cms", "-sign", "-in", "desc.json", "-signer", "creator.pem", "-inkey", "creator.key", "-md", "sha256", "-outform", "DER", "-out", "nb.p7s")
	sd, err := Parse(d.read("nb.p7s"))
	if err != nil {
		t.Fatal(err)
	}
	err = sd.Signers[0].Verify(descriptor)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Reason, "message digest mismatch") {
		t.Fatalf("fail signed without -binary: got %v, want a message digest mismatch", err)
	}
}

func TestInteropMadeHereVerifiesWithOpenssl(t *testing.T) {
	p := newTestPKI(t)
	d := newOpensslDir(t, p)
	d.write("ours.p7s", p.bundle3(t))
	if out, err := d.verify("ours.p7s"); err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, out)
	}

	t.Run("fail openssl refuses other content", func(t *testing.T) {
		d.t = t
		d.write("other.json", []byte(`{"uuid":"other"}`))
		out, err := d.run("cms", "-verify", "-binary", "-inform", "DER", "-in", "ours.p7s", "-content", "other.json",
			"-CAfile", "ca.pem", "-purpose", "any", "-out", os.DevNull)
		if err == nil {
			t.Fatalf("openssl verified a tampered descriptor\n%s", out)
		}
	})

	t.Run("fail openssl checks every signer", func(t *testing.T) {
		d.t = t
		stranger := testpki.NewRoot(t, "Stranger Root").Leaf(testpki.Name("Stranger"))
		der, err := AddSigner(d.read("ours.p7s"), descriptor, stranger.Cert, stranger.Key, SignOptions{Hash: crypto.SHA512})
		if err != nil {
			t.Fatal(err)
		}
		d.write("stranger.p7s", der)
		if out, err := d.verify("stranger.p7s"); err == nil {
			t.Fatalf("openssl accepted a signer from an untrusted root\n%s", out)
		}
	})

	t.Run("ok openssl resigns ours, we and openssl verify", func(t *testing.T) {
		d.t = t
		first, err := Sign(descriptor, p.approver.Cert, p.approver.Key, SignOptions{Chain: p.approver.Chain})
		if err != nil {
			t.Fatal(err)
		}
		d.write("ours1.p7s", first)
		d.must("cms", "-resign", "-binary", "-inform", "DER", "-in", "ours1.p7s", "-signer", "creator.pem", "-inkey", "creator.key",
			"-md", "sha256", "-outform", "DER", "-out", "mixed.p7s")
		mixed := d.read("mixed.p7s")
		if n := len(verifyAll(t, mixed)); n != 2 {
			t.Fatalf("got %d signers, want 2", n)
		}
		sd, err := Parse(first)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(mixed, sd.Signers[0].Raw) {
			t.Error("openssl changed our SignerInfo")
		}
		if out, err := d.verify("mixed.p7s"); err != nil {
			t.Fatalf("openssl cms -verify: %v\n%s", err, out)
		}
	})

	t.Run("ok we add a signer to openssl's, openssl verifies", func(t *testing.T) {
		d.t = t
		d.must("cms", "-sign", "-binary", "-in", "desc.json", "-certfile", "inter.pem", "-signer", "creator.pem", "-inkey", "creator.key",
			"-keyopt", "rsa_padding_mode:pss", "-md", "sha256", "-outform", "PEM", "-out", "theirs.pem")
		der, err := AddSigner(d.read("theirs.pem"), descriptor, p.image.Cert, p.image.Key, SignOptions{Hash: crypto.SHA512})
		if err != nil {
			t.Fatal(err)
		}
		d.write("theirs2.p7s", der)
		if n := len(verifyAll(t, der)); n != 2 {
			t.Fatalf("got %d signers, want 2", n)
		}
		if out, err := d.verify("theirs2.p7s"); err != nil {
			t.Fatalf("openssl cms -verify: %v\n%s", err, out)
		}
	})
}
