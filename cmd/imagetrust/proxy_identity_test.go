package main

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2/openstack"
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
