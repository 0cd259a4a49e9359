package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/imagetrust/imagetrust/contextualise"
	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
	"github.com/imagetrust/imagetrust/validator/proxy"
)

func init() {
	register("proxy", "run the Nova-facing boot gate (reverse proxy in front of the compute API)", cmdProxy)
}

func cmdProxy(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "proxy", "--config FILE [--cloud NAME]")
	cfgPath := fs.String("config", "/etc/imagetrust/imagetrust.toml", "configuration file")
	cloud := fs.String("cloud", "", "clouds.yaml entry of the proxy's service credentials (default $OS_CLOUD); their project is the mirror project")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return usageExit(err)
	}
	// SIGHUP means reload: caught from the start, as the sync and the CRL
	// job do, so that one sent while the proxy reads its configuration and
	// key pair is applied once it serves rather than killing it
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	daemonSIGPIPE()
	cfg, err := itconfig.Load(*cfgPath)
	if err != nil {
		return fail(e, exitUsage, "proxy: %v", err)
	}
	log := newLogger(e.stderr, cfg.Log.Format, cfg.Log.Level)
	if cfg.Proxy.Listen == "" || cfg.Proxy.Upstream == "" {
		return fail(e, exitUsage, "proxy: proxy.listen and proxy.upstream must be set")
	}
	// the temporary /healthz of the wait for OpenStack would hold the
	// gate's port (a load balancer's check sees the gate up, Nova's
	// clients get 404), and proxy.Serve could bind only one of the two
	if listenOverlap(cfg.Proxy.Listen, cfg.Proxy.MetricsListen) {
		return fail(e, exitUsage, "proxy: proxy.metrics_listen %q and proxy.listen %q are one address: give /metrics and /healthz a port of their own",
			cfg.Proxy.MetricsListen, cfg.Proxy.Listen)
	}
	// a Keystone catalog template (…/v2.1/%(tenant_id)s) before parsing:
	// url.Parse reads "%(t" as a bad escape, and "$(project_id)s" as a path
	for _, u := range []struct{ key, val string }{{"proxy.upstream", cfg.Proxy.Upstream}, {"proxy.public_url", cfg.Proxy.PublicURL}} {
		if t := proxy.CatalogTemplate(u.val); t != "" {
			return fail(e, exitUsage, "proxy: %s %q holds the Keystone catalog template %s, which Keystone fills in only in a token's catalog: give the endpoint without it (http://nova:8774, or …/v2.1)",
				u.key, u.val, t)
		}
	}
	upstream, err := url.Parse(cfg.Proxy.Upstream)
	if err != nil || upstream.Scheme == "" || upstream.Host == "" {
		return fail(e, exitUsage, "proxy: proxy.upstream %q is not an absolute URL", cfg.Proxy.Upstream)
	}
	var public *url.URL
	if cfg.Proxy.PublicURL != "" {
		if public, err = url.Parse(cfg.Proxy.PublicURL); err != nil || public.Host == "" {
			return fail(e, exitUsage, "proxy: proxy.public_url %q is not an absolute URL", cfg.Proxy.PublicURL)
		}
	}
	// an older catalog's …/v2.1/{project_id}: dropped (proxy.TrimEndpoint),
	// said once, as the operator may have meant something else
	for _, u := range []struct {
		key string
		u   *url.URL
	}{{"proxy.upstream", upstream}, {"proxy.public_url", public}} {
		if u.u == nil {
			continue
		}
		if base, dropped := proxy.TrimEndpoint(u.u); strings.Count(dropped, "/") > 1 {
			log.Warn("the end of the URL is a compute API version and project, as an older Keystone catalog gives it: dropped, as requests carry their own",
				"setting", u.key, "dropped", dropped, "url", base.Redacted())
		}
	}
	// the listener's key pair now, before any network call: a missing or
	// mismatched file is a configuration error, not a failure found after
	// logging in to Keystone
	if (cfg.Proxy.TLSCert == "") != (cfg.Proxy.TLSKey == "") {
		return fail(e, exitUsage, "proxy: set both proxy.tls_cert and proxy.tls_key, or neither")
	}
	if cfg.Proxy.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.Proxy.TLSCert, cfg.Proxy.TLSKey); err != nil {
			return fail(e, exitUsage, "proxy: proxy.tls_cert %s and proxy.tls_key %s: %v", cfg.Proxy.TLSCert, cfg.Proxy.TLSKey, err)
		}
	}
	for _, w := range secretFileWarnings(secretFile{"proxy.tls_key", cfg.Proxy.TLSKey}, cloudsYAML(e.getenv)) {
		log.Warn("secret file readable by every user", "warning", w)
	}
	for _, w := range cfg.Warnings("proxy") {
		log.Warn("configuration warning", "warning", w)
	}
	decider := &reloadingDecider{}
	if err := decider.load(cfg, log); err != nil {
		return fail(e, exitUsage, "proxy: %v", err)
	}
	cloudName := *cloud
	if cloudName == "" {
		cloudName = e.getenv("OS_CLOUD")
	}
	var hook proxy.UserData
	if cfg.Context.Dir != "" {
		site, err := contextualise.LoadSite(cfg.Context.Dir)
		if err == nil {
			err = site.CheckSiteVars(contextualise.Vars{SiteName: cfg.Context.SiteName, Extra: cfg.Context.Vars})
		}
		if err != nil {
			return fail(e, exitUsage, "proxy: contextualise: %v", err)
		}
		if unused := site.UnusedVars(cfg.Context.Vars); len(unused) > 0 {
			log.Warn("contextualise.vars used by no fragment: a setting written after the [contextualise.vars] header becomes a variable; move it above that header, or remove the variable",
				"vars", strings.Join(unused, ","), "dir", cfg.Context.Dir)
		}
		hook = userDataHook(site, cfg)
	} else if len(cfg.Context.Vars) > 0 {
		log.Warn("contextualise.vars set, but contextualise.dir is empty: no contextualisation, so no variable is used",
			"vars", strings.Join(slices.Sorted(maps.Keys(cfg.Context.Vars)), ","))
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := proxy.NewMetrics(reg)
	if err != nil {
		return fail(e, exitInvalid, "proxy: %v", err)
	}
	reloads := newReloadMetrics(reg, time.Now())
	registerTrustMetrics(reg, decider.t.Load)
	// The gate listens once the proxy has logged in and reached the
	// services it needs, not before: a load balancer's check (a TCP
	// connect, or a request) then finds it down and sends boots to a
	// proxy that can judge them, where a gate answering 503 would take
	// them (a TCP check sees it up) and fail each; and without Keystone
	// Nova itself can take no request. Meanwhile metrics_listen answers
	// /healthz 503 with the reason, and /metrics.
	// The gate's address is bound (and let go) now, before the wait: one
	// that is taken or not this host's is told at once, not after
	// Keystone is back (and then at every restart, each after a login).
	// proxy.Serve binds it for good once logged in.
	if err := checkListen(cfg.Proxy.Listen); err != nil {
		return fail(e, exitInvalid, "proxy: proxy.listen: %v", err)
	}
	var stopHealth func()
	var health *startHealth
	if cfg.Proxy.MetricsListen != "" {
		health = &startHealth{}
		if stopHealth, err = serveMetrics("proxy.metrics_listen", cfg.Proxy.MetricsListen, reg, health, log); err != nil {
			return fail(e, exitInvalid, "proxy: %v", err)
		}
		// (proxy.Serve serves /healthz and /metrics once the gate listens)
		defer func() {
			if stopHealth != nil {
				stopHealth()
			}
		}()
	}
	oc, err := startOpen(ctx, newStartWait(log, reg, health), func(ctx context.Context) (*proxyClients, error) {
		return openProxyClients(ctx, cloudName, cfg.Proxy.TokenValidation, cfg.Proxy.VolumePolicy, e.getenv, log)
	})
	if err != nil {
		return startFailed(e, log, "proxy", "", err)
	}
	oc.login.register(reg)
	lookup, identity, volumePolicy, volumes := oc.lookup, oc.identity, oc.volumePolicy, oc.volumes
	log.Info("proxy service credentials", "cloud", cloudName, "mirror_project", lookup.owner, "token_validation", cfg.Proxy.TokenValidation)
	for _, w := range unmanagedProjectWarnings(cfg.Proxy.UnmanagedProjects, lookup.owner) {
		log.Warn("proxy.unmanaged_projects may not work as meant", "warning", w)
	}

	gate, err := proxy.New(proxy.Options{
		Upstream: upstream, PublicURL: public, Lookup: lookup, Decider: decider,
		MirrorProject: lookup.owner, UnmanagedProjects: cfg.Proxy.UnmanagedProjects,
		VolumePolicy: volumePolicy, Volumes: volumes, MaxBody: cfg.Proxy.MaxBody,
		CacheTTL: cfg.Proxy.CacheTTL.Duration, CacheSize: cfg.Proxy.CacheSize, LookupTimeout: cfg.Proxy.LookupTimeout.Duration,
		UserData: hook, Logger: log, Metrics: metrics, TokenCacheTTL: cfg.Proxy.TokenCacheTTL.Duration,
		Identity: identity, AuthURI: identity.authURI,
		MaxGated: cfg.Proxy.MaxGatedRequests, MaxGatedPerProject: cfg.Proxy.MaxGatedPerProject, GatedQueueTimeout: cfg.Proxy.GatedQueueTimeout.Duration,
	})
	if err != nil {
		return fail(e, exitUsage, "proxy: %v", err)
	}

	// SIGHUP reloads the trust store (CA and CRL files), the listener's
	// TLS certificate and key and the service credentials without a
	// restart (hup is caught from the start: a SIGHUP while the proxy
	// starts must not kill it).
	reloadTLS := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reloadTLS <- struct{}{}:
				default: // (a reload is already pending)
				}
				c, err := itconfig.Load(*cfgPath)
				if err == nil {
					err = decider.load(c, log)
				}
				if err != nil {
					log.Error("reload failed; keeping the previous trust store", "err", err)
				} else {
					log.Info("trust store reloaded")
					if keys := restartOnly(cfg, c, []string{"proxy", "contextualise", "log"}, nil); len(keys) > 0 {
						log.Warn("changed settings take effect at the next restart, not on reload", "settings", strings.Join(keys, ","))
					}
				}
				// the credentials too, whatever became of the file: new
				// ones Keystone refuses leave those in use
				cerr := oc.login.reload(ctx)
				if cerr != nil {
					log.Error("credentials reload failed; keeping those in use", "err", cerr)
				}
				reloads.done(errors.Join(err, cerr), time.Now())
			}
		}
	}()

	if stopHealth != nil {
		stopHealth()
		stopHealth = nil
	}
	err = proxy.Serve(ctx, gate, proxy.ServerOptions{
		Listen: cfg.Proxy.Listen, HealthListen: cfg.Proxy.MetricsListen,
		TLSCert: cfg.Proxy.TLSCert, TLSKey: cfg.Proxy.TLSKey, ReloadTLS: reloadTLS,
		Gatherer: reg, Logger: log,
		// the fast pass-through server is on unless this says otherwise
		NetHTTPOnly: cfg.Proxy.FastPassThrough != nil && !*cfg.Proxy.FastPassThrough,
		MaxConns:    cfg.Proxy.MaxConnections,
	})
	if err != nil {
		return fail(e, exitInvalid, "%v", err)
	}
	return exitOK
}

