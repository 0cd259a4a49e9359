package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/internal/fsutil"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/validator"
)

func init() {
	register("pki", "pki init DIR: a demonstration PKI (NOT for production)", cmdPKI)
}

const demoWarning = `
  *******************************************************************
  *  DEMONSTRATION PKI - NOT FOR PRODUCTION                         *
  *  Its private keys are unencrypted files. Real sites use their   *
  *  IGTF CAs for people and a Registrar CA kept offline or in HSM. *
  *******************************************************************
`

func cmdPKI(_ context.Context, e *env, args []string) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		// pki has one subcommand: its help, options included
		args = []string{"init", "-h"}
	}
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(e.stderr, "usage: imagetrust pki init [--vo VO] [--force] DIR")
		return exitUsage
	}
	fs := newFlags(e, "pki init", "[--vo VO] [--force] DIR")
	vo := fs.String("vo", "demo", "the VO of the demonstration creator and approver")
	force := fs.Bool("force", false, "overwrite an existing demonstration PKI")
	pos, err := parseArgs(fs, args[1:], 1, 1)
	if err != nil {
		return usageExit(err)
	}
	dir := pos[0]
	if !validator.ValidName(*vo) {
		return fail(e, exitUsage, "pki init: --vo %q: not a VO name a descriptor may carry (letters, digits, '.', '_', '-')", *vo)
	}
	if _, err := os.Stat(filepath.Join(dir, "people-ca.pem")); err == nil && !*force {
		return fail(e, exitInvalid, "pki init: %s already holds a PKI (use --force to replace it)", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(e, exitInvalid, "pki init: %v", err)
	}
	now := nowFunc()
	name := func(cn string, ou string) pkix.Name {
		n := pkix.Name{CommonName: cn, Organization: []string{"imagetrust demo"}}
		if ou != "" {
			n.OrganizationalUnit = []string{ou}
		}
		return n
	}
	write := func(file string, b []byte, mode os.FileMode) error {
		return fsutil.WriteFileAtomic(filepath.Join(dir, file), b, mode)
	}
	// mk issues a certificate with a new key (self-signed when issuer is nil)
	// and writes FILE.pem and FILE.key.
	mk := func(tmpl pki.Template, issuer *x509.Certificate, issuerKey crypto.Signer, file string) (*x509.Certificate, crypto.Signer, error) {
		k, err := pki.NewKey(pki.ECDSAP256)
		if err != nil {
			return nil, nil, err
		}
		if issuerKey == nil {
			issuerKey = k
		}
		c, err := pki.Issue(tmpl, k.Public(), issuer, issuerKey)
		if err != nil {
			return nil, nil, err
		}
		kp, err := pki.EncodeKeyPEM(k)
		if err != nil {
			return nil, nil, err
		}
		if err := write(file+".key", kp, 0o600); err != nil {
			return nil, nil, err
		}
		if err := write(file+".pem", pki.EncodeCertPEM(c), 0o644); err != nil {
			return nil, nil, err
		}
		return c, k, nil
	}
	rootTmpl := func(cn string) pki.Template {
		return pki.Template{Subject: name(cn, ""), IsCA: true, MaxPathLen: 1, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0)}
	}
	peopleCA, peopleKey, err := mk(rootTmpl("imagetrust demo people CA"), nil, nil, "people-ca")
	if err != nil {
		return fail(e, exitInvalid, "pki init: %v", err)
	}
	regCA, regKey, err := mk(rootTmpl("imagetrust demo Registrar CA"), nil, nil, "registrar-ca")
	if err != nil {
		return fail(e, exitInvalid, "pki init: %v", err)
	}
	person := func(cn string) pki.Template {
		return pki.Template{Subject: name(cn, "Users"), NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)}
	}
	creator, _, err := mk(person("Alice Creator"), peopleCA, peopleKey, "creator")
	if err != nil {
		return fail(e, exitInvalid, "pki init: %v", err)
	}
	approver, _, err := mk(person("Bob Approver"), peopleCA, peopleKey, "approver")
	if err != nil {
		return fail(e, exitInvalid, "pki init: %v", err)
	}
	for _, c := range []struct {
		file string
		ca   *x509.Certificate
		key  crypto.Signer
	}{{"people-ca.crl", peopleCA, peopleKey}, {"registrar-ca.crl", regCA, regKey}} {
		der, err := pki.IssueCRL(pki.CRLTemplate{Number: 1, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.AddDate(0, 0, 30)}, c.ca, c.key)
		if err != nil {
			return fail(e, exitInvalid, "pki init: %v", err)
		}
		if err := write(c.file, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
			return fail(e, exitInvalid, "pki init: %v", err)
		}
	}
	cdn, _ := validator.DNFromRaw(creator.RawSubject)
	adn, _ := validator.DNFromRaw(approver.RawSubject)
	toml := fmt.Sprintf(`# imagetrust trust configuration for the DEMONSTRATION PKI made by
# 'imagetrust pki init'. NOT FOR PRODUCTION: see etc/imagetrust.toml for a
# commented site configuration.
[trust]
ca_files = ["people-ca.pem"]
registrar_ca_files = ["registrar-ca.pem"]
crl_files = ["people-ca.crl", "registrar-ca.crl"]

[vo.%s]
creators = [%q]
approvers = [%q]
`, tomlKey(*vo), cdn.OneLine(), approver.Subject.String())
	if err := write("imagetrust.toml", []byte(toml), 0o644); err != nil {
		return fail(e, exitInvalid, "pki init: %v", err)
	}
	if err := write("NOT-FOR-PRODUCTION.txt", []byte(strings.TrimLeft(demoWarning, "\n")), 0o644); err != nil {
		return fail(e, exitInvalid, "pki init: %v", err)
	}
	fmt.Fprint(e.stderr, demoWarning)
	fmt.Fprintf(e.stdout, "demonstration PKI in %s:\n", dir)
	fmt.Fprintf(e.stdout, "  people-ca.pem/.key      people CA (creators, approvers)\n")
	fmt.Fprintf(e.stdout, "  registrar-ca.pem/.key   Registrar CA (image certificates)\n")
	fmt.Fprintf(e.stdout, "  creator.pem/.key        %s (creator of VO %s)\n", cdn.OneLine(), *vo)
	fmt.Fprintf(e.stdout, "  approver.pem/.key       %s (approver of VO %s)\n", adn.OneLine(), *vo)
	fmt.Fprintf(e.stdout, "  people-ca.crl, registrar-ca.crl   empty CRLs, number 1\n")
	fmt.Fprintf(e.stdout, "  imagetrust.toml         trust configuration for 'imagetrust verify --config'\n")
	return exitOK
}

// tomlKey writes a table key: bare when TOML allows it, quoted otherwise
// (a VO name such as atlas.cern.ch).
func tomlKey(k string) string {
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return strconv.Quote(k)
		}
	}
	return k
}
