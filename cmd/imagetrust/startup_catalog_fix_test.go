package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestCatalogWaitTakesACloudsYAMLFix: a sync daemon whose clouds.yaml names
// a region Keystone's catalog does not have waits at start, its WARN
// saying that a fix of clouds.yaml is taken at the next attempt (the
// credentials, region_name and interface are read again at each one) and
// that only OS_REGION_NAME and OS_INTERFACE take a restart; and once
// clouds.yaml names the stack's region, it starts without a restart and
// makes its pass. Against the real Keystone and Glance. Before, the hint
// said that a wrong region_name or interface "takes a fix and a
// restart", and the operator guide told to restart the unit.
func TestCatalogWaitTakesACloudsYAMLFix(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	prevFirst, prevMax := catalogFirstWait, catalogMaxWait
	catalogFirstWait, catalogMaxWait = 20*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { catalogFirstWait, catalogMaxWait = prevFirst, prevMax })

	wrong := catalogRegionName("typo")
	daemonCfg, _, _, _, _, _ := startupConfigs(t)
	vars := catalogCloud(t, c, c.KeystoneURL, wrong, "", "")
	d := startInProc(t, "sync", vars, "sync", "--config", daemonCfg)
	d.waitLine(t, `msg="Keystone's catalog lacks what the configuration asks for at start; waiting for it"`, wrong,
		"a fix of clouds.yaml is taken at the next attempt", "OS_REGION_NAME or OS_INTERFACE", "attempt=2")

	f := vars["OS_CLIENT_CONFIG_FILE"]
	text, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte(strings.Replace(string(text), wrong, "RegionOne", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.waitLine(t, `msg="OpenStack reachable: starting"`)
	d.waitLine(t, `msg="sync pass done"`)
	if code := d.stop(t); code != exitOK {
		t.Errorf("exit %d after its stop, want 0", code)
	}
}
