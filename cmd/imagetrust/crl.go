package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/glance"
)

func init() {
	register("crl", "apply CRLs to the catalogue: flag and deactivate revoked images (daemon, or --once)", cmdCRL)
}

// glanceTimeout bounds one Glance or Keystone request of the CRL job.
const glanceTimeout = 2 * time.Minute

// crlRetries is how often a failed CRL fetch is retried within one run.
const crlRetries = 3

// cmdCRL is `imagetrust crl`. Exit codes: 0 the run (or the daemon) ended
// well, 1 a run failed (Glance unreachable, a write refused, authentication
// failed), 2 usage or configuration error, 4 (--once) the run was done but
// refused a CRL (the last good CRL of its CA stays in use and the report
// names the reason), used a stale one, found a revoked image whose data
// Glance was still writing, or wrote a change a concurrent Glance write
// undid (Report.LostWrites).
func cmdCRL(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "crl", "--config FILE [--once] [--dry-run] [--report-json] [--json-logs] [--cloud NAME]")
	cfgPath := fs.String("config", "/etc/imagetrust/imagetrust.toml", "configuration file")
	once := fs.Bool("once", false, "make one run and exit: 0 done, 1 failed, 4 done but a CRL was refused or stale, a revoked image was still being written, or a change was lost to a concurrent Glance write (run again)")
	dry := fs.Bool("dry-run", false, "print what one run would change and write nothing, not even the CRL cache (implies --once)")
	reportJSON := fs.Bool("report-json", false, "print each run's report as one JSON document instead of text")
	jsonLogs := fs.Bool("json-logs", false, "log in JSON")
	cloud := fs.String("cloud", "", "clouds.yaml entry of the mirror's credentials (default $OS_CLOUD; without either, the OS_* variables); their project is the mirror project")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return usageExit(err)
	}
	// SIGHUP caught from the start (see below)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(e, exitUsage, "crl: %v", err)
	}
	format := cfg.Log.Format
	if *jsonLogs {
		format = "json"
	}
	log := newLogger(e.stderr, format, cfg.Log.Level)
	for _, w := range secretFileWarnings(cloudsYAML(e.getenv)) {
		log.Warn("secret file readable by every user", "warning", w)
	}
	for _, w := range cfg.Warnings("crl") {
		log.Warn("configuration warning", "warning", w)
	}
	jc, warnings, err := crlJobConfig(cfg)
	if err != nil {
		return fail(e, exitUsage, "crl: %v", err)
	}
	for _, w := range warnings {
		log.Warn("trust store warning", "warning", w)
	}

	// In daemon mode SIGHUP means reload; a --once or --dry-run run logs
	// and ignores it (ignoreReloads). Caught from now on either way, so
	// that one arriving while authenticating, or during a run, does not
	// kill the process (SIGHUP's default action) in the middle of its
	// writes.
	daemon := !*once && !*dry
	if !daemon {
		defer ignoreReloads(hup, log, "crl", *dry)()
	} else {
		daemonSIGPIPE()
	}
	cloudName := *cloud
	if cloudName == "" {
		cloudName = e.getenv("OS_CLOUD")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := crl.NewMetrics(reg)
	// the daemon's /metrics and /healthz from its start: up while it
	// waits for OpenStack (503), and a listen address that is taken is
	// told before any request
	wait, health, stopHealth, err := daemonStartWait(daemon, "crl.listen", cfg.CRL.Listen, reg, log)
	if err != nil {
		log.Error("cannot serve metrics and /healthz: not starting", "err", err)
		return exitUsage
	}
	defer stopHealth()
	type clients struct {
		login *keystoneLogin
		sc    *gophercloud.ServiceClient
	}
	cl, err := startOpen(ctx, wait, func(ctx context.Context) (clients, error) {
		login, sc, err := crlImageClient(ctx, e, cloudName, log)
		return clients{login, sc}, err
	})
	if err != nil {
		return startFailed(e, log, "crl", "openstack authentication failed", err)
	}
	login := cl.login
	project := login.project
	log.Info("authenticated", "mirror_project", project)
	cat := &glanceCatalog{sc: cl.sc, owner: project}
	login.register(reg)
	// a report that can't be written (stdout closed: `| head -1`, the
	// SIGPIPE caught, handleOtherSignals) is said on stderr; the run's
	// exit status stands
	printReport := func(rep *crl.Report) {
		w := &errWriter{w: e.stdout}
		if *reportJSON {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(rep)
		} else {
			writeCRLReport(w, rep)
		}
		if w.err != nil {
			log.Warn("run report not written in full (stdout closed?); the exit status is the run's", "err", w.err)
		}
	}

	if *once || *dry {
		job := crl.NewJob(jc, cat, log, metrics)
		rctx, cancel := context.WithTimeout(ctx, crlRunTimeout(0))
		rep, err := job.Run(rctx, *dry)
		cancel()
		if rep != nil {
			printReport(rep)
		}
		if err != nil {
			log.Error("crl run failed", "err", err)
			return exitInvalid
		}
		code := exitOK
		if n := len(rep.Refused); n > 0 {
			// done, with the last good CRL of their CAs; but a source that
			// stays dead (or keeps serving a forged or old CRL) must show
			// in a cron job before its CRL goes stale
			log.Warn("crl run refused CRLs", "count", n)
			code = exitRefused
		}
		if stale := staleInUse(rep); stale > 0 {
			// in use past nextUpdate (+ grace): under crl.stale = "refuse"
			// the images that depend on it are unknown and may not boot;
			// a cron job's exit status must show it, as the daemon's
			// metrics do
			log.Warn("crl run used stale CRLs", "count", stale)
			code = exitRefused
		}
		if n := len(rep.InTransit); n > 0 && !*dry {
			// Glance may overwrite the flag when the write ends: only a
			// later run can deactivate them
			log.Warn("revoked or held images still being written into Glance: run again once their writes end", "images", n)
			code = exitRefused
		}
		if n := len(rep.LostWrites); n > 0 {
			// a concurrent Glance write undid the job's change (three
			// times): the image may boot while it should not
			log.Error("image changes lost to concurrent Glance writes: run again", "images", n)
			code = exitRefused
		}
		return code
	}
	return crlDaemon(ctx, log, cfg, *cfgPath, jc, cat, metrics, reg, hup, printReport, login, health)
}

