package ostest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	osconfig "github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// Project is a Keystone project of its own, with a user holding the mirror
// user's roles in it (admin, member, imagetrust): a mirror project whose
// catalogue holds only one test's images, whatever other tests do in the
// shared Glance.
type Project struct {
	// ID and Name of the project; the user has the same name.
	ID, Name string
	// Password is the user's (for OS_PASSWORD).
	Password string
	// CloudName is the entry of CloudsYAML for the user in the project.
	CloudName string
	// CloudsYAML is a clouds.yaml holding that one entry.
	CloudsYAML string
	// Image is a Glance v2 client authenticated as the user.
	Image *gophercloud.ServiceClient

	// userID is the user's id
	userID string
	// idc and admin are Keystone and Glance clients of the stack's admin,
	// for the deletion
	idc, admin *gophercloud.ServiceClient
}

// Env returns the variables that make imagetrust (and the openstack
// client) use the project's credentials: OS_CLOUD and
// OS_CLIENT_CONFIG_FILE.
func (p *Project) Env() []string {
	return []string{"OS_CLOUD=" + p.CloudName, "OS_CLIENT_CONFIG_FILE=" + p.CloudsYAML}
}

// NewProject creates a project named prefix-XXXXXXXX and its user, and
// writes dir/clouds.yaml with the entry cloudName for them. Main deletes
// the project, its user and its images once the tests are done
// (Project.Delete), on a stack it did not start (IMAGETRUST_OPENSTACK_STATE:
// one it started goes with it), unless IMAGETRUST_OPENSTACK_KEEP=1; in a
// test binary without Main, they are deleted when t ends.
func (c *Cloud) NewProject(t testing.TB, dir, prefix, cloudName string) *Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ao, eo := c.AuthOptions(t, CloudAdmin)
	idc, err := openstack.NewIdentityV3(c.Provider(t, CloudAdmin), eo)
	if err != nil {
		t.Fatal(err)
	}
	name := prefix + "-" + uuid.NewString()[:8]
	p, err := projects.Create(ctx, idc, projects.CreateOpts{Name: name, DomainID: "default", Description: "imagetrust test mirror"}).Extract()
	if err != nil {
		t.Fatalf("ostest: creating project: %v", err)
	}
	password := uuid.NewString()
	admin, err := openstack.NewImageV2(c.Provider(t, CloudAdmin), eo)
	if err != nil {
		t.Fatal(err)
	}
	out := &Project{ID: p.ID, Name: name, CloudName: cloudName, CloudsYAML: filepath.Join(dir, "clouds.yaml"), idc: idc, admin: admin}
	if !c.owned {
		mu.Lock()
		main := inMain
		mu.Unlock()
		if main {
			AtExit(func() error { return out.Delete(context.Background()) })
		} else {
			// no Main to run AtExit: deleted when t ends
			t.Cleanup(func() {
				if err := out.Delete(context.Background()); err != nil {
					t.Logf("ostest: clean-up failed (left behind): %v", err)
				}
			})
		}
	}
	u, err := users.Create(ctx, idc, users.CreateOpts{Name: name, DomainID: "default", Password: password, DefaultProjectID: p.ID}).Extract()
	if err != nil {
		t.Fatalf("ostest: creating user: %v", err)
	}
	out.userID = u.ID
	pages, err := roles.List(idc, nil).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := roles.ExtractRoles(pages)
	if err != nil {
		t.Fatal(err)
	}
	// Like the stack's mirror user: Glance's default policy wants admin for
	// deactivate/reactivate; imagetrust is the role property protections name.
	want := map[string]bool{"admin": true, "member": true, "imagetrust": true}
	for _, r := range all {
		if want[r.Name] {
			if err := roles.Assign(ctx, idc, r.ID, roles.AssignOpts{UserID: u.ID, ProjectID: p.ID}).ExtractErr(); err != nil {
				t.Fatalf("ostest: assigning role %s: %v", r.Name, err)
			}
		}
	}
	out.Password = password
	yaml := fmt.Sprintf(`clouds:
  %s:
    auth:
      auth_url: %s
      username: %s
      password: %s
      project_name: %s
      user_domain_name: Default
      project_domain_name: Default
    region_name: %s
    interface: public
    identity_api_version: 3
`, cloudName, ao.IdentityEndpoint, name, password, name, eo.Region)
	if err := os.WriteFile(out.CloudsYAML, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	pc, err := osconfig.NewProviderClient(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: ao.IdentityEndpoint, Username: name, Password: password, DomainName: "Default",
		Scope: &gophercloud.AuthScope{ProjectName: name, DomainName: "Default"}, AllowReauth: true,
	})
	if err != nil {
		t.Fatalf("ostest: authenticating as %s: %v", name, err)
	}
	if out.Image, err = openstack.NewImageV2(pc, eo); err != nil {
		t.Fatal(err)
	}
	return out
}

