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

// TestSyncStartsWithNovaDown: a sync daemon with retire = "delete" whose
// compute endpoint (in Keystone's catalog) does not answer starts at once
// and makes its pass: it needs only Keystone and Glance to mirror; a WARN
// says Nova is not reachable and that the images to retire wait for it.
// Its novaServers then says "can't ask now" (an error that is not
// glancesync.ErrServersUnknown: the pass leaves the images to retire for
// the next one), where a Nova that answers 403 says "can't tell"
// (ErrServersUnknown: deactivated and hidden). Against the real Keystone
// and Glance. Before, the daemon waited for Nova for ever (WARN "OpenStack
// not reachable at start", no pass).
func TestSyncStartsWithNovaDown(t *testing.T) {
	c := ostest.Start(t, ostest.Options{WithNova: true})
	ctx := context.Background()
	idc := catalogAdmin(t, c)
	region := addRegion(t, idc, "novadown", []catalogEndpoint{{"identity", "public", c.KeystoneURL}, {"image", "public", c.Env["GLANCE_URL"]}})
	// nothing listens there; registered without a version, so that
	// gophercloud's version discovery asks it at start (an endpoint with
	// /v2.1 is taken as it is, and its first request tells)
	addPublicEndpoint(t, idc, region, "compute", "http://127.0.0.1:1/")

	daemonCfg, _, _, _, _, _ := startupConfigs(t)
	text, err := os.ReadFile(daemonCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(daemonCfg, []byte(strings.Replace(string(text), `retire = "keep"`, `retire = "delete"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := catalogCloud(t, c, c.KeystoneURL, region, "", "")
	d := startInProc(t, "sync", vars, "sync", "--config", daemonCfg)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(d.logs.String(), `msg="sync pass done"`) {
		if strings.Contains(d.logs.String(), "waiting for it") {
			t.Fatalf("the sync waits for Nova at start:\n%s", d.logs.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sync pass within two minutes:\n%s", d.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.waitLine(t, "level=WARN", "compute service (Nova) not reachable at start", "connection refused", "127.0.0.1:1")
	if code := d.stop(t); code != exitOK {
		t.Errorf("exit %d after its stop, want 0", code)
	}

	// what a pass hears from novaServers
	l, err := openLogin(ctx, "", func(k string) string { return vars[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := catalogComputeClient(l.pc, l.eo)
	if err != nil {
		t.Fatal(err)
	}
	_, known, err := (&novaServers{sc: nc}).InUse(ctx, uuid.NewString())
	if known || err == nil || errors.Is(err, glancesync.ErrServersUnknown) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("InUse with Nova down: known %v, %v; want an error that is not ErrServersUnknown", known, err)
	}
	demo := &novaServers{sc: c.ComputeClient(t, ostest.CloudDemo)}
	if _, known, err := demo.InUse(ctx, uuid.NewString()); known {
		t.Log("the demo user may list all projects' servers here; the 403 case is not checked")
	} else if !errors.Is(err, glancesync.ErrServersUnknown) {
		t.Errorf("InUse refused by Nova: %v, want ErrServersUnknown", err)
	}
}
