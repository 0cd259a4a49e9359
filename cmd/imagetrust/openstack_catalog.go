package main

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
)

// The service clients of the daemons, found in the Keystone catalog of
// their login (the token's catalog) with its region and interface
// (clouds.yaml region_name and interface, OS_REGION_NAME and
// OS_INTERFACE). What a catalog lacks is found before any request and is a
// usageError (exit 2 for a --once run and the CLI) naming the service
// type, interface and region, and listing what the catalog has:
// region_name or interface is wrong, or the service is not registered
// (yet: a deployment tool or a site's power-up may fill the catalog after
// Keystone is up). It is also errNotInCatalog, which a daemon waits out at
// start (startOpen: a fresh login every catalogFirstWait ... catalogMaxWait)
// instead of exiting for systemd to restart it, each restart a login. An
// endpoint that is there but does not answer (version discovery) is an
// error of its own (exit 1: it may come back).

// errNotInCatalog marks a Keystone catalog that lacks the region, or the
// service with the interface in the region, that the configuration asks
// for.
var errNotInCatalog = errors.New("not in Keystone's catalog")

// catalogError is err as errNotInCatalog and a usageError, its text
// unchanged.
func catalogError(err error) error { return usageError{catalogGap{err}} }

type catalogGap struct{ error }

func (c catalogGap) Is(target error) bool { return target == errNotInCatalog }
func (c catalogGap) Unwrap() error        { return c.error }

// tokenCatalog is the catalog of pc's token, or nil when it is not a
// Keystone v3 token.
func tokenCatalog(pc *gophercloud.ProviderClient) *tokens.ServiceCatalog {
	cr, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return nil
	}
	cat, err := cr.ExtractServiceCatalog()
	if err != nil {
		return nil
	}
	return cat
}

// endpointRegion is the region an endpoint is in ("" when none).
func endpointRegion(ep tokens.Endpoint) string {
	return cmp.Or(ep.RegionID, ep.Region)
}

// checkRegion reports a region (region_name, OS_REGION_NAME) that no
// endpoint of the catalog is in: a usageError naming the region and those
// the catalog has.
func checkRegion(cat *tokens.ServiceCatalog, region string) error {
	if cat == nil || region == "" {
		return nil
	}
	var regions []string
	for _, e := range cat.Entries {
		for _, ep := range e.Endpoints {
			if ep.Region == region || ep.RegionID == region {
				return nil
			}
			if r := endpointRegion(ep); r != "" && !slices.Contains(regions, r) {
				regions = append(regions, r)
			}
		}
	}
	sort.Strings(regions)
	there := "none"
	if len(regions) > 0 {
		there = strings.Join(regions, ", ")
	}
	return catalogError(fmt.Errorf("region %q (region_name, OS_REGION_NAME) is not in Keystone's catalog; its regions: %s", region, there))
}

// checkCatalog reports, before any request, that pc's catalog has no
// endpoint of serviceType (or one of its aliases, e.g. volumev3 for
// block-storage) with eo's interface in eo's region, or, with no region
// configured, has them in several regions (gophercloud would take
// whichever Keystone lists first): a usageError naming the service type,
// interface and region and listing what there is.
func checkCatalog(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts, serviceType string) error {
	cat := tokenCatalog(pc)
	if cat == nil {
		return nil
	}
	eo.ApplyDefaults(serviceType)
	types := eo.Types()
	where := "any region"
	if eo.Region != "" {
		where = fmt.Sprintf("region %q", eo.Region)
	}
	// the interfaces each region has endpoints of the type for
	have := map[string][]string{}
	var regions []string
	for _, e := range cat.Entries {
		if !slices.Contains(types, e.Type) || (eo.Name != "" && e.Name != eo.Name) {
			continue
		}
		for _, ep := range e.Endpoints {
			r := endpointRegion(ep)
			if !slices.Contains(have[r], ep.Interface) {
				have[r] = append(have[r], ep.Interface)
			}
			if ep.Interface != string(eo.Availability) {
				continue
			}
			if eo.Region != "" && ep.Region != eo.Region && ep.RegionID != eo.Region {
				continue
			}
			if !slices.Contains(regions, r) {
				regions = append(regions, r)
			}
		}
	}
	sort.Strings(regions)
	switch {
	case len(regions) == 0 && len(have) == 0:
		return catalogError(fmt.Errorf("the Keystone catalog has no %s service (service type %s): no endpoint with interface %s in %s; the service types it has there: %s",
			serviceType, strings.Join(types, " or "), eo.Availability, where, catalogTypes(cat, eo.Region)))
	case len(regions) == 0:
		return catalogError(fmt.Errorf("the Keystone catalog has no %s endpoint with interface %s in %s (clouds.yaml interface and region_name, OS_INTERFACE, OS_REGION_NAME); it has %s endpoints in %s",
			serviceType, eo.Availability, where, serviceType, describeRegions(have)))
	case eo.Region == "" && len(regions) > 1:
		return catalogError(fmt.Errorf("the Keystone catalog has %s endpoints with interface %s in several regions (%s): set region_name (OS_REGION_NAME) to the one to use",
			serviceType, eo.Availability, strings.Join(regions, ", ")))
	}
	return nil
}

