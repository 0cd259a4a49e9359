package main

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/imagetrust/imagetrust/glancesync"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/fsutil"
	"github.com/imagetrust/imagetrust/internal/oserr"
	"github.com/imagetrust/imagetrust/validator"
)

func init() {
	register("sync", "mirror verified images into Glance (daemon, or --once)", cmdSync)
}

func cmdSync(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "sync", "--config FILE [--once] [--dry-run] [--json-logs] [--cloud NAME]")
	cfgPath := fs.String("config", "/etc/imagetrust/imagetrust.toml", "configuration file")
	once := fs.Bool("once", false, "make one pass and exit (exit 1 if it had errors, a source listed no bundle, a VO with images listed none while its sources listed others, a VO with signed listings had no valid one or had an image withheld, or another sync holds sync.lock_file, 4 if it refused a bundle for a reason other than expiry or revocation)")
	dry := fs.Bool("dry-run", false, "print the plan of one pass and write nothing (implies --once)")
	jsonLogs := fs.Bool("json-logs", false, "log in JSON")
	cloud := fs.String("cloud", "", "clouds.yaml entry of the mirror's credentials (default $OS_CLOUD; without either, the OS_* variables); their project is the mirror project")
	resumeAfter := fs.Duration("resume-after", 2*time.Minute, "leave a queued image someone else created alone this long before resuming its upload (-1s: at once)")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return usageExit(err)
	}
	// caught from the start: a SIGHUP while the sync starts (or during a
	// --once pass, ignoreReloads) must not kill it
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(e, exitUsage, "sync: %v", err)
	}
	format := cfg.Log.Format
	if *jsonLogs {
		format = "json"
	}
	log := newLogger(e.stderr, format, cfg.Log.Level)
	for _, w := range cfg.ProjectWarnings() {
		log.Warn("configuration warning", "warning", w)
	}
	for _, w := range secretFileWarnings(cloudsYAML(e.getenv)) {
		log.Warn("secret file readable by every user", "warning", w)
	}
	// the trust store first: a missing or bad file is a configuration
	// error (exit 2), named as such, not an authentication failure
	if _, _, err := loadSiteTrust(cfg); err != nil {
		return fail(e, exitUsage, "sync: %v", err)
	}

	// credentials that can't be used as they are: a configuration error,
	// told before the lock
	if err := checkCredentials(*cloud, e.getenv); err != nil {
		return fail(e, exitUsage, "sync: %v", err)
	}
	// one sync at a time on this host (a cron --once over the daemon): two
	// would race each other's whole-image saves in Glance. A dry run
	// writes nothing and takes no lock. Taken before authenticating: a cron
	// --once beside the daemon, or a lock file that can't be made, is told
	// so without a Keystone round trip (or a Keystone outage hiding it).
	if !*dry {
		lock, err := lockSync(cfg.Sync.LockFile)
		if errors.Is(err, errSyncLocked) {
			return fail(e, exitInvalid, "sync: %v", err)
		}
		if err != nil {
			return fail(e, exitUsage, "sync: sync.lock_file: %v", err)
		}
		defer lock.Close()
		// a sync killed while it wrote the record of Nova's outage, or
		// the accepted listing serials, leaves its temporary file:
		// removed under the lock (no other sync of the host writes them
		// now), when an hour old
		for _, f := range []string{novaOutageFile(cfg.Sync.LockFile), listingStateFile(cfg.Sync.LockFile)} {
			removed, err := fsutil.RemoveStaleTemps(f, staleTempAge, time.Now())
			for _, p := range removed {
				log.Info("removed a temporary file a killed sync left beside sync.lock_file", "file", p)
			}
			if err != nil {
				log.Warn("cannot remove the temporary files a killed sync left beside sync.lock_file", "file", f, "err", err)
			}
		}
	}

	daemon := !*once && !*dry
	if !daemon {
		// said, not taken (hup is caught from the start)
		defer ignoreReloads(hup, log, "sync", *dry)()
	} else {
		daemonSIGPIPE()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := glancesync.NewMetrics(reg)
	// the trust store of the syncer in use (build's, once it succeeds)
	var inUse atomic.Pointer[validator.Trust]
	registerTrustMetrics(reg, inUse.Load)
	// the daemon's /metrics and /healthz from its start: up while it
	// waits for OpenStack (503), and a listen address that is taken is
	// told before any request
	wait, health, stopHealth, err := daemonStartWait(daemon, "sync.listen", cfg.Sync.Listen, reg, log)
	if err != nil {
		log.Error("cannot serve metrics and /healthz: not starting", "err", err)
		return exitUsage
	}
	defer stopHealth()
	type clients struct {
		login   *keystoneLogin
		sc      *gophercloud.ServiceClient
		servers glancesync.ServerChecker
	}
	cl, err := startOpen(ctx, wait, func(ctx context.Context) (clients, error) {
		login, err := openLogin(ctx, *cloud, e.getenv, log)
		if err != nil {
			return clients{}, err
		}
		// not in the catalog for this region and interface: 2
		sc, err := newImageClient(login.pc, login.eo)
		if err != nil {
			return clients{}, err
		}
		// retire = "delete" deletes only images no server uses: Nova
		// tells. Without a compute service retired images are
		// deactivated and hidden. A Nova that is in the catalog and does
		// not answer yet is not waited for (the mirror and the CRL-driven
		// work need only Keystone and Glance): its endpoint is taken from
		// the catalog as it is, and each pass asks it, leaving the images
		// to retire for the next pass while it does not answer.
		var servers glancesync.ServerChecker
		// Its endpoint is read from the catalog again at each pass
		// (novaServers.BeginPass): moved or removed, it is followed.
		if nc, err := newComputeClient(login.pc, login.eo); err == nil {
			servers = &novaServers{sc: nc, find: catalogFinder(login), log: log}
		} else if transientStartError(err) {
			nc, cerr := catalogComputeClient(login.pc, login.eo)
			if cerr != nil {
				return clients{}, cerr
			}
			servers = &novaServers{sc: nc, find: catalogFinder(login), log: log}
			if cfg.Sync.Retire == "delete" {
				log.Warn("compute service (Nova) not reachable at start: starting without it; each pass asks it again, and leaves the images it would retire (retire = delete) for the next pass while it does not answer",
					"endpoint", redactURL(nc.Endpoint), "err", oserr.Capped(err))
			}
		} else if _, cerr := catalogComputeClient(login.pc, login.eo); cerr != nil {
			// none in the catalog: looked for at each pass (an
			// endpoint registered later is used without a restart)
			servers = &novaServers{find: catalogFinder(login), log: log}
			if cfg.Sync.Retire == "delete" {
				log.Warn("no compute service in the catalog: retired images are deactivated and hidden, not deleted, until one is registered (each pass reads the catalog again)", "err", err)
			}
		} else {
			log.Warn("no usable compute service: retired images are deactivated and hidden, never deleted", "err", err)
		}
		return clients{login, sc, servers}, nil
	})
	if err != nil {
		return startFailed(e, log, "sync", "openstack authentication failed", err)
	}
	login, project, servers := cl.login, cl.login.project, cl.servers
	glance := glancesync.NewGlance(cl.sc)
	log.Info("authenticated", "mirror_project", project)
	login.register(reg)

	// since when Nova has failed to be asked (retire = "delete"), kept
	// beside the lock (whose holder alone writes it) for the next run:
	// --once runs and the daemon count sync.nova_down_grace on one clock.
	// A dry run neither reads nor writes it.
	outageFile := ""
	if !*dry {
		outageFile = novaOutageFile(cfg.Sync.LockFile)
	}
	build := func(cfg *config.Config) (*glancesync.Syncer, error) {
		trust, warns, err := loadSiteTrust(cfg)
		if err != nil {
			return nil, err
		}
		for _, w := range append(warns, trust.StaleCRLs(time.Now())...) {
			log.Warn("trust store warning", "warning", w)
		}
		f, err := glancesync.NewFetcher(fetcherOptions(cfg, log))
		if err != nil {
			return nil, err
		}
		var srcs []glancesync.Source
		for _, s := range cfg.Sync.Sources {
			if s.Path != "" {
				srcs = append(srcs, &glancesync.DirSource{Root: s.Path, AllowedVOs: s.VOs, Fetcher: f, AllowPrivate: s.AllowPrivate, Limits: listingLimits(s)})
			} else {
				srcs = append(srcs, &glancesync.IndexSource{URL: s.URL, AllowedVOs: s.VOs, Fetcher: f, AllowPrivate: s.AllowPrivate, Limits: listingLimits(s)})
			}
		}
		s, err := glancesync.New(glancesync.Options{
			Sync: cfg.Sync, VOs: cfg.VO, Trust: trust, Glance: glance, MirrorProject: project, Sources: srcs,
			Logger: log, Metrics: metrics, DryRun: *dry, Plan: e.stdout, ResumeAfter: *resumeAfter, Servers: servers,
			ServersOutageFile: outageFile,
			// read by a dry run too (a rolled back listing is planned as
			// refused), written by no dry run
			ListingStateFile: listingStateFile(cfg.Sync.LockFile),
		})
		if err == nil {
			inUse.Store(trust)
		}
		return s, err
	}
	syncer, err := build(cfg)
	if err != nil {
		return fail(e, exitUsage, "sync: %v", err)
	}

	if *once || *dry {
		r, err := syncer.Run(ctx)
		logStuck(log)
		if err != nil {
			log.Error("sync pass failed", "err", err)
			return exitInvalid
		}
		log.Info("sync pass done", "outcomes", len(r.Outcomes), "errors", r.Errors,
			"mirrored", r.Count(glancesync.ActionMirrored), "refused", r.Count(glancesync.ActionRefused))
		if r.Errors > 0 {
			return exitInvalid
		}
		// an unmounted CVMFS repository (autofs, a failed mount) is an
		// empty directory: the pass retired nothing of its VOs, and a
		// cron run must tell it as it tells a source it could not list
		for _, name := range r.Empty {
			log.Error("source listed no bundle (not mounted? emptied?): nothing of its VOs was retired or mirrored anew; exit 1", "source", name)
		}
		// so is a VO whose bundles all left sources that list others (its
		// directory lost from a shared repository, or withdrawn): its
		// images are kept, which the operator must see
		for _, v := range r.Vanished {
			log.Error("no bundle of a VO with images listed, though its sources list others (withdrawn? its directory lost?): nothing of it was retired or mirrored anew; exit 1",
				"vo", v.VO, "sources", strings.Join(v.Sources, ", "), "images", v.Images)
		}
		// a VO with signed listings and no valid one (missing, expired,
		// rolled back) was neither retired nor mirrored anew; an image
		// its listing names and no source lists is withheld
		for _, p := range r.ListingFailed {
			log.Error("no valid signed listing of a VO: nothing of it was retired or mirrored anew; exit 1", "vo", p.VO, "reason", p.Reason)
		}
		for _, w := range r.Withheld {
			log.Error("image in its VO's signed listing listed by no source (withheld?): kept; exit 1", "image", w.ID, "vo", w.VO, "tag", w.Tag)
		}
		if len(r.Empty) > 0 || len(r.Vanished) > 0 || len(r.ListingFailed) > 0 || len(r.Withheld) > 0 {
			return exitInvalid
		}
		if n := refusedBundles(r); n > 0 {
			log.Warn("sync pass refused bundles", "count", n)
			return exitRefused
		}
		return exitOK
	}
	return syncDaemon(ctx, log, cfg, *cfgPath, syncer, build, reg, hup, login, health)
}

