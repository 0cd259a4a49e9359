package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/oserr"
)

// version is the release, set at build time with
// -ldflags "-X main.version=v1.2.3"; when empty, the module version Go
// stamped into the binary is used.
var version string

// userAgent is the product token every OpenStack request starts with.
func userAgent() string {
	v := version
	if v == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			v = bi.Main.Version
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	return "imagetrust/" + v
}

// authTimeout bounds the first authentication.
const authTimeout = 2 * time.Minute

// envCloud is the name of the cloud made from the OS_* variables.
const envCloud = "envvars"

// openImageClient authenticates with openProvider and returns a Glance v2
// client, found through the service catalog, and the id of the token's
// project, the mirror project. Every command that talks to Glance uses it.
//
// The HTTP client has no overall timeout (an image stage may take an hour);
// a caller that wants one sets sc.ProviderClient.HTTPClient.Timeout, which
// keeps the TLS transport.
func openImageClient(ctx context.Context, cloud string, getenv func(string) string) (*gophercloud.ServiceClient, string, error) {
	pc, eo, project, err := openProvider(ctx, cloud, getenv)
	if err != nil {
		return nil, "", err
	}
	sc, err := openstack.NewImageV2(pc, eo)
	if err != nil {
		return nil, "", fmt.Errorf("image service in the catalog: %w", err)
	}
	return sc, project, nil
}

// responseHeaderTimeout bounds the wait for an OpenStack service's answer.
// Long enough for Glance's slowest synchronous answers (deleting a large
// image from an RBD store, finishing an upload to a slow store).
var responseHeaderTimeout = 10 * time.Minute

// openProvider authenticates to Keystone and returns the provider client,
// the endpoint options for the service clients (region, interface) and the
// id of the token's project, the mirror project.
//
// Credentials: the clouds.yaml entry cloud or, when cloud is empty, the one
// named by OS_CLOUD (clouds.yaml from OS_CLIENT_CONFIG_FILE or the standard
// places; OS_REGION_NAME, OS_INTERFACE and OS_CACERT override the entry);
// without either, the OS_* variables of an openrc file (password or
// application credential; OS_USER_DOMAIN_*/OS_PROJECT_DOMAIN_* or
// OS_DOMAIN_*; OS_CACERT, OS_CERT, OS_KEY). Both go through gophercloud's
// clouds.Parse, so the CA file, client certificate and verify setting apply
// alike. The token re-authenticates when it expires or is revoked
// (AllowReauth, on a 401); when Keystone then refuses the credentials, no
// renewal is asked for reauthHoldOff (reauthGuard); every request carries
// User-Agent imagetrust/VERSION. Nothing is logged, and no
// error includes a password or secret.
func openProvider(ctx context.Context, cloud string, getenv func(string) string) (*gophercloud.ProviderClient, gophercloud.EndpointOpts, string, error) {
	ao, eo, tlsConf, err := usableCredentials(cloud, getenv)
	if err != nil {
		return nil, eo, "", err
	}
	ao.AllowReauth = true
	pc, err := openstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return nil, eo, "", usageError{fmt.Errorf("auth_url: %w", err)}
	}
	pc.UserAgent.Prepend(userAgent())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	}
	if tlsConf.MinVersion == 0 {
		tlsConf.MinVersion = tls.VersionTLS12
	}
	tr.TLSClientConfig = tlsConf
	// a service that accepts the connection and never answers must not
	// hang a pass, a reload or the start-up (gophercloud's service
	// discovery takes no context): every request gets its response head
	// within this once its body is sent (an upload's too); the proxy's
	// forwarding to Nova has its own transport (validator/proxy)
	tr.ResponseHeaderTimeout = responseHeaderTimeout
	pc.HTTPClient = http.Client{Transport: tr}

	actx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	if err := openstack.Authenticate(actx, pc, ao); err != nil {
		var ue gophercloud.ErrUnexpectedResponseCode
		if errors.As(err, &ue) && ue.Actual == http.StatusUnauthorized && strings.HasSuffix(ue.URL, "/auth/tokens") {
			// a configuration error (exit 2): trying again with the same
			// credentials cannot help, and each try is one more failed
			// login towards a lockout (the units do not restart on 2)
			return nil, eo, "", usageError{fmt.Errorf("authenticating at %s: %w of %s (HTTP 401: a wrong, changed or expired password or application credential, a disabled or locked-out user)",
				redactURL(ao.IdentityEndpoint), errCredentialsRefused, credentialsOwner(ao))}
		}
		// the endpoint redacted anyway; gophercloud's error holds the whole
		// response body (a mistyped auth_url: some web server's page)
		return nil, eo, "", fmt.Errorf("authenticating at %s: %w", redactURL(ao.IdentityEndpoint), oserr.Capped(err))
	}
	if pc.ReauthFunc != nil {
		g := &reauthGuard{next: pc.ReauthFunc, holdOff: reauthHoldOff, now: time.Now, who: credentialsOwner(ao)}
		pc.ReauthFunc = g.reauth
	}
	cr, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return nil, eo, "", errors.New("not a Keystone v3 token: cannot tell the mirror project")
	}
	p, err := cr.ExtractProject()
	if err != nil || p == nil || p.ID == "" {
		return nil, eo, "", errors.New("the token is not scoped to a project (the mirror project)")
	}
	return pc, eo, p.ID, nil
}

