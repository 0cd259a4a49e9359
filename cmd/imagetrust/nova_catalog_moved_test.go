package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/endpoints"

	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/ostest"
	ittestutil "github.com/imagetrust/imagetrust/internal/testutil"
)

// TestNovaCatalogEndpointFollowed: the sync's Nova check reads Keystone's
// catalog at each pass (BeginPass) also once it has a compute endpoint:
// unchanged, nothing is logged and the client in use stays; moved (its URL
// updated in Keystone), the new one is used from that pass on and logged
// once at INFO; removed, Nova is no longer asked (InUse fails as when Nova
// does not answer: the images to retire wait the outage grace) and it is
// logged once at WARN; registered
// again, it is used and logged as found. Against the real Keystone
// (a region of the test's own) and nova-api. Before, an endpoint found at
// start (or later) was used until a restart: moved, the old URL was still
// asked; removed, still asked.
func TestNovaCatalogEndpointFollowed(t *testing.T) {
	c := ostest.Start(t, ostest.Options{WithNova: true})
	ctx := context.Background()
	idc := catalogAdmin(t, c)
	region := addRegion(t, idc, "novamoved", []catalogEndpoint{{"identity", "public", c.KeystoneURL}, {"image", "public", c.Env["GLANCE_URL"]},
		{"compute", "public", c.Env["NOVA_URL"]}})
	vars := catalogCloud(t, c, c.KeystoneURL, region, "", "")
	l, err := openLogin(ctx, "", func(k string) string { return vars[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	// as the sync makes it at start
	nc, err := newComputeClient(l.pc, l.eo)
	if err != nil {
		t.Fatal(err)
	}
	logs := &ittestutil.SyncBuffer{}
	n := &novaServers{sc: nc, find: catalogFinder(l), log: newLogger(logs, "text", "info")}
	compute := func() endpoints.Endpoint {
		t.Helper()
		pages, err := endpoints.List(idc, endpoints.ListOpts{RegionID: region}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		eps, err := endpoints.ExtractEndpoints(pages)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range eps {
			if e.Region == region && e.URL == c.Env["NOVA_URL"] {
				return e
			}
		}
		t.Fatalf("no compute endpoint in region %s: %+v", region, eps)
		return endpoints.Endpoint{}
	}

	n.BeginPass(ctx)
	if n.client() != nc || logs.String() != "" {
		t.Fatalf("catalog unchanged: client %v (want the one in use), logged:\n%s", n.client(), logs.String())
	}

	const moved = "http://127.0.0.1:1/v2.1"
	ep := compute()
	if _, err := endpoints.Update(ctx, idc, ep.ID, endpoints.UpdateOpts{URL: moved}).Extract(); err != nil {
		t.Fatal(err)
	}
	n.BeginPass(ctx)
	n.BeginPass(ctx)
	if sc := n.client(); sc == nil || sc.Endpoint != moved+"/" {
		t.Fatalf("after the endpoint moved: client %v, want %s/", sc, moved)
	}
	if k := strings.Count(logs.String(), "level=INFO msg=\"compute service (Nova) moved in the catalog"); k != 1 {
		t.Errorf("the move logged %d times at INFO, want once:\n%s", k, logs.String())
	}

	if err := endpoints.Delete(ctx, idc, ep.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	n.BeginPass(ctx)
	n.BeginPass(ctx)
	if sc := n.client(); sc != nil {
		t.Fatalf("after the endpoint was removed: client %s, want none", sc.Endpoint)
	}
	// as a Nova that does not answer (the outage grace counts), not
	// unknown (deactivated and hidden at once): an endpoint re-created,
	// a catalog mended, must not cost the images to retire
	if _, known, err := n.InUse(ctx, "00000000-0000-4000-8000-000000000000"); known || err == nil || errors.Is(err, glancesync.ErrServersUnknown) {
		t.Errorf("InUse once the compute endpoint left the catalog: known %v, %v; want a failure to ask (not unknown)", known, err)
	}
	if k := strings.Count(logs.String(), "level=WARN msg=\"compute service (Nova) gone from the catalog"); k != 1 {
		t.Errorf("the removal logged %d times at WARN, want once:\n%s", k, logs.String())
	}

	addPublicEndpoint(t, idc, region, "compute", c.Env["NOVA_URL"])
	n.BeginPass(ctx)
	if sc := n.client(); sc == nil || sc.Endpoint != strings.TrimSuffix(c.Env["NOVA_URL"], "/")+"/" {
		t.Fatalf("registered again: client %v", sc)
	}
	if _, known, err := n.InUse(ctx, "00000000-0000-4000-8000-000000000000"); !known || err != nil {
		t.Errorf("InUse once registered again: known %v, %v", known, err)
	}
	if k := strings.Count(logs.String(), "now in the catalog"); k != 1 {
		t.Errorf("registered again: logged %d times, want once:\n%s", k, logs.String())
	}
}
