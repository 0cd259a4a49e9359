package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/glance"
)

// TestSyncOnceSignedListing: `imagetrust sync --once` for a VO with
// listing = "signed" and no listing in its source exits 1 naming the VO
// and the reason, and retires nothing of it (retire = "delete": an image
// of the VO that no source lists stays active) and mirrors nothing new;
// once `imagetrust listing` signs a listing of the source's bundle, the
// run exits 0, mirrors the bundle, retires the image the listing leaves
// out, and keeps the accepted serial in sync.listings beside the lock.
// Against the real Keystone, Glance and Nova, in the process's own
// project.
func TestSyncOnceSignedListing(t *testing.T) {
	ctx := context.Background()
	vars, mirror, id := demoImageInOwnMirror(t, "signed-listing")
	path, _ := daemonConfig(t)
	dir := filepath.Dir(filepath.Dir(path))
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "w.img"), bytes.Repeat([]byte("imagetrust"), 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	publishDemoCLI(t, dir, "src/w.img", "signed-listing-w", "src/w.json")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "[vo.demo]\n") {
		t.Fatalf("no [vo.demo] in %s", text)
	}
	conf := strings.Replace(string(text), `retire = "keep"`, `retire = "delete"`, 1)
	conf = strings.Replace(conf, "[vo.demo]\n", "[vo.demo]\nlisting = \"signed\"\n", 1)
	conf += fmt.Sprintf("\n[[sync.source]]\npath = %q\nvos = [\"demo\"]\n", src)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := cliEnv(t, t.TempDir(), vars, "sync", "--once", "--config", path)
	if code != exitInvalid {
		t.Errorf("sync --once without a listing: exit %d, want %d:\n%s", code, exitInvalid, stderr)
	}
	if !strings.Contains(stderr, `level=ERROR msg="no valid signed listing of a VO: nothing of it was retired or mirrored anew; exit 1" vo=demo reason=listing-missing`) {
		t.Errorf("no ERROR naming VO demo and the reason:\n%s", stderr)
	}
	if im, err := glance.Get(ctx, mirror, id).Extract(); err != nil || im.Status != "active" || im.Hidden {
		t.Fatalf("image of the VO after a pass without a listing: %+v %v: retired\n%s", im, err, stderr)
	}
	if strings.Contains(stderr, `msg="image mirrored"`) {
		t.Fatalf("a bundle was mirrored without a listing:\n%s", stderr)
	}

	mustCLI(t, dir, "listing", "--vo", "demo", "--expires", "7d", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "--out", "src/demo.listing.json", "src/w.json")
	code, _, stderr = cliEnv(t, t.TempDir(), vars, "sync", "--once", "--config", path)
	if code != exitOK {
		t.Errorf("sync --once with a listing: exit %d, want 0:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, `msg="image mirrored"`) || !strings.Contains(stderr, `msg="signed listing accepted" vo=demo`) {
		t.Errorf("the listed bundle was not mirrored:\n%s", stderr)
	}
	if im, err := glance.Get(ctx, mirror, id).Extract(); err == nil && im.Status == "active" && !im.Hidden {
		t.Errorf("the image the listing leaves out was not retired:\n%s", stderr)
	}
	state, err := os.ReadFile(filepath.Join(dir, "sync.listings"))
	if err != nil || !strings.Contains(string(state), `"demo"`) {
		t.Errorf("sync.listings: %q, %v", state, err)
	}

	// the VO withdraws w from its listing, for w2, and leaves w's bundle
	// in the source: routine, WARN, not an exit 4
	if err := os.WriteFile(filepath.Join(src, "w2.img"), bytes.Repeat([]byte("imagetrust2"), 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	publishDemoCLI(t, dir, "src/w2.img", "signed-listing-w", "src/w2.json")
	mustCLI(t, dir, "listing", "--vo", "demo", "--expires", "7d", "--serial", "9999999999", "--cert", "pki/approver.pem", "--key", "pki/approver.key", "--out", "src/demo.listing.json", "src/w2.json")
	code, _, stderr = cliEnv(t, t.TempDir(), vars, "sync", "--once", "--config", path)
	if code != exitOK {
		t.Errorf("sync --once with a withdrawn bundle left in the source: exit %d, want 0:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, `level=WARN msg="bundle refused"`) || !strings.Contains(stderr, `reason=not-in-listing`) {
		t.Errorf("the withdrawn bundle's refusal is not a WARN naming not-in-listing:\n%s", stderr)
	}
}

// publishDemoCLI makes the bundle out of the image img for VO demo and
// tag, with the commands and pki init's keys in dir: describe, sign,
// approve, register (30 days).
func publishDemoCLI(t *testing.T, dir, img, tag, out string) {
	t.Helper()
	mustCLI(t, dir, "describe", img, "--vo", "demo", "--tag", tag, "-o", out)
	mustCLI(t, dir, "sign", "--cert", "pki/creator.pem", "--key", "pki/creator.key", out)
	mustCLI(t, dir, "approve", "--cert", "pki/approver.pem", "--key", "pki/approver.key", out)
	mustCLI(t, dir, "register", "--ca", "pki/registrar-ca.pem", "--ca-key", "pki/registrar-ca.key", "--expires", "30d", out)
}
