package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// The command against Glance and Keystone is tested in tests/crljob; these
// are the parts that need neither.

func TestCRLJobConfig(t *testing.T) {
	dir := publish(t)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Mkdir(filepath.Join(dir, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, toml string
		check      func(t *testing.T, jc crl.JobConfig)
		err        string
	}{
		{name: "ok sources and policy", toml: `[trust]
ca_files = ["pki/people-ca.pem"]
registrar_ca_files = ["pki/registrar-ca.pem"]
crl_files = ["pki/people-ca.crl", "pki/registrar-ca.crl"]
strict = true
require_crl = true
[crl]
stale = "warn"
grace = "2h"
clock_skew = "1m"
timeout = "7s"
cache_dir = "cache"
[[crl.source]]
url = "https://crl.example.org/reg.crl"
[[crl.source]]
file = "pki/registrar-ca.crl"
`, check: func(t *testing.T, jc crl.JobConfig) {
			// the records' chains are judged by the proxy's Trust
			if _, ok := jc.Chains.(*validator.Trust); !ok || len(jc.CAs) != 2 {
				t.Errorf("CAs: %d, chains %T", len(jc.CAs), jc.Chains)
			} else if p, r := jc.Chains.AnchorCounts(); p != 1 || r != 1 {
				t.Errorf("anchors: %d people, %d Registrar CAs", p, r)
			}
			// The file named twice is read once.
			want := []crl.Source{{URL: "https://crl.example.org/reg.crl"}, {File: filepath.Join(dir, "pki/registrar-ca.crl")}, {File: filepath.Join(dir, "pki/people-ca.crl")}}
			if len(jc.Sources) != len(want) {
				t.Fatalf("sources: %+v", jc.Sources)
			}
			for i := range want {
				if jc.Sources[i] != want[i] {
					t.Errorf("source %d: %+v, want %+v", i, jc.Sources[i], want[i])
				}
			}
			p := crl.Policy{Strict: true, RequireCRL: true, RefuseStale: false, Grace: 2 * time.Hour}
			if jc.Policy != p || jc.ClockSkew != time.Minute || jc.Timeout != 7*time.Second || jc.CacheDir != filepath.Join(dir, "cache") {
				t.Errorf("job config: %+v", jc)
			}
		}},
		{name: "ok stale refuse by default", toml: `[trust]
ca_files = ["pki/people-ca.pem"]
registrar_ca_files = ["pki/registrar-ca.pem"]
crl_files = ["pki/people-ca.crl"]
`, check: func(t *testing.T, jc crl.JobConfig) {
			if !jc.Policy.RefuseStale || jc.Policy.Strict || jc.Policy.RequireCRL {
				t.Errorf("policy: %+v", jc.Policy)
			}
		}},
		{name: "fail no CA", toml: "[trust]\ncrl_files = [\"pki/people-ca.crl\"]\n", err: "no CA certificate"},
		// a trust that no image's chains can lead to: every image would
		// become unknown (crl.ErrNoTrust)
		{name: "fail no Registrar CA", toml: "[trust]\nca_files = [\"pki/people-ca.pem\"]\ncrl_files = [\"pki/people-ca.crl\"]\n", err: "no Registrar CA"},
		{name: "fail no people CA", toml: "[trust]\nregistrar_ca_files = [\"pki/registrar-ca.pem\"]\ncrl_files = [\"pki/people-ca.crl\"]\n", err: "no people CA"},
		{name: "fail empty CA directory", toml: "[trust]\nca_dirs = [\"emptydir\"]\nregistrar_ca_files = [\"pki/registrar-ca.pem\"]\n", err: "no CA certificate loaded, and no other people CA is configured"},
		{name: "fail unreadable CA directory", toml: "[trust]\nca_dirs = [\"nodir\"]\nregistrar_ca_files = [\"pki/registrar-ca.pem\"]\n", err: "nodir"},
		{name: "fail no source", toml: "[trust]\nca_files = [\"pki/people-ca.pem\"]\n", err: "no CRL source"},
		{name: "fail missing CA file", toml: "[trust]\nca_files = [\"pki/nope.pem\"]\ncrl_files = [\"pki/people-ca.crl\"]\n", err: "nope.pem"},
		{name: "fail url scheme", toml: "[trust]\nca_files = [\"pki/people-ca.pem\"]\n[[crl.source]]\nurl = \"ftp://x/y.crl\"\n", err: "not an http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(write("c.toml", tc.toml))
			if err != nil {
				t.Fatal(err)
			}
			jc, _, err := crlJobConfig(cfg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, jc)
		})
	}
}

func TestCRLUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.toml"), []byte("[crl]\nstale = \"sometimes\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nocas.toml"), []byte("[crl]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"fail unknown flag", []string{"crl", "--nope"}, exitUsage},
		{"fail stray argument", []string{"crl", "--config", "bad.toml", "x"}, exitUsage},
		{"fail missing config", []string{"crl", "--config", "missing.toml", "--once"}, exitUsage},
		{"fail bad stale policy", []string{"crl", "--config", "bad.toml", "--once"}, exitUsage},
		{"fail no CA", []string{"crl", "--config", "nocas.toml", "--once"}, exitUsage},
		{"ok help", []string{"crl", "-h"}, exitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, out, errs := cli(t, dir, tc.args...); code != tc.want {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.want, out, errs)
			}
		})
	}
}

