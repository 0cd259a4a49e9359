package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/validator/proxy"
)

// TestProxyUserRoles checks, against the real Keystone, the roles the
// operator guide and the devstack plugin give the proxy's own user: with
// reader and service on the mirror project it validates users' tokens
// (Keystone's identity:validate_token allows the service role), with reader
// alone Keystone refuses (403), which would make every gated request a 503.
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
	_, mirror := tokenIDs(t, c.Provider(t, ostest.CloudMirror))
	roleID := func(name string) string {
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
	demoToken := c.Provider(t, ostest.CloudDemo).Token()
	for _, tc := range []struct {
		name  string
		roles []string
		ok    bool
	}{
		{"ok reader and service (the documented roles)", []string{"reader", "service"}, true},
		{"fail reader alone", []string{"reader"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, password := "proxy-"+uuid.NewString()[:8], uuid.NewString()
			u, err := users.Create(ctx, idc, users.CreateOpts{Name: name, DomainID: "default", Password: password, DefaultProjectID: mirror}).Extract()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = users.Delete(context.Background(), idc, u.ID).ExtractErr() })
			for _, r := range tc.roles {
				if err := roles.Assign(ctx, idc, roleID(r), roles.AssignOpts{UserID: u.ID, ProjectID: mirror}).ExtractErr(); err != nil {
					t.Fatal(err)
				}
			}
			env := map[string]string{"OS_AUTH_URL": c.KeystoneURL, "OS_USERNAME": name, "OS_PASSWORD": password,
				"OS_PROJECT_ID": mirror, "OS_USER_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne"}
			id, err := newKeystoneIdentity(ctx, "", func(k string) string { return env[k] })
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

// TestProxyValidatesAccessRuleTokens: a token of an application credential
// with access rules is valid to Keystone only when the validator says it
// knows of access rules (OpenStack-Identity-Access-Rules), as Nova's
// keystonemiddleware does with service_type set; without it Keystone
// answers 404 and the gate refused, with 401, tokens Nova accepts. The gate
// does not apply the rules: Nova's middleware does, on the forwarded
// request. Against the real Keystone.
func TestProxyValidatesAccessRuleTokens(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	demo := c.Provider(t, ostest.CloudDemo)
	demoUser, demoProject := tokenIDs(t, demo)
	_, eo := c.AuthOptions(t, ostest.CloudDemo)
	idc, err := openstack.NewIdentityV3(demo, eo)
	if err != nil {
		t.Fatal(err)
	}
	id, err := newKeystoneIdentity(ctx, ostest.CloudMirror, func(k string) string {
		if k == "OS_CLIENT_CONFIG_FILE" {
			return c.CloudsYAML
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		rules []applicationcredentials.AccessRule
	}{
		{"ok application credential without rules", nil},
		{"ok application credential with access rules", []applicationcredentials.AccessRule{{Service: "compute", Method: "POST", Path: "/v2.1/servers"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret := uuid.NewString()
			ac, err := applicationcredentials.Create(ctx, idc, demoUser, applicationcredentials.CreateOpts{
				Name: "gate-" + uuid.NewString()[:8], Secret: secret, AccessRules: tc.rules}).Extract()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = applicationcredentials.Delete(context.Background(), idc, demoUser, ac.ID).ExtractErr() })
			pc, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: c.KeystoneURL,
				ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: secret})
			if err != nil {
				t.Fatal(err)
			}
			caller, err := id.Validate(ctx, pc.Token())
			if err != nil {
				t.Fatalf("validate: %v", err)
			}
			if caller.UserName != "demo" || caller.ProjectID != demoProject {
				t.Fatalf("caller %+v", caller)
			}
		})
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
