package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"

	"github.com/imagetrust/imagetrust/internal/ostest"
	ittestutil "github.com/imagetrust/imagetrust/internal/testutil"
)

// TestNovaCatalogUnreadWarned: a sync without a compute service looks for
// one in Keystone's catalog at each pass (BeginPass); a catalog it cannot
// read is said at WARN, once per run of such failures (again after a pass
// that read it), not only at DEBUG: a failure that lasts (a policy denying
// GET /v3/auth/catalog, a proxy in front of Keystone) would otherwise
// leave the operator, told at start that each pass reads the catalog
// again, unaware that no compute service registered later will be found.
// The failure is the real Keystone's answer (404) to the catalog read
// under a wrong path, with a valid token. Before, every such failure was
// logged at DEBUG only: no WARN line.
func TestNovaCatalogUnreadWarned(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	ctx := context.Background()
	p := ownMirror(t, c)
	vars := projectVars(p)
	l, err := openLogin(ctx, "", func(k string) string { return vars[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	// the same token, Keystone asked under a path it does not serve
	bad, err := openstack.NewClient(strings.TrimSuffix(c.KeystoneURL, "/v3") + "/nope/")
	if err != nil {
		t.Fatal(err)
	}
	bad.SetToken(l.pc.Token())
	unread := catalogFinder(&keystoneLogin{pc: bad, eo: l.eo})
	if _, err := unread(ctx); !errors.Is(err, errCatalogUnread) {
		t.Fatalf("catalog read under a wrong path: %v, want errCatalogUnread", err)
	}
	// a catalog read, without a compute service in this region
	eo := l.eo
	eo.Region = "no-such-region"
	noCompute := catalogFinder(&keystoneLogin{pc: l.pc, eo: eo})
	if _, err := noCompute(ctx); err == nil || errors.Is(err, errCatalogUnread) {
		t.Fatalf("catalog read, no compute service in the region: %v, want an error that is not errCatalogUnread", err)
	}

	logs := &ittestutil.SyncBuffer{}
	finders := []func(context.Context) (*gophercloud.ServiceClient, error){unread, unread, unread, noCompute, unread}
	i := 0
	n := &novaServers{log: newLogger(logs, "text", "debug"), find: func(ctx context.Context) (*gophercloud.ServiceClient, error) {
		f := finders[i]
		i++
		return f(ctx)
	}}
	for range finders {
		n.BeginPass(ctx)
	}
	if n.client() != nil {
		t.Fatal("a compute client found")
	}
	if k := strings.Count(logs.String(), "level=WARN msg=\"cannot read Keystone's catalog"); k != 2 {
		t.Errorf("%d WARN lines for the catalog not read, want 2 (the first of each run of failures):\n%s", k, logs.String())
	}
}
