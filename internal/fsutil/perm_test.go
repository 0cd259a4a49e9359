package fsutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckNotWritableByOthers(t *testing.T) {
	for _, c := range []struct {
		name      string
		file, dir os.FileMode
		link      bool // path is a symbolic link, in a safe directory, to the file
		want      string
	}{
		{name: "ok 0644 in 0755", file: 0o644, dir: 0o755},
		{name: "ok group-writable 0664 in 0775", file: 0o664, dir: 0o775},
		{name: "ok 0644 in a sticky 1777 directory", file: 0o644, dir: 0o1777},
		{name: "fail file 0666", file: 0o666, dir: 0o755, want: "writable by every user (mode 0666)"},
		{name: "fail file 0602", file: 0o602, dir: 0o755, want: "writable by every user (mode 0602)"},
		{name: "fail directory 0777", file: 0o644, dir: 0o777, want: "is writable by every user (mode 0777)"},
		{name: "fail through a link to a file in a 0777 directory", file: 0o644, dir: 0o777, link: true, want: "is writable by every user (mode 0777)"},
		{name: "fail through a link to a 0666 file", file: 0o666, dir: 0o755, link: true, want: "writable by every user (mode 0666)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			top := t.TempDir()
			dir := filepath.Join(top, "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			chmod(t, p, c.file)
			chmod(t, dir, c.dir)
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
			if c.link {
				l := filepath.Join(top, "link")
				if err := os.Symlink(p, l); err != nil {
					t.Fatal(err)
				}
				p = l
			}
			err := CheckNotWritableByOthers(p)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	t.Run("fail a link in a 0777 directory to a safe file", func(t *testing.T) {
		// anyone may replace the link (rename another over it), whatever
		// it leads to
		top := t.TempDir()
		p := filepath.Join(top, "f")
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		open := filepath.Join(top, "open")
		if err := os.Mkdir(open, 0o700); err != nil {
			t.Fatal(err)
		}
		l := filepath.Join(open, "link")
		if err := os.Symlink(p, l); err != nil {
			t.Fatal(err)
		}
		chmod(t, open, 0o777)
		t.Cleanup(func() { _ = os.Chmod(open, 0o700) })
		if err := CheckNotWritableByOthers(l); err == nil || !strings.Contains(err.Error(), "its directory "+open+" is writable by every user (mode 0777)") {
			t.Fatalf("got %v, want the link's directory refused", err)
		}
		chmod(t, open, 0o1777)
		if err := CheckNotWritableByOthers(l); err != nil {
			t.Fatalf("a link in a sticky 1777 directory refused: %v", err)
		}
	})
	t.Run("fail a directory 1777 itself", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		chmod(t, dir, 0o1777)
		if err := CheckNotWritableByOthers(dir); err == nil || !strings.Contains(err.Error(), "mode 0777") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("fail missing", func(t *testing.T) {
		if err := CheckNotWritableByOthers(filepath.Join(t.TempDir(), "none")); err == nil {
			t.Fatal("no error for a missing file")
		}
	})
}

func chmod(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if m&0o1000 != 0 {
		m = m&0o777 | os.ModeSticky
	}
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}