// catalogTypes lists the service types cat has endpoints of in region
// (any: "") ("none").
func catalogTypes(cat *tokens.ServiceCatalog, region string) string {
	var ts []string
	for _, e := range cat.Entries {
		for _, ep := range e.Endpoints {
			if (region == "" || ep.Region == region || ep.RegionID == region) && !slices.Contains(ts, e.Type) {
				ts = append(ts, e.Type)
			}
		}
	}
	if len(ts) == 0 {
		return "none"
	}
	sort.Strings(ts)
	return strings.Join(ts, ", ")
}

// describeRegions is "region "A" (internal, public), region "B" (public)".
func describeRegions(have map[string][]string) string {
	var rs []string
	for r := range have {
		rs = append(rs, r)
	}
	sort.Strings(rs)
	var parts []string
	for _, r := range rs {
		ifaces := have[r]
		sort.Strings(ifaces)
		parts = append(parts, fmt.Sprintf("region %q (%s)", r, strings.Join(ifaces, ", ")))
	}
	return strings.Join(parts, ", ")
}

// certificateHint is what to do about a TLS certificate the client could
// not verify, for the error; "" for other errors.
func certificateHint(err error) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var tv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ua):
		return " (the CA that issued Keystone's certificate: clouds.yaml cacert or OS_CACERT)"
	case errors.As(err, &hn):
		return " (auth_url must name a host the certificate is for)"
	case errors.As(err, &ci), errors.As(err, &tv):
		return " (Keystone's TLS certificate)"
	}
	return ""
}

// endpointError wraps the failure of a service client's constructor after
// checkCatalog found the endpoint: version discovery could not reach it,
// or it does not offer the API version.
func endpointError(serviceType string, eo gophercloud.EndpointOpts, err error) error {
	eo.ApplyDefaults(serviceType)
	var nf *gophercloud.ErrEndpointNotFound
	if errors.As(err, &nf) {
		err = errors.New("no endpoint offers the API version imagetrust uses")
	}
	return fmt.Errorf("%s endpoint (interface %s, region %q) from Keystone's catalog: %w", serviceType, eo.Availability, eo.Region, err)
}

// discoveryTimeout bounds each request of a service client's version
// discovery (discovering).
var discoveryTimeout = authTimeout

// discovering bounds every request of pc by discoveryTimeout until the
// func it returns is called. gophercloud's version discovery (a GET of
// the endpoint in the catalog, made by the service clients' constructors
// at start, before pc is shared) takes no context: a service that accepts
// the connection and never answers (a hung process, a load balancer
// without a timeout) held it for responseHeaderTimeout, 10 minutes, with
// nothing logged and a daemon's start-up wait not told. Bounded, the
// attempt fails as timed out (transient: waited for) and is tried again.
func discovering(pc *gophercloud.ProviderClient) (done func()) {
	prev := pc.HTTPClient.Timeout
	if prev == 0 || prev > discoveryTimeout {
		pc.HTTPClient.Timeout = discoveryTimeout
	}
	return func() { pc.HTTPClient.Timeout = prev }
}

// versionPath matches an endpoint path that ends in an API version
// (".../v2/", ".../v2.1/").
var versionPath = regexp.MustCompile(`/v[0-9]+(\.[0-9]+)?/?$`)

// hasVersion reports whether endpoint's path ends in an API version.
func hasVersion(endpoint string) bool {
	u, err := url.Parse(endpoint)
	return err == nil && versionPath.MatchString(u.Path)
}