// checkListen binds addr and lets it go at once: an address that is
// taken, or not this host's, is an error. (A connection that came in
// meanwhile is reset.)
func checkListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// listenOverlap reports whether two listen addresses (host:port) would
// take the same port: the same port (not 0) and the same host, or either
// host empty or unspecified (0.0.0.0, ::: every address of the host).
// Host names are compared as written, not resolved.
func listenOverlap(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" || pa == "" {
		return false
	}
	wildcard := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "" || (ip != nil && ip.IsUnspecified())
	}
	if wildcard(ha) || wildcard(hb) {
		return true
	}
	ia, ib := net.ParseIP(ha), net.ParseIP(hb)
	if ia != nil && ib != nil {
		return ia.Equal(ib)
	}
	return strings.EqualFold(ha, hb)
}

// reloadingDecider is the current trust store, swapped whole on reload.
type reloadingDecider struct {
	t atomic.Pointer[validator.Trust]
}

func (d *reloadingDecider) load(cfg *itconfig.Config, log *slog.Logger) error {
	t, warnings, err := loadSiteTrust(cfg)
	if err != nil {
		return fmt.Errorf("trust store: %w", err)
	}
	for _, w := range append(warnings, t.StaleCRLs(time.Now())...) {
		log.Warn("trust store warning", "warning", w)
	}
	d.t.Store(t)
	return nil
}