// checkCredentials reports, as openProvider would, credentials that can't
// be used as they are (no cloud, a clouds.yaml entry that does not parse,
// a password in auth_url): a usageError, found without any request.
func checkCredentials(cloud string, getenv func(string) string) error {
	_, _, _, err := usableCredentials(cloud, getenv)
	return err
}

// usableCredentials is parseCredentials with auth_url checked; its errors
// are usageErrors.
func usableCredentials(cloud string, getenv func(string) string) (gophercloud.AuthOptions, gophercloud.EndpointOpts, *tls.Config, error) {
	ao, eo, tlsConf, err := parseCredentials(cloud, getenv)
	if err != nil {
		// no cloud, or one described wrongly: a configuration error
		return ao, eo, nil, usageError{err}
	}
	if itconfig.URLMayHoldCredentials(ao.IdentityEndpoint) {
		// never echoed, as the index and CRL source URLs are not
		return ao, eo, nil, usageError{errors.New("auth_url: not a URL without credentials: user:password@ in auth_url would appear in logs and errors; give the password as OS_PASSWORD or clouds.yaml's password")}
	}
	return ao, eo, tlsConf, nil
}

// reauthHoldOff is how long, after Keystone refused the credentials when a
// token was to be renewed, further renewals fail at once without asking
// Keystone again.
const reauthHoldOff = time.Minute

// errCredentialsRefused marks a renewal Keystone refused: the credentials
// no longer work.
var errCredentialsRefused = errors.New("keystone refused the credentials")

// reauthGuard wraps gophercloud's re-authentication (which runs after a 401,
// once the token expired or was revoked). When Keystone refuses the
// credentials (HTTP 401 to POST /v3/auth/tokens: a password or application
// credential rotated or expired, the user disabled or locked out), the
// error says so, and for holdOff every further renewal fails at once with
// it: without the hold-off each request of a daemon (each boot the proxy
// looks up) made one more failed login, enough of which lock the user out
// where Keystone's [security_compliance] lockout_failure_attempts is set,
// and fill Keystone's log. Other failures (Keystone unreachable) are
// returned as they are, and the next request tries again. The credentials
// are read once, at start: new ones need a restart.
type reauthGuard struct {
	next    func(context.Context) error
	holdOff time.Duration
	now     func() time.Time
	// who names the credentials in errors (never the secret)
	who string

	mu      sync.Mutex
	refused error
	until   time.Time
}

func (g *reauthGuard) reauth(ctx context.Context) error {
	g.mu.Lock()
	if g.refused != nil && g.now().Before(g.until) {
		err := g.refused
		g.mu.Unlock()
		return err
	}
	g.mu.Unlock()
	err := g.next(ctx)
	var ue gophercloud.ErrUnexpectedResponseCode
	if err == nil || !errors.As(err, &ue) || ue.Actual != http.StatusUnauthorized {
		return err
	}
	until := g.now().Add(g.holdOff)
	refused := fmt.Errorf("%w of %s when renewing the token (HTTP 401: a changed or expired password or application credential, a disabled or locked-out user; new credentials need a restart); not asked again before %s",
		errCredentialsRefused, g.who, until.UTC().Format(time.RFC3339))
	g.mu.Lock()
	g.refused, g.until = refused, until
	g.mu.Unlock()
	return refused
}

// credentialsOwner names whose credentials ao holds, for errors.
func credentialsOwner(ao gophercloud.AuthOptions) string {
	switch {
	case ao.ApplicationCredentialID != "":
		return "application credential " + ao.ApplicationCredentialID
	case ao.ApplicationCredentialName != "":
		return fmt.Sprintf("application credential %q", ao.ApplicationCredentialName)
	case ao.Username != "":
		return fmt.Sprintf("user %q", ao.Username)
	case ao.UserID != "":
		return "user " + ao.UserID
	}
	return "the configured user"
}

// redactURL is an endpoint for logs and errors: any password replaced by
// xxxxx (url.URL.Redacted).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an unparsable URL)"
	}
	return u.Redacted()
}

