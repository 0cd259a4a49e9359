package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"

	"github.com/imagetrust/imagetrust/internal/ostest"
	ittestutil "github.com/imagetrust/imagetrust/internal/testutil"
	"github.com/imagetrust/imagetrust/validator/proxy"
)

// TestApplicationCredentialLogin: a daemon's own login with a Keystone
// application credential (OS_APPLICATION_CREDENTIAL_ID and _SECRET, what
// operators are told to prefer to a password) against the real Keystone:
// the proxy's clients start with it, know the mirror project from it,
// renew its token, take a new credential on reload (the rotation: create
// the new one, reload, then delete the old one) and keep working after
// the old one is deleted; a deleted credential at start is a refusal
// (exit 78), naming the credential and never the secret.
func TestApplicationCredentialLogin(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	adminIDC, err := openstack.NewIdentityV3(c.Provider(t, ostest.CloudAdmin), gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	user := proxyUser(t, c, adminIDC, "reader")
	// the user makes its own application credentials, with its own token
	pc, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: c.KeystoneURL,
		Username: user("OS_USERNAME"), Password: user("OS_PASSWORD"), DomainName: "Default",
		Scope: &gophercloud.AuthScope{ProjectID: user("OS_PROJECT_ID")}})
	if err != nil {
		t.Fatal(err)
	}
	userID, mirror := tokenIDs(t, pc)
	idc, err := openstack.NewIdentityV3(pc, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	newCred := func() (id, secret string) {
		t.Helper()
		secret = uuid.NewString()
		ac, err := applicationcredentials.Create(ctx, idc, userID, applicationcredentials.CreateOpts{Name: "imagetrust-" + uuid.NewString()[:8], Secret: secret}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = applicationcredentials.Delete(context.Background(), idc, userID, ac.ID).ExtractErr() })
		return ac.ID, secret
	}
	id1, secret1 := newCred()
	var mu sync.Mutex
	vars := map[string]string{"OS_AUTH_URL": c.KeystoneURL, "OS_AUTH_TYPE": "v3applicationcredential",
		"OS_APPLICATION_CREDENTIAL_ID": id1, "OS_APPLICATION_CREDENTIAL_SECRET": secret1, "OS_REGION_NAME": "RegionOne"}
	getenv := func(k string) string { mu.Lock(); defer mu.Unlock(); return vars[k] }
	set := func(k, v string) { mu.Lock(); defer mu.Unlock(); vars[k] = v }

	logs := &ittestutil.SyncBuffer{}
	oc, err := openProxyClients(ctx, "", "self", "allow", getenv, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("ok start with an application credential: %v", err)
	}
	if oc.login.project != mirror {
		t.Fatalf("mirror project %q, want %q (the credential's)", oc.login.project, mirror)
	}
	lookup := func(what string) {
		t.Helper()
		if _, err := oc.lookup.GetImage(ctx, uuid.NewString()); !errors.Is(err, proxy.ErrNotFound) {
			t.Fatalf("%s: lookup: %v", what, err)
		}
	}
	lookup("ok first token")
	oc.login.pc.SetToken("gone-" + uuid.NewString())
	lookup("ok renewed token")

	// rotation: a new credential, reload, the old one deleted
	id2, secret2 := newCred()
	set("OS_APPLICATION_CREDENTIAL_ID", id2)
	set("OS_APPLICATION_CREDENTIAL_SECRET", secret2)
	if err := oc.login.reload(ctx); err != nil {
		t.Fatalf("ok reload with a new application credential: %v", err)
	}
	if err := applicationcredentials.Delete(ctx, idc, userID, id1).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	oc.login.pc.SetToken("gone-" + uuid.NewString())
	lookup("ok renewed with the new credential after the old one was deleted")

	// the credential in use deleted: a renewal is a refusal (counted,
	// logged), and the next one within the hold-off asks Keystone nothing
	if err := applicationcredentials.Delete(ctx, idc, userID, id2).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		oc.login.pc.SetToken("gone-" + uuid.NewString())
		if _, err := oc.lookup.GetImage(ctx, uuid.NewString()); err == nil || errors.Is(err, proxy.ErrNotFound) || !strings.Contains(err.Error(), "HTTP 404") ||
			!errors.Is(err, proxy.ErrServiceLogin) {
			t.Fatalf("fail lookup %d with the credential in use deleted: %v (want the refusal, with Keystone's status, as proxy.ErrServiceLogin: counted against Keystone)", i, err)
		}
	}
	if got := counterValue(t, oc.login.refusals.WithLabelValues("renewal")); got != 1 {
		t.Errorf("fail deleted credential in use: imagetrust_keystone_login_refusals_total{when=renewal} = %v, want 1 (one login, then the hold-off)", got)
	}
	if !strings.Contains(logs.String(), "keystone refused the credentials when renewing the token") {
		t.Errorf("no refusal logged:\n%s", logs.String())
	}

	// a deleted credential at start: refused, exit 78
	vars2 := map[string]string{"OS_AUTH_URL": c.KeystoneURL, "OS_AUTH_TYPE": "v3applicationcredential",
		"OS_APPLICATION_CREDENTIAL_ID": id1, "OS_APPLICATION_CREDENTIAL_SECRET": secret1, "OS_REGION_NAME": "RegionOne"}
	_, err = openLogin(ctx, "", func(k string) string { return vars2[k] }, nil)
	if !errors.Is(err, errCredentialsRefused) || loginExit(err) != exitCredentials || !strings.Contains(err.Error(), id1) || strings.Contains(err.Error(), secret1) {
		t.Fatalf("fail deleted application credential at start: %v (exit %d)", err, loginExit(err))
	}
	for _, s := range []string{secret1, secret2} {
		if strings.Contains(logs.String(), s) {
			t.Fatalf("a secret in the log:\n%s", logs.String())
		}
	}
}

