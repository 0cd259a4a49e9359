package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testutil"
	"github.com/imagetrust/imagetrust/validator"
)

// readCRL reads a PEM CRL file of dir.
func readCRL(t *testing.T, dir, name string) *x509.RevocationList {
	t.Helper()
	return testutil.ReadCRL(t, filepath.Join(dir, name))
}

// TestRevokeNeverWeakens checks revoke's rule for a serial its CRL already
// lists: a hold may be lifted or made final, a revocation can only become
// a compromise one, and the same command run again changes nothing (its
// date included). Each refusal leaves the CRL file as it was.
func TestRevokeNeverWeakens(t *testing.T) {
	const image, creator = "w.json.crt", "pki/creator.pem"
	reg := []string{"revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--crl", "pki/registrar-ca.crl", "--cert", image}
	ppl := []string{"revoke", "--ca", "pki/people-ca.pem", "--ca-key", "pki/people-ca.key", "--crl", "pki/people-ca.crl", "--cert", creator}
	with := func(base []string, more ...string) []string { return append(append([]string{}, base...), more...) }
	yesterday := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	type step struct {
		args []string
		code int    // revoke's exit code
		want string // in its output
	}
	for _, tc := range []struct {
		name   string
		steps  []step
		verify int    // verify's exit code at the end
		reason int    // the entry's reason at the end (-2: no entry)
		crlOf  string // the CRL to read at the end
	}{
		{name: "ok hold then lift", steps: []step{
			{with(reg, "--reason", "certificateHold"), exitOK, "(certificateHold)"},
			{with(reg, "--reason", "removeFromCRL"), exitOK, "lifted hold of serial"},
		}, verify: exitOK, reason: -2, crlOf: "pki/registrar-ca.crl"},
		{name: "fail lift a keyCompromise", steps: []step{
			{with(reg, "--reason", "keyCompromise"), exitOK, "(keyCompromise)"},
			{with(reg, "--reason", "removeFromCRL"), exitInvalid, "cannot be lifted"},
		}, verify: exitInvalid, reason: crl.ReasonKeyCompromise, crlOf: "pki/registrar-ca.crl"},
		{name: "fail keyCompromise to hold", steps: []step{
			{with(reg, "--reason", "keyCompromise"), exitOK, "revoked"},
			{with(reg, "--reason", "certificateHold"), exitInvalid, "not certificateHold"},
		}, verify: exitInvalid, reason: crl.ReasonKeyCompromise, crlOf: "pki/registrar-ca.crl"},
		{name: "fail lift what is not listed", steps: []step{
			{with(reg, "--reason", "removeFromCRL"), exitInvalid, "not on hold"},
		}, verify: exitOK, reason: -2, crlOf: "pki/registrar-ca.crl"},
		{name: "ok hold made final", steps: []step{
			{with(reg, "--reason", "certificateHold"), exitOK, "revoked"},
			{with(reg, "--reason", "superseded"), exitOK, "(superseded, was certificateHold)"},
		}, verify: exitInvalid, reason: crl.ReasonSuperseded, crlOf: "pki/registrar-ca.crl"},
		{name: "ok the same command again keeps the date", steps: []step{
			// the creator left yesterday, before the image was registered
			{with(ppl, "--reason", "affiliationChanged", "--at", yesterday), exitOK, "revoked"},
			{with(ppl, "--reason", "affiliationChanged"), exitOK, "entry unchanged"},
		}, verify: exitInvalid, reason: crl.ReasonAffiliationChanged, crlOf: "pki/people-ca.crl"},
		{name: "ok a dated revocation made a compromise", steps: []step{
			{with(ppl, "--reason", "affiliationChanged"), exitOK, "revoked"},
			{with(ppl, "--reason", "keyCompromise"), exitOK, "(keyCompromise, was affiliationChanged)"},
		}, verify: exitInvalid, reason: crl.ReasonKeyCompromise, crlOf: "pki/people-ca.crl"},
		{name: "fail a dated revocation made another", steps: []step{
			{with(ppl, "--reason", "affiliationChanged"), exitOK, "revoked"},
			{with(ppl, "--reason", "superseded"), exitInvalid, "not superseded"},
		}, verify: exitOK, reason: crl.ReasonAffiliationChanged, crlOf: "pki/people-ca.crl"},
		{name: "ok unspecified twice (written without a reasonCode)", steps: []step{
			{with(reg, "--reason", "unspecified"), exitOK, "(unspecified)"},
			{with(reg, "--reason", "unspecified"), exitOK, "entry unchanged"},
		}, verify: exitInvalid, reason: 0, crlOf: "pki/registrar-ca.crl"},
		{name: "fail a revocation in the future", steps: []step{
			{with(ppl, "--reason", "affiliationChanged", "--at", "2099-01-01T00:00:00Z"), exitUsage, "in the future"},
		}, verify: exitOK, reason: -2, crlOf: "pki/people-ca.crl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := publish(t)
			for _, s := range tc.steps {
				before, _ := os.ReadFile(filepath.Join(dir, tc.crlOf))
				code, out, errs := cli(t, dir, s.args...)
				if code != s.code || !strings.Contains(out+errs, s.want) {
					t.Fatalf("%v: exit %d (want %d), output lacks %q:\n%s%s", s.args, code, s.code, s.want, out, errs)
				}
				after, _ := os.ReadFile(filepath.Join(dir, tc.crlOf))
				if code != exitOK && !bytes.Equal(before, after) {
					t.Fatal("a refused revoke changed the CRL")
				}
			}
			if code, out, _ := cli(t, dir, "verify", "--config", "pki/imagetrust.toml", "w.json"); code != tc.verify {
				t.Fatalf("verify: exit %d, want %d\n%s", code, tc.verify, out)
			}
			rl := readCRL(t, dir, tc.crlOf)
			got := -2
			for _, en := range rl.RevokedCertificateEntries {
				got = en.ReasonCode
			}
			if len(rl.RevokedCertificateEntries) > 1 || got != tc.reason {
				t.Fatalf("entries %d, reason %d, want %d", len(rl.RevokedCertificateEntries), got, tc.reason)
			}
		})
	}
}

