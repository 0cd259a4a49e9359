package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator/proxy"
)

// maxTokenBody bounds the validation answer read from Keystone (with
// ?nocatalog a token document is a few KiB).
const maxTokenBody = 1 << 20

// keystoneIdentity validates users' tokens with Keystone (GET
// /v3/auth/tokens?nocatalog with X-Subject-Token), as keystonemiddleware
// does: with mode self the request is authenticated with the token being
// validated (Keystone's rule:token_subject in identity:validate_token),
// with mode service with the proxy's own token (rule:service_role).
type keystoneIdentity struct {
	sc *gophercloud.ServiceClient
	// self: X-Auth-Token is the user's token, not the proxy's
	self bool
	// authURI is the Keystone URL of the cloud's auth_url, for WWW-Authenticate.
	authURI string
}

// newKeystoneIdentity authenticates as cloudName (the proxy's service
// credentials, which find Keystone in the catalog; with mode service they
// also validate others' tokens, which needs the service or admin role).
func newKeystoneIdentity(ctx context.Context, cloudName, mode string, getenv func(string) string) (*keystoneIdentity, error) {
	if err := checkTokenValidation(mode); err != nil {
		return nil, err
	}
	pc, eo, _, err := openProvider(ctx, cloudName, getenv)
	if err != nil {
		return nil, err
	}
	return keystoneIdentityOn(pc, eo, mode)
}

// checkTokenValidation reports a proxy.token_validation mode that is
// neither self nor service.
func checkTokenValidation(mode string) error {
	if mode != itconfig.TokenValidationSelf && mode != itconfig.TokenValidationService {
		return fmt.Errorf("token validation %q: must be %s or %s", mode, itconfig.TokenValidationSelf, itconfig.TokenValidationService)
	}
	return nil
}

// keystoneIdentityOn validates tokens with Keystone found in pc's catalog
// (the proxy's login).
func keystoneIdentityOn(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts, mode string) (*keystoneIdentity, error) {
	if err := checkTokenValidation(mode); err != nil {
		return nil, err
	}
	sc, err := newIdentityClient(pc, eo)
	if err != nil {
		return nil, err
	}
	return &keystoneIdentity{sc: sc, self: mode == itconfig.TokenValidationSelf, authURI: pc.IdentityEndpoint}, nil
}

// accessRulesHeader: the gate knows of application credentials' access
// rules (Keystone answers 404 for such a subject token otherwise), as
// keystonemiddleware says with service_type set; Nova's own middleware
// applies the rules to the forwarded request. Keystone's middleware lets
// any token with access rules call GET /v3/auth/tokens, so with mode self
// such a token validates itself whatever its rules.
const accessRulesHeader = "OpenStack-Identity-Access-Rules"

// Validate implements proxy.Identity. Errors carry the status only:
// Keystone's message may quote the token. Tokens of application
// credentials with access rules are accepted; the rules are Nova's to
// apply (its keystonemiddleware does, with [keystone_authtoken]
// service_type = compute; without it Nova refuses such tokens).
func (k *keystoneIdentity) Validate(ctx context.Context, token string) (*proxy.Caller, error) {
	var body any
	var err error
	if k.self {
		body, err = k.validateSelf(ctx, token)
	} else {
		body, err = k.validateService(ctx, token)
	}
	if err != nil {
		return nil, err
	}
	var r tokens.GetResult
	r.Body = body
	return callerOf(r)
}

// validateService asks with the proxy's own token. Keystone answers 404 for
// a subject token it does not know or no longer accepts; 401 after
// gophercloud's re-authentication means the same (keystonemiddleware
// treats both as an invalid token); 403 is the proxy's role missing.
func (k *keystoneIdentity) validateService(ctx context.Context, token string) (any, error) {
	var r tokens.GetResult
	resp, err := k.sc.Get(ctx, k.sc.ServiceURL("auth", "tokens")+"?nocatalog", &r.Body, &gophercloud.RequestOpts{
		MoreHeaders: map[string]string{"X-Subject-Token": token, accessRulesHeader: "1.0"},
		OkCodes:     []int{http.StatusOK, http.StatusNonAuthoritativeInfo},
	})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	var ue gophercloud.ErrUnexpectedResponseCode
	switch {
	case errors.As(err, &ue) && (ue.Actual == http.StatusNotFound || ue.Actual == http.StatusUnauthorized):
		return nil, fmt.Errorf("keystone: HTTP %d: %w", ue.Actual, proxy.ErrInvalidToken)
	case errors.As(err, &ue) && ue.Actual == http.StatusForbidden:
		return nil, errors.New("keystone: validating a token: HTTP 403: the proxy's user may not validate others' tokens (identity:validate_token: give it the service role, or set proxy.token_validation = \"self\")")
	case errors.As(err, &ue):
		return nil, fmt.Errorf("keystone: validating a token: HTTP %d", ue.Actual)
	case err != nil:
		return nil, fmt.Errorf("keystone: validating a token: %w", err)
	}
	return r.Body, nil
}

// validateSelf asks with the token itself as X-Auth-Token and X-Subject-
// Token, without gophercloud's provider: the proxy's token is not sent, and
// a 401 must not make it re-authenticate and ask again with its own.
// Keystone's middleware answers 401 when the X-Auth-Token is not a valid
// token (unknown, expired, revoked, its user disabled, its project gone),
// which is the token the gate validates; 404 (the subject token refused
// after the middleware accepted it, a revocation in between) means the
// same. 403 is Keystone's policy refusing a valid token the right to
// validate itself: identity:validate_token without rule:token_subject, or
// a token whose scope the policy's scope_types exclude under
// enforce_scope (Zed's defaults include system, domain and project
// scopes, so an unscoped token). Either says nothing of the token's
// validity to the gate, so it is an error (503), never an invalid token
// nor an allow.
func (k *keystoneIdentity) validateSelf(ctx context.Context, token string) (any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.sc.ServiceURL("auth", "tokens")+"?nocatalog", nil)
	if err != nil {
		return nil, fmt.Errorf("keystone: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", k.sc.UserAgent.Join())
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("X-Subject-Token", token)
	req.Header.Set(accessRulesHeader, "1.0")
	resp, err := k.sc.HTTPClient.Do(req)
	if err != nil {
		// (a *url.Error names the URL, not the token)
		return nil, fmt.Errorf("keystone: validating a token: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNonAuthoritativeInfo:
	case http.StatusUnauthorized, http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxTokenBody))
		return nil, fmt.Errorf("keystone: HTTP %d: %w", resp.StatusCode, proxy.ErrInvalidToken)
	case http.StatusForbidden:
		return nil, errors.New("keystone: validating a token with itself: HTTP 403: Keystone's identity:validate_token policy refuses it (no rule:token_subject, or a token scope it excludes); set proxy.token_validation = \"service\" if the policy is the cause")
	default:
		return nil, fmt.Errorf("keystone: validating a token: HTTP %d", resp.StatusCode)
	}
	var body any
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenBody)).Decode(&body); err != nil {
		return nil, fmt.Errorf("keystone: token: %w", err)
	}
	return body, nil
}

// callerOf is the Caller a validation answer describes.
func callerOf(r tokens.GetResult) (*proxy.Caller, error) {
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
