package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/validator"
)

// TestMain runs the tests with ostest.Main: a stack the package starts is
// shared by its tests and stopped at the end, and the process's own mirror
// project (ownMirror) is deleted once every test is done.
func TestMain(m *testing.M) { os.Exit(ostest.Main(m)) }

// ownMirror returns this test process's own mirror project on c
// (ostest.Cloud.ProcessProject: a user holding the stack mirror user's
// roles, admin, member and imagetrust, so Glance's property protections
// and policy treat it as the mirror). The tests that run a sync pass or a
// CRL run against the real Glance do it as this user, not as the stack's
// shared one: a pass retires (under retire = "delete", deletes) every
// image of its project of a VO it is configured for and has no source of
// (the demo VO of every `pki init` here), and a CRL run judges every image
// of its project, so another process's pass into the shared project (a
// second `go test ./cmd/imagetrust` on the stack) would delete the images
// TestProxyCheckImageCinder boots from, and this one's passes and runs
// would act on the images other packages' tests put there
// (internal/glance's).
func ownMirror(t testing.TB, c *ostest.Cloud) *ostest.Project {
	t.Helper()
	return c.ProcessProject(t, "cmdit")
}

// ownMirrorVars are the OS_CLOUD and OS_CLIENT_CONFIG_FILE of ownMirror.
func ownMirrorVars(t testing.TB, c *ostest.Cloud) map[string]string {
	t.Helper()
	p := ownMirror(t, c)
	return map[string]string{"OS_CLOUD": p.CloudName, "OS_CLIENT_CONFIG_FILE": p.CloudsYAML}
}

// ownMirrorEnv is the environment of a built binary run as ownMirror.
func ownMirrorEnv(t testing.TB, c *ostest.Cloud) []string {
	t.Helper()
	return append(os.Environ(), ownMirror(t, c).Env()...)
}

// TestSyncTestsLeaveTheSharedMirrorAlone: a sync pass the way this
// package's tests run one (catalogCloud's credentials, daemonConfig's VO
// demo with no source, here retire = "delete") leaves an image of VO demo
// in the stack's shared mirror project as it was: it syncs into the
// process's own project (ownMirror), the same for every test. Before, the
// pass ran as the shared mirror user and retired the image (no compute
// service: deactivated and hidden; with one, deleted), so a second `go
// test ./cmd/imagetrust` on the stack deleted the images
// TestProxyCheckImageCinder had just uploaded for its boots.
func TestSyncTestsLeaveTheSharedMirrorAlone(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	shared := c.ImageClient(t, ostest.CloudMirror)
	id := uuid.NewString()
	if _, err := glance.Create(ctx, shared, glance.CreateOpts{ID: id, Name: "shared-" + id[:8], DiskFormat: "raw", ContainerFormat: "bare",
		Visibility: "shared", Properties: map[string]string{validator.PropUUID: id, validator.PropVO: "demo", validator.PropTag: "shared-" + id[:8]}}).Extract(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin := c.ImageClient(t, ostest.CloudAdmin)
		_ = glance.Reactivate(context.Background(), admin, id).ExtractErr()
		_ = glance.Delete(context.Background(), admin, id).ExtractErr()
	})
	if err := glance.Upload(ctx, shared, id, bytes.NewReader(make([]byte, 1024))).ExtractErr(); err != nil {
		t.Fatal(err)
	}

	path, _ := daemonConfig(t)
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(text), `retire = "keep"`, `retire = "delete"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	// RegionOne: the catalog tests' regions (another process's, at the
	// same time) have image endpoints too
	vars := catalogCloud(t, c, c.KeystoneURL, "RegionOne", "", "")
	code, _, stderr := cliEnv(t, t.TempDir(), vars, "sync", "--once", "--config", path)
	if !strings.Contains(stderr, `msg="sync pass done"`) {
		t.Fatalf("no sync pass (exit %d):\n%s", code, stderr)
	}
	im, err := glance.Get(ctx, c.ImageClient(t, ostest.CloudAdmin), id).Extract()
	if err != nil {
		t.Fatalf("the shared mirror project's image after the pass: %v\n%s", err, stderr)
	}
	if im.Status != "active" || im.Hidden {
		t.Errorf("the shared mirror project's image of VO demo is %s (hidden %v) after a test's pass: the pass ran in the shared project\n%s", im.Status, im.Hidden, stderr)
	}

	// catalogCloud, the built binary's environment and the clouds.yaml
	// name the one project of the process
	_, mirror := tokenIDs(t, c.Provider(t, ostest.CloudMirror))
	p := ownMirror(t, c)
	if p.ID == mirror {
		t.Fatalf("the process's mirror project is the stack's shared one, %s", mirror)
	}
	for what, got := range map[string]string{"ownMirrorVars": ownMirrorVars(t, c)["OS_CLIENT_CONFIG_FILE"], "again": ownMirror(t, c).CloudsYAML} {
		if got != p.CloudsYAML {
			t.Errorf("%s: clouds.yaml %s, want the process's %s", what, got, p.CloudsYAML)
		}
	}
}
