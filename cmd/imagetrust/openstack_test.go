package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
)

// uaRecorder remembers the User-Agent of every request.
type uaRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	uas  []string
}

func (r *uaRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.uas = append(r.uas, req.Header.Get("User-Agent"))
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func tokenIDs(t *testing.T, pc *gophercloud.ProviderClient) (user, project string) {
	t.Helper()
	cr, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		t.Fatalf("auth result %T", pc.GetAuthResult())
	}
	u, err := cr.ExtractUser()
	if err != nil {
		t.Fatal(err)
	}
	p, err := cr.ExtractProject()
	if err != nil || p == nil {
		t.Fatalf("project: %v", err)
	}
	return u.ID, p.ID
}

// TestOpenImageClient authenticates against the real Keystone of
// tests/openstack in every way the commands accept, and uses Glance.
func TestOpenImageClient(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	// the application credential case names no region: the stack's
	// Keystone must have one, not also the regions a killed run of
	// TestCatalogVariations left
	adminIdentity, err := openstack.NewIdentityV3(c.Provider(t, ostest.CloudAdmin), gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	removeCatalogLeftovers(t, adminIdentity)
	mirrorPC := c.Provider(t, ostest.CloudMirror)
	mirrorUser, mirrorProject := tokenIDs(t, mirrorPC)
	_, demoProject := tokenIDs(t, c.Provider(t, ostest.CloudDemo))
	password := c.Env["MIRROR_PASSWORD"]
	if password == "" {
		t.Fatal("MIRROR_PASSWORD missing from the stack's env")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// An application credential of the mirror user.
	idc, err := openstack.NewIdentityV3(mirrorPC, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	appSecret := "s3cret-" + uuid.NewString()
	app, err := applicationcredentials.Create(ctx, idc, mirrorUser, applicationcredentials.CreateOpts{
		Name: "imagetrust-test-" + uuid.NewString()[:8], Secret: appSecret}).Extract()
	if err != nil {
		t.Fatalf("creating an application credential: %v", err)
	}
	t.Cleanup(func() { _ = applicationcredentials.Delete(context.Background(), idc, mirrorUser, app.ID).ExtractErr() })

	openrc := map[string]string{
		"OS_AUTH_URL": c.KeystoneURL, "OS_USERNAME": "imagetrust", "OS_PASSWORD": password,
		"OS_PROJECT_NAME": "mirror", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
		"OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "public",
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	yamlEnv := map[string]string{"OS_CLOUD": ostest.CloudMirror, "OS_CLIENT_CONFIG_FILE": c.CloudsYAML}

	tests := []struct {
		name        string
		cloud       string
		env         map[string]string
		wantProject string
		wantErr     string
	}{
		{name: "ok OS_CLOUD and clouds.yaml", env: yamlEnv, wantProject: mirrorProject},
		{name: "ok cloud argument over OS_CLOUD", cloud: ostest.CloudDemo, env: yamlEnv, wantProject: demoProject},
		{name: "ok OS_* password", env: openrc, wantProject: mirrorProject},
		{name: "ok OS_* with legacy OS_DOMAIN_NAME", env: with(openrc, "OS_USER_DOMAIN_NAME", "", "OS_PROJECT_DOMAIN_NAME", "", "OS_DOMAIN_NAME", "Default"), wantProject: mirrorProject},
		{name: "ok OS_* application credential", env: map[string]string{"OS_AUTH_URL": c.KeystoneURL,
			"OS_AUTH_TYPE": "v3applicationcredential", "OS_APPLICATION_CREDENTIAL_ID": app.ID,
			"OS_APPLICATION_CREDENTIAL_SECRET": appSecret}, wantProject: mirrorProject},
		{name: "fail unknown cloud", env: with(yamlEnv, "OS_CLOUD", "nowhere"), wantErr: `cloud "nowhere"`},
		{name: "fail nothing set", env: map[string]string{}, wantErr: "OS_AUTH_URL missing"},
		{name: "fail no password", env: with(openrc, "OS_PASSWORD", ""), wantErr: "OS_PASSWORD missing"},
		{name: "fail application credential without secret", env: map[string]string{"OS_AUTH_URL": c.KeystoneURL,
			"OS_APPLICATION_CREDENTIAL_ID": app.ID}, wantErr: "OS_APPLICATION_CREDENTIAL_SECRET missing"},
		{name: "fail wrong password", env: with(openrc, "OS_PASSWORD", "wrong-"+password), wantErr: "authenticating"},
		{name: "fail wrong application credential secret", env: map[string]string{"OS_AUTH_URL": c.KeystoneURL,
			"OS_APPLICATION_CREDENTIAL_ID": app.ID, "OS_APPLICATION_CREDENTIAL_SECRET": "wrong-" + appSecret}, wantErr: "authenticating"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			sc, project, err := openImageClient(ctx, tt.cloud, getenv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				for _, secret := range []string{password, appSecret} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("the error quotes a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if project != tt.wantProject {
				t.Fatalf("project %s, want %s", project, tt.wantProject)
			}
			rec := &uaRecorder{next: sc.ProviderClient.HTTPClient.Transport}
			sc.ProviderClient.HTTPClient.Transport = rec
			// A stale token: the client re-authenticates and retries.
			sc.ProviderClient.SetToken("not-a-valid-token")
			methods, err := glance.ImportMethods(ctx, sc).Extract()
			if err != nil || len(methods) == 0 {
				t.Fatalf("glance import methods after a stale token: %v %v", methods, err)
			}
			if len(rec.uas) < 2 {
				t.Fatalf("%d requests, want the 401, the re-authentication and the retry", len(rec.uas))
			}
			for _, ua := range rec.uas {
				if !strings.HasPrefix(ua, "imagetrust/") {
					t.Fatalf("User-Agent %q", ua)
				}
			}
		})
	}
}

func TestUserAgent(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v1.2.3"
	if ua := userAgent(); ua != "imagetrust/v1.2.3" {
		t.Fatalf("user agent %q", ua)
	}
	version = ""
	if ua := userAgent(); !strings.HasPrefix(ua, "imagetrust/") || len(ua) == len("imagetrust/") {
		t.Fatalf("user agent %q", ua)
	}
}