// crlJobConfig turns the configuration into the job's: the CAs of
// trust.ca_files, trust.registrar_ca_files and trust.ca_dirs; the sources
// of [[crl.source]], trust.crl_files and trust.ca_dirs (their <hash>.rN
// CRLs); the policy of trust.strict, trust.require_crl, crl.stale and
// crl.grace.
//
// The job matches CRLs against the certificates the catalogue record names
// (imagetrust_chain), including intermediate CAs, and accepts the CRLs of
// the intermediates embedded in imagetrust_signature that chain to these
// CAs (crl.EmbeddedCAs).
//
// Which records are trusted is another question, answered as the proxy
// answers it, by the proxy's own code: JobConfig.Chains is the
// validator.Trust of validator.LoadTrust (its people CAs of trust.ca_files
// and trust.ca_dirs, its Registrar CAs of trust.registrar_ca_files), read
// once here (at start and on SIGHUP, as the proxy's), whose
// CheckRecordChains asks of each record's chains what Verify asks. The IGTF directories of [[crl.source]] dir and the CAs
// embedded in records only widen which CRLs are accepted: an image whose
// chains lead only to them is unknown, as the proxy refuses it.
func crlJobConfig(cfg *config.Config) (crl.JobConfig, []string, error) {
	files := append(append([]string(nil), cfg.Trust.CAFiles...), cfg.Trust.RegistrarCAFiles...)
	cas, err := crl.LoadCAs(files, cfg.Trust.CADirs)
	if err != nil {
		return crl.JobConfig{}, nil, err
	}
	if len(cas) == 0 {
		return crl.JobConfig{}, nil, errors.New("no CA certificate in trust.ca_files, trust.registrar_ca_files or trust.ca_dirs")
	}
	var srcs []crl.Source
	seen := map[crl.Source]bool{}
	add := func(s crl.Source) {
		if !seen[s] {
			seen[s] = true
			srcs = append(srcs, s)
		}
	}
	for _, s := range cfg.CRL.Sources {
		if s.URL != "" {
			u, err := url.Parse(s.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return crl.JobConfig{}, nil, fmt.Errorf("crl.source url %q: not an http(s) URL", s.URL)
			}
		}
		add(crl.Source{URL: s.URL, File: s.File, Dir: s.Dir})
	}
	for _, f := range cfg.Trust.CRLFiles {
		add(crl.Source{File: f})
	}
	for _, d := range cfg.Trust.CADirs {
		add(crl.Source{Dir: d})
	}
	if len(srcs) == 0 && !cfg.CRL.UseDistributionPoints {
		return crl.JobConfig{}, nil, errors.New("no CRL source: set [[crl.source]], trust.crl_files, trust.ca_dirs or crl.use_distribution_points")
	}
	// the records' chains are judged against the proxy's trust anchors,
	// read as the proxy reads them (validator.LoadTrust), by the proxy's
	// own chain code (Trust.CheckRecordChains): the job and the proxy
	// agree on which records chain. A side with no CA is refused
	// (crl.ErrNoTrust): every image would become unknown.
	trust, warnings, err := loadSiteTrust(cfg)
	if err != nil {
		return crl.JobConfig{}, nil, fmt.Errorf("trust: %w", err)
	}
	return crl.JobConfig{
		CAs:                   cas,
		Chains:                trust,
		Sources:               srcs,
		UseDistributionPoints: cfg.CRL.UseDistributionPoints,
		CacheDir:              cfg.CRL.CacheDir,
		Policy: crl.Policy{
			Strict:      cfg.Trust.Strict,
			RequireCRL:  cfg.Trust.RequireCRL,
			RefuseStale: cfg.CRL.Stale == "refuse",
			Grace:       cfg.CRL.Grace.Duration,
		},
		ClockSkew: cfg.CRL.ClockSkew.Duration,
		MaxAge:    cfg.CRL.NoNextUpdateMaxAge.Duration,
		Timeout:   cfg.CRL.Timeout.Duration,
		Retries:   crlRetries,
		// checked after a second (concurrent Glance writes)
		WriteSettle: crl.DefaultWriteSettle,
	}, warnings, nil
}

