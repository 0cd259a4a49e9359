package ostest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// Cloud names in the stack's clouds.yaml.
const (
	// CloudAdmin is user admin in project admin.
	CloudAdmin = "admin"
	// CloudMirror is user imagetrust in project mirror (roles admin, member,
	// imagetrust): the identity the mirror runs as.
	CloudMirror = "mirror"
	// CloudDemo is user demo in project demo (role member only).
	CloudDemo = "demo"
)

// AuthOptions returns the authentication and endpoint options of cloudName
// as gophercloud's clouds package reads them from the stack's clouds.yaml,
// with AllowReauth set.
func (c *Cloud) AuthOptions(t testing.TB, cloudName string) (gophercloud.AuthOptions, gophercloud.EndpointOpts) {
	t.Helper()
	f, err := os.Open(c.CloudsYAML)
	if err != nil {
		t.Fatalf("ostest: %v", err)
	}
	defer f.Close()
	ao, eo, _, err := clouds.Parse(clouds.WithCloudsYAML(f), clouds.WithCloudName(cloudName))
	if err != nil {
		t.Fatalf("ostest: cloud %q in %s: %v", cloudName, c.CloudsYAML, err)
	}
	ao.AllowReauth = true
	return ao, eo
}

// Provider returns a provider client authenticated as cloudName ("admin",
// "mirror" or "demo"), which re-authenticates when its token expires. Each
// call authenticates anew; tests may replace its HTTPClient afterwards.
func (c *Cloud) Provider(t testing.TB, cloudName string) *gophercloud.ProviderClient {
	t.Helper()
	ao, _ := c.AuthOptions(t, cloudName)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc, err := config.NewProviderClient(ctx, ao)
	if err != nil {
		t.Fatalf("ostest: authenticating as cloud %q: %v", cloudName, err)
	}
	return pc
}

// ImageClient returns a Glance v2 client for cloudName, found through the
// Keystone catalog.
func (c *Cloud) ImageClient(t testing.TB, cloudName string) *gophercloud.ServiceClient {
	t.Helper()
	_, eo := c.AuthOptions(t, cloudName)
	sc, err := openstack.NewImageV2(c.Provider(t, cloudName), eo)
	if err != nil {
		t.Fatalf("ostest: image client for cloud %q: %v", cloudName, err)
	}
	return sc
}

// ComputeClient returns a compute v2 client for cloudName, found through the
// Keystone catalog's public endpoint (the proxy, after SetComputeEndpoint).
// The stack must run with nova.
func (c *Cloud) ComputeClient(t testing.TB, cloudName string) *gophercloud.ServiceClient {
	t.Helper()
	if c.NovaURL == "" {
		t.Fatalf("ostest: the stack runs without nova: use Options{WithNova: true}")
	}
	_, eo := c.AuthOptions(t, cloudName)
	sc, err := openstack.NewComputeV2(c.Provider(t, cloudName), eo)
	if err != nil {
		t.Fatalf("ostest: compute client for cloud %q: %v", cloudName, err)
	}
	return sc
}

// BlockStorageClient returns a Cinder v3 (block-storage) client for
// cloudName, found through the Keystone catalog. The stack must run with
// cinder.
func (c *Cloud) BlockStorageClient(t testing.TB, cloudName string) *gophercloud.ServiceClient {
	t.Helper()
	if c.CinderURL == "" {
		t.Fatalf("ostest: the stack runs without cinder: use Options{WithCinder: true}")
	}
	_, eo := c.AuthOptions(t, cloudName)
	sc, err := openstack.NewBlockStorageV3(c.Provider(t, cloudName), eo)
	if err != nil {
		t.Fatalf("ostest: block-storage client for cloud %q: %v", cloudName, err)
	}
	return sc
}

// SetComputeEndpoint makes publicURL the public compute endpoint in the
// catalog and keeps NovaURL as internal and admin endpoint, with
// tests/openstack/set-compute-endpoint.sh. SetComputeEndpoint(t, c.NovaURL)
// undoes it. The change is shared by every test using the stack.
func (c *Cloud) SetComputeEndpoint(t testing.TB, publicURL string) {
	t.Helper()
	if c.scripts == "" {
		t.Fatalf("ostest: tests/openstack not found")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.scripts, "set-compute-endpoint.sh"), c.StateDir, publicURL)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("ostest: set-compute-endpoint.sh: %v\n%s", err, out.String())
	}
	if env, err := readEnv(filepath.Join(c.StateDir, "env")); err == nil {
		mu.Lock()
		c.Env = env
		mu.Unlock()
	}
}

// String names the stack for logs.
func (c *Cloud) String() string {
	return fmt.Sprintf("OpenStack in %s (keystone %s, glance %s, nova %q, cinder %q)", c.StateDir, c.KeystoneURL, c.GlanceURL, c.NovaURL, c.CinderURL)
}
