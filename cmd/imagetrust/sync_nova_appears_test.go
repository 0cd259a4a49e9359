package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestSyncNovaAppearsInCatalog: a sync daemon with retire = "delete"
// started while the catalog has no compute service (for its region) says
// so at WARN and makes its passes (images to retire deactivated and
// hidden: unknown use); once a compute endpoint is registered, the next
// pass finds it (Keystone's catalog read again, not the token's), logs it
// once at INFO, and asks that Nova from then on. Against the real
// Keystone, Glance and nova-api; sync.interval 1s. Before, the daemon
// kept no compute client until a restart: the images it retired stayed
// deactivated and hidden instead of deleted.
func TestSyncNovaAppearsInCatalog(t *testing.T) {
	c := ostest.Start(t, ostest.Options{WithNova: true})
	ctx := context.Background()
	idc := catalogAdmin(t, c)
	region := addRegion(t, idc, "novalate", []catalogEndpoint{{"identity", "public", c.KeystoneURL}, {"image", "public", c.Env["GLANCE_URL"]}})

	daemonCfg, _, _, _, _, _ := startupConfigs(t)
	text, err := os.ReadFile(daemonCfg)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(text), `retire = "keep"`, `retire = "delete"`, 1)
	s = strings.Replace(s, "interval = \"1h\"\nretire", "interval = \"1s\"\nretire", 1)
	if !strings.Contains(s, "interval = \"1s\"\nretire = \"delete\"") {
		t.Fatalf("config not as expected:\n%s", s)
	}
	if err := os.WriteFile(daemonCfg, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := catalogCloud(t, c, c.KeystoneURL, region, "", "")
	d := startInProc(t, "sync", vars, "sync", "--config", daemonCfg)
	d.waitLine(t, "level=WARN", "no compute service in the catalog")
	d.waitLine(t, `msg="sync pass done"`)

	addPublicEndpoint(t, idc, region, "compute", c.Env["NOVA_URL"])
	d.waitLine(t, "level=INFO", "compute service (Nova) now in the catalog", "127.0.0.1")
	// a pass after it
	n := strings.Count(d.logs.String(), `msg="sync pass done"`)
	deadline := time.Now().Add(2 * time.Minute)
	for strings.Count(d.logs.String(), `msg="sync pass done"`) < n+1 {
		if time.Now().After(deadline) {
			t.Fatalf("no pass after the compute service was found:\n%s", d.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := d.stop(t); code != exitOK {
		t.Errorf("exit %d after its stop, want 0", code)
	}
	if k := strings.Count(d.logs.String(), "now in the catalog"); k != 1 {
		t.Errorf("the new compute service logged %d times, want once", k)
	}

	// what a pass hears from it before and after: unknown, then Nova's
	// answer (the mirror user may list every project's servers, or a 403)
	l, err := openLogin(ctx, "", func(k string) string { return vars[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalogComputeClient(l.pc, l.eo); err != nil {
		t.Fatalf("the token's catalog has no compute service after its registration: %v", err)
	}
	n2 := &novaServers{find: catalogFinder(l)}
	if _, known, err := n2.InUse(ctx, uuid.NewString()); known || err != nil {
		t.Errorf("InUse before BeginPass: known %v, %v; want unknown, no error", known, err)
	}
	n2.BeginPass(ctx)
	if n2.client() == nil {
		t.Fatal("BeginPass found no compute service")
	}
	if _, known, err := n2.InUse(ctx, uuid.NewString()); !known && !errors.Is(err, glancesync.ErrServersUnknown) {
		t.Errorf("InUse once found: known %v, %v; want Nova's answer", known, err)
	}
}
