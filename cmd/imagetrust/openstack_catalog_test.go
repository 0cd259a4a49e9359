package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/endpoints"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/regions"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/services"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testpki"
)

// catalogEndpoint is one endpoint a test region gets: service type,
// interface, URL (Keystone's templates allowed).
type catalogEndpoint struct{ stype, iface, url string }

// catalogRegionPrefix begins the name of every Keystone region
// TestCatalogVariations adds (addRegion): the regions it owns, which
// removeCatalogLeftovers removes when a killed run left them behind.
const catalogRegionPrefix = "itcat-"

// catalogRegionName is the name of a region this process's tests add:
// itcat-PID-what-<random>. The process id tells removeCatalogLeftovers
// whose it is, so that two `go test ./cmd/imagetrust` on one stack do not
// remove each other's regions (as ostest.Cloud.ProcessProject gives each
// process its own project).
func catalogRegionName(what string) string {
	return fmt.Sprintf("%s%d-%s-%s", catalogRegionPrefix, os.Getpid(), what, uuid.NewString()[:6])
}

// catalogRegionLive reports whether region id (catalogRegionName's form)
// belongs to a test process that still runs: this one, or another live
// process whose executable is a test binary (*.test; one that cannot be
// read, another user's, counts as live). A name without a process id
// (runs before catalogRegionName) or of a process gone is a leftover.
func catalogRegionLive(id string) bool {
	field, _, _ := strings.Cut(strings.TrimPrefix(id, catalogRegionPrefix), "-")
	pid, err := strconv.Atoi(field)
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return true
	}
	// a pid taken again by another program: the test process is gone
	return strings.HasSuffix(strings.TrimSuffix(exe, " (deleted)"), ".test")
}

// legacyCatalogRegion matches the regions runs of TestCatalogVariations
// made before they were named with catalogRegionPrefix.
var legacyCatalogRegion = regexp.MustCompile(`^(usual|versioned|versionless|dollar|internal|onekeystone|nocinder|nonova|noglance|down)-[0-9a-f]{6}$`)

// catalogAdmin is a Keystone client of the stack's admin, for a test that
// changes the catalog, with the leftovers of earlier runs removed
// (removeCatalogLeftovers).
func catalogAdmin(t *testing.T, c *ostest.Cloud) *gophercloud.ServiceClient {
	t.Helper()
	idc, err := openstack.NewIdentityV3(c.Provider(t, ostest.CloudAdmin), gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	removeCatalogLeftovers(t, idc)
	return idc
}

// removeCatalogLeftovers deletes the regions (and their endpoints) that an
// earlier run of TestCatalogVariations on this stack added and, killed,
// did not remove: the stack's catalogue would then name several regions,
// and the cases that name none would fail (exit 2). The regions of a test
// process that still runs (catalogRegionLive: another `go test` on the
// stack, this one) are left alone.
func removeCatalogLeftovers(t *testing.T, idc *gophercloud.ServiceClient) {
	t.Helper()
	ctx := context.Background()
	pages, err := regions.List(idc, nil).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := regions.ExtractRegions(pages)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !strings.HasPrefix(r.ID, catalogRegionPrefix) && !legacyCatalogRegion.MatchString(r.ID) {
			continue
		}
		if strings.HasPrefix(r.ID, catalogRegionPrefix) && catalogRegionLive(r.ID) {
			continue
		}
		pages, err := endpoints.List(idc, endpoints.ListOpts{RegionID: r.ID}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		eps, err := endpoints.ExtractEndpoints(pages)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range eps {
			if e.Region != r.ID {
				continue // a Keystone that ignored the filter
			}
			if err := endpoints.Delete(ctx, idc, e.ID).ExtractErr(); err != nil {
				t.Fatalf("leftover endpoint %s of region %s: %v", e.ID, r.ID, err)
			}
		}
		if err := regions.Delete(ctx, idc, r.ID).ExtractErr(); err != nil {
			t.Fatalf("leftover region %s: %v", r.ID, err)
		}
		t.Logf("removed region %s and its %d endpoints, left by an earlier run", r.ID, len(eps))
	}
}

// TestCatalogLeftoversSpareLiveRuns: removeCatalogLeftovers (each test
// that changes the catalog begins with it) removes the regions of a test
// process that is gone, and of runs before the names held a process id,
// but not those of a test process that still runs: another `go test
// ./cmd/imagetrust` on the same stack. A copy of sleep named x.test
// stands for that process. Against the real Keystone. Before, every itcat-
// region was removed, and two runs on one stack removed each other's
// regions in the middle of their cases.
func TestCatalogLeftoversSpareLiveRuns(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	idc := catalogAdmin(t, c)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep to stand for another test process")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(t.TempDir(), "imagetrust.test")
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	live := exec.Command(fake, "600")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })
	gone := exec.Command(fake, "0")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	name := func(pid int, what string) string {
		return fmt.Sprintf("%s%d-%s-%s", catalogRegionPrefix, pid, what, uuid.NewString()[:6])
	}
	regionsOf := map[string]bool{
		name(live.Process.Pid, "other"):                       true,  // another run's, live
		catalogRegionName("mine"):                             true,  // this process's
		name(gone.Process.Pid, "gone"):                        false, // a killed run's
		catalogRegionPrefix + "usual-" + uuid.NewString()[:6]: false, // before process ids
	}
	for id := range regionsOf {
		if _, err := regions.Create(ctx, idc, regions.CreateOpts{ID: id}).Extract(); err != nil {
			t.Fatalf("region %s: %v", id, err)
		}
		t.Cleanup(func() { _ = regions.Delete(context.Background(), idc, id).ExtractErr() })
	}
	removeCatalogLeftovers(t, idc)
	for id, kept := range regionsOf {
		_, err := regions.Get(ctx, idc, id).Extract()
		switch {
		case kept && err != nil:
			t.Errorf("region %s of a live test process removed as a leftover: %v", id, err)
		case !kept && err == nil:
			t.Errorf("leftover region %s not removed", id)
		}
	}
}