// parseCredentials reads the clouds.yaml entry, or the OS_* variables as an
// in-memory clouds.yaml entry, with gophercloud's clouds.Parse.
func parseCredentials(cloud string, getenv func(string) string) (gophercloud.AuthOptions, gophercloud.EndpointOpts, *tls.Config, error) {
	if cloud == "" {
		cloud = getenv("OS_CLOUD")
	}
	var opts []clouds.ParseOption
	if cloud != "" {
		opts = append(opts, clouds.WithCloudName(cloud))
		if f := getenv("OS_CLIENT_CONFIG_FILE"); f != "" {
			opts = append(opts, clouds.WithLocations(f))
		}
		if r := getenv("OS_REGION_NAME"); r != "" {
			opts = append(opts, clouds.WithRegion(r))
		}
		if i := getenv("OS_INTERFACE"); i != "" {
			opts = append(opts, clouds.WithEndpointType(i))
		}
		if ca := getenv("OS_CACERT"); ca != "" {
			opts = append(opts, clouds.WithCACertPath(ca))
		}
		ao, eo, tlsConf, err := clouds.Parse(opts...)
		if err != nil {
			return ao, eo, nil, fmt.Errorf("clouds.yaml, cloud %q: %w", cloud, err)
		}
		return ao, eo, tlsConf, nil
	}
	c, err := cloudFromEnv(getenv)
	if err != nil {
		return gophercloud.AuthOptions{}, gophercloud.EndpointOpts{}, nil, err
	}
	doc, err := json.Marshal(clouds.Clouds{Clouds: map[string]clouds.Cloud{envCloud: c}})
	if err != nil {
		return gophercloud.AuthOptions{}, gophercloud.EndpointOpts{}, nil, fmt.Errorf("OS_* variables: %w", err)
	}
	// JSON is YAML; the name and the reader keep clouds.Parse off the
	// process environment and the files.
	ao, eo, tlsConf, err := clouds.Parse(clouds.WithCloudName(envCloud), clouds.WithCloudsYAML(bytes.NewReader(doc)),
		clouds.WithCACertPath(c.CACertFile), clouds.WithRegion(c.RegionName), clouds.WithEndpointType(c.Interface))
	if err != nil {
		return ao, eo, nil, fmt.Errorf("OS_* variables: %w", err)
	}
	return ao, eo, tlsConf, nil
}

// cloudFromEnv is the clouds.yaml entry the OS_* variables describe.
func cloudFromEnv(getenv func(string) string) (clouds.Cloud, error) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := strings.TrimSpace(getenv(n)); v != "" {
				return v
			}
		}
		return ""
	}
	a := &clouds.AuthInfo{
		AuthURL:                     first("OS_AUTH_URL"),
		Username:                    first("OS_USERNAME"),
		UserID:                      first("OS_USER_ID", "OS_USERID"),
		Password:                    getenv("OS_PASSWORD"),
		ApplicationCredentialID:     first("OS_APPLICATION_CREDENTIAL_ID"),
		ApplicationCredentialName:   first("OS_APPLICATION_CREDENTIAL_NAME"),
		ApplicationCredentialSecret: getenv("OS_APPLICATION_CREDENTIAL_SECRET"),
		ProjectName:                 first("OS_PROJECT_NAME", "OS_TENANT_NAME"),
		ProjectID:                   first("OS_PROJECT_ID", "OS_TENANT_ID"),
		UserDomainName:              first("OS_USER_DOMAIN_NAME"),
		UserDomainID:                first("OS_USER_DOMAIN_ID"),
		ProjectDomainName:           first("OS_PROJECT_DOMAIN_NAME"),
		ProjectDomainID:             first("OS_PROJECT_DOMAIN_ID"),
		DomainName:                  first("OS_DOMAIN_NAME"),
		DomainID:                    first("OS_DOMAIN_ID"),
	}
	switch {
	case a.AuthURL == "":
		return clouds.Cloud{}, errors.New("no cloud: set OS_CLOUD (clouds.yaml) or the OS_* variables (OS_AUTH_URL missing)")
	case a.ApplicationCredentialID != "" || a.ApplicationCredentialName != "":
		if a.ApplicationCredentialSecret == "" {
			return clouds.Cloud{}, errors.New("OS_APPLICATION_CREDENTIAL_SECRET missing")
		}
		if a.ApplicationCredentialID == "" && a.Username == "" && a.UserID == "" {
			return clouds.Cloud{}, errors.New("an application credential by name needs OS_USERNAME or OS_USER_ID")
		}
	case a.Username == "" && a.UserID == "":
		return clouds.Cloud{}, errors.New("OS_USERNAME, OS_USER_ID or OS_APPLICATION_CREDENTIAL_ID missing")
	case a.Password == "":
		return clouds.Cloud{}, errors.New("OS_PASSWORD missing")
	}
	return clouds.Cloud{
		AuthInfo:       a,
		RegionName:     first("OS_REGION_NAME"),
		Interface:      first("OS_INTERFACE"),
		CACertFile:     first("OS_CACERT"),
		ClientCertFile: first("OS_CERT"),
		ClientKeyFile:  first("OS_KEY"),
	}, nil
}