// crlDaemon runs the job at once and then every interval plus jitter,
// answers /healthz on crl.listen through sh (nil: none; cmdCRL serves it
// and /metrics from the start), and reloads the configuration and the CAs
// on SIGHUP (interval, jitter and listen need a restart).
func crlDaemon(ctx context.Context, log *slog.Logger, cfg *config.Config, path string, jc crl.JobConfig,
	cat crl.Catalog, metrics *crl.Metrics, reg *prometheus.Registry, hup <-chan os.Signal, printReport func(*crl.Report), login *keystoneLogin,
	sh *startHealth) int {
	var cur atomic.Pointer[crl.Job]
	cur.Store(crl.NewJob(jc, cat, log, metrics))
	interval, jitter := max(cfg.CRL.Interval.Duration, time.Second), cfg.CRL.Jitter.Duration
	reloads := newReloadMetrics(reg, time.Now())
	// (interval and jitter take a restart: the window is fixed)
	health := newPassHealth(time.Now(), 2*interval+jitter+time.Minute, "CRL run")
	// /healthz (crl.listen), served since the start (cmdCRL)
	sh.started(health)

	// SIGHUP: the configuration, the CAs and the credentials, then a run
	wake := make(chan struct{}, 1)
	reload := func() {
		ncfg, err := config.Load(path)
		var njc crl.JobConfig
		var warnings []string
		if err == nil {
			njc, warnings, err = crlJobConfig(ncfg)
		}
		// the credentials too, whatever became of the file: new
		// ones Keystone refuses leave those in use
		var cerr error
		if login != nil {
			if cerr = login.reload(ctx); cerr != nil {
				log.Error("credentials reload failed; keeping those in use", "err", cerr)
			}
		}
		reloads.done(errors.Join(err, cerr), time.Now())
		if err != nil {
			log.Error("reload failed; keeping the previous configuration", "err", err)
			return
		}
		for _, w := range warnings {
			log.Warn("trust store warning", "warning", w)
		}
		for _, w := range ncfg.Warnings("crl") {
			log.Warn("configuration warning", "warning", w)
		}
		cur.Store(crl.NewJob(njc, cat, log, metrics))
		log.Info("configuration and CAs reloaded", "run", "now", "cas", len(njc.CAs), "sources", len(njc.Sources))
		select { // a run at once, with what was reloaded
		case wake <- struct{}{}:
		default:
		}
		if keys := restartOnly(cfg, ncfg, []string{"log"}, []string{"crl.interval", "crl.jitter", "crl.listen"}); len(keys) > 0 {
			log.Warn("changed settings take effect at the next restart, not on reload", "settings", strings.Join(keys, ","))
		}
	}
	// a reload asked for while the daemon waited for OpenStack at start
	// (systemctl reload meanwhile) takes effect before the first run
	select {
	case <-hup:
		reload()
		select { // the first run comes at once anyway
		case <-wake:
		default:
		}
	default:
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload()
			}
		}
	}()

	log.Info("crl daemon started", "interval", interval, "jitter", jitter, "listen", cfg.CRL.Listen)
	failures := 0 // failed runs in a row
	_ = crl.RunLoop(ctx, interval, jitter, wake, func(ctx context.Context) (next time.Duration) {
		rctx, cancel := context.WithTimeout(ctx, crlRunTimeout(interval))
		rep, err := cur.Load().Run(rctx, false)
		cancel()
		if ctx.Err() != nil {
			return 0
		}
		if rep != nil {
			printReport(rep)
			if len(rep.InTransit) > 0 {
				log.Warn("revoked or held images still being written into Glance: running again soon", "images", len(rep.InTransit), "in", crl.TransitRecheck)
				next = crl.TransitRecheck
			}
			if len(rep.LostWrites) > 0 {
				log.Error("image changes lost to concurrent Glance writes: running again soon", "images", len(rep.LostWrites), "in", crl.TransitRecheck)
				next = crl.TransitRecheck
			}
			if rep.FailedWrites > 0 {
				log.Error("image changes failed or could not be checked: running again soon", "failures", rep.FailedWrites, "in", crl.TransitRecheck)
				next = crl.TransitRecheck
			}
		}
		if err != nil {
			// Glance or Keystone unreachable, the credentials refused: try
			// again in a minute, then less and less often, not only after
			// an interval (an hour by default) that a short outage would
			// add to every revocation's way
			failures++
			retry := min(retryWait(failures), interval)
			if next > 0 {
				retry = min(retry, next)
			}
			log.Error("crl run failed", "err", err, "failures_in_a_row", failures, "retry_in", retry)
			return retry
		}
		failures = 0
		health.ok(time.Now())
		log.Info("crl run done", "crls", len(rep.CRLs), "refused", len(rep.Refused), "images", rep.Images,
			"untrusted", rep.Untrusted, "changes", len(rep.Changes), "writes", rep.Writes)
		return next
	})
	log.Info("stopping")
	return exitOK
}