// logStuck names the directory sources whose file system did not answer
// a call (a hung mount): the goroutine blocked in it is abandoned, and
// the process exits without waiting for it.
func logStuck(log *slog.Logger) {
	if stuck := glancesync.StuckSources(); len(stuck) > 0 {
		log.Error("a directory source's file system has not answered a call (a hung mount?); the call is abandoned: recover or unmount it (docs/glancesync.md, \"A hung mount\")",
			"sources", strings.Join(stuck, "; "))
	}
}

// refusedBundles counts the bundles a pass refused, or could not read, for a
// reason other than expiry or revocation: a publisher's mistake, a tampered
// mirror or an attack, which a cron job's exit status should show. Expired
// and revoked bundles linger in sources after their images' end and are
// routine.
func refusedBundles(r *glancesync.Report) int {
	n := 0
	for _, o := range r.Outcomes {
		refused := o.Action == glancesync.ActionRefused ||
			(o.Action == glancesync.ActionSkipped && o.Reason == glancesync.ReasonUnreadable)
		if refused && !glancesync.RoutineRefusal(o.Reason) {
			n++
		}
	}
	return n
}

func syncDaemon(ctx context.Context, log *slog.Logger, cfg *config.Config, path string, syncer *glancesync.Syncer,
	build func(*config.Config) (*glancesync.Syncer, error), reg *prometheus.Registry, hup <-chan os.Signal, login *keystoneLogin, sh *startHealth) int {
	started := cfg
	reloads := newReloadMetrics(reg, time.Now())
	interval := cfg.Sync.Interval.Duration
	// how long without a successful pass /healthz tolerates; set again on
	// a reload
	healthWindow := func(c *config.Config) time.Duration {
		return 3*c.Sync.Interval.Duration + c.Sync.Jitter.Duration
	}
	health := newPassHealth(time.Now(), healthWindow(cfg), "sync pass")
	// /healthz (sync.listen), served since the start (cmdSync)
	sh.started(health)
	// SIGHUP: the configuration, the trust store and the credentials
	reload := func() {
		ncfg, err := config.Load(path)
		if err == nil {
			var ns *glancesync.Syncer
			if ns, err = build(ncfg); err == nil {
				ns.KeepServersOutage(syncer)
				syncer, cfg, interval = ns, ncfg, ncfg.Sync.Interval.Duration
				health.setWindow(healthWindow(ncfg))
				log.Info("configuration and trust reloaded")
				if keys := restartOnly(started, ncfg, []string{"log"}, []string{"sync.listen", "sync.lock_file"}); len(keys) > 0 {
					log.Warn("changed settings take effect at the next restart, not on reload", "settings", strings.Join(keys, ","))
				}
			}
		}
		if err != nil {
			log.Error("reload failed; keeping the previous configuration", "err", err)
		}
		// the credentials too, whatever became of the file: new ones
		// Keystone refuses leave those in use
		if login != nil {
			if cerr := login.reload(ctx); cerr != nil {
				log.Error("credentials reload failed; keeping those in use", "err", cerr)
				err = errors.Join(err, cerr)
			}
		}
		reloads.done(err, time.Now())
	}
	// a reload asked for while the daemon waited for OpenStack at start
	// (systemctl reload meanwhile) takes effect before the first pass,
	// not after it (hours, at a new site)
	select {
	case <-hup:
		reload()
	default:
	}
	failures := 0 // failed passes in a row
	for {
		r, err := syncer.Run(ctx)
		wait := interval
		if j := cfg.Sync.Jitter.Duration; j > 0 {
			wait += rand.N(j)
		}
		switch {
		case ctx.Err() != nil:
			logStuck(log)
			log.Info("stopping")
			return exitOK
		case err != nil:
			// Glance or Keystone unreachable, the credentials refused: a
			// minute, then less and less often, up to the interval
			failures++
			wait = min(wait, retryWait(failures))
			log.Error("sync pass failed", "err", err, "failures_in_a_row", failures, "retry_in", wait)
		default:
			failures = 0
			if syncPassDone(log, r) {
				health.ok(time.Now())
			}
		}
		select {
		case <-ctx.Done():
			logStuck(log)
			log.Info("stopping")
			return exitOK
		case <-hup:
			reload()
		case <-time.After(wait):
		}
	}
}

