package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"

	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testbundle"
	"github.com/imagetrust/imagetrust/internal/testpki"
	"github.com/imagetrust/imagetrust/validator"
)

// TestSyncOnceEmptySource: `imagetrust sync --once` with a directory source
// that lists no bundle (a CVMFS repository autofs did not mount is an
// empty directory) exits 1 naming the source, and its pass retires nothing
// of the source's VO (retire = "delete": an image of that VO in the mirror
// project stays active); the same image is retired once the source is
// taken out of the configuration, which is how an operator retires a VO.
// Against the real Keystone, Glance and Nova, in the process's own
// project. Before, the run exited 0: a cron job could not tell.
func TestSyncOnceEmptySource(t *testing.T) {
	ctx := context.Background()
	vars, mirror, id := demoImageInOwnMirror(t, "empty-src")
	path, _ := daemonConfig(t)
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(string(text), `retire = "keep"`, `retire = "delete"`, 1)
	empty := t.TempDir()
	withSource := base + fmt.Sprintf("\n[[sync.source]]\npath = %q\nvos = [\"demo\"]\n", empty)
	if err := os.WriteFile(path, []byte(withSource), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := cliEnv(t, t.TempDir(), vars, "sync", "--once", "--config", path)
	if code != exitInvalid {
		t.Errorf("sync --once with an empty source: exit %d, want %d:\n%s", code, exitInvalid, stderr)
	}
	if !strings.Contains(stderr, `level=ERROR msg="source listed no bundle (not mounted? emptied?)`) || !strings.Contains(stderr, "source="+empty) {
		t.Errorf("no ERROR naming the empty source %s:\n%s", empty, stderr)
	}
	if !strings.Contains(stderr, `msg="sync pass done"`) {
		t.Errorf("the pass did not run to its end:\n%s", stderr)
	}
	im, err := glance.Get(ctx, mirror, id).Extract()
	if err != nil {
		t.Fatalf("the image after a pass with an empty source: %v\n%s", err, stderr)
	}
	if im.Status != "active" || im.Hidden {
		t.Fatalf("image of the empty source's VO %s (hidden %v) after the pass: retired on an empty listing\n%s", im.Status, im.Hidden, stderr)
	}

	// the source taken out: its VO's images are retired (deleted, as no
	// server uses it), and the run is clean
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = cliEnv(t, t.TempDir(), vars, "sync", "--once", "--config", path)
	if code != exitOK {
		t.Errorf("sync --once without the source: exit %d, want 0:\n%s", code, stderr)
	}
	if im, err := glance.Get(ctx, mirror, id).Extract(); err == nil && im.Status == "active" && !im.Hidden {
		t.Errorf("image not retired once its VO has no source:\n%s", stderr)
	}
}

// TestSyncOnceVanishedVO: `imagetrust sync --once` with a source of two
// VOs that still lists a bundle of one (here refused: signed by strangers)
// and none of the other, whose image is in the mirror project, exits 1
// naming the VO and the source, and retires nothing of that VO (retire =
// "delete": its image stays active). Against the real Keystone, Glance
// and Nova. Before, the VO was only logged (WARN) and the run exited 4
// for the refused bundle: a cron job saw no VO gone.
func TestSyncOnceVanishedVO(t *testing.T) {
	ctx := context.Background()
	vars, mirror, id := demoImageInOwnMirror(t, "vanished-vo")
	path, _ := daemonConfig(t)
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// the shared source still lists a bundle of VO other (signed by
	// strangers: refused, but listed), none of demo
	src := t.TempDir()
	people, reg := testpki.NewRoot(t, "Stranger People"), testpki.NewRoot(t, "Stranger Registrar")
	testbundle.Signers{Creator: people.Leaf(testpki.Name("Eve Creator")), Approver: people.Leaf(testpki.Name("Eve Approver")), Registrar: reg}.
		Publish(t, src, testbundle.Spec{VO: "other", Tag: "worker"})
	conf := strings.Replace(string(text), `retire = "keep"`, `retire = "delete"`, 1) +
		"\n[vo.other]\ncreators = [\"CN=Nobody\"]\napprovers = [\"CN=Nobody Else\"]\n" +
		fmt.Sprintf("\n[[sync.source]]\npath = %q\nvos = [\"demo\", \"other\"]\n", src)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := cliEnv(t, t.TempDir(), vars, "sync", "--once", "--config", path)
	if code != exitInvalid {
		t.Errorf("sync --once with a VO gone from its source: exit %d, want %d:\n%s", code, exitInvalid, stderr)
	}
	if !strings.Contains(stderr, `level=ERROR msg="no bundle of a VO with images listed, though its sources list others`) ||
		!strings.Contains(stderr, "vo=demo") || !strings.Contains(stderr, "sources="+src) {
		t.Errorf("no ERROR naming VO demo and its source %s:\n%s", src, stderr)
	}
	if !strings.Contains(stderr, `msg="sync pass done"`) {
		t.Errorf("the pass did not run to its end:\n%s", stderr)
	}
	im, err := glance.Get(ctx, mirror, id).Extract()
	if err != nil {
		t.Fatalf("the image after the pass: %v\n%s", err, stderr)
	}
	if im.Status != "active" || im.Hidden {
		t.Fatalf("image of the vanished VO %s (hidden %v) after the pass: retired\n%s", im.Status, im.Hidden, stderr)
	}
}

// demoImageInOwnMirror starts the stack and makes the test's own mirror
// project (ownMirror), with one active image of VO demo in it named
// prefix-<uuid prefix> (its tag too), deleted at the end. It returns the
// environment naming that project for the CLI, an admin image client, and
// the image's id.
func demoImageInOwnMirror(t *testing.T, prefix string) (vars map[string]string, mirror *gophercloud.ServiceClient, id string) {
	t.Helper()
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	p := ownMirror(t, c)
	mirror = c.ImageClient(t, ostest.CloudAdmin)
	id = uuid.NewString()
	if _, err := glance.Create(ctx, p.Image, glance.CreateOpts{ID: id, Name: prefix + "-" + id[:8], DiskFormat: "raw", ContainerFormat: "bare",
		Visibility: "shared", Properties: map[string]string{validator.PropUUID: id, validator.PropVO: "demo", validator.PropTag: prefix + "-" + id[:8]}}).Extract(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = glance.Reactivate(context.Background(), mirror, id).ExtractErr()
		_ = glance.Delete(context.Background(), mirror, id).ExtractErr()
	})
	if err := glance.Upload(ctx, p.Image, id, bytes.NewReader(make([]byte, 1024))).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	return projectVars(p), mirror, id
}
