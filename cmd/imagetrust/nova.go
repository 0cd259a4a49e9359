package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/gophercloud/gophercloud/v2"
)

// novaServers tells the sync whether any server uses an image, for
// sync.retire = "delete" (glancesync.ServerChecker). It asks Nova's server
// index, GET /servers?image=ID&all_tenants=1, which needs the admin role or
// a policy granting os_compute_api:servers:index:get_all_tenants to the
// mirror user; the detailed list is not used, as it costs Nova a Neutron
// round trip per server. When Nova can't tell (no such right, Nova down),
// the answer is unknown and the sync deactivates and hides the image
// instead of deleting it.
type novaServers struct {
	sc *gophercloud.ServiceClient
}

type serverIndex struct {
	Servers []struct {
		ID string `json:"id"`
	} `json:"servers"`
}

// InUse implements glancesync.ServerChecker.
func (n *novaServers) InUse(ctx context.Context, imageID string) (inUse, known bool, err error) {
	q := url.Values{"image": {imageID}, "all_tenants": {"1"}, "limit": {"1"}}
	var body serverIndex
	resp, err := n.sc.Get(ctx, n.sc.ServiceURL("servers")+"?"+q.Encode(), &body, &gophercloud.RequestOpts{OkCodes: []int{200}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return false, false, fmt.Errorf("nova: servers using image %s: %w", imageID, err)
	}
	return len(body.Servers) > 0, true, nil
}
