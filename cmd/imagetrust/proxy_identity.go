package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/imagetrust/imagetrust/validator/proxy"
)

// keystoneIdentity validates users' tokens with Keystone (GET
// /v3/auth/tokens?nocatalog with X-Subject-Token), authenticated with the
// proxy's own service token, as keystonemiddleware does.
type keystoneIdentity struct {
	sc *gophercloud.ServiceClient
	// authURI is the Keystone URL of the cloud's auth_url, for WWW-Authenticate.
	authURI string
}

// newKeystoneIdentity authenticates as cloudName (the proxy's service
// credentials; validating others' tokens needs the admin or service role)
// and finds Keystone in the catalog.
func newKeystoneIdentity(ctx context.Context, cloudName string, getenv func(string) string) (*keystoneIdentity, error) {
	pc, eo, _, err := openProvider(ctx, cloudName, getenv)
	if err != nil {
		return nil, err
	}
	sc, err := openstack.NewIdentityV3(pc, eo)
	if err != nil {
		return nil, fmt.Errorf("identity service: %w", err)
	}
	return &keystoneIdentity{sc: sc, authURI: pc.IdentityEndpoint}, nil
}

// Validate implements proxy.Identity. Keystone answers 404 for a token it
// does not know or no longer accepts; 401 after gophercloud's
// re-authentication means the same (keystonemiddleware treats both as an
// invalid token). Errors carry the status only: Keystone's message may
// quote the token. Tokens of application credentials with access rules are
// accepted; the rules are Nova's to apply (its keystonemiddleware does,
// with [keystone_authtoken] service_type = compute; without it Nova refuses
// such tokens).
func (k *keystoneIdentity) Validate(ctx context.Context, token string) (*proxy.Caller, error) {
	var r tokens.GetResult
	resp, err := k.sc.Get(ctx, k.sc.ServiceURL("auth", "tokens")+"?nocatalog", &r.Body, &gophercloud.RequestOpts{
		// OpenStack-Identity-Access-Rules: the gate knows of application
		// credentials' access rules (Keystone answers 404 for such a token
		// otherwise), as keystonemiddleware says with service_type set;
		// Nova's own middleware applies the rules to the forwarded request
		MoreHeaders: map[string]string{"X-Subject-Token": token, "OpenStack-Identity-Access-Rules": "1.0"},
		OkCodes:     []int{http.StatusOK, http.StatusNonAuthoritativeInfo},
	})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	var ue gophercloud.ErrUnexpectedResponseCode
	switch {
	case errors.As(err, &ue) && (ue.Actual == http.StatusNotFound || ue.Actual == http.StatusUnauthorized):
		return nil, fmt.Errorf("keystone: HTTP %d: %w", ue.Actual, proxy.ErrInvalidToken)
	case errors.As(err, &ue):
		return nil, fmt.Errorf("keystone: validating a token: HTTP %d", ue.Actual)
	case err != nil:
		return nil, fmt.Errorf("keystone: validating a token: %w", err)
	}
	tok, err := r.ExtractToken()
	if err != nil {
		return nil, fmt.Errorf("keystone: token: %w", err)
	}
	user, err := r.ExtractUser()
	if err != nil || user == nil || user.ID == "" {
		return nil, errors.New("keystone: token without a user")
	}
	c := &proxy.Caller{UserID: user.ID, UserName: user.Name, ExpiresAt: tok.ExpiresAt}
	if project, err := r.ExtractProject(); err == nil && project != nil {
		c.ProjectID, c.ProjectName = project.ID, project.Name
	}
	if roles, err := r.ExtractRoles(); err == nil {
		for _, ro := range roles {
			c.Roles = append(c.Roles, ro.Name)
		}
	}
	return c, nil
}
