// Package crljob tests `imagetrust crl`, the built binary, against the real
// Keystone and Glance of internal/ostest: images published with the CLI and
// mirrored with `imagetrust sync`, CRLs made with `imagetrust revoke` and
// served over HTTP on loopback.
package crljob

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(ostest.Main(m)) }

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// change finds the report's change of an image.
func change(rep *crl.Report, id string) *crl.Change {
	for i := range rep.Changes {
		if rep.Changes[i].ImageID == id {
			return &rep.Changes[i]
		}
	}
	return nil
}

func refusedWith(rep *crl.Report, reason string) bool {
	for _, r := range rep.Refused {
		if r.Reason == reason {
			return true
		}
	}
	return false
}

// TestRevokeOneImage revokes one image certificate by the Registrar CA's
// CRL: that image is flagged and deactivated, the others untouched; a rerun
// writes nothing; hostile CRLs and a failing CRL server change nothing.
func TestRevokeOneImage(t *testing.T) {
	s := newSite(t, "a", "b", "c")

	// Nothing revoked yet: both CRLs used, nothing to change.
	before := s.snapshot()
	w0 := s.glanceWrites()
	rep := s.crlRun(0)
	if w := s.glanceWrites(); w != w0 {
		t.Errorf("first run: Glance logged %d writes", w-w0)
	}
	if len(rep.CRLs) != 2 || len(rep.Refused) != 0 || rep.Images != 3 || len(rep.Changes) != 0 || rep.Writes != 0 {
		t.Fatalf("first run: %+v", rep)
	}
	s.unchanged(before, "a", "b", "c")

	s.revoke("registrar-ca", "--cert", "images/b.json.crt", "--reason", "keyCompromise")
	serialB := readCert(t, filepath.Join(s.dir, "images/b.json.crt")).SerialNumber

	// A dry run says what it would do and writes nothing.
	before = s.snapshot()
	w0 = s.glanceWrites()
	rep = s.crlRun(0, "--dry-run")
	if ch := change(rep, s.ids["b"]); ch == nil || ch.To != crl.StateRevoked || !ch.Deactivate || rep.Writes != 0 {
		t.Fatalf("dry run: %+v", rep)
	}
	s.unchanged(before, "a", "b", "c")
	if w := s.glanceWrites(); w != w0 {
		t.Errorf("dry run: Glance logged %d writes", w-w0)
	}

	// The human report names the CRLs and the change.
	code, out, errs := s.run("crl", "--config", s.cfg, "--once")
	if code != 0 {
		t.Fatalf("crl --once: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("imagetrust crl --once:\n%s", out)
	for _, want := range []string{"CRLs used: 2", "CN=imagetrust demo Registrar CA", "number 2", "nextUpdate",
		"image " + s.ids["b"] + ": valid -> revoked, deactivated", "keyCompromise", "Glance writes: 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	b := s.image("b")
	if b.Status != "deactivated" || b.Properties[crl.PropGlobalValidity] != crl.StateRevoked ||
		b.Properties[crl.PropRevReason] != "keyCompromise" || b.Properties[crl.PropRevCRLNumber] != "2" ||
		b.Properties[crl.PropRevokedRole] != "image" || b.Properties[crl.PropRevDate] == "" {
		t.Fatalf("image b: status %s, properties %v", b.Status, b.Properties)
	}
	if _, err := time.Parse(time.RFC3339, b.Properties[crl.PropRevDate]); err != nil {
		t.Errorf("revocation date: %v", err)
	}
	if w := s.glanceWrites(); w != w0+2 {
		t.Errorf("revocation: Glance logged %d writes, want 2 (patch, deactivate)", w-w0)
	}
	s.unchanged(before, "a", "c")

	// Rerun with the same CRLs: zero Glance writes.
	before = s.snapshot()
	w0 = s.glanceWrites()
	rep = s.crlRun(0)
	if len(rep.Changes) != 0 || rep.Writes != 0 || rep.Images != 3 {
		t.Fatalf("rerun: %+v", rep)
	}
	s.unchanged(before, "a", "b", "c")
	if w := s.glanceWrites(); w != w0 {
		t.Errorf("rerun: Glance logged %d writes", w-w0)
	}

	// Hostile CRLs, each refused with its reason; nothing changes.
	good, err := os.ReadFile(filepath.Join(s.dir, "pki/registrar-ca.crl"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(good)
	regCA := readCert(t, filepath.Join(s.dir, "pki/registrar-ca.pem"))
	regKey, err := pki.ReadPrivateKey(filepath.Join(s.dir, "pki/registrar-ca.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	serialC := readCert(t, filepath.Join(s.dir, "images/c.json.crt")).SerialNumber
	now := time.Now()
	revokeC := []pki.Revoked{{Serial: serialB, Time: now.Add(-time.Hour), Reason: 1}, {Serial: serialC, Time: now.Add(-time.Minute), Reason: 1}}
	// A newer CRL revoking c, its signature spoiled.
	newer, err := pki.IssueCRL(pki.CRLTemplate{Number: 7, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.AddDate(0, 0, 7), Entries: revokeC}, regCA, regKey)
	if err != nil {
		t.Fatal(err)
	}
	badSig := append([]byte(nil), newer...)
	badSig[len(badSig)-3] ^= 0x40
	// The same CA's older CRL number 1, revoking c: a rollback.
	older, err := pki.IssueCRL(pki.CRLTemplate{Number: 1, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.AddDate(0, 0, 7), Entries: revokeC}, regCA, regKey)
	if err != nil {
		t.Fatal(err)
	}
	// thisUpdate a day ahead.
	future, err := pki.IssueCRL(pki.CRLTemplate{Number: 8, ThisUpdate: now.Add(24 * time.Hour), NextUpdate: now.AddDate(0, 0, 7), Entries: revokeC}, regCA, regKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		reason string
	}{
		{"fail bad signature", badSig, 0, crl.ReasonSignature},
		{"fail rollback", older, 0, crl.ReasonRollback},
		{"fail thisUpdate in the future", future, 0, crl.ReasonFuture},
		{"fail truncated", blk.Bytes[:len(blk.Bytes)/2], 0, crl.ReasonParse},
		{"fail server 503", nil, http.StatusServiceUnavailable, crl.ReasonFetch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.crls.serve("/registrar-ca.crl", tc.body)
			s.crls.fail("/registrar-ca.crl", tc.status)
			defer s.crls.serve("/registrar-ca.crl", nil)
			defer s.crls.fail("/registrar-ca.crl", 0)
			before := s.snapshot()
			w0 := s.glanceWrites()
			// done with the last good CRL, and exit 4: a cron job sees it
			rep := s.crlRun(4)
			if w := s.glanceWrites(); w != w0 {
				t.Errorf("Glance logged %d writes", w-w0)
			}
			if !refusedWith(rep, tc.reason) || len(rep.Changes) != 0 || rep.Writes != 0 {
				t.Fatalf("want refused %q and no change: %+v", tc.reason, rep)
			}
			// The last good CRL (number 2, from the cache) stays in use.
			used := false
			for _, c := range rep.CRLs {
				if strings.Contains(c.Issuer, "Registrar") && c.Number == "2" {
					used = true
				}
			}
			if !used {
				t.Errorf("the cached CRL number 2 is not in use: %+v", rep.CRLs)
			}
			s.unchanged(before, "a", "b", "c")
			code, out, _ := s.run("crl", "--config", s.cfg, "--once")
			if code != 4 || !strings.Contains(out, tc.reason+":") || !strings.Contains(out, "CRLs refused: 1") {
				t.Errorf("human report: exit %d, lacks the reason %q:\n%s", code, tc.reason, out)
			}
		})
	}
	if c := s.image("c"); c.Status != "active" || c.Properties[crl.PropGlobalValidity] != crl.StateValid {
		t.Errorf("image c after the hostile CRLs: %s %s", c.Status, c.Properties[crl.PropGlobalValidity])
	}

	// The people CA, whose CRLs are accepted, lists the serial number of
	// c's image certificate: another CA's serial, so c stays valid.
	t.Run("ok other CA same serial", func(t *testing.T) {
		peopleCA := readCert(t, filepath.Join(s.dir, "pki/people-ca.pem"))
		peopleKey, err := pki.ReadPrivateKey(filepath.Join(s.dir, "pki/people-ca.key"), nil)
		if err != nil {
			t.Fatal(err)
		}
		other, err := pki.IssueCRL(pki.CRLTemplate{Number: 5, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.AddDate(0, 0, 7),
			Entries: []pki.Revoked{{Serial: serialC, Reason: 1}}}, peopleCA, peopleKey)
		if err != nil {
			t.Fatal(err)
		}
		s.crls.serve("/people-ca.crl", other)
		defer s.crls.serve("/people-ca.crl", nil)
		before := s.snapshot()
		w0 := s.glanceWrites()
		rep := s.crlRun(0)
		accepted := false
		for _, c := range rep.CRLs {
			accepted = accepted || (strings.Contains(c.Issuer, "people CA") && c.Number == "5" && c.Entries == 1)
		}
		if !accepted || len(rep.Refused) != 0 || len(rep.Changes) != 0 || s.glanceWrites() != w0 {
			t.Fatalf("want the people CRL 5 accepted and no change: %+v", rep)
		}
		s.unchanged(before, "a", "b", "c")
	})
}

// TestHoldThenRelease puts an image certificate on hold (deactivated) and
// lifts the hold with removeFromCRL (reactivated).
func TestHoldThenRelease(t *testing.T) {
	s := newSite(t, "a", "b")
	s.revoke("registrar-ca", "--cert", "images/a.json.crt", "--reason", "certificateHold")
	before := s.snapshot()
	rep := s.crlRun(0)
	if ch := change(rep, s.ids["a"]); ch == nil || ch.To != crl.StateHold || !ch.Deactivate {
		t.Fatalf("hold: %+v", rep)
	}
	a := s.image("a")
	if a.Status != "deactivated" || a.Properties[crl.PropGlobalValidity] != crl.StateHold ||
		a.Properties[crl.PropRevReason] != "certificateHold" || a.Properties[crl.PropDeactivatedBy] != crl.DeactivatedByHold {
		t.Fatalf("image a on hold: %s %v", a.Status, a.Properties)
	}
	s.unchanged(before, "b")
	if rep := s.crlRun(0); rep.Writes != 0 {
		t.Fatalf("rerun on hold wrote: %+v", rep)
	}

	s.revoke("registrar-ca", "--cert", "images/a.json.crt", "--reason", "removeFromCRL")
	if rl := testutil.ReadCRL(t, filepath.Join(s.dir, "pki/registrar-ca.crl")); len(rl.RevokedCertificateEntries) != 0 || rl.Number.Cmp(big.NewInt(3)) != 0 {
		t.Fatalf("released CRL: number %v, %d entries", rl.Number, len(rl.RevokedCertificateEntries))
	}
	rep = s.crlRun(0)
	if ch := change(rep, s.ids["a"]); ch == nil || ch.To != crl.StateValid || !ch.Reactivate {
		t.Fatalf("release: %+v", rep)
	}
	a = s.image("a")
	if a.Status != "active" || a.Properties[crl.PropGlobalValidity] != crl.StateValid {
		t.Fatalf("image a released: %s %v", a.Status, a.Properties)
	}
	for _, k := range []string{crl.PropRevReason, crl.PropRevDate, crl.PropRevCRLNumber, crl.PropRevokedRole, crl.PropDeactivatedBy} {
		if _, ok := a.Properties[k]; ok {
			t.Errorf("released image a still has %s", k)
		}
	}
	s.unchanged(before, "b")
	if rep := s.crlRun(0); rep.Writes != 0 {
		t.Fatalf("rerun after release wrote: %+v", rep)
	}
}

// TestCreatorRevoked revokes the creator's certificate by the people CA's
// CRL (keyCompromise): every image that creator signed is revoked.
func TestCreatorRevoked(t *testing.T) {
	s := newSite(t, "a", "b", "c")
	s.revoke("people-ca", "--cert", "pki/creator.pem", "--reason", "keyCompromise")
	w0 := s.glanceWrites()
	rep := s.crlRun(0)
	if len(rep.Changes) != 3 || rep.Writes != 6 {
		t.Fatalf("creator revoked: %+v", rep)
	}
	if w := s.glanceWrites(); w != w0+6 {
		t.Errorf("creator revoked: Glance logged %d writes, want 6", w-w0)
	}
	for _, n := range []string{"a", "b", "c"} {
		im := s.image(n)
		if im.Status != "deactivated" || im.Properties[crl.PropGlobalValidity] != crl.StateRevoked ||
			im.Properties[crl.PropRevokedRole] != "creator" || im.Properties[crl.PropRevReason] != "keyCompromise" {
			t.Errorf("image %s: %s %v", n, im.Status, im.Properties)
		}
	}
	// A later CRL without the entry never brings a revoked image back.
	s.emptyCRL("people-ca")
	before := s.snapshot()
	w0 = s.glanceWrites()
	if rep := s.crlRun(0); rep.Writes != 0 || len(rep.Changes) != 0 {
		t.Fatalf("revoked images changed: %+v", rep)
	}
	s.unchanged(before, "a", "b", "c")
	if w := s.glanceWrites(); w != w0 {
		t.Errorf("Glance logged %d writes", w-w0)
	}
}

// TestExitCodes: a run that cannot reach Keystone exits 1; a bad
// configuration exits 2.
func TestExitCodes(t *testing.T) {
	s := newSite(t)
	bad := filepath.Join(s.dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[crl]\nstale = \"maybe\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := s.run("crl", "--config", bad, "--once"); code != 2 {
		t.Errorf("bad config: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := s.run("crl", "--config", s.cfg, "--once", "stray"); code != 2 {
		t.Errorf("stray argument: exit %d\n%s%s", code, out, errs)
	}
	yaml, err := os.ReadFile(s.clouds)
	if err != nil {
		t.Fatal(err)
	}
	// Keystone on a port nothing listens on.
	l := strings.Split(string(yaml), "\n")
	for i, line := range l {
		if strings.Contains(line, "auth_url:") {
			l[i] = "      auth_url: http://127.0.0.1:9/v3"
		}
	}
	if err := os.WriteFile(s.clouds, []byte(strings.Join(l, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := s.run("crl", "--config", s.cfg, "--once"); code != 1 {
		t.Errorf("keystone unreachable: exit %d\n%s%s", code, out, errs)
	}
}

// daemonConfig is s's configuration for the daemon: crl.interval as
// given and crl.listen on a free loopback port, addr.
func daemonConfig(t *testing.T, s *site, interval string) (addr, cfg string) {
	t.Helper()
	addr = testutil.FreeAddr(t)
	full, err := os.ReadFile(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return addr, strings.Replace(string(full), "[crl]\n", "[crl]\ninterval = \""+interval+"\"\nlisten = \""+addr+"\"\n", 1)
}

// TestDaemon runs the daemon with a one-second interval: /healthz and
// /metrics answer, a CRL of a CA missing from the configuration is refused
// (and the images registered by that CA are unknown) until SIGHUP reloads
// a configuration naming it, and SIGTERM stops it.
func TestDaemon(t *testing.T) {
	s := newSite(t, "a", "b")
	addr, daemonCfg := daemonConfig(t, s, "1s")
	// First without the Registrar CA: its CRL has no CA to verify it, and
	// the images it registered no longer chain to a configured CA. Another
	// Registrar CA stands in its place: with none at all the job would
	// refuse to start (crl.ErrNoTrust).
	decoy := testpki.NewRoot(t, "imagetrust crl test decoy Registrar CA")
	testpki.WriteFile(t, filepath.Join(s.dir, "pki"), "decoy-registrar.pem", testpki.CertPEM(decoy.Cert))
	withoutReg := strings.Replace(daemonCfg, `registrar_ca_files = ["pki/registrar-ca.pem"]`, `registrar_ca_files = ["pki/decoy-registrar.pem"]`, 1)
	if err := os.WriteFile(s.cfg, []byte(withoutReg), 0o644); err != nil {
		t.Fatal(err)
	}
	s.revoke("registrar-ca", "--cert", "images/b.json.crt")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := s.command(ctx, "crl", "--config", s.cfg)
	var out, errb testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	}()

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if ok() {
				return
			}
		}
		t.Fatalf("timed out waiting for %s\nstdout:\n%s\nstderr:\n%s", what, out.String(), errb.String())
	}
	waitFor("healthz 200", func() bool { code, _ := get("/healthz"); return code == http.StatusOK })
	waitFor("the refusal in the metrics", func() bool {
		_, m := get("/metrics")
		// every reason is there from the start, at 0 (an increase()
		// alert sees the first refusal); wrong-issuer has counted
		return strings.Contains(m, `imagetrust_crl_refused_total{reason="wrong-issuer"} `) &&
			!strings.Contains(m, `imagetrust_crl_refused_total{reason="wrong-issuer"} 0`) &&
			strings.Contains(m, `imagetrust_crl_refused_total{reason="rollback"} 0`) &&
			strings.Contains(m, `imagetrust_crl_images{state="unknown"} 2`) && strings.Contains(m, "imagetrust_crl_untrusted_images 2") &&
			strings.Contains(m, `imagetrust_crl_age_seconds{issuer="`) &&
			strings.Contains(m, `imagetrust_crl_next_update_timestamp_seconds{issuer="`)
	})
	if b := s.image("b"); b.Status != "active" || b.Properties[crl.PropGlobalValidity] != crl.StateUnknown {
		t.Fatalf("image b revoked by a CRL no configured CA signed, or not unknown: %s %v", b.Status, b.Properties)
	}

	// A broken file: the configuration in effect stays, and the metrics
	// say the reload failed.
	if err := os.WriteFile(s.cfg, []byte(withoutReg+"\nbogus_key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the failed reload in the metrics", func() bool {
		_, m := get("/metrics")
		return strings.Contains(m, "imagetrust_config_last_reload_successful 0")
	})
	// The good file names the Registrar CA, and changes the interval,
	// which waits for a restart: the reload says so.
	if err := os.WriteFile(s.cfg, []byte(strings.Replace(daemonCfg, `interval = "1s"`, `interval = "90s"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the reload in the metrics and the log", func() bool {
		_, m := get("/metrics")
		return strings.Contains(m, "imagetrust_config_last_reload_successful 1") && strings.Contains(errb.String(), "crl.interval")
	})
	waitFor("image b revoked after SIGHUP", func() bool {
		b := s.image("b")
		return b.Status == "deactivated" && b.Properties[crl.PropGlobalValidity] == crl.StateRevoked
	})
	waitFor("the revoked count in the metrics", func() bool {
		_, m := get("/metrics")
		return strings.Contains(m, `imagetrust_crl_images{state="revoked"} 1`)
	})
	if !strings.Contains(errb.String(), "configuration and CAs reloaded") || !strings.Contains(out.String(), "unknown -> revoked, deactivated") || !strings.Contains(out.String(), "unknown -> valid") {
		t.Errorf("logs or reports lack the reload or the change\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	if a := s.image("a"); a.Status != "active" || a.Properties[crl.PropGlobalValidity] != crl.StateValid {
		t.Errorf("image a: %s %v", a.Status, a.Properties)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon exit: %v\n%s", err, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30 s of SIGTERM")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("the metrics listener still answers after exit")
	}
}