// Delete deletes the project's images (every one it owns, hidden or not,
// protected or not), its user and the project itself, as the stack's
// admin. Already gone is no error; every other failure is returned (all of
// them, joined), after the rest was tried.
func (p *Project) Delete(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var errs []error
	gone := func(err error) bool { return err == nil || gophercloud.ResponseCodeIs(err, http.StatusNotFound) }
	for _, hidden := range []bool{false, true} {
		pages, err := images.List(p.admin, images.ListOpts{Owner: p.ID, Hidden: hidden}).AllPages(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the images of project %s: %w", p.Name, err))
			continue
		}
		all, err := images.ExtractImages(pages)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the images of project %s: %w", p.Name, err))
			continue
		}
		for _, im := range all {
			if im.Protected {
				if _, err := images.Update(ctx, p.admin, im.ID, images.UpdateOpts{images.ReplaceImageProtected{NewProtected: false}}).Extract(); !gone(err) {
					errs = append(errs, fmt.Errorf("unprotecting image %s of project %s: %w", im.ID, p.Name, err))
					continue
				}
			}
			if err := images.Delete(ctx, p.admin, im.ID).ExtractErr(); !gone(err) {
				errs = append(errs, fmt.Errorf("deleting image %s of project %s: %w", im.ID, p.Name, err))
			}
		}
	}
	if p.userID != "" {
		if err := users.Delete(ctx, p.idc, p.userID).ExtractErr(); !gone(err) {
			errs = append(errs, fmt.Errorf("deleting user %s: %w", p.Name, err))
		}
	}
	if err := projects.Delete(ctx, p.idc, p.ID).ExtractErr(); !gone(err) {
		errs = append(errs, fmt.Errorf("deleting project %s: %w", p.Name, err))
	}
	return errors.Join(errs...)
}

// processProjects are the projects of ProcessProject, by stack state
// directory and prefix.
var processProjects struct {
	sync.Mutex
	m map[[2]string]*Project
}

// ProcessProject returns this test process's own mirror project on c for
// prefix, made on first use by NewProject (a user holding the stack mirror
// user's roles, the clouds.yaml entry CloudMirror) and then shared by the
// process's tests: a test package that syncs (or runs the CRL job, or
// uploads images a boot then looks up) as its own mirror cannot have its
// images retired by another test process syncing into the stack's shared
// mirror project, nor retire theirs. Its clouds.yaml lives in a temporary
// directory removed once the tests are done, after the project: the test
// binary runs Main.
func (c *Cloud) ProcessProject(t testing.TB, prefix string) *Project {
	t.Helper()
	processProjects.Lock()
	defer processProjects.Unlock()
	k := [2]string{c.StateDir, prefix}
	if p := processProjects.m[k]; p != nil {
		return p
	}
	mu.Lock()
	main := inMain
	mu.Unlock()
	if !main {
		t.Fatal("ostest: ProcessProject needs the test binary to run ostest.Main (its project outlives the test that makes it)")
	}
	dir, err := os.MkdirTemp("", prefix+"-mirror-")
	if err != nil {
		t.Fatal(err)
	}
	AtExit(func() error { return os.RemoveAll(dir) })
	p := c.NewProject(t, dir, prefix, CloudMirror)
	if processProjects.m == nil {
		processProjects.m = map[[2]string]*Project{}
	}
	processProjects.m[k] = p
	return p
}
