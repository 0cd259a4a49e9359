package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gophercloud/gophercloud/v2"

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
type novaServers struct {
	sc *gophercloud.ServiceClient
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
	q := url.Values{"image": {imageID}, "all_tenants": {"1"}, "limit": {"1"}}
	var body serverIndex
	ctx, cancel := context.WithTimeout(ctx, novaTimeout)
	defer cancel()
	resp, err := n.sc.Get(ctx, n.sc.ServiceURL("servers")+"?"+q.Encode(), &body, &gophercloud.RequestOpts{OkCodes: []int{200}})
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
