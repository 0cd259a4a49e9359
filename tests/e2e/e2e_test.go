// Package e2e runs the whole imagetrust story (tests/e2e/story.sh) against
// its own real Keystone, Glance, placement and nova-api on loopback, with
// Glance's property protections from etc/glance and the boot proxy, over
// HTTPS, as the catalog's public compute endpoint. Only Neutron is a stand-in
// (fake-neutron.py): it does not run here. It runs twice: on the test stack's
// defaults (TestStory), and under OpenStack's new policy defaults with the
// operator guide's identities (TestStorySecureRBAC).
package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

func TestMain(m *testing.M) { os.Exit(ostest.Main(m)) }

func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStory(t *testing.T) {
	// This Glance offers no glance-direct, so the story's syncs take the
	// fallback of sync.ingest = "auto" (one verified PUT /file per image);
	// make demo, TestStorySecureRBAC and the glancesync tests cover
	// glance-direct.
	story(t, []string{"IMAGETRUST_GLANCE_IMPORT_METHODS=web-download"},
		"glance-direct is not enabled: uploading image data in one PUT")
}

// TestStorySecureRBAC tells the story on a stack that runs the way the
// operator guide documents a site under OpenStack's new policy defaults:
// enforce_new_defaults and enforce_scope in Keystone, Glance, placement and
// Nova, Glance's enforce_secure_rbac, the mirror user with member and
// imagetrust only (no admin), the proxy user with reader and service, a
// project-scoped admin for the local flags, and Nova's policy.yaml from
// etc/nova/policy-retire-delete.yaml, so that the story's step 14 checks
// retire = "delete" as the non-admin mirror.
func TestStorySecureRBAC(t *testing.T) {
	r := root(t)
	story(t, []string{
		"IMAGETRUST_SECURE_RBAC=1",
		"IMAGETRUST_NOVA_POLICY=" + filepath.Join(r, "etc/nova/policy-retire-delete.yaml"),
	},
		"image staged and verified; importing",
		"E1 is deleted",
		"D1, which vm-10 uses, is deactivated and hidden, not deleted")
}

// story starts a stack with start.sh's environment plus env, runs story.sh
// on it, and wants the story's usual output plus each of wants.
func story(t *testing.T, env []string, wants ...string) {
	if testing.Short() {
		t.Skip("the end-to-end story takes a few minutes")
	}
	if _, err := os.Stat("/usr/bin/glance-api"); err != nil {
		if os.Getenv("IMAGETRUST_SKIP_OPENSTACK") == "1" {
			t.Skip("OpenStack packages not installed (tests/openstack/install.sh)")
		}
		t.Fatal("OpenStack packages not installed: run tests/openstack/install.sh (make test does)")
	}
	r := root(t)
	bin := t.TempDir() // story.sh runs `imagetrust` from PATH
	if err := os.Symlink(ostest.Binary(t), filepath.Join(bin, "imagetrust")); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "stack")
	start := exec.Command(filepath.Join(r, "tests/openstack/start.sh"), state, "--with-nova")
	start.Env = append(os.Environ(),
		"IMAGETRUST_PROPERTY_PROTECTIONS="+filepath.Join(r, "etc/glance/property-protections.conf"),
		"IMAGETRUST_GLANCE_POLICY="+filepath.Join(r, "etc/glance/policy.yaml"),
	)
	start.Env = append(start.Env, env...)
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("start.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		stop := exec.Command(filepath.Join(r, "tests/openstack/stop.sh"), state)
		if out, err := stop.CombinedOutput(); err != nil {
			t.Logf("stop.sh: %v\n%s", err, out)
		}
	})
	work := t.TempDir()
	story := exec.Command("bash", filepath.Join(r, "tests/e2e/story.sh"), state, work)
	story.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	var out bytes.Buffer
	story.Stdout, story.Stderr = &out, &out
	begin := time.Now()
	err := story.Run()
	t.Logf("story took %s", time.Since(begin).Round(time.Second))
	if err != nil {
		t.Fatalf("story.sh failed: %v\n%s", err, out.String())
	}
	for _, want := range append([]string{"The story is complete.", "may not boot", "blacklist", "revoked", "expired",
		"the proxy answers on https://"}, wants...) {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the story's output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out.String())
	}
}