func TestWriteCRLReport(t *testing.T) {
	tu := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := &crl.Report{
		Started: tu,
		CRLs:    []crl.UsedCRL{{Issuer: "CN=Reg CA", Number: "5", ThisUpdate: tu, NextUpdate: tu.Add(24 * time.Hour), Source: "https://x/reg.crl", Entries: 3, Stale: true}},
		Refused: []crl.Refusal{{Source: "https://x/people.crl", Issuer: "CN=People CA", Reason: crl.ReasonRollback, Error: "CRL number 3 < 4"}},
		Images:  4,
		Changes: []crl.Change{
			{ImageID: "b", From: "valid", To: "revoked", Why: "image certificate 1f of CN=Reg CA: keyCompromise", Deactivate: true},
			{ImageID: "a", From: "hold", To: "valid", Why: "no revocation applies", Reactivate: true},
		},
		Writes:   4,
		Warnings: []string{"CRL of CN=Reg CA is stale"},
	}
	var b bytes.Buffer
	writeCRLReport(&b, rep)
	out := b.String()
	for _, want := range []string{
		"CRLs used: 1", "CN=Reg CA", "number 5  thisUpdate 2026-01-02T03:04:05Z  nextUpdate 2026-01-03T03:04:05Z  entries 3  STALE",
		"CRLs refused: 1", "https://x/people.crl: rollback: issuer CN=People CA: CRL number 3 < 4",
		"Images checked: 4, changed: 2, Glance writes: 4",
		"image b: valid -> revoked, deactivated\n    because image certificate 1f of CN=Reg CA: keyCompromise",
		"image a: hold -> valid, reactivated", "warning: CRL of CN=Reg CA is stale",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "image a:") > strings.Index(out, "image b:") {
		t.Errorf("changes not in image order:\n%s", out)
	}
	rep.DryRun = true
	b.Reset()
	writeCRLReport(&b, rep)
	if out := b.String(); !strings.Contains(out, "dry run") || !strings.Contains(out, "valid -> revoked, would deactivate") {
		t.Errorf("dry-run report:\n%s", out)
	}
}

// TestStaleInUse: a stale CRL counts for crl --once's exit 4 unless a newer
// CRL of its CA supersedes it (a scope the CA no longer publishes would
// have made every cron run exit 4, with no image affected).
func TestStaleInUse(t *testing.T) {
	for _, c := range []struct {
		name string
		crls []crl.UsedCRL
		want int
	}{
		{"ok fresh", []crl.UsedCRL{{Issuer: "CN=A"}}, 0},
		{"fail stale", []crl.UsedCRL{{Issuer: "CN=A", Stale: true}}, 1},
		{"ok stale but superseded", []crl.UsedCRL{{Issuer: "CN=A"}, {Issuer: "CN=A", Stale: true, Superseded: true}}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := staleInUse(&crl.Report{CRLs: c.crls}); got != c.want {
				t.Fatalf("staleInUse = %d, want %d", got, c.want)
			}
		})
	}
}

// TestCRLJobConfigWarnings: the CRL job reports the trust loader's
// warnings (a bad file of a ca_dirs directory, skipped), as the sync and
// the proxy do; it used to drop them.
func TestCRLJobConfigWarnings(t *testing.T) {
	dir := publish(t)
	junk := filepath.Join(dir, "junkdir")
	if err := os.Mkdir(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, "deadbeef.0"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.toml")
	toml := "[trust]\nca_files = [\"pki/people-ca.pem\"]\nca_dirs = [\"junkdir\"]\nregistrar_ca_files = [\"pki/registrar-ca.pem\"]\ncrl_files = [\"pki/people-ca.crl\"]\n"
	if err := os.WriteFile(p, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	_, warnings, err := crlJobConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(warnings, "\n"), "deadbeef.0") {
		t.Fatalf("warnings %q do not name the skipped file", warnings)
	}
}

// TestCRLConfigBounds: crl refuses an interval beyond its bounds naming
// the key (exit 2), and logs a configuration warning for a grace that
// loads but lets revocations go unseen for over a week.
func TestCRLConfigBounds(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"fast.toml":  "[crl]\ninterval = \"1ms\"\n",
		"grace.toml": "[crl]\ngrace = \"200h\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := cli(t, dir, "crl", "--config", "fast.toml", "--once")
	if code != exitUsage || !strings.Contains(errs, "crl.interval") || !strings.Contains(errs, "at least 1s") {
		t.Errorf("interval 1ms: exit %d, want %d naming crl.interval\n%s%s", code, exitUsage, out, errs)
	}
	// no CA configured: exit 2, after the warning
	code, out, errs = cli(t, dir, "crl", "--config", "grace.toml", "--once")
	if code != exitUsage || !strings.Contains(errs, "configuration warning") || !strings.Contains(errs, "crl.grace") {
		t.Errorf("grace 200h: exit %d, want %d after a configuration warning naming crl.grace\n%s%s", code, exitUsage, out, errs)
	}
}
