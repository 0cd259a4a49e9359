package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/fsutil"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/validator"
)

func init() {
	register("revoke", "a CA: add certificates to its CRL (or lift a hold) and re-sign it", cmdRevoke)
}

// CRL extensions revoke carries over from the CRL it rewrites; a CRL with any
// other extension (a delta CRL indicator, say) was made by another tool and
// is left to it.
var (
	oidAuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber      = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidIssuingDP      = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidReasonCode     = asn1.ObjectIdentifier{2, 5, 29, 21}
)

func cmdRevoke(_ context.Context, e *env, args []string) int {
	fs := newFlags(e, "revoke", "--ca C --ca-key K --crl FILE ((--serial HEX | --cert FILE)... [--reason R] | --resign | --init)")
	caFile := fs.String("ca", "", "the CA certificate (PEM)")
	caKey := fs.String("ca-key", "", "the CA private key (PEM)")
	passFile := fs.String("key-pass-file", "", "file whose first line is the CA key's passphrase")
	crlFile := fs.String("crl", "", "the CRL file to update (created when missing; PEM)")
	reason := fs.String("reason", "keyCompromise", "RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, removeFromCRL (lifts a hold), privilegeWithdrawn, aACompromise")
	next := fs.String("next-update", "30d", "nextUpdate of the new CRL (date or duration)")
	at := fs.String("at", "", "revocation time, not in the future (RFC 3339; default now)")
	resign := fs.Bool("resign", false, "re-issue the existing CRL unchanged but for a new number, thisUpdate and nextUpdate")
	initCRL := fs.Bool("init", false, "issue a new CA's first CRL: empty, number 1 (refused when --crl exists)")
	var serials, certs multiFlag
	fs.Var(&serials, "serial", "serial number (hex) to revoke; repeatable")
	fs.Var(&certs, "cert", "certificate file to revoke; repeatable")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return usageExit(err)
	}
	modes := 0
	for _, on := range []bool{len(serials)+len(certs) > 0, *resign, *initCRL} {
		if on {
			modes++
		}
	}
	if *caFile == "" || *caKey == "" || *crlFile == "" || modes != 1 {
		fs.Usage()
		return fail(e, exitUsage, "revoke: --ca, --ca-key, --crl and one of: at least one --serial or --cert, --resign, or --init, are required")
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
		if t.After(now) {
			return fail(e, exitUsage, "revoke: --at %s is in the future: a revocation dated later would leave valid every image registered before it", *at)
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
			return fail(e, exitUsage, "revoke: --cert %s was issued by %q, not by this CA (%q)", f, validator.IssuerName(cs[0]), validator.SubjectName(cas[0]))
		}
		if err := cs[0].CheckSignatureFrom(cas[0]); err != nil {
			// the same name, another key (the CA re-keyed): sites match CRL
			// entries by issuer name and key, so this CRL would revoke
			// nothing there
			return fail(e, exitUsage, "revoke: --cert %s was not signed by the key of --ca %s (%v): revoke it with the CA certificate and key that issued it", f, *caFile, err)
		}
		targets = append(targets, cs[0].SerialNumber)
	}
	tmpl := pki.CRLTemplate{NumberBig: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: nu}
	old, err := os.ReadFile(*crlFile)
	switch {
	case err == nil && *initCRL:
		return fail(e, exitInvalid, "revoke: --init: %s exists: this CA has a CRL already; re-issue it with --resign (a new CRL numbered 1 would look like a rollback to every site)", *crlFile)
	case err == nil:
		if err := carryOver(&tmpl, old, cas[0]); err != nil {
			return fail(e, exitInvalid, "revoke: existing %s: %v", *crlFile, err)
		}
	case errors.Is(err, os.ErrNotExist) && *resign:
		return fail(e, exitUsage, "revoke: --crl: %v: --resign re-issues an existing CRL; a new CA's first CRL is made with --init", err)
	case errors.Is(err, os.ErrNotExist):
	default:
		// a file named on the command line that can't be read: usage
		return fail(e, exitUsage, "revoke: --crl: %v", err)
	}
	var said []string
	for _, t := range targets {
		msg, err := applyRevocation(&tmpl, t, code, when)
		if err != nil {
			return fail(e, exitInvalid, "revoke: serial %x: %v; %s is unchanged", t, err, *crlFile)
		}
		said = append(said, msg)
	}
	der, err := pki.IssueCRL(tmpl, cas[0], key)
	if err != nil {
		return fail(e, exitInvalid, "revoke: %v", err)
	}
	if err := fsutil.WriteFileAtomic(*crlFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return fail(e, exitInvalid, "revoke: %v", err)
	}
	for _, s := range said {
		fmt.Fprintln(e.stdout, s)
	}
	fmt.Fprintf(e.stdout, "wrote %s: CRL number %s, %d entries, next update %s\n", *crlFile, tmpl.NumberBig, len(tmpl.Entries), nu.UTC().Format(time.RFC3339))
	return exitOK
}

