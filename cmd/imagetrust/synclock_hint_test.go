package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSyncLockMissingDirHint: a lock file whose directory does not exist
// (/var/lib/imagetrust before the systemd units ever ran: systemd-sysusers
// makes no home directory, StateDirectory= does) is an error that says how
// to make it, not a bare "no such file or directory". Before, an operator
// following the guide's "try it in the foreground with --once" got only
// "open /var/lib/imagetrust/sync.lock: no such file or directory", exit 2.
func TestSyncLockMissingDirHint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := lockSync(filepath.Join(dir, "sync.lock"))
	if err == nil {
		t.Fatal("lock in a missing directory succeeded")
	}
	for _, want := range []string{"does not exist", "StateDirectory=imagetrust", "install -d -m 0750 -o imagetrust -g imagetrust " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
