package config

import (
	"slices"
	"strings"
	"testing"
)

// TestParseStores: sync.stores takes Glance store ids, each once, and one
// at most with sync.ingest = "upload"; the error names the key's line.
func TestParseStores(t *testing.T) {
	for _, c := range []struct{ name, toml, want string }{
		{name: "ok none", toml: "[sync]\n"},
		{name: "ok one with upload", toml: "[sync]\ningest = \"upload\"\nstores = [\"ceph-rbd_1\"]\n"},
		{name: "ok two with auto", toml: "[sync]\nstores = [\"fs\", \"fs2\"]\n"},
		{name: "ok two with import", toml: "[sync]\ningest = \"import\"\nstores = [\"fs\", \"fs2\"]\n"},
		{name: "fail empty id", toml: "[sync]\nstores = [\"\"]\n", want: `line 2: sync.stores: "" is no Glance store id`},
		{name: "fail id with a comma", toml: "[sync]\nstores = [\"fs,fs2\"]\n", want: `sync.stores: "fs,fs2" is no Glance store id`},
		{name: "fail id with a space", toml: "[sync]\nstores = [\"fs \"]\n", want: `is no Glance store id`},
		{name: "fail named twice", toml: "[sync]\nstores = [\"fs\", \"fs\"]\n", want: `sync.stores: "fs" named twice`},
		{name: "fail two with upload", toml: "[sync]\ningest = \"upload\"\nstores = [\"fs\", \"fs2\"]\n", want: `line 3: sync.stores: an upload (sync.ingest = "upload") puts an image in one store`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.toml))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want %q", err, c.want)
			case c.want == "" && strings.Contains(c.toml, "stores") && len(cfg.Sync.Stores) == 0:
				t.Fatal("stores not read")
			case c.want == "" && slices.Contains(cfg.Sync.Stores, ""):
				t.Fatal("an empty store id read")
			}
		})
	}
}
