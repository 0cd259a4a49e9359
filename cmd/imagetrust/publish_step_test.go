package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublishStepHints: a publishing command run at the wrong step (register
// before the approver signed, register or approve of a bundle already
// registered) says which step the bundle is at and what to run, not only
// how many signatures it holds. Before, each said "w.json.p7s holds N
// signatures; expected M at this step" and nothing more.
func TestPublishStepHints(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	if err := os.WriteFile(filepath.Join(dir, "w.qcow2"), bytes.Repeat([]byte("imagetrust"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "w.json")
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "w.json")
	register := []string{"register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", "w.json"}
	check := func(want string, args ...string) {
		t.Helper()
		code, _, errs := cli(t, dir, args...)
		if code != exitInvalid || !strings.Contains(errs, want) {
			t.Errorf("imagetrust %s: exit %d, want %d saying %q:\n%s", strings.Join(args, " "), code, exitInvalid, want, errs)
		}
	}
	check("w.json.p7s holds 1 signature; expected 2 at this step: only the creator has signed; the approver adds a signature first (imagetrust approve w.json)", register...)
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "w.json")
	mustCLI(t, dir, register...)
	check("already registered (w.json.crt)", register...)
	check("already registered (w.json.crt)", "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "w.json")
}
