package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"

	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestNovaServers401: a 401 from Nova is "can't ask now" for the pass (an
// error that is not glancesync.ErrServersUnknown: the images to retire
// are held back, for sync.nova_down_grace at most), not "can't tell"
// (deactivated and hidden at once): a token Nova refuses says nothing
// about which servers use an image.
//
// After a failed re-login (the token revoked, Keystone refusing the
// password changed since; real Keystone and nova-api) it already was:
// gophercloud returns *ErrUnableToReauthenticate, which does not unwrap to
// the 401; pinned here. After a re-login Keystone accepts, Nova answering
// 401 again (its keystonemiddleware can't validate tokens: a stand-in for
// Nova, as nova-api can't be made to refuse a valid token here; the real
// Keystone does the re-login) it was not: gophercloud's
// ErrErrorAfterReauthentication unwraps to the 401, which novaServers took
// for Nova's "won't tell" (ErrServersUnknown): fails before the nova.go
// change.
func TestNovaServers401(t *testing.T) {
	c := ostest.Start(t, ostest.Options{WithNova: true})
	ctx := context.Background()

	t.Run("re-login accepted", func(t *testing.T) {
		vars := projectVars(ownMirror(t, c))
		l, err := openLogin(ctx, "", func(k string) string { return vars[k] }, nil)
		if err != nil {
			t.Fatal(err)
		}
		var asked atomic.Int32
		nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}`))
		}))
		t.Cleanup(nova.Close)
		sc := &gophercloud.ServiceClient{ProviderClient: l.pc, Endpoint: nova.URL + "/v2.1/", ResourceBase: nova.URL + "/v2.1/", Type: "compute"}
		_, known, err := (&novaServers{sc: sc}).InUse(ctx, uuid.NewString())
		var after *gophercloud.ErrErrorAfterReauthentication
		if known || err == nil || !errors.As(err, &after) || asked.Load() != 2 {
			t.Fatalf("InUse, Nova answering 401 twice: known %v, err %v, asked %d; want a 401 after a re-login", known, err, asked.Load())
		}
		if errors.Is(err, glancesync.ErrServersUnknown) {
			t.Errorf("InUse, Nova answering 401 after a re-login Keystone accepted: %v is ErrServersUnknown (deactivate and hide at once); want can't ask now (held back)", err)
		}
	})

	// a project of its own, not ownMirror: the test changes its user's password
	p := c.NewProject(t, t.TempDir(), "reauth", "reauth")
	vars := projectVars(p)
	l, err := openLogin(ctx, "", func(k string) string { return vars[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := catalogComputeClient(l.pc, l.eo)
	if err != nil {
		t.Fatal(err)
	}
	admin := c.Provider(t, ostest.CloudAdmin)
	idc, err := openstack.NewIdentityV3(admin, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	// the password changed in Keystone, not in the sync's file; the
	// token in use revoked (as an expired one would be refused)
	var userID string
	pages, err := users.List(idc, users.ListOpts{Name: p.Name}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	us, err := users.ExtractUsers(pages)
	if err != nil || len(us) != 1 {
		t.Fatalf("user %s: %v %v", p.Name, us, err)
	}
	userID = us[0].ID
	if _, err := users.Update(ctx, idc, userID, users.UpdateOpts{Password: "changed-" + uuid.NewString()}).Extract(); err != nil {
		t.Fatal(err)
	}
	// (Keystone revokes the user's tokens on a password change: 404 then)
	if err := tokens.Revoke(ctx, idc, l.pc.Token()).Err; err != nil && !gophercloud.ResponseCodeIs(err, 404) {
		t.Fatal(err)
	}

	_, known, err := (&novaServers{sc: nc}).InUse(ctx, uuid.NewString())
	if known || err == nil {
		t.Fatalf("InUse with a revoked token and refused credentials: known %v, err %v; want an error", known, err)
	}
	var ure *gophercloud.ErrUnableToReauthenticate
	if !errors.As(err, &ure) {
		t.Errorf("InUse: %v; want gophercloud's failed re-login (a 401 from Nova, then Keystone refusing)", err)
	}
	if errors.Is(err, glancesync.ErrServersUnknown) {
		t.Errorf("InUse after a failed re-login: %v is ErrServersUnknown (deactivate and hide at once); want can't ask now (held back)", err)
	}
}

// projectVars are the environment variables of p's user (p.Env).
func projectVars(p *ostest.Project) map[string]string {
	vars := map[string]string{}
	for _, kv := range p.Env() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	return vars
}
