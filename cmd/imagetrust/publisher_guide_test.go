package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