// DecideBoot implements proxy.Decider.
func (d *reloadingDecider) DecideBoot(img validator.CatalogImage, p validator.BootPolicy, now time.Time) validator.Decision {
	return d.t.Load().DecideBoot(img, p, now)
}

// DecideTag implements proxy.Decider.
func (d *reloadingDecider) DecideTag(c []validator.CatalogImage, p validator.BootPolicy, now time.Time) (validator.Decision, []validator.Decision) {
	return d.t.Load().DecideTag(c, p, now)
}

// userDataHook merges the site's context into a boot's user data.
func userDataHook(site *contextualise.Site, cfg *itconfig.Config) proxy.UserData {
	return func(b proxy.Boot, ud string, has bool) (string, bool, error) {
		img := b.Image
		if img == nil {
			return "", false, nil // a volume boot: no catalogue image, no context
		}
		vo, tag := img.Properties[validator.PropVO], img.Properties[validator.PropTag]
		if !site.Applies(vo, tag) {
			return "", false, nil
		}
		v := contextualise.Vars{
			ImageUUID: img.ID, VO: vo, Tag: tag, SiteName: cfg.Context.SiteName, ServerName: b.ServerName,
			Extra: cfg.Context.Vars,
		}
		if b.Caller != nil {
			v.ProjectID, v.UserID = b.Caller.ProjectID, b.Caller.UserID
		}
		merged, err := site.Merge(ud, has, v)
		var tooLarge *contextualise.TooLargeError
		var bad *contextualise.UserDataError
		switch {
		case errors.As(err, &tooLarge), errors.As(err, &bad):
			return "", false, err // the request's fault: 400 with this text
		case err != nil:
			return "", false, fmt.Errorf("%w: %w", proxy.ErrSiteContext, err)
		}
		return merged, merged != "", nil
	}
}

