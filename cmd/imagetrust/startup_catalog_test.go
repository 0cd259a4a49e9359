package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/endpoints"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/regions"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/services"

	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
)

// inProcDaemon is `imagetrust ARGS` run in this process (run) until the
// test stops it.
type inProcDaemon struct {
	name   string
	logs   *testutil.SyncBuffer
	cancel context.CancelFunc
	done   chan int
	code   int
	exited bool
}

func startInProc(t *testing.T, name string, vars map[string]string, args ...string) *inProcDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &inProcDaemon{name: name, logs: &testutil.SyncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		d.done <- run(ctx, &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: d.logs, getenv: func(k string) string { return vars[k] }}, args)
	}()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("%s log:\n%s", d.name, d.logs.String())
		}
	})
	return d
}

// stop cancels the daemon's context and returns its exit status.
func (d *inProcDaemon) stop(t *testing.T) int {
	t.Helper()
	if d.exited {
		return d.code
	}
	d.cancel()
	select {
	case d.code = <-d.done:
		d.exited = true
	case <-time.After(time.Minute):
		t.Fatalf("%s still runs a minute after its stop", d.name)
	}
	return d.code
}

// waitLine waits (two minutes at most) for a log line holding every one of
// want, failing t when the daemon exits first.
func (d *inProcDaemon) waitLine(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for _, line := range strings.Split(d.logs.String(), "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return
			}
		}
		select {
		case d.code = <-d.done:
			d.exited = true
			t.Fatalf("%s exited %d before a log line with %q:\n%s", d.name, d.code, want, d.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no log line with %q within two minutes:\n%s", d.name, want, d.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDaemonsWaitForCatalogAtStart: the sync, CRL and proxy daemons
// started against the real Keystone while its catalog lacks their region,
// and then the image service in it (a deployment tool or a site's
// power-up registering endpoints after Keystone is up), wait in the
// process: a WARN naming the region (and the regions there are), then the
// service type and interface (and where the service is); /healthz
// 503 saying so. Once the endpoints are registered each starts (a fresh
// login reads the catalog), without a restart: the sync makes its pass,
// the CRL job its run, the proxy's gate listens. A --once or --dry-run
// run still fails at once with exit 2. Before, each daemon exited 2 at
// once, and systemd (which restarts exit 2: a panic is 2 too) restarted
// it every RestartSec for ever, each restart a Keystone login.
func TestDaemonsWaitForCatalogAtStart(t *testing.T) {
	c := ostest.Start(t, ostest.Options{WithNova: true, WithCinder: true})
	ctx := context.Background()
	idc := catalogAdmin(t, c)
	prevFirst, prevMax := catalogFirstWait, catalogMaxWait
	catalogFirstWait, catalogMaxWait = 20*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { catalogFirstWait, catalogMaxWait = prevFirst, prevMax })

	// a region of the test's own, not there yet (removeCatalogLeftovers
	// removes it after a killed run)
	region := catalogRegionName("later")
	daemonCfg, proxyCfg, syncListen, crlListen, gateListen, proxyMetrics := startupConfigs(t)
	vars := catalogCloud(t, c, c.KeystoneURL, region, "", "")

	// --once and --dry-run: exit 2 at once, no wait
	for _, args := range [][]string{{"sync", "--once", "--config", daemonCfg}, {"sync", "--dry-run", "--config", daemonCfg},
		{"crl", "--once", "--config", daemonCfg}, {"crl", "--dry-run", "--config", daemonCfg}} {
		d := startInProc(t, strings.Join(args[:2], " "), vars, args...)
		select {
		case d.code = <-d.done:
			d.exited = true
		case <-time.After(time.Minute):
			t.Fatalf("%s still runs after a minute: it waits", strings.Join(args, " "))
		}
		if logs := d.logs.String(); d.code != exitUsage || !strings.Contains(logs, fmt.Sprintf("region %q", region)) || strings.Contains(logs, "waiting for it") {
			t.Errorf("%s: exit %d, want %d at once naming the region:\n%s", strings.Join(args, " "), d.code, exitUsage, logs)
		}
	}

	syncD := startInProc(t, "sync", vars, "sync", "--config", daemonCfg)
	crlD := startInProc(t, "crl", vars, "crl", "--config", daemonCfg)
	proxyD := startInProc(t, "proxy", vars, "proxy", "--config", proxyCfg)
	daemons := []*inProcDaemon{syncD, crlD, proxyD}
	health := map[*inProcDaemon]string{syncD: syncListen, crlD: crlListen, proxyD: proxyMetrics}
	const waiting = `level=WARN msg="Keystone's catalog lacks what the configuration asks for at start; waiting for it"`
	checkHealth := func(want string) {
		t.Helper()
		for d, addr := range health {
			code, body := get("http://" + addr + "/healthz")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for OpenStack at start") || !strings.Contains(body, want) {
				t.Errorf("%s /healthz while the catalog lacks %s: %d %q, want 503 saying so", d.name, want, code, body)
			}
		}
	}

	// the region not in the catalog
	for _, d := range daemons {
		d.waitLine(t, waiting, fmt.Sprintf(`region \"%s\"`, region), "its regions: RegionOne", "next_attempt=", "hint=")
		// a few attempts: the wait goes on
		d.waitLine(t, waiting, "attempt=3")
	}
	checkHealth("is not in Keystone's catalog")

	// the region there, with Keystone only: no image service in it
	if _, err := regions.Create(ctx, idc, regions.CreateOpts{ID: region}).Extract(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = regions.Delete(context.Background(), idc, region).ExtractErr() })
	addEndpoint := func(stype, u string) { t.Helper(); addPublicEndpoint(t, idc, region, stype, u) }
	addEndpoint("identity", c.KeystoneURL)
	for _, d := range daemons {
		d.waitLine(t, waiting, "no image endpoint with interface public", fmt.Sprintf(`region \"%s\"`, region),
			`it has image endpoints in region \"RegionOne\" (admin, internal, public)`)
	}
	checkHealth("no image endpoint")

	// the rest registered: each starts, without a restart
	addEndpoint("image", c.Env["GLANCE_URL"])
	addEndpoint("compute", c.Env["NOVA_URL"])
	addEndpoint("block-storage", c.Env["CINDER_URL"])
	addEndpoint("volumev3", c.Env["CINDER_URL"])
	for _, d := range daemons {
		d.waitLine(t, `msg="OpenStack reachable: starting"`)
	}
	syncD.waitLine(t, `msg="sync pass done"`)
	crlD.waitLine(t, `msg="crl run done"`)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		conn, err := net.Dial("tcp", gateListen)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy's gate does not listen once the catalog is complete:\n%s", proxyD.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for d, addr := range health {
		if code, body := get("http://" + addr + "/healthz"); code != http.StatusOK {
			// the sync's and CRL job's first pass and run are done
			t.Errorf("%s /healthz once started: %d %q", d.name, code, body)
		}
	}
	for _, d := range daemons {
		if code := d.stop(t); code != exitOK {
			t.Errorf("%s: exit %d after its stop, want 0:\n%s", d.name, code, d.logs.String())
		}
		if strings.Contains(d.logs.String(), ownMirror(t, c).Password) {
			t.Errorf("%s logged the password", d.name)
		}
	}
}

// addPublicEndpoint registers a public endpoint of service type stype at u
// in region; the test's cleanup removes it.
func addPublicEndpoint(t *testing.T, idc *gophercloud.ServiceClient, region, stype, u string) {
	t.Helper()
	ctx := context.Background()
	pages, err := services.List(idc, services.ListOpts{ServiceType: stype}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := services.ExtractServices(pages)
	if err != nil || len(svcs) == 0 {
		t.Fatalf("no service of type %s in the stack's Keystone: %v", stype, err)
	}
	e, err := endpoints.Create(ctx, idc, endpoints.CreateOpts{ServiceID: svcs[0].ID, Region: region,
		Availability: gophercloud.AvailabilityPublic, URL: u}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = endpoints.Delete(context.Background(), idc, e.ID).ExtractErr() })
}