// newImageClient is the Glance v2 client of the catalog. An endpoint
// registered with its version (http://glance:9292/v2, which some
// deployment tools do) is used as it is: gophercloud would add a second
// v2/ (http://glance:9292/v2/v2/images: 404 on every call).
func newImageClient(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error) {
	if err := checkCatalog(pc, eo, "image"); err != nil {
		return nil, err
	}
	done := discovering(pc)
	sc, err := openstack.NewImageV2(pc, eo)
	done()
	if err != nil {
		return nil, endpointError("image", eo, err)
	}
	if hasVersion(sc.Endpoint) {
		sc.ResourceBase = sc.Endpoint
	}
	return sc, nil
}

// newComputeClient is the Nova v2.1 client of the catalog. The endpoint
// is used as registered (http://nova:8774/v2.1, also with the project id
// of "%(tenant_id)s"/"$(project_id)s" after it); one registered without a
// version (http://nova:8774/) gets v2.1/.
func newComputeClient(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error) {
	if err := checkCatalog(pc, eo, "compute"); err != nil {
		return nil, err
	}
	done := discovering(pc)
	sc, err := openstack.NewComputeV2(pc, eo)
	done()
	if err != nil {
		return nil, endpointError("compute", eo, err)
	}
	if !versionInPath(sc.Endpoint) {
		sc.ResourceBase = sc.Endpoint + "v2.1/"
	}
	return sc, nil
}

// catalogComputeClient is newComputeClient without the version
// discovery, which asks Nova: the endpoint of the catalog as registered,
// for a Nova that does not answer at start (the sync does not wait for
// it; its first request tells).
func catalogComputeClient(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error) {
	if err := checkCatalog(pc, eo, "compute"); err != nil {
		return nil, err
	}
	cat := tokenCatalog(pc)
	if cat == nil {
		return nil, errors.New("compute endpoint: not a Keystone v3 token: no catalog")
	}
	return computeClientOf(pc, eo, cat)
}

// computeClientOf is catalogComputeClient's endpoint of the catalog cat.
func computeClientOf(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts, cat *tokens.ServiceCatalog) (*gophercloud.ServiceClient, error) {
	eo.ApplyDefaults("compute")
	for _, e := range cat.Entries {
		if !slices.Contains(eo.Types(), e.Type) || (eo.Name != "" && e.Name != eo.Name) {
			continue
		}
		for _, ep := range e.Endpoints {
			if ep.Interface != string(eo.Availability) || (eo.Region != "" && ep.Region != eo.Region && ep.RegionID != eo.Region) {
				continue
			}
			sc := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: gophercloud.NormalizeURL(ep.URL), Type: "compute"}
			if !versionInPath(sc.Endpoint) {
				sc.ResourceBase = sc.Endpoint + "v2.1/"
			}
			return sc, nil
		}
	}
	return nil, endpointError("compute", eo, &gophercloud.ErrEndpointNotFound{})
}

// newBlockStorageClient is the Cinder v3 client of the catalog
// (block-storage, or the older volumev3); one registered without a
// version (http://cinder:8776/) gets v3/.
func newBlockStorageClient(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error) {
	if err := checkCatalog(pc, eo, "block-storage"); err != nil {
		return nil, err
	}
	done := discovering(pc)
	sc, err := openstack.NewBlockStorageV3(pc, eo)
	done()
	if err != nil {
		return nil, endpointError("block-storage", eo, err)
	}
	if !versionInPath(sc.Endpoint) {
		sc.Endpoint += "v3/"
	}
	return sc, nil
}

// newIdentityClient is the Keystone v3 client of the catalog or, when the
// catalog has no identity endpoint with the interface in the region (a
// site that registers Keystone in one region only), the Keystone of
// auth_url, which just gave the token.
func newIdentityClient(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error) {
	if err := checkCatalog(pc, eo, "identity"); err != nil {
		eo = gophercloud.EndpointOpts{}
	}
	done := discovering(pc)
	sc, err := openstack.NewIdentityV3(pc, eo)
	done()
	if err != nil {
		return nil, endpointError("identity", eo, err)
	}
	return sc, nil
}

// versionSegment matches an API version as a segment of a path.
var versionSegment = regexp.MustCompile(`/v[0-9]+(\.[0-9]+)?(/|$)`)

// versionInPath reports whether an endpoint's path holds an API version
// anywhere (".../v2.1/<project id>/", ".../v3/").
func versionInPath(endpoint string) bool {
	u, err := url.Parse(endpoint)
	return err == nil && versionSegment.MatchString(u.Path)
}