// carryOver fills tmpl from the CRL the command rewrites: its entries as
// they are (serial, date and reason), its issuingDistributionPoint (its
// scope), and the next CRL number (any size RFC 5280 allows: a number that
// wrapped would look like a rollback to every site). It refuses a CRL this
// CA did not sign, and one with extensions revoke would drop.
func carryOver(tmpl *pki.CRLTemplate, der []byte, ca *x509.Certificate) error {
	rl, err := crl.Parse(der)
	if err != nil {
		return err
	}
	if err := rl.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("not signed by this CA: %w", err)
	}
	for _, x := range rl.Extensions {
		switch {
		case x.Id.Equal(oidAuthorityKeyID), x.Id.Equal(oidCRLNumber):
		case x.Id.Equal(oidIssuingDP):
			tmpl.IDP = x.Value
		default:
			return fmt.Errorf("has extension %s, which revoke would drop: update it with the tool that made it", x.Id)
		}
	}
	if rl.Number != nil {
		tmpl.NumberBig = new(big.Int).Add(rl.Number, big.NewInt(1))
	}
	for _, en := range rl.RevokedCertificateEntries {
		for _, x := range en.Extensions {
			if !x.Id.Equal(oidReasonCode) {
				return fmt.Errorf("entry %x has extension %s, which revoke would drop: update it with the tool that made it", en.SerialNumber, x.Id)
			}
		}
		r := en.ReasonCode
		if !hasReason(en) {
			r = -1
		}
		tmpl.Entries = append(tmpl.Entries, pki.Revoked{Serial: en.SerialNumber, Time: en.RevocationTime, Reason: r})
	}
	return nil
}

// hasReason reports whether a CRL entry carries a reasonCode extension.
func hasReason(en x509.RevocationListEntry) bool {
	for _, x := range en.Extensions {
		if x.Id.Equal(oidReasonCode) {
			return true
		}
	}
	return false
}

// applyRevocation adds the revocation of serial for reason at when to tmpl,
// or changes the entry it already has, by the rule that a revocation is
// never weakened by accident:
//
//   - removeFromCRL lifts a certificateHold (drops the entry) and nothing
//     else: a revocation is final;
//   - a certificateHold may become any revocation, dated at the hold's time
//     or --at, whichever is earlier;
//   - any other revocation may become a compromise one (unspecified,
//     keyCompromise, cACompromise, aACompromise: every image then invalid,
//     whatever its date), never a hold or a dated reason (affiliationChanged,
//     superseded, cessationOfOperation, privilegeWithdrawn), and never with
//     a later date;
//   - the same reason again leaves the entry as it is (its date too), so
//     re-running a command changes nothing.
//
// It returns what it did, for the user.
func applyRevocation(tmpl *pki.CRLTemplate, serial *big.Int, reason int, when time.Time) (string, error) {
	i := -1
	for j, en := range tmpl.Entries {
		if en.Serial.Cmp(serial) == 0 {
			i = j
		}
	}
	name := crl.ReasonName(reason)
	if i < 0 {
		if reason == crl.ReasonRemoveFromCRL {
			return "", errors.New("not on hold in this CRL: removeFromCRL only lifts a certificateHold")
		}
		tmpl.Entries = append(tmpl.Entries, pki.Revoked{Serial: serial, Time: when, Reason: reason})
		return fmt.Sprintf("revoked serial %x (%s)", serial, name), nil
	}
	cur := tmpl.Entries[i]
	curName := "no reason"
	if cur.Reason >= 0 {
		curName = crl.ReasonName(cur.Reason)
	}
	since := " since " + cur.Time.UTC().Format(time.RFC3339)
	switch {
	case cur.Reason == crl.ReasonCertificateHold && reason == crl.ReasonRemoveFromCRL:
		tmpl.Entries = append(tmpl.Entries[:i], tmpl.Entries[i+1:]...)
		return fmt.Sprintf("lifted hold of serial %x", serial), nil
	case reason == crl.ReasonRemoveFromCRL:
		return "", fmt.Errorf("revoked (%s)%s, not on hold: a revocation cannot be lifted", curName, since)
	case cur.Reason == reason || (cur.Reason < 0 && reason == crl.ReasonUnspecified):
		// (an unspecified reason is written as no reasonCode at all)
		return fmt.Sprintf("serial %x already revoked (%s)%s; entry unchanged", serial, name, since), nil
	case cur.Reason == crl.ReasonCertificateHold || compromiseReason(reason):
		t := cur.Time
		if when.Before(t) {
			t = when
		}
		tmpl.Entries[i] = pki.Revoked{Serial: serial, Time: t, Reason: reason}
		return fmt.Sprintf("revoked serial %x (%s, was %s), dated %s", serial, name, curName, t.UTC().Format(time.RFC3339)), nil
	}
	return "", fmt.Errorf("already revoked (%s)%s: it can become keyCompromise, cACompromise, aACompromise or unspecified, but not %s", curName, since, name)
}

// compromiseReason reports whether a revocation for reason invalidates
// every image whatever its date (crl.RevocationApplies); -1, no reason,
// reads as unspecified.
func compromiseReason(reason int) bool {
	switch reason {
	case -1, crl.ReasonUnspecified, crl.ReasonKeyCompromise, crl.ReasonCACompromise, crl.ReasonAACompromise:
		return true
	}
	return false
}