// glanceLookup finds images with the proxy's service credentials, limited to
// the mirror project.
type glanceLookup struct {
	sc    *gophercloud.ServiceClient
	owner string
	// log gets the warning of a tag lookup cut at tagCap (nil: none).
	log *slog.Logger
	// tagCap bounds the images one tag lookup reads (0: tagLookupCap).
	tagCap int
}

// tagLookupCap is how many images of one tag a lookup reads at most: the
// ones most recently created in Glance (created_at, newest first). A tag
// with more unhidden images in the mirror project (the sync hides what it
// retires: a tag holds a few) is a catalogue gone wrong; its older images
// are then no candidates for a boot by tag, and the lookup logs a warning.
const tagLookupCap = 1000

// proxyClients are the proxy's OpenStack clients, all on one login (one
// token, one hold-off after refused renewals, one reload): the Glance
// lookups, the token validation and, with volume_policy = check-image,
// Cinder.
type proxyClients struct {
	login        *keystoneLogin
	lookup       *glanceLookup
	identity     *keystoneIdentity
	volumePolicy string
	volumes      proxy.Volumes
}

// openProxyClients logs in as cloudName (empty: OS_CLOUD, else the OS_*
// variables; the token's project is the mirror project) once, and makes
// the proxy's clients on that login. Its errors are openLogin's (see
// loginExit) or name the part that failed.
func openProxyClients(ctx context.Context, cloudName, tokenValidation, volumePolicy string, getenv func(string) string, log *slog.Logger) (*proxyClients, error) {
	if err := checkTokenValidation(tokenValidation); err != nil {
		return nil, usageError{fmt.Errorf("token validation: %w", err)}
	}
	l, err := openLogin(ctx, cloudName, getenv, log)
	if err != nil {
		return nil, err
	}
	sc, err := newImageClient(l.pc, l.eo)
	if err != nil {
		return nil, err
	}
	identity, err := keystoneIdentityOn(l.pc, l.eo, tokenValidation)
	if err != nil {
		return nil, fmt.Errorf("token validation: %w", err)
	}
	vp, vols, err := openVolumePolicy(volumePolicy, l.pc, l.eo, log)
	if err != nil {
		return nil, fmt.Errorf("volume_policy = %s: %w", volumePolicy, err)
	}
	return &proxyClients{login: l, lookup: &glanceLookup{sc: sc, owner: l.project, log: log}, identity: identity,
		volumePolicy: vp, volumes: vols}, nil
}

