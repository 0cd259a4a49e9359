package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/validator"
)

// TestDescribeBindsUUID: `imagetrust describe` binds the uuid to the VO by
// default (a fresh uuid_seed and the uuid it gives), and such a bundle
// verifies with trust.require_bound_uuids on; --uuid gives an explicit
// uuid, unbound (no seed), which verifies with the switch off only,
// refused as uuid-not-bound with it on.
func TestDescribeBindsUUID(t *testing.T) {
	dir := publish(t) // w.json: described with the defaults
	read := func(name string) *validator.Descriptor {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		d, err := validator.ParseDescriptor(b)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := read("w.json")
	if !validator.ValidUUIDSeed(d.UUIDSeed) || d.UUID != validator.BoundUUID("demo", d.UUIDSeed) || !d.Bound() {
		t.Fatalf("default describe: uuid %s seed %q, want a bound uuid", d.UUID, d.UUIDSeed)
	}
	out := mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "w2.json")
	if d2 := read("w2.json"); d2.UUIDSeed == d.UUIDSeed || d2.UUID == d.UUID || !d2.Bound() {
		t.Fatalf("a second describe: uuid %s seed %s, first %s %s", d2.UUID, d2.UUIDSeed, d.UUID, d.UUIDSeed)
	}
	if !strings.Contains(out, "bound to demo") {
		t.Fatalf("describe output: %s", out)
	}

	const explicit = "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f"
	out = mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "--uuid", strings.ToUpper(explicit), "-o", "x.json")
	if x := read("x.json"); x.UUID != explicit || x.UUIDSeed != "" {
		t.Fatalf("describe --uuid: uuid %s seed %q", x.UUID, x.UUIDSeed)
	}
	if strings.Contains(out, "bound") {
		t.Fatalf("describe --uuid output: %s", out)
	}
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", "x.json")
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "x.json")
	mustCLI(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", "x.json")

	cfg, err := os.ReadFile(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(cfg), "\n[trust]\n") != 1 {
		t.Fatalf("pki init's configuration has no one [trust] section:\n%s", cfg)
	}
	on := filepath.Join("pki", "require-bound.toml")
	cfgOn := strings.Replace(string(cfg), "\n[trust]\n", "\n[trust]\nrequire_bound_uuids = true\n", 1)
	if err := os.WriteFile(filepath.Join(dir, on), []byte(cfgOn), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg, name string
		code      int
		want      string
	}{
		{"pki/imagetrust.toml", "w.json", exitOK, "VALID"},
		{on, "w.json", exitOK, "VALID"},
		{"pki/imagetrust.toml", "x.json", exitOK, "VALID"},
		{on, "x.json", exitInvalid, "uuid-not-bound"},
	} {
		code, out, errs := cli(t, dir, "verify", "--config", c.cfg, c.name)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("verify --config %s %s: exit %d (want %d), output lacks %q:\n%s%s", c.cfg, c.name, code, c.code, c.want, out, errs)
		}
	}
}

// TestInspectShowsBinding: inspect shows whether the uuid is bound, and
// fails (exit 1) a descriptor whose seed does not give its uuid, which
// every site refuses.
func TestInspectShowsBinding(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.qcow2"), []byte("imagetrust"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "-o", "b.json")
	mustCLI(t, dir, "describe", "w.qcow2", "--vo", "demo", "--tag", "worker", "--uuid", "0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f", "-o", "u.json")
	b, err := os.ReadFile(filepath.Join(dir, "b.json"))
	if err != nil {
		t.Fatal(err)
	}
	// the same seed under another VO: a squatter's copy
	if err := os.WriteFile(filepath.Join(dir, "s.json"), []byte(strings.Replace(string(b), `"vo": "demo"`, `"vo": "other"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		code int
		want string
	}{
		{"b.json", exitOK, "binds the uuid to the VO"},
		{"u.json", exitOK, "none: the uuid is not bound"},
		{"s.json", exitInvalid, "INVALID: with vo other"},
	} {
		code, out, errs := cli(t, dir, "inspect", c.name)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("inspect %s: exit %d (want %d), output lacks %q:\n%s%s", c.name, code, c.code, c.want, out, errs)
		}
	}
}
