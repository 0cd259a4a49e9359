package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/validator/proxy"
)

// proxyUser creates a user holding roleNames on the mirror project, as the
// operator guide makes the proxy's user, and returns the OS_* variables of
// its credentials.
func proxyUser(t *testing.T, c *ostest.Cloud, idc *gophercloud.ServiceClient, roleNames ...string) func(string) string {
	t.Helper()
	ctx := context.Background()
	_, mirror := tokenIDs(t, c.Provider(t, ostest.CloudMirror))
	name, password := "proxy-"+uuid.NewString()[:8], uuid.NewString()
	u, err := users.Create(ctx, idc, users.CreateOpts{Name: name, DomainID: "default", Password: password, DefaultProjectID: mirror}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = users.Delete(context.Background(), idc, u.ID).ExtractErr() })
	for _, r := range roleNames {
		if err := roles.Assign(ctx, idc, roleID(t, idc, r), roles.AssignOpts{UserID: u.ID, ProjectID: mirror}).ExtractErr(); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"OS_AUTH_URL": c.KeystoneURL, "OS_USERNAME": name, "OS_PASSWORD": password,
		"OS_PROJECT_ID": mirror, "OS_USER_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne"}
	return func(k string) string { return env[k] }
}

// roleID finds a role by name, creating it when missing (Zed's
// keystone-manage bootstrap creates no service role).
func roleID(t *testing.T, idc *gophercloud.ServiceClient, name string) string {
	t.Helper()
	ctx := context.Background()
	pages, err := roles.List(idc, roles.ListOpts{Name: name}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := roles.ExtractRoles(pages)
	if len(rs) > 0 {
		return rs[0].ID
	}
	r, err := roles.Create(ctx, idc, roles.CreateOpts{Name: name}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// TestProxyUserRoles checks, against the real Keystone, the roles the
// operator guide and the devstack plugin give the proxy's own user: with
// proxy.token_validation = "self" (the default) reader alone on the mirror
// project validates users' tokens (each token validates itself: Keystone's
// rule:token_subject); with "service" it takes reader and service
// (identity:validate_token allows the service role), and with reader alone
// Keystone refuses (403), which would make every gated request a 503.
// The other tests run the proxy as the mirror user, which holds admin.
func TestProxyUserRoles(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	admin := c.Provider(t, ostest.CloudAdmin)
	_, eo := c.AuthOptions(t, ostest.CloudAdmin)
	idc, err := openstack.NewIdentityV3(admin, eo)
	if err != nil {
		t.Fatal(err)
	}
	demoToken := c.Provider(t, ostest.CloudDemo).Token()
	for _, tc := range []struct {
		name  string
		mode  string
		roles []string
		ok    bool
	}{
		{"ok self with reader alone (the documented role)", itconfig.TokenValidationSelf, []string{"reader"}, true},
		{"ok service with reader and service (the documented roles)", itconfig.TokenValidationService, []string{"reader", "service"}, true},
		{"fail service with reader alone", itconfig.TokenValidationService, []string{"reader"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := newKeystoneIdentity(ctx, "", tc.mode, proxyUser(t, c, idc, tc.roles...))
			if err != nil {
				t.Fatal(err)
			}
			caller, err := id.Validate(ctx, demoToken)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("validate a user's token: %v", err)
			case tc.ok && caller.UserName != "demo":
				t.Fatalf("caller %+v", caller)
			case !tc.ok && (err == nil || errors.Is(err, proxy.ErrInvalidToken)):
				t.Fatalf("reader alone: %v (want Keystone's refusal, not an invalid token)", err)
			}
			t.Logf("%v", err)
		})
	}
}

// tokenKind is a kind of token a gated request may carry, and what the
// gate must make of it.
type tokenKind struct {
	name  string
	token string
	// user and project the caller must have when valid ("" for a refusal)
	user, project string
	// invalid: Keystone refuses the token (the gate answers 401)
	invalid bool
}

// tokenKinds makes, in the real Keystone, one token of each kind: valid
// ones (password, application credential, application credential with
// access rules) and ones Keystone refuses (expired, revoked, garbage,
// disabled user, deleted project).
func tokenKinds(t *testing.T, c *ostest.Cloud, adminIDC *gophercloud.ServiceClient) []tokenKind {
	t.Helper()
	ctx := context.Background()
	demo := c.Provider(t, ostest.CloudDemo)
	demoUser, demoProject := tokenIDs(t, demo)
	_, eo := c.AuthOptions(t, ostest.CloudDemo)
	demoIDC, err := openstack.NewIdentityV3(demo, eo)
	if err != nil {
		t.Fatal(err)
	}
	auth := func(ao gophercloud.AuthOptions) string {
		t.Helper()
		ao.IdentityEndpoint = c.KeystoneURL
		pc, err := openstack.AuthenticatedClient(ctx, ao)
		if err != nil {
			t.Fatal(err)
		}
		return pc.Token()
	}
	appCred := func(rules []applicationcredentials.AccessRule, expires *time.Time) string {
		t.Helper()
		secret := uuid.NewString()
		ac, err := applicationcredentials.Create(ctx, demoIDC, demoUser, applicationcredentials.CreateOpts{
			Name: "gate-" + uuid.NewString()[:8], Secret: secret, AccessRules: rules, ExpiresAt: expires}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = applicationcredentials.Delete(context.Background(), demoIDC, demoUser, ac.ID).ExtractErr() })
		return auth(gophercloud.AuthOptions{ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: secret})
	}
	// a user of its own with member on project, and its project-scoped token
	ownUser := func(project string) (id, token string) {
		t.Helper()
		name, password := "user-"+uuid.NewString()[:8], uuid.NewString()
		u, err := users.Create(ctx, adminIDC, users.CreateOpts{Name: name, DomainID: "default", Password: password}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = users.Delete(context.Background(), adminIDC, u.ID).ExtractErr() })
		if err := roles.Assign(ctx, adminIDC, roleID(t, adminIDC, "member"), roles.AssignOpts{UserID: u.ID, ProjectID: project}).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		return u.ID, auth(gophercloud.AuthOptions{UserID: u.ID, Password: password, Scope: &gophercloud.AuthScope{ProjectID: project}})
	}

	expires := time.Now().Add(3 * time.Second)
	expired := appCred(nil, &expires)

	var kinds []tokenKind
	add := func(name, token, user, project string, invalid bool) {
		kinds = append(kinds, tokenKind{name: name, token: token, user: user, project: project, invalid: invalid})
	}
	add("ok password token scoped to a project", demo.Token(), demoUser, demoProject, false)
	add("ok application credential token", appCred(nil, nil), demoUser, demoProject, false)
	add("ok application credential token with access rules (compute POST /v2.1/servers only)",
		appCred([]applicationcredentials.AccessRule{{Service: "compute", Method: "POST", Path: "/v2.1/servers"}}, nil), demoUser, demoProject, false)

	revoked, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: c.KeystoneURL,
		Username: "demo", DomainName: "Default", Password: c.Env["DEMO_PASSWORD"], Scope: &gophercloud.AuthScope{ProjectID: demoProject}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tokens.Revoke(ctx, adminIDC, revoked.Token()).Err; err != nil {
		t.Fatal(err)
	}
	add("fail revoked token", revoked.Token(), "", "", true)
	add("fail garbage token", "garbage", "", "", true)
	add("fail garbage Fernet-looking token", "gAAAAAB"+strings.Repeat("x", 180), "", "", true)

	disabledID, disabledToken := ownUser(demoProject)
	off := false
	if _, err := users.Update(ctx, adminIDC, disabledID, users.UpdateOpts{Enabled: &off}).Extract(); err != nil {
		t.Fatal(err)
	}
	add("fail token of a disabled user", disabledToken, "", "", true)

	p, err := projects.Create(ctx, adminIDC, projects.CreateOpts{Name: "gone-" + uuid.NewString()[:8], DomainID: "default"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	_, goneToken := ownUser(p.ID)
	if err := projects.Delete(ctx, adminIDC, p.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	add("fail token of a deleted project", goneToken, "", "", true)

	time.Sleep(time.Until(expires) + 1500*time.Millisecond)
	add("fail expired token (its application credential's expiry)", expired, "", "", true)
	return kinds
}

// TestProxyTokenValidation: every kind of token, validated against the
// real Keystone in both modes of proxy.token_validation, as the documented
// proxy user (self: reader alone; service: reader and service): Keystone's
// answer maps to a caller, or to ErrInvalidToken (the gate's 401) exactly
// alike. A token of an application credential with access rules is valid
// to Keystone only when the validator says it knows of access rules
// (OpenStack-Identity-Access-Rules), as Nova's keystonemiddleware does with
// service_type set (without it Keystone answers 404 and the gate refused,
// with 401, tokens Nova accepts); with self, Keystone's middleware lets
// such a token call GET /v3/auth/tokens whatever its rules. The gate does
// not apply the rules: Nova's middleware does, on the forwarded request.
func TestProxyTokenValidation(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	_, eo := c.AuthOptions(t, ostest.CloudAdmin)
	adminIDC, err := openstack.NewIdentityV3(c.Provider(t, ostest.CloudAdmin), eo)
	if err != nil {
		t.Fatal(err)
	}
	kinds := tokenKinds(t, c, adminIDC)
	for _, mode := range []struct {
		name  string
		roles []string
	}{{itconfig.TokenValidationSelf, []string{"reader"}}, {itconfig.TokenValidationService, []string{"reader", "service"}}} {
		id, err := newKeystoneIdentity(ctx, "", mode.name, proxyUser(t, c, adminIDC, mode.roles...))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range kinds {
			t.Run(mode.name+"/"+k.name, func(t *testing.T) {
				caller, err := id.Validate(ctx, k.token)
				switch {
				case k.invalid && !errors.Is(err, proxy.ErrInvalidToken):
					t.Fatalf("got %+v, %v; want an invalid token", caller, err)
				case k.invalid:
					t.Logf("%v", err)
				case err != nil:
					t.Fatalf("validate: %v", err)
				case caller.UserID != k.user || caller.ProjectID != k.project || caller.ExpiresAt.IsZero() || len(caller.Roles) == 0:
					t.Fatalf("caller %+v, want user %s project %s", caller, k.user, k.project)
				}
			})
		}
	}
}

// TestProxyTokenValidationFailures: what Keystone answers that says nothing
// of the token (5xx, 403, unreachable) is an error (the gate's 503), never
// an invalid token, in both modes; Keystone's 401 is an invalid token in
// both (self: without the proxy re-authenticating and asking with its own
// token). With self the request carries the user's token as X-Auth-Token
// and never the proxy's; with service the proxy's.
func TestProxyTokenValidationFailures(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	userToken := c.Provider(t, ostest.CloudDemo).Token()
	var status atomic.Int32
	var mu sync.Mutex
	var seen []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Auth-Token"))
		mu.Unlock()
		if r.Header.Get("X-Subject-Token") != userToken || r.Header.Get("OpenStack-Identity-Access-Rules") != "1.0" || r.URL.Path != "/v3/auth/tokens" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer fake.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, mode := range []string{itconfig.TokenValidationSelf, itconfig.TokenValidationService} {
		id, err := newKeystoneIdentity(ctx, ostest.CloudMirror, mode, func(k string) string {
			if k == "OS_CLIENT_CONFIG_FILE" {
				return c.CloudsYAML
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		at := func(base string) *keystoneIdentity {
			sc := *id.sc
			sc.Endpoint = base + "/v3/"
			k := *id
			k.sc = &sc
			return &k
		}
		for _, tc := range []struct {
			name    string
			base    string
			status  int
			invalid bool
		}{
			{"fail 500", fake.URL, http.StatusInternalServerError, false},
			{"fail 503", fake.URL, http.StatusServiceUnavailable, false},
			{"fail 403", fake.URL, http.StatusForbidden, false},
			{"fail unreachable", closed.URL, 0, false},
			{"fail 404 is an invalid token", fake.URL, http.StatusNotFound, true},
			{"fail 401 is an invalid token", fake.URL, http.StatusUnauthorized, true},
		} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				status.Store(int32(tc.status))
				mu.Lock()
				seen = nil
				mu.Unlock()
				_, err := at(tc.base).Validate(ctx, userToken)
				if err == nil || errors.Is(err, proxy.ErrInvalidToken) != tc.invalid {
					t.Fatalf("got %v, want invalid token %v", err, tc.invalid)
				}
				if strings.Contains(err.Error(), userToken) {
					t.Fatalf("the error quotes the token: %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				for _, tok := range seen {
					if mode == itconfig.TokenValidationSelf && tok != userToken {
						t.Fatalf("self sent X-Auth-Token %.12s…, want the user's token", tok)
					}
					if mode == itconfig.TokenValidationService && tok == userToken {
						t.Fatalf("service sent the user's token as X-Auth-Token")
					}
				}
				if tc.base == fake.URL && len(seen) == 0 {
					t.Fatal("no request reached the fake Keystone")
				}
			})
		}
	}
}

// TestUnmanagedProjectWarnings: a project name in proxy.unmanaged_projects
// (matched against ids only, so allowing nobody) and the mirror project
// itself are warned about at start; project ids in any case are not.
func TestUnmanagedProjectWarnings(t *testing.T) {
	mirror := "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name string
		ids  []string
		want []string
	}{
		{"ok ids", []string{"fedcba9876543210fedcba9876543210", "FEDCBA9876543210FEDCBA9876543210"}, nil},
		{"fail a project name", []string{"physics-lab"}, []string{`"physics-lab" is not a Keystone project id`}},
		{"fail control bytes", []string{"\x10123456789abcdef0123456789abcde"}, []string{"is not a Keystone project id"}},
		{"fail a uuid with hyphens", []string{"01234567-89ab-cdef-0123-456789abcdef"}, []string{"is not a Keystone project id"}},
		{"fail the mirror project", []string{strings.ToUpper(mirror)}, []string{"is the mirror project"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := unmanagedProjectWarnings(tc.ids, mirror)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q, want it to say %q", got[i], w)
				}
			}
		})
	}
}
