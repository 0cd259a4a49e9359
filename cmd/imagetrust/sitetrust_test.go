package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/config"
)

// TestProxyReloadKeepsTrustWithRegistrar: a reload of the proxy's trust
// store to one with no Registrar CA (trust.registrar_ca_files emptied by an
// edit) fails, naming the setting, and keeps the trust store in use, as
// the CRL job's reload does (crl.ErrNoTrust): before, the proxy swapped it
// in, logged "trust store reloaded", and refused every boot of a catalogue
// image. The sync's start and reload go through the same loadSiteTrust
// (TestCLIExitCodes: sync, sync --dry-run and proxy exit 2 at start).
func TestProxyReloadKeepsTrustWithRegistrar(t *testing.T) {
	dir := publish(t)
	good := filepath.Join(dir, "pki", "imagetrust.toml")
	bad := withoutRegistrar(t, good)
	load := func(path string) *config.Config {
		t.Helper()
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := &reloadingDecider{}
	if err := d.load(load(good), log); err != nil {
		t.Fatal(err)
	}
	before := d.t.Load()
	err := d.load(load(bad), log)
	if !errors.Is(err, crl.ErrNoTrust) || !strings.Contains(err.Error(), "trust.registrar_ca_files") {
		t.Fatalf("reload without a Registrar CA: %v, want crl.ErrNoTrust naming trust.registrar_ca_files", err)
	}
	if d.t.Load() != before {
		t.Fatal("the trust store in use was replaced by one with no Registrar CA")
	}
	if _, r := d.t.Load().AnchorCounts(); r == 0 {
		t.Fatal("the trust store in use has no Registrar CA")
	}
}

// withoutRegistrar writes a copy of the configuration at path (a
// `pki init` one, which names trust.registrar_ca_files) without its
// Registrar CA, beside it, and returns the copy's path.
func withoutRegistrar(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var keep []string
	for _, line := range lines {
		if !strings.HasPrefix(strings.TrimSpace(line), "registrar_ca_files") {
			keep = append(keep, line)
		}
	}
	if len(keep) == len(lines) {
		t.Fatalf("%s names no registrar_ca_files", path)
	}
	to := strings.TrimSuffix(path, ".toml") + "-noreg.toml"
	if err := os.WriteFile(to, []byte(strings.Join(keep, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return to
}