// TestLoginWrongAuthURLPathIsNoRefusal: an auth_url whose path is wrong
// (here the real Keystone's, under /wrong/v3) answers POST .../auth/tokens
// with a 404 page, not Keystone's error document: no refusal of the
// credentials (exit 78, "keystone refused the credentials", the units not
// restarting) but a failed login that shows the answer (exit 1), whether
// the credentials are an application credential or a password. A deleted
// application credential, Keystone's own 404, stays a refusal
// (TestApplicationCredentialLogin).
func TestLoginWrongAuthURLPathIsNoRefusal(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	wrong := strings.Replace(c.KeystoneURL, "/v3", "/wrong/v3", 1)
	if wrong == c.KeystoneURL {
		t.Fatalf("Keystone URL %s has no /v3", c.KeystoneURL)
	}
	for name, vars := range map[string]map[string]string{
		"application credential": {"OS_AUTH_URL": wrong, "OS_AUTH_TYPE": "v3applicationcredential",
			"OS_APPLICATION_CREDENTIAL_ID": "0123456789abcdef", "OS_APPLICATION_CREDENTIAL_SECRET": "not-the-secret", "OS_REGION_NAME": "RegionOne"},
		"password": {"OS_AUTH_URL": wrong, "OS_USERNAME": "nobody", "OS_PASSWORD": "not-the-secret", "OS_USER_DOMAIN_NAME": "Default",
			"OS_PROJECT_NAME": "nothing", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := openLogin(context.Background(), "", func(k string) string { return vars[k] }, nil)
			if err == nil || errors.Is(err, errCredentialsRefused) || loginExit(err) != exitInvalid {
				t.Fatalf("fail auth_url with a wrong path: %v (exit %d), want no refusal, exit %d", err, loginExit(err), exitInvalid)
			}
			if !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "not-the-secret") {
				t.Fatalf("the error does not give the 404, or holds the secret: %v", err)
			}
		})
	}
}
