package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

// TestProxyReloadReports runs `imagetrust proxy` against the real Keystone
// and Glance and reloads it (SIGHUP) with a broken file, then with a file
// that changes a setting read only at start-up: the first keeps the old
// configuration and shows in imagetrust_config_last_reload_successful (0),
// the second is applied (1) and names the setting that waits for a
// restart, where the log said only "reloaded" before.
func TestProxyReloadReports(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the loopback OpenStack")
	}
	c := ostest.Start(t, ostest.Options{})
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	metricsAddr := testutil.FreeAddr(t)
	rest := fmt.Sprintf("upstream = \"http://127.0.0.1:1\"\nmetrics_listen = %q\n", metricsAddr)
	cfgPath, _ := proxyConfig(t, dir, rest)
	good, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	metric := func() string {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "imagetrust_config_last_reload_successful "); ok {
				return v
			}
		}
		return ""
	}
	logs := startProxyCommand(t, c, cfgPath, func() error {
		if metric() == "" {
			return fmt.Errorf("no reload metric yet")
		}
		return nil
	})
	reload := func(text []byte, wantLog, wantMetric string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, text, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), wantLog) || metric() != wantMetric; {
			if time.Now().After(deadline) {
				t.Fatalf("after SIGHUP: want log %q and metric %s, have metric %q:\n%s", wantLog, wantMetric, metric(), logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if m := metric(); m != "1" {
		t.Fatalf("ok at start: metric %q", m)
	}
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "\nimagetrust_trust_stale_crls 0\n") {
			t.Errorf("no imagetrust_trust_stale_crls in the proxy's metrics")
		}
	}
	reload(append(append([]byte{}, good...), "bogus_key = 1\n"...), "reload failed", "0")
	reload(append(append([]byte{}, good...), "cache_ttl = \"7s\"\n"...), "proxy.cache_ttl", "1")
}