// crlRunTimeout bounds one run of the job (at least 30 minutes, and two
// intervals): a Glance or CRL server that accepts connections and never
// answers fails the run, which /healthz and the metrics then show, instead
// of holding the job, and every revocation after it, for ever.
func crlRunTimeout(interval time.Duration) time.Duration {
	return max(30*time.Minute, 2*interval)
}

// writeCRLReport prints a run's report for people.
func writeCRLReport(w io.Writer, rep *crl.Report) {
	dry := ""
	if rep.DryRun {
		dry = " (dry run: nothing written)"
	}
	fmt.Fprintf(w, "CRL run at %s%s\n", rep.Started.Format(time.RFC3339), dry)
	fmt.Fprintf(w, "CRLs used: %d\n", len(rep.CRLs))
	for _, c := range rep.CRLs {
		stale := ""
		if c.Stale {
			stale = "  STALE"
		}
		fmt.Fprintf(w, "  %s\n    number %s  thisUpdate %s  nextUpdate %s  entries %d%s\n    from %s\n",
			c.Issuer, c.Number, c.ThisUpdate.Format(time.RFC3339), c.NextUpdate.Format(time.RFC3339), c.Entries, stale, c.Source)
	}
	if len(rep.Refused) > 0 {
		fmt.Fprintf(w, "CRLs refused: %d (the last good CRL of their CA stays in use)\n", len(rep.Refused))
		for _, r := range rep.Refused {
			issuer := ""
			if r.Issuer != "" {
				issuer = " issuer " + r.Issuer + ":"
			}
			fmt.Fprintf(w, "  %s: %s:%s %s\n", r.Source, r.Reason, issuer, r.Error)
		}
	}
	fmt.Fprintf(w, "Images checked: %d, changed: %d, Glance writes: %d\n", rep.Images, len(rep.Changes), rep.Writes)
	if rep.Untrusted > 0 {
		fmt.Fprintf(w, "Images whose record no longer chains to a configured CA (unknown): %d\n", rep.Untrusted)
	}
	if len(rep.InTransit) > 0 {
		fmt.Fprintf(w, "Revoked or held while Glance is still writing their data (a later run deactivates them): %s\n", strings.Join(rep.InTransit, ", "))
	}
	for _, l := range rep.LostWrites {
		fmt.Fprintf(w, "LOST: image %s: the change to %s did not hold after %d writes (a concurrent Glance write undid it; run again): missing %s\n", l.ImageID, l.To, l.Attempts, l.Lost)
	}
	changes := append([]crl.Change(nil), rep.Changes...)
	sort.Slice(changes, func(a, b int) bool { return changes[a].ImageID < changes[b].ImageID })
	for _, c := range changes {
		act := ""
		switch {
		case c.Deactivate:
			act = ", deactivated"
		case c.Reactivate:
			act = ", reactivated"
		}
		if rep.DryRun {
			act = ""
			if c.Deactivate {
				act = ", would deactivate"
			} else if c.Reactivate {
				act = ", would reactivate"
			}
		}
		from := c.From
		if from == "" {
			from = "(none)"
		}
		fmt.Fprintf(w, "  image %s: %s -> %s%s\n    because %s\n", c.ImageID, from, c.To, act, c.Why)
	}
	for _, s := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
	for _, s := range rep.Errors {
		fmt.Fprintf(w, "error: %s\n", s)
	}
}

