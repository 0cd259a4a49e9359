package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
	"github.com/imagetrust/imagetrust/validator"
)

func TestRetryWait(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 0, 1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 7: 64 * time.Minute} {
		if got := retryWait(n); got != want {
			t.Errorf("retryWait(%d) = %s, want %s", n, got, want)
		}
	}
	if retryWait(1000) <= 0 {
		t.Error("retryWait overflows after many failures")
	}
}

// errOutage is the failure the stand-ins below inject: what the daemon's
// client meets while Keystone or Glance is briefly unreachable.
var errOutage = errors.New("dial tcp 127.0.0.1:5000: connect: connection refused (outage injected by the test)")

// outageCatalog is the real Glance catalogue of the CRL job whose first
// List fails as during an outage.
type outageCatalog struct {
	crl.Catalog
	lists atomic.Int32
}

func (o *outageCatalog) List(ctx context.Context) ([]crl.Image, error) {
	if o.lists.Add(1) == 1 {
		return nil, errOutage
	}
	return o.Catalog.List(ctx)
}

// outageGlance is the sync's real Glance whose first listing fails.
type outageGlance struct {
	glancesync.Glance
	lists atomic.Int32
}

func (o *outageGlance) List(ctx context.Context, owner string, filters map[string]string) ([]*glancesync.Image, error) {
	if o.lists.Add(1) == 1 {
		return nil, errOutage
	}
	return o.Glance.List(ctx, owner, filters)
}

// daemonConfig writes, beside `imagetrust pki init`'s configuration, one
// whose sync and CRL intervals are an hour, and loads it.
func daemonConfig(t *testing.T) (string, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	trust, err := os.ReadFile(filepath.Join(dir, "pki", "imagetrust.toml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pki", "daemon.toml")
	text := fmt.Sprintf("%s\n[sync]\ninterval = \"1h\"\nretire = \"keep\"\nlock_file = %q\n[crl]\ninterval = \"1h\"\ncache_dir = %q\n",
		trust, filepath.Join(dir, "sync.lock"), filepath.Join(dir, "crl"))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

// waitLog waits until logs hold want, or fails t once done is closed
// (the daemon returned) or a minute passed.
func waitLog(t *testing.T, logs *testutil.SyncBuffer, want string, done <-chan int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for !strings.Contains(logs.String(), want) {
		select {
		case <-done:
			t.Fatalf("the daemon returned before logging %q:\n%s", want, logs.String())
		case <-deadline:
			t.Fatalf("no %q within a minute:\n%s", want, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestDaemonsRetryAfterAFailedRun: a CRL run or a sync pass that fails as a
// whole (Keystone or Glance briefly unreachable: the stand-in fails the
// first listing of the real Glance catalogue) is tried again after
// firstRetry, not after the daemon's interval, an hour here. Before, the
// next try came an interval later: every revocation published meanwhile
// waited that long to be applied, for a blip of seconds.
func TestDaemonsRetryAfterAFailedRun(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	defer func(d time.Duration) { firstRetry = d }(firstRetry)
	firstRetry = 50 * time.Millisecond
	// the process's own mirror project (ownMirror): the CRL run judges (and the sync pass
	// reads) every image of its project, and those of the stack's mirror
	// project are other tests' (glancesync's, run at the same time by go
	// test ./...), whose imagetrust_global_validity it would set unknown
	p := ownMirror(t, c)
	getenv := func(k string) string {
		return map[string]string{"OS_CLOUD": p.CloudName, "OS_CLIENT_CONFIG_FILE": p.CloudsYAML}[k]
	}
	path, cfg := daemonConfig(t)

	t.Run("crl", func(t *testing.T) {
		sc, project, err := openImageClient(context.Background(), "", getenv)
		if err != nil {
			t.Fatal(err)
		}
		jc, _, err := crlJobConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cat := &outageCatalog{Catalog: &glanceCatalog{sc: sc, owner: project}}
		logs := &testutil.SyncBuffer{}
		log := slog.New(slog.NewTextHandler(logs, nil))
		reg := prometheus.NewRegistry()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() {
			done <- crlDaemon(ctx, log, cfg, path, jc, cat, crl.NewMetrics(reg), reg, nil, func(*crl.Report) {}, nil, nil)
		}()
		defer func() { cancel(); <-done }()
		waitLog(t, logs, `msg="crl run failed"`, done)
		waitLog(t, logs, `msg="crl run done"`, done)
		if n := cat.lists.Load(); n != 2 {
			t.Fatalf("%d listings, want the failed one and its retry", n)
		}
	})

	t.Run("sync", func(t *testing.T) {
		pc, eo, project, err := openProvider(context.Background(), "", getenv)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := openstack.NewImageV2(pc, eo)
		if err != nil {
			t.Fatal(err)
		}
		g := &outageGlance{Glance: glancesync.NewGlance(sc)}
		logs := &testutil.SyncBuffer{}
		log := slog.New(slog.NewTextHandler(logs, nil))
		reg := prometheus.NewRegistry()
		trust, _, err := validator.LoadTrust(cfg)
		if err != nil {
			t.Fatal(err)
		}
		build := func(cfg *config.Config) (*glancesync.Syncer, error) {
			return glancesync.New(glancesync.Options{Sync: cfg.Sync, VOs: cfg.VO, Trust: trust, Glance: g,
				MirrorProject: project, Logger: log, Metrics: glancesync.NewMetrics(prometheus.NewRegistry())})
		}
		syncer, err := build(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { done <- syncDaemon(ctx, log, cfg, path, syncer, build, reg, nil, nil, nil) }()
		defer func() { cancel(); <-done }()
		waitLog(t, logs, `msg="sync pass failed"`, done)
		waitLog(t, logs, `msg="sync pass done"`, done)
		if n := g.lists.Load(); n < 2 {
			t.Fatalf("%d listings, want the failed one and its retry", n)
		}
	})
}
