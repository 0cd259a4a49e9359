package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestSyncOnceNovaOutageFile: `imagetrust sync` under retire = "delete"
// reads the record of Nova's outage beside sync.lock_file
// (sync.nova-down for sync.lock), which --once runs and the daemon share
// (glancesync.TestRetireDeleteNovaDownGraceAcrossRuns has the count
// itself): a --dry-run leaves a corrupt record as it is; a --once run logs
// it, does not fail, and removes it (an outage is counted from Nova's next
// failure, never from a guess; glancesync
// TestServersOutageFileUnknownStartNotSpent). Against the real Keystone
// and Glance, in a project of its own. Before, the sync kept no record:
// the corrupt file was never read.
func TestSyncOnceNovaOutageFile(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	path, cfg := daemonConfig(t)
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(text), `retire = "keep"`, `retire = "delete"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(filepath.Dir(cfg.Sync.LockFile), "sync.nova-down")
	if got := novaOutageFile(cfg.Sync.LockFile); got != record {
		t.Fatalf("record of Nova's outage at %s, want %s", got, record)
	}
	if err := os.WriteFile(record, []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := ownMirror(t, c)
	vars := projectVars(p)

	code, _, stderr := cliEnv(t, t.TempDir(), vars, "sync", "--dry-run", "--config", path)
	if code != exitOK {
		t.Fatalf("sync --dry-run: exit %d:\n%s", code, stderr)
	}
	if b, _ := os.ReadFile(record); string(b) != "garbage\n" {
		t.Fatalf("sync --dry-run rewrote the record: %q", b)
	}

	code, _, stderr = cliEnv(t, t.TempDir(), vars, "sync", "--once", "--config", path)
	if code != exitOK {
		t.Fatalf("sync --once with a corrupt record: exit %d, want 0:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "cannot read when Nova began failing to answer") {
		t.Errorf("no error logged of the corrupt record:\n%s", stderr)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Errorf("corrupt record not removed by the run: %v", err)
	}
}