// crlImageClient logs in (openLogin) and returns the Glance client, every
// Glance call bounded, so that a hung Glance fails the run instead of
// stalling the daemon.
func crlImageClient(ctx context.Context, e *env, cloudName string, log *slog.Logger) (*keystoneLogin, *gophercloud.ServiceClient, error) {
	l, err := openLogin(ctx, cloudName, e.getenv, log)
	if err != nil {
		return nil, nil, err
	}
	sc, err := newImageClient(l.pc, l.eo)
	if err != nil {
		return nil, nil, err
	}
	sc.ProviderClient.HTTPClient.Timeout = glanceTimeout
	return l, sc, nil
}

// glanceCatalog is the mirror project's catalogue in Glance (crl.Catalog).
// It remembers the properties each image had when last listed or written,
// from which PatchProperties computes the minimal patch.
type glanceCatalog struct {
	sc    *gophercloud.ServiceClient
	owner string

	mu    sync.Mutex
	props map[string]map[string]string
}

// List implements crl.Catalog: every image of the mirror project, hidden
// ones included (a hidden image still boots by id), that carries a
// catalogue record (glance.ListHiddenToo: an image hidden or unhidden
// meanwhile comes once, or is seen next run). Alias entries are returned
// too; the job skips them.
func (g *glanceCatalog) List(ctx context.Context) ([]crl.Image, error) {
	// the listing as a whole is bounded, and so is a re-authentication
	// within it (it takes the request's context, not the client's Timeout)
	ctx, cancel := context.WithTimeout(ctx, 5*glanceTimeout)
	defer cancel()
	ims, err := glance.ListHiddenToo(ctx, g.sc, g.owner, nil, url.Values{"limit": {"200"}, "sort_key": {"created_at"}, "sort_dir": {"asc"}})
	if err != nil {
		return nil, fmt.Errorf("glance: listing the images of project %s: %w", g.owner, err)
	}
	props := map[string]map[string]string{}
	var out []crl.Image
	for _, im := range ims {
		if im.Owner != g.owner || im.Properties[crl.PropRecordVersion] == "" {
			continue
		}
		props[im.ID] = im.Properties
		out = append(out, crl.Image{ID: im.ID, Status: string(im.Status), Properties: im.Properties})
	}
	g.mu.Lock()
	g.props = props
	g.mu.Unlock()
	return out, nil
}