// addRegion makes a region of its own in the real Keystone, named
// itcat-PID-prefix-<random> (catalogRegionName), with eps; the test's
// cleanup removes them.
func addRegion(t *testing.T, idc *gophercloud.ServiceClient, prefix string, eps []catalogEndpoint) string {
	t.Helper()
	ctx := context.Background()
	name := catalogRegionName(prefix)
	if _, err := regions.Create(ctx, idc, regions.CreateOpts{ID: name}).Extract(); err != nil {
		t.Fatalf("region %s: %v", name, err)
	}
	t.Cleanup(func() { _ = regions.Delete(context.Background(), idc, name).ExtractErr() })
	for _, ep := range eps {
		pages, err := services.List(idc, services.ListOpts{ServiceType: ep.stype}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		svcs, err := services.ExtractServices(pages)
		if err != nil || len(svcs) == 0 {
			t.Fatalf("no service of type %s in the stack's Keystone: %v", ep.stype, err)
		}
		e, err := endpoints.Create(ctx, idc, endpoints.CreateOpts{ServiceID: svcs[0].ID, Region: name,
			Availability: gophercloud.Availability(ep.iface), URL: ep.url}).Extract()
		if err != nil {
			t.Fatalf("endpoint %v: %v", ep, err)
		}
		t.Cleanup(func() { _ = endpoints.Delete(context.Background(), idc, e.ID).ExtractErr() })
	}
	return name
}

// catalogCloud writes a clouds.yaml with the cloud "site" of the mirror
// user of the process's own mirror project (ownMirror: the daemons these
// tests start make their passes and runs there, not in the stack's shared
// mirror project) and returns the environment that names it.
func catalogCloud(t *testing.T, c *ostest.Cloud, authURL, region, iface, cacert string) map[string]string {
	t.Helper()
	p := ownMirror(t, c)
	y := fmt.Sprintf("clouds:\n  site:\n    auth:\n      auth_url: %q\n      username: %q\n      password: %q\n      project_name: %q\n      project_domain_name: Default\n      user_domain_name: Default\n    identity_api_version: 3\n",
		authURL, p.Name, p.Password, p.Name)
	if region != "" {
		y += fmt.Sprintf("    region_name: %q\n", region)
	}
	if iface != "" {
		y += fmt.Sprintf("    interface: %q\n", iface)
	}
	if cacert != "" {
		y += fmt.Sprintf("    cacert: %q\n", cacert)
	}
	f := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(f, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"OS_CLOUD": "site", "OS_CLIENT_CONFIG_FILE": f}
}

// useServices makes the daemons' clients on one login as the daemons do
// (the proxy's openProxyClients with volume_policy, the sync's Glance and
// Nova) and asks each real service one question that a wrong path would
// fail (a list: 404 on .../v2/v2/images, on /servers without v2.1).
func useServices(ctx context.Context, getenv func(string) string, volumePolicy string, withNova bool) error {
	oc, err := openProxyClients(ctx, "", itconfig.TokenValidationSelf, volumePolicy, getenv, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	l := oc.login
	if _, err := images.List(oc.lookup.sc, images.ListOpts{Limit: 1}).AllPages(ctx); err != nil {
		return fmt.Errorf("glance %s: %w", oc.lookup.sc.ResourceBaseURL(), err)
	}
	if _, err := oc.identity.Validate(ctx, l.pc.Token()); err != nil {
		return fmt.Errorf("keystone: %w", err)
	}
	if cv, ok := oc.volumes.(*cinderVolumes); ok {
		if _, err := volumes.List(cv.client(l.pc.Token()), volumes.ListOpts{Limit: 1}).AllPages(ctx); err != nil {
			return fmt.Errorf("cinder %s: %w", cv.endpoint, err)
		}
	}
	if withNova {
		nc, err := newComputeClient(l.pc, l.eo)
		if err != nil {
			return err
		}
		if _, err := servers.List(nc, servers.ListOpts{Limit: 1}).AllPages(ctx); err != nil {
			return fmt.Errorf("nova %s: %w", nc.ResourceBaseURL(), err)
		}
	}
	return nil
}

// TestCatalogVariations runs the daemons' login and service clients
// against the real Keystone, Glance, nova-api and cinder-api of
// tests/openstack, with the catalogs real sites have: each case gets a
// region of its own, with endpoints registered as a deployment tool might
// (version suffixes, project templates, internal endpoints only reachable,
// services missing), and the auth_url as operators write it.
func TestCatalogVariations(t *testing.T) {
	c := ostest.Start(t, ostest.Options{WithNova: true, WithCinder: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	idc := catalogAdmin(t, c)
	glance := strings.TrimSuffix(c.Env["GLANCE_URL"], "/")
	nova := strings.TrimSuffix(c.Env["NOVA_URL"], "/v2.1")
	cinder := strings.TrimSuffix(c.Env["CINDER_URL"], "/v3")
	keystone := strings.TrimSuffix(c.KeystoneURL, "/v3")
	if glance == "" || nova == c.Env["NOVA_URL"] || cinder == c.Env["CINDER_URL"] || keystone == c.KeystoneURL {
		t.Fatalf("unexpected stack URLs: %s %s %s %s", glance, c.Env["NOVA_URL"], c.Env["CINDER_URL"], c.KeystoneURL)
	}
	// nothing listens there: an endpoint that must not be used
	const dead = "http://127.0.0.1:1"

	// all four services with interface iface at the given URLs
	site := func(iface, g, n, ci string) []catalogEndpoint {
		return []catalogEndpoint{{"identity", iface, c.KeystoneURL}, {"image", iface, g}, {"compute", iface, n},
			{"volumev3", iface, ci}, {"block-storage", iface, ci}}
	}
	usual := site("public", glance, nova+"/v2.1/%(tenant_id)s", cinder+"/v3/%(project_id)s")
	without := func(eps []catalogEndpoint, stypes ...string) []catalogEndpoint {
		var out []catalogEndpoint
		for _, e := range eps {
			keep := true
			for _, s := range stypes {
				keep = keep && e.stype != s
			}
			if keep {
				out = append(out, e)
			}
		}
		return out
	}

	rUsual := addRegion(t, idc, "usual", usual)
	rVersioned := addRegion(t, idc, "versioned", site("public", glance+"/v2", nova+"/v2.1", cinder+"/v3"))
	rVersionless := addRegion(t, idc, "versionless", site("public", glance+"/", nova+"/", cinder+"/"))
	rDollar := addRegion(t, idc, "dollar", site("public", glance, nova+"/v2.1/$(project_id)s", cinder+"/v3/$(project_id)s"))
	rInternal := addRegion(t, idc, "internal", append(site("internal", glance, nova+"/v2.1", cinder+"/v3/%(project_id)s"),
		site("public", dead, dead+"/v2.1", dead+"/v3/%(project_id)s")...))
	rOneKeystone := addRegion(t, idc, "onekeystone", without(usual, "identity"))
	rNoCinder := addRegion(t, idc, "nocinder", without(usual, "volumev3", "block-storage"))
	rNoNova := addRegion(t, idc, "nonova", without(usual, "compute"))
	rNoGlance := addRegion(t, idc, "noglance", without(usual, "image"))
	rDown := addRegion(t, idc, "down", site("public", dead, dead+"/v2.1", dead+"/v3"))

	// a TLS front for Keystone, with a self-signed certificate
	certFile, keyFile, _ := testpki.TLSServer(t, t.TempDir(), "keystone")
	ku, _ := url.Parse(keystone)
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(ku))
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	front.TLS = &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
	front.StartTLS()
	defer front.Close()

	for _, tc := range []struct {
		name         string
		authURL      string
		region       string
		iface        string
		cacert       string
		env          map[string]string // added to the cloud's
		volumePolicy string
		noNova       bool
		want         []string // in the error; none: works
		wantUsage    bool     // the error is a usageError (exit 2)
	}{
		{name: "ok the usual: glance without version, nova /v2.1/%(tenant_id)s, cinder /v3/%(project_id)s", region: rUsual},
		{name: "ok versions in every endpoint: glance /v2, nova /v2.1, cinder /v3 without project", region: rVersioned},
		{name: "ok no version in any endpoint", region: rVersionless},
		{name: "ok $(project_id)s templates", region: rDollar},
		{name: "ok interface internal, the public endpoints unreachable", region: rInternal, iface: "internal"},
		{name: "ok OS_INTERFACE internal over the cloud's public", region: rInternal, iface: "public", env: map[string]string{"OS_INTERFACE": "internal"}},
		{name: "ok OS_REGION_NAME picks the region", region: rDown, env: map[string]string{"OS_REGION_NAME": rUsual}},
		{name: "ok identity only in RegionOne: the auth_url's Keystone validates", region: rOneKeystone},
		{name: "ok no compute for the proxy", region: rNoNova, noNova: true},
		{name: "ok no block-storage with volume_policy refuse", region: rNoCinder, volumePolicy: itconfig.VolumeRefuse, noNova: true},
		{name: "ok auth_url without /v3", authURL: keystone, region: rUsual},
		{name: "ok auth_url without /v3, trailing slash", authURL: keystone + "/", region: rUsual},
		{name: "ok auth_url /v3/", authURL: c.KeystoneURL + "/", region: rUsual},
		{name: "ok https auth_url with cacert", authURL: front.URL + "/v3", cacert: certFile, region: rUsual},
		{name: "fail https auth_url without cacert", authURL: front.URL + "/v3", region: rUsual,
			want: []string{"certificate signed by unknown authority", "cacert or OS_CACERT"}},
		{name: "fail a region that does not exist", region: "RegionNowhere", wantUsage: true,
			want: []string{`region "RegionNowhere"`, "RegionOne", rUsual, rInternal}},
		{name: "fail interface internal where only public endpoints are", region: rUsual, iface: "internal", wantUsage: true,
			want: []string{"no image endpoint with interface internal", rUsual, fmt.Sprintf("region %q (public)", rUsual)}},
		{name: "fail no block-storage with volume_policy check-image", region: rNoCinder, wantUsage: true,
			want: []string{"volume_policy = check-image", "block-storage", "interface public", rNoCinder}},
		{name: "fail no image service", region: rNoGlance, wantUsage: true,
			want: []string{"no image endpoint", "interface public", rNoGlance}},
		{name: "fail no region_name with the services in several regions", region: "", wantUsage: true,
			want: []string{"several regions", "RegionOne", rUsual, "region_name"}},
		{name: "fail the region's glance unreachable", region: rDown,
			want: []string{"image endpoint", rDown, "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authURL := tc.authURL
			if authURL == "" {
				authURL = c.KeystoneURL
			}
			vars := catalogCloud(t, c, authURL, tc.region, tc.iface, tc.cacert)
			for k, v := range tc.env {
				vars[k] = v
			}
			policy := tc.volumePolicy
			if policy == "" {
				policy = itconfig.VolumeCheckImage
			}
			err := useServices(ctx, func(k string) string { return vars[k] }, policy, !tc.noNova)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if got := errors.Is(err, errUsage); got != tc.wantUsage {
				t.Errorf("usage error (exit 2) %v, want %v: %v", got, tc.wantUsage, err)
			}
			if strings.Contains(err.Error(), ownMirror(t, c).Password) {
				t.Fatalf("the error quotes the password: %v", err)
			}
		})
	}

	// The --once runs, at start: exit 2 and a message naming what the
	// catalog lacks, before any request is served. (The daemons wait for
	// the catalog instead: TestDaemonsWaitForCatalogAtStart.)
	dir := publish(t)
	trust, err := os.ReadFile(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	syncCfg := filepath.Join(dir, "pki", "sync.toml")
	if err := os.WriteFile(syncCfg, append(trust, "\n[sync]\nretire = \"keep\"\nlock_file = \"sync.lock\"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		region string
		args   func() []string
		want   []string
	}{
		{"fail sync --once without glance is 2", rNoGlance, func() []string {
			return []string{"sync", "--once", "--config", syncCfg}
		}, []string{"sync:", "no image endpoint", rNoGlance}},
		{"fail crl --once without glance is 2", rNoGlance, func() []string {
			return []string{"crl", "--once", "--config", "pki/imagetrust.toml"}
		}, []string{"crl:", "no image endpoint", rNoGlance}},
		{"fail sync --once in a region that does not exist is 2", "RegionNowhere", func() []string {
			return []string{"sync", "--once", "--config", syncCfg}
		}, []string{"sync:", `region "RegionNowhere"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := catalogCloud(t, c, c.KeystoneURL, tc.region, "", "")
			code, _, stderr := cliEnv(t, dir, vars, tc.args()...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s", code, exitUsage, stderr)
			}
			t.Log(stderr)
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}