// TestRevokeCarriesOver checks what a rewritten CRL keeps: entry dates,
// the issuingDistributionPoint, and a CRL number past 64 bits (a number
// that wrapped would read as a rollback at every site); that --resign
// re-issues it unchanged but for its number and dates; and that a CRL with
// an extension revoke would drop is left alone.
func TestRevokeCarriesOver(t *testing.T) {
	dir := publish(t)
	cas, err := validator.ReadCertificates(filepath.Join(dir, "pki/registrar-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ReadPrivateKey(filepath.Join(dir, "pki/registrar-ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	write := func(tmpl pki.CRLTemplate) {
		der, err := pki.IssueCRL(tmpl, cas[0], key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "pki/registrar-ca.crl"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	huge := new(big.Int).Lsh(big.NewInt(1), 64)
	huge.Add(huge, big.NewInt(5))
	old := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	write(pki.CRLTemplate{NumberBig: huge, IDP: pki.IDPOnlyUserCerts, Entries: []pki.Revoked{{Serial: bigInt(77), Time: old, Reason: crl.ReasonSuperseded}}})
	args := []string{"revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--crl", "pki/registrar-ca.crl"}
	mustCLI(t, dir, append(args, "--cert", "w.json.crt", "--reason", "keyCompromise")...)
	rl := readCRL(t, dir, "pki/registrar-ca.crl")
	want := new(big.Int).Add(huge, bigInt(1))
	if rl.Number.Cmp(want) != 0 {
		t.Fatalf("number %s, want %s", rl.Number, want)
	}
	if len(rl.RevokedCertificateEntries) != 2 || !rl.RevokedCertificateEntries[0].RevocationTime.Equal(old) || rl.RevokedCertificateEntries[0].ReasonCode != crl.ReasonSuperseded {
		t.Fatalf("entries: %+v", rl.RevokedCertificateEntries)
	}
	idp := false
	for _, x := range rl.Extensions {
		idp = idp || (x.Id.Equal(oidIssuingDP) && bytes.Equal(x.Value, pki.IDPOnlyUserCerts))
	}
	if !idp {
		t.Fatal("the issuingDistributionPoint was dropped")
	}

	before := rl
	out := mustCLI(t, dir, append(args, "--resign", "--next-update", "60d")...)
	rl = readCRL(t, dir, "pki/registrar-ca.crl")
	if rl.Number.Cmp(new(big.Int).Add(want, bigInt(1))) != 0 || len(rl.RevokedCertificateEntries) != 2 || !rl.NextUpdate.After(before.NextUpdate) {
		t.Fatalf("--resign: number %s, %d entries, next update %s: %s", rl.Number, len(rl.RevokedCertificateEntries), rl.NextUpdate, out)
	}
	if code, _, errs := cli(t, dir, append(args, "--resign", "--cert", "w.json.crt")...); code != exitUsage {
		t.Fatalf("--resign with --cert: exit %d %s", code, errs)
	}
	if code, _, errs := cli(t, dir, "revoke", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--crl", "none.crl", "--resign"); code != exitUsage || !strings.Contains(errs, "none.crl") {
		// a file named on the command line that can't be read: usage
		t.Fatalf("--resign without a CRL: exit %d %s", code, errs)
	}

	write(pki.CRLTemplate{Number: 3, DeltaOf: 2})
	before2, _ := os.ReadFile(filepath.Join(dir, "pki/registrar-ca.crl"))
	if code, _, errs := cli(t, dir, append(args, "--cert", "w.json.crt")...); code != exitInvalid || !strings.Contains(errs, "2.5.29.27") {
		t.Fatalf("a delta CRL: exit %d %s", code, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "pki/registrar-ca.crl"))
	if !bytes.Equal(before2, after) {
		t.Fatal("the refused CRL changed")
	}
}

func bigInt(n int64) *big.Int { return big.NewInt(n) }