// SetProperties implements crl.Catalog with one JSON patch from the
// properties as last listed or written. Glance answers 409 only when a key
// the patch replaces or removes no longer exists: then the image is read
// again and the patch retried once. That is no guard against a concurrent
// write: Glance has no compare-and-swap and saves whole images, so a write
// of another client that overlaps this one can undo it (or be undone by
// it) without any error; the job reads the image again afterwards and
// writes once more (crl.Job's checkWrites).
func (g *glanceCatalog) SetProperties(ctx context.Context, id string, set map[string]string, remove []string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*glanceTimeout)
	defer cancel()
	g.mu.Lock()
	cur, ok := g.props[id]
	g.mu.Unlock()
	if !ok {
		im, err := glance.Get(ctx, g.sc, id).Extract()
		if err != nil {
			return fmt.Errorf("glance: image %s: %w", id, err)
		}
		cur = im.Properties
	}
	for attempt := 0; ; attempt++ {
		r := glance.PatchProperties(ctx, g.sc, id, cur, set, remove)
		im, err := r.Extract()
		if err == nil {
			if im != nil {
				g.mu.Lock()
				if g.props != nil {
					g.props[id] = im.Properties
				}
				g.mu.Unlock()
			}
			return nil
		}
		if !glance.IsConflict(err) || attempt > 0 {
			return fmt.Errorf("glance: patching image %s: %w", id, err)
		}
		fresh, gerr := glance.Get(ctx, g.sc, id).Extract()
		if gerr != nil {
			return fmt.Errorf("glance: patching image %s: %w (re-reading it: %w)", id, err, gerr)
		}
		cur = fresh.Properties
	}
}

// Get implements crl.Catalog: the image as Glance has it now
// (crl.ErrImageGone when it is not found).
func (g *glanceCatalog) Get(ctx context.Context, id string) (crl.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, glanceTimeout)
	defer cancel()
	im, err := glance.Get(ctx, g.sc, id).Extract()
	if glance.IsNotFound(err) {
		return crl.Image{}, fmt.Errorf("glance: image %s: %w", id, crl.ErrImageGone)
	}
	if err != nil {
		return crl.Image{}, fmt.Errorf("glance: reading image %s: %w", id, err)
	}
	g.mu.Lock()
	if g.props != nil {
		g.props[id] = im.Properties
	}
	g.mu.Unlock()
	return crl.Image{ID: im.ID, Status: string(im.Status), Properties: im.Properties}, nil
}

// Deactivate implements crl.Catalog.
func (g *glanceCatalog) Deactivate(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, glanceTimeout)
	defer cancel()
	if err := glance.Deactivate(ctx, g.sc, id).ExtractErr(); err != nil {
		return fmt.Errorf("glance: deactivating image %s: %w", id, err)
	}
	return nil
}

// Reactivate implements crl.Catalog.
func (g *glanceCatalog) Reactivate(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, glanceTimeout)
	defer cancel()
	if err := glance.Reactivate(ctx, g.sc, id).ExtractErr(); err != nil {
		return fmt.Errorf("glance: reactivating image %s: %w", id, err)
	}
	return nil
}

// staleInUse counts the stale CRLs a run used that no newer CRL of their CA
// supersedes (an abandoned scope's old CRL stays searched, but is not what
// images depend on, and the job does not warn of it either).
func staleInUse(rep *crl.Report) int {
	n := 0
	for _, c := range rep.CRLs {
		if c.Stale && !c.Superseded {
			n++
		}
	}
	return n
}

// errWriter keeps the first error of writes to w; once failed it writes
// nothing more.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
