package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/oserr"
)

// novaServers tells the sync whether any server uses an image, for
// sync.retire = "delete" (glancesync.ServerChecker). It asks Nova's server
// index, GET /servers?image=ID&all_tenants=1, which needs the admin role or
// a policy granting os_compute_api:servers:index:get_all_tenants to the
// mirror user; the detailed list is not used, as it costs Nova a Neutron
// round trip per server. When Nova can't tell (no such right: an answer
// other than a 5xx or 429, or a TLS certificate not trusted:
// glancesync.ErrServersUnknown) the answer is
// unknown and the sync deactivates and hides the image instead of
// deleting it; when Nova can't be asked now (unreachable, 5xx, 429, a 401
// whether the re-login failed or not, no answer within novaTimeout) the
// sync leaves the image for its next pass.
//
// The compute endpoint is read again from Keystone's catalog at each pass
// (BeginPass, find): one missing at start is used once it appears (until
// then InUse answers "unknown": deactivated and hidden, as without Nova),
// one moved is asked at its new place, and one removed is no longer asked:
// InUse then fails as when Nova can't be asked now (errComputeGone), so
// the images to retire wait sync.nova_down_grace as for a Nova that
// stopped answering, rather than being deactivated and hidden at the first
// pass after an endpoint was deleted (an endpoint re-created, a catalog
// mended meanwhile); each change is logged once, without a restart.
type novaServers struct {
	mu sync.Mutex
	// sc is Nova's client; nil while the catalog has none
	sc *gophercloud.ServiceClient
	// find reads the catalog again for a compute endpoint (nil: sc
	// is fixed)
	find func(context.Context) (*gophercloud.ServiceClient, error)
	log  *slog.Logger
	// unread: the last pass could not read the catalog
	// (errCatalogUnread); under mu
	unread bool
	// gone: the compute endpoint in use left the catalog, and none came
	// since; under mu
	gone bool
}

// errComputeGone: the compute endpoint the sync used is no longer in
// Keystone's catalog. Not glancesync.ErrServersUnknown: Nova can't be
// asked now, as when it does not answer (the outage grace counts).
var errComputeGone = errors.New("nova: the compute endpoint in use left Keystone's catalog")

// clientOrGone is the Nova client in use, and whether the one used before
// left the catalog (nil, true).
func (n *novaServers) clientOrGone() (*gophercloud.ServiceClient, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sc, n.gone
}

// errCatalogUnread marks a failure of catalogFinder to read Keystone's
// catalog (not a catalog without a compute service).
var errCatalogUnread = errors.New("cannot read keystone's catalog")

// client is the Nova client in use (nil: none in the catalog yet).
func (n *novaServers) client() *gophercloud.ServiceClient {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sc
}

// BeginPass implements glancesync.ServerPass: the catalog is read again
// (Keystone's, not the token's, which is only renewed at a re-login). A
// compute endpoint found while there was none, or at another URL than the
// one in use, is logged at INFO and used from this pass on; one gone from
// the catalog is logged at WARN and no longer asked (the images to retire
// are deactivated and hidden, not deleted, as without Nova). A catalog
// that can't be read keeps the endpoint in use; the first of a run of such
// failures is logged at WARN.
func (n *novaServers) BeginPass(ctx context.Context) {
	if n.find == nil {
		return
	}
	sc, err := n.find(ctx)
	unread := errors.Is(err, errCatalogUnread)
	n.mu.Lock()
	cur := n.sc
	first := unread && !n.unread
	n.unread = unread
	switch {
	case unread:
		// kept: the catalog says nothing
	case err != nil:
		n.gone = n.gone || cur != nil
		n.sc = nil
	case cur == nil || cur.Endpoint != sc.Endpoint:
		n.sc, n.gone = sc, false
	}
	n.mu.Unlock()
	if n.log == nil {
		return
	}
	switch {
	case unread && first && cur == nil:
		// the first of a run of failures at WARN: one that lasts (a
		// policy denying GET /v3/auth/catalog, a proxy in front of
		// Keystone) would otherwise never let a compute service
		// registered later be found, unseen
		n.log.Warn("cannot read Keystone's catalog to look for a compute service (Nova): retired images are deactivated and hidden, not deleted, until one is found; each pass tries again",
			"err", oserr.Capped(err))
	case unread && first:
		n.log.Warn("cannot read Keystone's catalog to check the compute service (Nova): the endpoint in use is kept; each pass tries again",
			"endpoint", redactURL(cur.Endpoint), "err", oserr.Capped(err))
	case unread:
		n.log.Debug("Keystone's catalog still not read", "err", oserr.Capped(err))
	case err != nil && cur != nil:
		n.log.Warn("compute service (Nova) gone from the catalog: images to retire are left as when Nova does not answer (sync.nova_down_grace), then deactivated and hidden, not deleted, until one is registered again (each pass reads the catalog again)",
			"endpoint", redactURL(cur.Endpoint), "err", oserr.Capped(err))
	case err != nil:
		n.log.Debug("still no compute service in the catalog", "err", oserr.Capped(err))
	case cur == nil:
		n.log.Info("compute service (Nova) now in the catalog: asked from this pass on whether servers use the images to retire (retire = delete)",
			"endpoint", redactURL(sc.Endpoint))
	case cur.Endpoint != sc.Endpoint:
		n.log.Info("compute service (Nova) moved in the catalog: asked at its new endpoint from this pass on",
			"endpoint", redactURL(sc.Endpoint), "was", redactURL(cur.Endpoint))
	}
}

