package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/fsutil"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/validator"
)

func init() {
	register("pki", "pki init DIR: a demonstration PKI (NOT for production)", cmdPKI)
	register("revoke", "a CA: add certificates to its CRL (or lift a hold) and re-sign it", cmdRevoke)
}

const demoWarning = `
  *******************************************************************
  *  DEMONSTRATION PKI - NOT FOR PRODUCTION                         *
  *  Its private keys are unencrypted files. Real sites use their   *
  *  IGTF CAs for people and a Registrar CA kept offline or in HSM. *
  *******************************************************************
`

func cmdPKI(_ context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(e.stderr, "usage: imagetrust pki init [--vo VO] [--force] DIR")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	fs := newFlags(e, "pki init", "[--vo VO] DIR")
	vo := fs.String("vo", "demo", "the VO of the demonstration creator and approver")
	force := fs.Bool("force", false, "overwrite an existing demonstration PKI")
	pos, err := parseArgs(fs, args[1:], 1, 1)
	if err != nil {
		return usageExit(err)
	}
	dir := pos[0]
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
`, *vo, cdn.OneLine(), approver.Subject.String())
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

func cmdRevoke(_ context.Context, e *env, args []string) int {
	fs := newFlags(e, "revoke", "--ca C --ca-key K --crl FILE (--serial HEX | --cert FILE)... [--reason R]")
	caFile := fs.String("ca", "", "the CA certificate (PEM)")
	caKey := fs.String("ca-key", "", "the CA private key (PEM)")
	passFile := fs.String("key-pass-file", "", "file whose first line is the CA key's passphrase")
	crlFile := fs.String("crl", "", "the CRL file to update (created when missing; PEM)")
	reason := fs.String("reason", "keyCompromise", "RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, removeFromCRL, privilegeWithdrawn")
	next := fs.String("next-update", "30d", "nextUpdate of the new CRL (date or duration)")
	at := fs.String("at", "", "revocation time (RFC 3339; default now)")
	var serials, certs multiFlag
	fs.Var(&serials, "serial", "serial number (hex) to revoke; repeatable")
	fs.Var(&certs, "cert", "certificate file to revoke; repeatable")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return usageExit(err)
	}
	if *caFile == "" || *caKey == "" || *crlFile == "" || len(serials)+len(certs) == 0 {
		fs.Usage()
		return fail(e, exitUsage, "revoke: --ca, --ca-key, --crl and at least one --serial or --cert are required")
	}
	code := -1
	for c := 0; c <= 10; c++ {
		if crl.ReasonName(c) == *reason {
			code = c
		}
	}
	if code < 0 || code == 7 {
		return fail(e, exitUsage, "revoke: --reason %q: unknown", *reason)
	}
	now := nowFunc()
	when := now
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fail(e, exitUsage, "revoke: --at: not RFC 3339")
		}
		when = t
	}
	nu, err := parseWhen(*next, now)
	if err != nil {
		return fail(e, exitUsage, "revoke: --next-update: %v", err)
	}
	cas, key, err := loadCA(e, *caFile, *caKey, *passFile)
	if err != nil {
		return fail(e, exitUsage, "revoke: %v", err)
	}
	var targets []*big.Int
	for _, s := range serials {
		n, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ReplaceAll(strings.ToLower(s), ":", ""), "0x"), 16)
		if !ok || n.Sign() <= 0 {
			return fail(e, exitUsage, "revoke: --serial %q: not a positive hex number", s)
		}
		targets = append(targets, n)
	}
	for _, f := range certs {
		cs, err := validator.ReadCertificates(f)
		if err != nil {
			return fail(e, exitUsage, "revoke: --cert: %v", err)
		}
		if !bytes.Equal(cs[0].RawIssuer, cas[0].RawSubject) {
			return fail(e, exitUsage, "revoke: --cert %s was issued by %q, not by this CA", f, cs[0].Issuer)
		}
		targets = append(targets, cs[0].SerialNumber)
	}
	tmpl := pki.CRLTemplate{Number: 1, ThisUpdate: now.Add(-time.Minute), NextUpdate: nu}
	if old, err := os.ReadFile(*crlFile); err == nil {
		rl, err := crl.Parse(old)
		if err != nil {
			return fail(e, exitInvalid, "revoke: existing %s: %v", *crlFile, err)
		}
		if err := rl.CheckSignatureFrom(cas[0]); err != nil {
			return fail(e, exitInvalid, "revoke: existing %s was not signed by this CA: %v", *crlFile, err)
		}
		if rl.Number != nil {
			tmpl.Number = rl.Number.Int64() + 1
		}
		for _, en := range rl.RevokedCertificateEntries {
			drop := false
			for _, t := range targets {
				if t.Cmp(en.SerialNumber) == 0 {
					drop = true // replaced by the new entry
				}
			}
			if !drop && en.ReasonCode != crl.ReasonRemoveFromCRL {
				tmpl.Entries = append(tmpl.Entries, pki.Revoked{Serial: en.SerialNumber, Time: en.RevocationTime, Reason: en.ReasonCode})
			}
		}
	}
	// Lifting a hold (removeFromCRL) drops the entries from the full CRL.
	if code != crl.ReasonRemoveFromCRL {
		for _, t := range targets {
			tmpl.Entries = append(tmpl.Entries, pki.Revoked{Serial: t, Time: when, Reason: code})
		}
	}
	der, err := pki.IssueCRL(tmpl, cas[0], key)
	if err != nil {
		return fail(e, exitInvalid, "revoke: %v", err)
	}
	if err := fsutil.WriteFileAtomic(*crlFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return fail(e, exitInvalid, "revoke: %v", err)
	}
	for _, t := range targets {
		fmt.Fprintf(e.stdout, "%s serial %x (%s)\n", map[bool]string{true: "lifted hold of", false: "revoked"}[code == crl.ReasonRemoveFromCRL], t, *reason)
	}
	fmt.Fprintf(e.stdout, "wrote %s: CRL number %d, %d entries, next update %s\n", *crlFile, tmpl.Number, len(tmpl.Entries), nu.UTC().Format(time.RFC3339))
	return exitOK
}