// GetImage implements proxy.Lookup.
func (g *glanceLookup) GetImage(ctx context.Context, id string) (*proxy.Image, error) {
	im, err := images.Get(ctx, g.sc, id).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil, fmt.Errorf("image %s: %w", id, proxy.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("glance: image %s: %w", id, serviceLoginError(err))
	}
	return toProxyImage(im), nil
}

// tagListOpts adds custom-property filters to images.ListOpts.
type tagListOpts struct {
	images.ListOpts
	extra url.Values
}

// ToImageListQuery implements images.ListOptsBuilder.
func (o tagListOpts) ToImageListQuery() (string, error) {
	q, err := o.ListOpts.ToImageListQuery()
	if err != nil {
		return "", err
	}
	sep := "&"
	if !strings.Contains(q, "?") {
		sep = "?"
	}
	return q + sep + o.extra.Encode(), nil
}

// ListTag implements proxy.Lookup: the mirror project's (unhidden) images of
// a tag. Hidden images are retired ones (sync.retire = hide) and not
// candidates. It reads every page, newest first by Glance's created_at,
// up to tagLookupCap images: past it, the older images are left out and
// a warning says so.
func (g *glanceLookup) ListTag(ctx context.Context, vo, tag string) ([]*proxy.Image, error) {
	extra := url.Values{validator.PropTag: {tag}}
	if vo != "" {
		extra.Set(validator.PropVO, vo)
	}
	limit := g.tagCap
	if limit <= 0 {
		limit = tagLookupCap
	}
	opts := tagListOpts{ListOpts: images.ListOpts{Owner: g.owner, Limit: min(100, limit), SortKey: "created_at", SortDir: "desc"}, extra: extra}
	var out []*proxy.Image
	err := images.List(g.sc, opts).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		is, err := images.ExtractImages(p)
		if err != nil {
			return false, err
		}
		for i := range is {
			out = append(out, toProxyImage(&is[i]))
		}
		// one past the cap tells a tag of exactly limit images (Glance
		// links a next page after every full one) from a longer one
		return len(out) <= limit, nil
	})
	if err != nil {
		return nil, fmt.Errorf("glance: images of tag %s/%s: %w", vo, tag, serviceLoginError(err))
	}
	if len(out) > limit {
		out = out[:limit]
		if g.log != nil {
			g.log.Warn("tag lookup cut: the tag has more unhidden images in the mirror project than a lookup reads; its older ones (by Glance created_at) are no candidates for a boot by tag", "vo", vo, "tag", tag, "read", limit)
		}
	}
	return out, nil
}

// serviceLoginError marks err as proxy.ErrServiceLogin when the call
// failed because the proxy's token could not be renewed (gophercloud's
// ErrUnableToReauthenticate: Keystone refused the credentials, or could
// not be reached), so that the gate counts it against Keystone, not Glance.
func serviceLoginError(err error) error {
	var pe *gophercloud.ErrUnableToReauthenticate
	var ve gophercloud.ErrUnableToReauthenticate
	if errors.As(err, &pe) || errors.As(err, &ve) {
		return fmt.Errorf("%w: %w", proxy.ErrServiceLogin, err)
	}
	return err
}

func toProxyImage(im *images.Image) *proxy.Image {
	props := make(map[string]string, len(im.Properties))
	for k, v := range im.Properties {
		if s, ok := v.(string); ok {
			props[k] = s
		}
	}
	return &proxy.Image{ID: im.ID, Name: im.Name, Owner: im.Owner, Status: string(im.Status),
		Visibility: string(im.Visibility), Properties: props}
}

// unmanagedProjectWarnings are what an operator should hear about
// proxy.unmanaged_projects: entries are matched against the caller's
// project id only, so a project name (or anything else that is not a
// Keystone id, 32 hex digits by default) never matches; and the mirror
// project itself needs no entry.
func unmanagedProjectWarnings(ids []string, mirror string) []string {
	var out []string
	for _, id := range ids {
		switch {
		case !itconfig.IsProjectID(id):
			out = append(out, fmt.Sprintf("%q is not a Keystone project id (32 hex digits): entries are matched against project ids only, never names, so it allows nobody; use `openstack project show NAME -f value -c id`", id))
		case strings.EqualFold(id, mirror):
			out = append(out, fmt.Sprintf("%s is the mirror project: its own images are the catalogue, and the entry lets its tokens boot anything", id))
		}
	}
	return out
}
