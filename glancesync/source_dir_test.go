package glancesync

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestDirSourceStaysInside checks that a directory source reads its own
// tree only: a descriptor's uri (relative with "..", file://, or through a
// symbolic link) cannot make the sync open, and so upload, another file the
// sync's user can read; and a FIFO where a file should be does not block.
func TestDirSourceStaysInside(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "vo")
	mustMkdir(t, filepath.Join(root, "images"))
	mustWrite(t, filepath.Join(root, "images", "img.qcow2"), "image")
	mustWrite(t, filepath.Join(root, "images", "a #1%.qcow2"), "escaped")
	mustWrite(t, filepath.Join(base, "secret"), "secret")
	must(t, os.Symlink("images/img.qcow2", filepath.Join(root, "latest.qcow2")))
	must(t, os.Symlink("../secret", filepath.Join(root, "escape.qcow2")))
	must(t, os.Symlink(filepath.Join(base, "secret"), filepath.Join(root, "abs-escape.qcow2")))
	must(t, syscall.Mkfifo(filepath.Join(root, "fifo.qcow2"), 0o600))
	// a bundle whose signature is a link out of the tree, and one whose
	// signature is a FIFO
	mustWrite(t, filepath.Join(root, "a.json"), "{}")
	must(t, os.Symlink(filepath.Join(base, "secret"), filepath.Join(root, "a.json.p7s")))
	mustWrite(t, filepath.Join(root, "b.json"), "{}")
	must(t, syscall.Mkfifo(filepath.Join(root, "b.json.p7s"), 0o600))
	mustWrite(t, filepath.Join(root, "c.json"), "{}")
	mustWrite(t, filepath.Join(root, "c.json.p7s"), "sig")

	d := &DirSource{Root: root, AllowedVOs: []string{"vo"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bundles, skipped, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundles) != 1 || bundles[0].Location != filepath.Join(root, "c.json") || string(bundles[0].Signature) != "sig" {
		t.Fatalf("bundles: %+v", bundles)
	}
	if len(skipped) != 2 || skipped[filepath.Join(root, "a.json")] == nil || skipped[filepath.Join(root, "b.json")] == nil {
		t.Fatalf("skipped: %v", skipped)
	}
	b := bundles[0]
	fileURI := func(p string) string { return (&url.URL{Scheme: "file", Path: p}).String() }
	for _, tc := range []struct {
		name, uri, want string
		outside         bool
	}{
		{name: "ok relative", uri: "images/img.qcow2", want: "image"},
		{name: "ok file uri inside", uri: fileURI(filepath.Join(root, "images", "img.qcow2")), want: "image"},
		{name: "ok absolute path inside", uri: filepath.Join(root, "images", "img.qcow2"), want: "image"},
		{name: "ok symbolic link inside the tree", uri: "latest.qcow2", want: "image"},
		{name: "ok escaped file name", uri: "images/a%20%231%25.qcow2", want: "escaped"},
		{name: "fail fragment", uri: "images/img.qcow2#x"},
		{name: "fail query", uri: "images/img.qcow2?x"},
		{name: "fail network-path reference", uri: "//host/images/img.qcow2"},
		{name: "fail relative with ..", uri: "../secret", outside: true},
		{name: "fail file uri outside", uri: fileURI(filepath.Join(base, "secret")), outside: true},
		{name: "fail absolute path outside", uri: "/etc/passwd", outside: true},
		{name: "fail relative symbolic link out", uri: "escape.qcow2", outside: true},
		{name: "fail absolute symbolic link out", uri: "abs-escape.qcow2", outside: true},
		{name: "fail fifo", uri: "fifo.qcow2"},
		{name: "fail missing", uri: "images/none.qcow2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, _, err := b.OpenImage(ctx, tc.uri)
			if tc.want != "" {
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				got, _ := io.ReadAll(rc)
				if string(got) != tc.want {
					t.Fatalf("read %q", got)
				}
				return
			}
			if err == nil {
				rc.Close()
				t.Fatal("opened")
			}
			if errors.Is(err, ErrOutsideSource) != tc.outside {
				t.Fatalf("error %v: outside %v, want %v", err, errors.Is(err, ErrOutsideSource), tc.outside)
			}
			t.Logf("%v", err)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, dir string) { t.Helper(); must(t, os.MkdirAll(dir, 0o755)) }

func mustWrite(t *testing.T, p, s string) { t.Helper(); must(t, os.WriteFile(p, []byte(s), 0o644)) }