// syncPassDone logs the end of a daemon's pass that ran (Run returned no
// error) and reports whether it counts as successful for /healthz and
// imagetrust_sync_last_success_timestamp_seconds: every source listed
// (glancesync.Report.Complete). Images on which an operation failed do not
// make a pass unsuccessful: one image that fails on every pass (its source
// does not serve it, Glance refuses to write it) would otherwise make the
// whole site's sync look down while every other image is mirrored,
// retired and judged; they are logged here, counted by
// imagetrust_sync_failing_images, and retried by the next pass.
func syncPassDone(log *slog.Logger, r *glancesync.Report) bool {
	log.Info("sync pass done", "outcomes", len(r.Outcomes), "errors", r.Errors, "mirrored", r.Count(glancesync.ActionMirrored),
		"failed_images", len(r.Failed), "source_errors", r.SourceErrors)
	if len(r.Failed) > 0 {
		const show = 20
		ids := r.Failed[:min(len(r.Failed), show)]
		log.Warn("operations failed on some images; the next pass retries them (see the errors above, imagetrust_sync_failing_images)",
			"count", len(r.Failed), "images", strings.Join(ids, ","), "more", len(r.Failed)-len(ids))
	}
	if !r.Complete() {
		log.Error("sync pass incomplete: a source could not be listed (nothing of its VOs mirrored anew or retired); /healthz fails when no pass is complete within its window",
			"sources_failed", r.SourceErrors)
		return false
	}
	return true
}

// fetcherOptions are the sources' HTTP settings from the configuration.
func fetcherOptions(cfg *config.Config, log *slog.Logger) glancesync.HTTPOptions {
	return glancesync.HTTPOptions{
		CAFile: cfg.Sync.CAFile, DownloadTimeout: cfg.Sync.DownloadTimeout.Duration,
		Retries: cfg.Sync.Retries, MaxResumes: cfg.Sync.TransferMaxResumes, Logger: log,
	}
}

// listingLimits are a source's configured listing bounds (zero fields:
// glancesync's defaults).
func listingLimits(s config.Source) glancesync.ListingLimits {
	return glancesync.ListingLimits{Bundles: s.MaxBundles, Entries: s.MaxEntries, Time: s.ListingTimeout.Duration}
}
