package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two, longer"} {
		if err := WriteFileAtomic(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v", b, err)
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	missing := filepath.Join(dir, "no", "such")
	err := WriteFileAtomic(filepath.Join(missing, "f"), nil, 0o600)
	if err == nil {
		t.Fatal("wrote into a missing directory")
	}
	// The error names the missing directory, not the temporary file.
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "directory "+missing+":") || strings.Contains(err.Error(), ".tmp-") {
		t.Fatalf("missing directory: %v", err)
	}
}

// TestRemoveStaleTemps: only WriteFileAtomic's temporary files for the
// path (".NAME.tmp-" and digits), regular, older than the bound, are
// removed; the record itself, other names, newer files, a directory and a
// symbolic link of that name stay. Before, nothing removed them: each sync
// killed mid-write left one beside sync.lock_file for ever.
func TestRemoveStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sync.nova-down")
	now := time.Now()
	old := now.Add(-2 * time.Hour)
	file := func(name string, mtime time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := file(".sync.nova-down.tmp-1234567", old)
	keep := []string{
		file(".sync.nova-down.tmp-7654321", now.Add(-time.Minute)), // a write under way
		file(".sync.nova-down.tmp-12ab", old),                      // not os.CreateTemp's digits
		file(".sync.nova-down.tmp-", old),
		file(".sync.lock.tmp-1234567", old), // another file's
		file("sync.nova-down", old),         // the record
		file("x.sync.nova-down.tmp-1234567", old),
	}
	d := filepath.Join(dir, ".sync.nova-down.tmp-111")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(d, old, old); err != nil {
		t.Fatal(err)
	}
	keep = append(keep, d)
	l := filepath.Join(dir, ".sync.nova-down.tmp-222")
	if err := os.Symlink(keep[4], l); err != nil {
		t.Fatal(err)
	}
	keep = append(keep, l)

	removed, err := RemoveStaleTemps(path, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != stale {
		t.Errorf("removed %v, want only %s", removed, stale)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", stale, err)
	}
	for _, p := range keep {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	// the names WriteFileAtomic makes (os.CreateTemp's) are those it removes
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(f.Name(), old, old); err != nil {
		t.Fatal(err)
	}
	if removed, err := RemoveStaleTemps(path, time.Hour, now); err != nil || len(removed) != 1 || removed[0] != f.Name() {
		t.Errorf("removed %v (%v), want %s", removed, err, f.Name())
	}
	if removed, err := RemoveStaleTemps(filepath.Join(t.TempDir(), "missing", "f"), time.Hour, now); err != nil || removed != nil {
		t.Errorf("missing directory: %v %v", removed, err)
	}
}
