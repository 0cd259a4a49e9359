package ostest

import (
	"context"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/services"
)

// SetGlanceLimit sets the mirror project's Keystone limit resource (one of
// Glance's: image_size_total, image_stage_total in MiB, image_count_total,
// image_count_uploading) to value, as an operator raising or lowering the
// project's quota would (`openstack limit create/set`): it overrides the
// registered default. Glance (oslo.limit 2.0) reads limits anew on each
// check. The stack must run with Options.GlanceLimits.
func (c *Cloud) SetGlanceLimit(t testing.TB, resource string, value int) {
	t.Helper()
	if c.Env["GLANCE_LIMITS"] == "" {
		t.Fatalf("ostest: SetGlanceLimit: the stack runs without Keystone unified limits (Options.GlanceLimits)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ao, eo := c.AuthOptions(t, "system-admin")
	pc, err := openstack.AuthenticatedClient(ctx, ao)
	if err != nil {
		t.Fatalf("ostest: SetGlanceLimit: %v", err)
	}
	id, err := openstack.NewIdentityV3(pc, eo)
	if err != nil {
		t.Fatalf("ostest: SetGlanceLimit: %v", err)
	}
	pages, err := services.List(id, services.ListOpts{ServiceType: "image"}).AllPages(ctx)
	if err != nil {
		t.Fatalf("ostest: SetGlanceLimit: services: %v", err)
	}
	svcs, err := services.ExtractServices(pages)
	if err != nil || len(svcs) != 1 {
		t.Fatalf("ostest: SetGlanceLimit: %d image services, %v", len(svcs), err)
	}
	project := c.Env["MIRROR_PROJECT_ID"]
	pages, err = limits.List(id, limits.ListOpts{ServiceID: svcs[0].ID, ProjectID: project, ResourceName: resource}).AllPages(ctx)
	if err != nil {
		t.Fatalf("ostest: SetGlanceLimit: limits: %v", err)
	}
	have, err := limits.ExtractLimits(pages)
	if err != nil {
		t.Fatalf("ostest: SetGlanceLimit: limits: %v", err)
	}
	if len(have) > 0 {
		if _, err := limits.Update(ctx, id, have[0].ID, limits.UpdateOpts{ResourceLimit: &value}).Extract(); err != nil {
			t.Fatalf("ostest: SetGlanceLimit %s=%d: %v", resource, value, err)
		}
		return
	}
	_, err = limits.BatchCreate(ctx, id, limits.BatchCreateOpts{limits.CreateOpts{
		RegionID: "RegionOne", ProjectID: project, ServiceID: svcs[0].ID, ResourceName: resource, ResourceLimit: value,
	}}).Extract()
	if err != nil {
		t.Fatalf("ostest: SetGlanceLimit %s=%d: %v", resource, value, err)
	}
}

// RestartGlance restarts the stack's glance-api with each setting
// (glance-api.conf [DEFAULT] options, such as "image_size_cap") set first,
// with tests/openstack/restart-glance.sh, and waits for it to answer. Only
// for a stack of the test's own (StartPrivate): other tests' requests
// would fail meanwhile.
func (c *Cloud) RestartGlance(t testing.TB, settings map[string]string) {
	t.Helper()
	if c.scripts == "" || !c.owned {
		t.Fatalf("ostest: RestartGlance needs a stack this process started (StartPrivate)")
	}
	args := []string{c.StateDir}
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		args = append(args, k+"="+settings[k])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(c.scripts, "restart-glance.sh"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ostest: restart-glance.sh: %v\n%s", err, out)
	}
	if env, err := readEnv(filepath.Join(c.StateDir, "env")); err == nil {
		mu.Lock()
		c.Env = env
		mu.Unlock()
	}
}
