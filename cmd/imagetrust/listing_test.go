package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// TestListingCommand: `imagetrust listing` writes a VO listing of the
// descriptors given and signs it, and what it writes is what a site
// verifies (the approver is a listing signer by default); it refuses a
// descriptor of another VO, an empty listing unless --empty, an expiry
// past 90 days, and a serial not higher than the listing it replaces.
func TestListingCommand(t *testing.T) {
	dir := publish(t)
	signer := []string{"--cert", "pki/approver.pem", "--key", "pki/approver.key"}
	listing := func(args ...string) (int, string, string) {
		return cli(t, dir, append(append([]string{"listing"}, signer...), args...)...)
	}
	code, out, errs := listing("--vo", "demo", "--expires", "7d", "--serial", "10", "--out", "demo.listing.json", "w.json", "demo.listing.json")
	if code != exitOK || !strings.Contains(out, "serial 10, 1 image,") {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	doc, err := os.ReadFile(filepath.Join(dir, "demo.listing.json"))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, "demo.listing.json.p7s"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tr, _, err := validator.LoadTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tr.VerifyListing(doc, sig, "demo", time.Now())
	if err != nil {
		t.Fatalf("the site refuses the listing: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "w.json"))
	d, _ := validator.ParseDescriptor(b)
	if !l.Has(d.UUID) || len(l.Images) != 1 || l.Serial != 10 || l.ExpiresTime.Sub(l.IssuedTime) != 7*24*time.Hour {
		t.Fatalf("listing %+v", l)
	}
	// a listing issued within the same second (the default serial is
	// the time of issue) is refused with what to do
	ahead := strconv.FormatInt(time.Now().Unix()+3600, 10)
	if code, out, errs := listing("--vo", "demo", "--expires", "7d", "--serial", ahead, "--out", "ahead.listing.json", "w.json"); code != exitOK {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	if code, out, errs := listing("--vo", "demo", "--expires", "7d", "--out", "ahead.listing.json", "w.json"); code != exitInvalid ||
		!strings.Contains(errs, "the default serial is the time of issue in seconds") {
		t.Fatalf("a default serial not above the listing's: exit %d: %s%s", code, out, errs)
	}
	for name, c := range map[string]struct {
		args []string
		code int
		want string
	}{
		"fail another vo":        {[]string{"--vo", "atlas", "--expires", "7d", "--serial", "11", "--out", "atlas.listing.json", "w.json"}, exitInvalid, "not atlas"},
		"fail no descriptor":     {[]string{"--vo", "demo", "--expires", "7d", "--serial", "11", "--out", "demo.listing.json"}, exitUsage, "--empty"},
		"fail expiry too far":    {[]string{"--vo", "demo", "--expires", "91d", "--serial", "11", "--out", "demo.listing.json", "w.json"}, exitUsage, "90 days"},
		"fail serial not higher": {[]string{"--vo", "demo", "--expires", "7d", "--serial", "10", "--out", "demo.listing.json", "w.json"}, exitInvalid, "not lower than 10"},
		"fail no out":            {[]string{"--vo", "demo", "--expires", "7d", "w.json"}, exitUsage, "required"},
		// "6m": not the register hint (180d), over the listing's bound
		"fail six minutes": {[]string{"--vo", "demo", "--expires", "6m", "--serial", "11", "--out", "demo.listing.json", "w.json"}, exitUsage, "write days (7d; a listing lasts at most 90 days)"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := listing(c.args...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Fatalf("exit %d, want %d naming %q: %s%s", code, c.code, c.want, out, errs)
			}
		})
	}
	after, _ := os.ReadFile(filepath.Join(dir, "demo.listing.json"))
	if string(after) != string(doc) {
		t.Fatal("a refused run changed the listing")
	}
	// a higher serial, and an empty listing with --empty, are written
	if code, out, errs := listing("--vo", "demo", "--expires", "24h", "--serial", "12", "--empty", "--out", "demo.listing.json"); code != exitOK || !strings.Contains(out, "0 images") {
		t.Fatalf("empty listing: exit %d: %s%s", code, out, errs)
	}
	// a glob of a shared root matches the other VOs' listings too
	// (formats.md: one tree may carry the listings of all its VOs): they
	// are skipped as the listing itself is, not refused as descriptors
	if err := os.WriteFile(filepath.Join(dir, "atlas.listing.json"), []byte(`{"version":1,"vo":"atlas"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := listing("--vo", "demo", "--expires", "7d", "--serial", "13", "--out", "demo.listing.json", "atlas.listing.json", "w.json", "demo.listing.json"); code != exitOK || !strings.Contains(out, "1 image,") {
		t.Fatalf("another VO's listing in the glob: exit %d: %s%s", code, out, errs)
	}
	if h := func() string { _, o, e := cli(t, dir, "listing", "-h"); return o + e }(); !strings.Contains(h, "usage: imagetrust listing --vo VO") || !strings.Contains(h, "-key-pass-file") {
		t.Errorf("listing -h:\n%s", h)
	}
}