// catalogTimeout bounds a read of Keystone's catalog at a pass's start
// (BeginPass): a Keystone that accepts the connection and never answers
// must not hold the pass for responseHeaderTimeout, nor longer than one
// question to Nova would (novaTimeout, the lesser bound applies); the
// catalog is a small document Keystone answers in milliseconds.
var catalogTimeout = 30 * time.Second

// catalogFinder is novaServers.find for the login l: Keystone's catalog
// for l's token (GET /v3/auth/catalog at auth_url's Keystone), its compute
// endpoint as computeClientOf picks it.
func catalogFinder(l *keystoneLogin) func(context.Context) (*gophercloud.ServiceClient, error) {
	return func(ctx context.Context) (*gophercloud.ServiceClient, error) {
		ctx, cancel := context.WithTimeout(ctx, min(catalogTimeout, novaTimeout))
		defer cancel()
		var body struct {
			Catalog []tokens.CatalogEntry `json:"catalog"`
		}
		resp, err := l.pc.Request(ctx, http.MethodGet, gophercloud.NormalizeURL(l.pc.IdentityBase)+"v3/auth/catalog",
			&gophercloud.RequestOpts{JSONResponse: &body, OkCodes: []int{http.StatusOK}})
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errCatalogUnread, err)
		}
		return computeClientOf(l.pc, l.eo, &tokens.ServiceCatalog{Entries: body.Catalog})
	}
}

// novaTimeout bounds one question to Nova: a Nova that accepts the
// connection and never answers must not hold a pass for
// responseHeaderTimeout.
var novaTimeout = 2 * time.Minute

type serverIndex struct {
	Servers []struct {
		ID string `json:"id"`
	} `json:"servers"`
}

// InUse implements glancesync.ServerChecker.
func (n *novaServers) InUse(ctx context.Context, imageID string) (inUse, known bool, err error) {
	sc, gone := n.clientOrGone()
	if sc == nil && gone {
		return false, false, errComputeGone
	}
	if sc == nil {
		// no compute service in the catalog (yet): unknown, as
		// without Nova
		return false, false, nil
	}
	q := url.Values{"image": {imageID}, "all_tenants": {"1"}, "limit": {"1"}}
	var body serverIndex
	ctx, cancel := context.WithTimeout(ctx, novaTimeout)
	defer cancel()
	resp, err := sc.Get(ctx, sc.ServiceURL("servers")+"?"+q.Encode(), &body, &gophercloud.RequestOpts{OkCodes: []int{200}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		err = fmt.Errorf("nova: servers using image %s: %w", imageID, oserr.Capped(err))
		var ue gophercloud.ErrUnexpectedResponseCode
		if errors.As(err, &ue) && ue.Actual != http.StatusUnauthorized && !transientStartError(err) {
			// Nova answered, and will answer the same (403: no right
			// to list every project's servers). Not a 401, even after
			// a re-login Keystone accepted (gophercloud's
			// ErrErrorAfterReauthentication unwraps to it; one it
			// refused does not unwrap): a token Nova can't validate
			// (its keystonemiddleware's service credentials, its way
			// to Keystone) says nothing about which servers use the
			// image, and is mended without asking again differently:
			// can't ask now
			return false, false, fmt.Errorf("%w: %w", glancesync.ErrServersUnknown, err)
		}
		if certificateHint(err) != "" {
			// a TLS certificate this host does not trust for Nova's
			// endpoint (no CA in clouds.yaml cacert, a name it is not
			// for, expired): asking again cannot mend it, and an
			// image left for the next pass would stay active for ever
			return false, false, fmt.Errorf("%w: %w (Nova's TLS certificate: clouds.yaml cacert or OS_CACERT)", glancesync.ErrServersUnknown, err)
		}
		return false, false, err
	}
	return len(body.Servers) > 0, true, nil
}
