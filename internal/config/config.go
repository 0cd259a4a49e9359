// Package config reads imagetrust.toml, the one configuration file of every
// imagetrust subcommand. Unknown keys are refused so that a typo never
// silently drops a setting; errors name the key and its line.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/imagetrust/imagetrust/internal/fsutil"
)

// Config is the whole imagetrust.toml.
type Config struct {
	Trust   Trust         `toml:"trust"`
	VO      map[string]VO `toml:"vo"`
	Sync    Sync          `toml:"sync"`
	CRL     CRL           `toml:"crl"`
	Proxy   Proxy         `toml:"proxy"`
	Context Context       `toml:"contextualise"`
	Log     Log           `toml:"log"`

	// Path is the file the configuration was read from (not a TOML key).
	Path string `toml:"-"`
}

// Trust names the trust anchors and the revocation policy.
type Trust struct {
	// CAFiles are PEM bundles of the CAs of creators and approvers.
	CAFiles []string `toml:"ca_files"`
	// CADirs are IGTF-style directories: <hash>.0 certificates, <hash>.r0 CRLs.
	CADirs []string `toml:"ca_dirs"`
	// RegistrarCAFiles are PEM bundles of the Registrar CAs that issue image certificates.
	RegistrarCAFiles []string `toml:"registrar_ca_files"`
	// CRLFiles are CRLs (PEM or DER) of any of the CAs above.
	CRLFiles []string `toml:"crl_files"`
	// Strict refuses images whose creator or approver certificate was revoked
	// after registration for any reason (default: only keyCompromise and
	// unspecified revocations reach back before the revocation date).
	Strict bool `toml:"strict"`
	// RequireCRL refuses a chain whose issuing CA has no CRL loaded.
	RequireCRL bool `toml:"require_crl"`
	// RequireBoundUUIDs refuses every bundle whose descriptor has no
	// uuid_seed (uuid-not-bound): its uuid is not bound to its VO, so
	// another VO could have published under it first. Off by default, so
	// that bundles described before uuid_seed keep mirroring; a site turns
	// it on once all its VOs publish bound uuids
	// (imagetrust_sync_unbound_images at 0). The sync, `imagetrust verify
	// --config` and the boot gate (proxy) apply it.
	RequireBoundUUIDs bool `toml:"require_bound_uuids"`
	// Namespaces is what to do with the IGTF name constraints of ca_dirs
	// (<hash>.namespaces, else <hash>.signing_policy): enforce (default) or
	// ignore.
	Namespaces string `toml:"namespaces"`
}

// VO is one virtual organisation's policy.
type VO struct {
	// Creators and Approvers are subject DNs, OpenSSL one-line or RFC 4514 form.
	Creators  []string `toml:"creators"`
	Approvers []string `toml:"approvers"`
	// Visibility of the VO's images in Glance: private, shared, community or public.
	Visibility string `toml:"visibility"`
	// Projects are Glance project ids the VO's images are shared with (visibility shared).
	Projects []string `toml:"projects"`
	// Listing is "none" (the default: which bundles the sources list is
	// trusted as the VO's) or "signed": the VO's images are those of its
	// signed listing (docs/glancesync.md, "Signed VO listings").
	Listing string `toml:"listing"`
	// ListingSigners are the subject DNs that may sign the VO's listings
	// (default: Approvers).
	ListingSigners []string `toml:"listing_signers"`
	// ImageProperties, when set (an empty list included), replaces
	// sync.image_properties for the VO's images (ImagePropertyPatterns).
	ImageProperties []string `toml:"image_properties"`
}

// Duration is a time.Duration that reads from a TOML string such as "15m".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", string(b), err)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: negative", string(b))
	}
	d.Duration = v
	return nil
}

// MarshalText prints the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Defaults of the bound on one image transfer (Sync.TransferMinRateKiB,
// Sync.TransferSlack): a 10 GiB image may take 11.4 hours plus 10 minutes.
const (
	DefaultTransferMinRateKiB = 256
	DefaultTransferSlack      = 10 * time.Minute
	// DefaultTransferMaxResumes is the default of Sync.TransferMaxResumes.
	DefaultTransferMaxResumes = 20
)

// Sync configures `imagetrust sync`.
type Sync struct {
	Interval Duration `toml:"interval"`
	// Jitter is the largest random delay added to each interval.
	Jitter Duration `toml:"jitter"`
	// Parallel is the largest number of image transfers at once.
	Parallel int `toml:"parallel"`
	// Retire is what happens to images that left their source or were
	// superseded in their tag: keep, hide or delete.
	Retire string `toml:"retire"`
	// Ingest is how image bytes enter Glance: "import" (stage, then
	// glance-direct import), "upload" (one PUT of the image data, its last
	// bytes held back until they verify) or "auto" (import where Glance
	// offers glance-direct, upload otherwise; the default).
	Ingest string `toml:"ingest"`
	// Stores are the Glance stores (enabled_backends ids) an image is put
	// in; empty means Glance's default_backend. An import puts it in every
	// one (all_stores_must_succeed); an upload names one store only.
	Stores []string `toml:"stores"`
	// NovaDownGrace is how long, with retire = "delete", a Nova that
	// can't be asked (unreachable, 5xx, 429) holds back the retirement of
	// images before they are deactivated and hidden instead
	// (DefaultNovaDownGrace when unset).
	NovaDownGrace Duration `toml:"nova_down_grace"`
	// StaleAfter is how long an image of ours may stay queued, saving or
	// importing before a sync reclaims (deletes) it.
	StaleAfter Duration `toml:"stale_after"`
	// CAFile is a PEM bundle that HTTPS sources are verified against
	// (default: the system roots).
	CAFile string `toml:"ca_file"`
	// DownloadTimeout bounds one HTTP request of an image download.
	DownloadTimeout Duration `toml:"download_timeout"`
	// Retries is how many times one HTTP request is retried.
	Retries int `toml:"retries"`
	// TransferMinRateKiB and TransferSlack bound one image transfer as a
	// whole (reading the source and streaming into Glance, every resumed
	// request included): it must end within TransferSlack plus the signed
	// size at TransferMinRateKiB KiB per second, or it fails (retried by a
	// later pass).
	TransferMinRateKiB int      `toml:"transfer_min_rate_kib"`
	TransferSlack      Duration `toml:"transfer_slack"`
	// TransferMaxResumes bounds the Range requests that resume one image
	// download after the connection broke off, whatever progress each made
	// (DefaultTransferMaxResumes when 0); one more break fails the transfer
	// (retried by a later pass).
	TransferMaxResumes int `toml:"transfer_max_resumes"`
	// Listen is the address of /metrics and /healthz in daemon mode ("" = off).
	Listen string `toml:"listen"`
	// LockFile is the file `imagetrust sync` (daemon and --once) locks
	// (flock, exclusive) for as long as it runs: a second sync on the host
	// refuses to start. It guards one host only: run one sync per Glance.
	LockFile string `toml:"lock_file"`
	// Aliases maintains the per-tag alias entries (see docs/design.md).
	Aliases *bool `toml:"aliases"`
	// ImageProperties are the glob patterns (path.Match) of the free-form
	// descriptor properties a VO may set on its images in this site's
	// Glance; a property no pattern matches is not copied, and removed
	// from an image that carries it with the descriptor's value. Unset
	// (nil): DefaultImageProperties; ["*"]: every one. [vo.NAME]
	// image_properties replaces it for one VO (ImagePropertyPatterns).
	ImageProperties []string `toml:"image_properties"`
	// Sources are where bundles come from.
	Sources []Source `toml:"source"`
}

// Source is one place bundles are published.
type Source struct {
	// Path is a directory tree (CVMFS or any file system).
	Path string `toml:"path"`
	// URL is an HTTPS index document (see docs/formats.md).
	URL string `toml:"url"`
	// VOs are the only VOs this source may publish for.
	VOs []string `toml:"vos"`
	// AllowPrivate lets the source's requests (index, descriptors,
	// signatures, images) connect to loopback and private addresses
	// (RFC 1918, 100.64.0.0/10, fc00::/7) even when its own url is not on
	// one; link-local and cloud metadata addresses stay refused.
	AllowPrivate bool `toml:"allow_private"`
	// MaxBundles, MaxEntries and ListingTimeout raise (or lower) the
	// bounds of one listing of this source (0: glancesync's defaults,
	// 10000 bundles, 1000000 files and directories walked, 30m): a source
	// over them fails its listing, so that nothing of its VOs is retired
	// and nothing new of it is mirrored, pass after pass.
	MaxBundles     int      `toml:"max_bundles"`
	MaxEntries     int      `toml:"max_entries"`
	ListingTimeout Duration `toml:"listing_timeout"`
}

// CRL configures `imagetrust crl`.
type CRL struct {
	Interval Duration `toml:"interval"`
	Jitter   Duration `toml:"jitter"`
	// CacheDir keeps the last good CRL of every CA.
	CacheDir string `toml:"cache_dir"`
	// Stale is the policy for a CRL past nextUpdate+Grace: refuse or warn.
	Stale string   `toml:"stale"`
	Grace Duration `toml:"grace"`
	// ClockSkew is how far thisUpdate may lie in the future (MaxClockSkew
	// at most). The sync, the proxy and `imagetrust verify` apply it too.
	ClockSkew Duration `toml:"clock_skew"`
	// NoNextUpdateMaxAge is how long after its thisUpdate a CRL without
	// nextUpdate is fresh (crl.DefaultMaxAge when unset; MaxGrace at most).
	NoNextUpdateMaxAge Duration `toml:"no_next_update_max_age"`
	// UseDistributionPoints also fetches the CRL distribution points named in certificates.
	UseDistributionPoints bool `toml:"use_distribution_points"`
	// Timeout bounds one CRL fetch.
	Timeout Duration `toml:"timeout"`
	Listen  string   `toml:"listen"`
	// Sources are CRL locations: url = "...", file = "...", or dir = "..." (IGTF).
	Sources []CRLSource `toml:"source"`
}

// CRLSource is one CRL location.
type CRLSource struct {
	URL  string `toml:"url"`
	File string `toml:"file"`
	Dir  string `toml:"dir"`
}

// Values of proxy.volume_policy.
const (
	// VolumeRefuse refuses every boot from a volume or volume snapshot.
	VolumeRefuse = "refuse"
	// VolumeAllow lets boots from volumes through unjudged.
	VolumeAllow = "allow"
	// VolumeCheckImage judges a boot volume by the image Cinder says it was
	// made from, and refuses one made from no image.
	VolumeCheckImage = "check-image"
)

// Values of proxy.token_validation.
const (
	// TokenValidationSelf validates each user's token with itself (GET
	// /v3/auth/tokens with X-Auth-Token and X-Subject-Token both the
	// user's token; Keystone's rule:token_subject): the proxy's own
	// credentials are not sent for it and need no Keystone role.
	TokenValidationSelf = "self"
	// TokenValidationService validates users' tokens with the proxy's own
	// token, which needs a role Keystone's identity:validate_token allows
	// (service, or admin).
	TokenValidationService = "service"
)

// Proxy configures `imagetrust proxy`.
type Proxy struct {
	Listen string `toml:"listen"`
	// PublicURL is the proxy's URL as users see it (version documents are rewritten to it).
	PublicURL string `toml:"public_url"`
	// Upstream is Nova's own (internal) compute endpoint.
	Upstream string `toml:"upstream"`
	TLSCert  string `toml:"tls_cert"`
	TLSKey   string `toml:"tls_key"`
	// CacheTTL is how long a Glance lookup is reused.
	CacheTTL Duration `toml:"cache_ttl"`
	// CacheSize bounds the lookup cache (entries).
	CacheSize int `toml:"cache_size"`
	// TokenCacheTTL is how long the gate reuses a user token's validation
	// by Keystone (never past the token's own expiry): a token revoked in
	// Keystone still passes the gate up to that long.
	TokenCacheTTL Duration `toml:"token_cache_ttl"`
	// LookupTimeout bounds each Glance, Keystone or Cinder call of a decision.
	LookupTimeout Duration `toml:"lookup_timeout"`
	// MaxBody is the largest request body judged (bytes).
	MaxBody int64 `toml:"max_body"`
	// MaxGatedRequests bounds the gated requests (create, rebuild, rescue,
	// other server actions) judged and forwarded at once; 0: derived from
	// max_body and contextualisation by the proxy (16 at 1 MiB with a
	// contextualise.dir, 42 without).
	MaxGatedRequests int `toml:"max_gated_requests"`
	// MaxGatedPerProject is a project's share of max_gated_requests (the
	// slots are shared work-conserving and fair: a project borrows beyond
	// it what nobody else asks for, taken back while its body has not
	// arrived when another project below its share waits); 0: half of
	// them (at least one).
	// Values over max_gated_requests are max_gated_requests.
	MaxGatedPerProject int `toml:"max_gated_per_project"`
	// GatedQueueTimeout is how long a gated request waits for a slot
	// before it is refused 503 (default 2s).
	GatedQueueTimeout Duration `toml:"gated_queue_timeout"`
	// MaxConnections bounds the client connections of the gate's listener
	// (default 4096); one more is accepted and closed at once.
	MaxConnections int `toml:"max_connections"`
	// UnmanagedProjects may boot images that are not in the catalogue.
	UnmanagedProjects []string `toml:"unmanaged_projects"`
	// VolumePolicy decides boots from Cinder volumes and volume snapshots:
	// refuse (the default), allow (unjudged), or check-image (ask Cinder
	// which image the volume was made from, volume_image_metadata.image_id,
	// and judge that image; a volume made from no image is refused). Only
	// as safe as Cinder's policy on volume_image_metadata: see
	// etc/cinder/policy.yaml.
	VolumePolicy string `toml:"volume_policy"`
	// TokenValidation is how the gate validates users' tokens with
	// Keystone: self (the default; each token validates itself) or service
	// (with the proxy's own token, which needs the service role).
	TokenValidation string `toml:"token_validation"`
	MetricsListen   string `toml:"metrics_listen"`
	// FastPassThrough serves the listener (plain or TLS) with the
	// hand-written pass-through server, which hands a connection to
	// net/http at its first request that is not a plain pass-through
	// (default true; false: net/http's server alone).
	FastPassThrough *bool `toml:"fast_passthrough"`
}

// Context configures contextualisation.
type Context struct {
	// Dir holds site fragments: <dir>/all/, <dir>/vo/<VO>/, <dir>/tag/<VO>/<TAG>/.
	Dir      string            `toml:"dir"`
	SiteName string            `toml:"site_name"`
	Vars     map[string]string `toml:"vars"`
}

// Log configures logging.
type Log struct {
	Format string `toml:"format"` // text or json
	Level  string `toml:"level"`  // debug, info, warn, error
}

// Load reads and checks a configuration file. Relative paths in it are
// resolved against the file's directory.
func Load(path string) (*Config, error) {
	if err := checkNotWritableByOthers(path); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path = path
	c.resolve(filepath.Dir(path))
	return c, nil
}

// checkNotWritableByOthers refuses a configuration file that a user other
// than root and the one this runs as may write, or replace (a directory on
// its way writable by them: fsutil.CheckNotWritableByOthers): the file
// names the CAs, the VOs' signers and the boot gate's policy, and they
// could rewrite them.
func checkNotWritableByOthers(path string) error {
	err := fsutil.CheckNotWritableByOthers(path)
	if errors.Is(err, fsutil.ErrWritable) {
		return fmt.Errorf("a user other than root and the one this runs as could change what this site trusts (install -m 0640 -o root -g imagetrust): %w", err)
	}
	return err
}

// Parse decodes configuration bytes, refusing unknown keys, and applies defaults.
func Parse(b []byte) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, unknownKeys(und, keyLines(string(b)))
	}
	c.defaults()
	if err := c.check(); err != nil {
		return nil, atLine(err, keyLines(string(b)))
	}
	return &c, nil
}

// unknownKeys is the error of the keys no setting takes, each with its
// line, in file order; the keys of an unknown table are not repeated.
func unknownKeys(und []toml.Key, lines map[string]int) error {
	unknown := map[string]bool{}
	for _, k := range und {
		unknown[k.String()] = true
	}
	type entry struct {
		key  string
		line int
	}
	var es []entry
	for _, k := range und {
		name := k.String()
		parentUnknown := false
		for i := 1; i < len(k); i++ {
			if unknown[toml.Key(k[:i]).String()] {
				parentUnknown = true
				break
			}
		}
		if parentUnknown {
			continue
		}
		l, ok := lines[name]
		if !ok {
			l = 1 << 30 // unplaced: last
		}
		es = append(es, entry{name, l})
	}
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].line != es[j].line {
			return es[i].line < es[j].line
		}
		return es[i].key < es[j].key
	})
	out := make([]string, 0, len(es))
	for _, e := range es {
		if e.line == 1<<30 {
			out = append(out, e.key)
		} else {
			out = append(out, fmt.Sprintf("line %d: %s", e.line, e.key))
		}
	}
	return fmt.Errorf("unknown keys: %s", strings.Join(out, "; "))
}

func (c *Config) defaults() {
	setDur := func(d *Duration, v time.Duration) {
		if d.Duration == 0 {
			d.Duration = v
		}
	}
	setDur(&c.Sync.Interval, 15*time.Minute)
	setDur(&c.Sync.StaleAfter, 2*time.Hour)
	setDur(&c.Sync.NovaDownGrace, DefaultNovaDownGrace)
	setDur(&c.Sync.DownloadTimeout, 10*time.Minute)
	if c.Sync.Parallel == 0 {
		c.Sync.Parallel = 2
	}
	if c.Sync.Retries == 0 {
		c.Sync.Retries = 5
	}
	if c.Sync.TransferMinRateKiB == 0 {
		c.Sync.TransferMinRateKiB = DefaultTransferMinRateKiB
	}
	setDur(&c.Sync.TransferSlack, DefaultTransferSlack)
	if c.Sync.TransferMaxResumes == 0 {
		c.Sync.TransferMaxResumes = DefaultTransferMaxResumes
	}
	if c.Sync.Ingest == "" {
		c.Sync.Ingest = "auto"
	}
	if c.Sync.Retire == "" {
		c.Sync.Retire = "hide"
	}
	setDur(&c.CRL.Interval, time.Hour)
	setDur(&c.CRL.ClockSkew, DefaultClockSkew)
	setDur(&c.CRL.NoNextUpdateMaxAge, DefaultNoNextUpdateMaxAge)
	setDur(&c.CRL.Timeout, 30*time.Second)
	if c.CRL.Stale == "" {
		c.CRL.Stale = "refuse"
	}
	if c.CRL.CacheDir == "" {
		c.CRL.CacheDir = "/var/lib/imagetrust/crl"
	}
	if c.Sync.LockFile == "" {
		c.Sync.LockFile = "/var/lib/imagetrust/sync.lock"
	}
	setDur(&c.Proxy.CacheTTL, 30*time.Second)
	setDur(&c.Proxy.TokenCacheTTL, DefaultTokenCacheTTL)
	setDur(&c.Proxy.LookupTimeout, 30*time.Second)
	setDur(&c.Proxy.GatedQueueTimeout, DefaultGatedQueueTimeout)
	if c.Proxy.MaxConnections == 0 {
		c.Proxy.MaxConnections = DefaultMaxConnections
	}
	if c.Proxy.CacheSize == 0 {
		c.Proxy.CacheSize = 10000
	}
	if c.Proxy.MaxBody == 0 {
		c.Proxy.MaxBody = 1 << 20
	}
	if c.Proxy.VolumePolicy == "" {
		c.Proxy.VolumePolicy = VolumeRefuse
	}
	if c.Proxy.TokenValidation == "" {
		c.Proxy.TokenValidation = TokenValidationSelf
	}
	if c.Trust.Namespaces == "" {
		c.Trust.Namespaces = "enforce"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	for name, vo := range c.VO {
		if vo.Visibility == "" {
			vo.Visibility = "shared"
		}
		if vo.Listing == "" {
			vo.Listing = "none"
		}
		c.VO[name] = vo
	}
}

// Bounds of the settings that decide how soon a revocation, a hold or a
// local flag takes effect, or how much a daemon holds in memory: values
// beyond them are refused (check), values beyond the Warn* ones load with a
// warning (Warnings).
const (
	// MinInterval and MaxInterval bound sync.interval and crl.interval: a
	// daemon that loops faster than once a second only loads Glance and
	// the sources, and one that waits longer than a week lets revocations
	// and retirements wait as long (and three intervals of a century
	// overflow time.Duration in /healthz).
	MinInterval = time.Second
	MaxInterval = 7 * 24 * time.Hour
	// MaxJitter bounds sync.jitter and crl.jitter.
	MaxJitter = MaxInterval
	// WarnCRLInterval: a longer crl.interval loads with a warning.
	WarnCRLInterval = 24 * time.Hour
	// MaxCacheTTL bounds proxy.cache_ttl, within which a revocation, a hold
	// or a local blacklist flag reaches the gate; WarnCacheTTL: a longer
	// one loads with a warning.
	MaxCacheTTL  = time.Hour
	WarnCacheTTL = 5 * time.Minute
	// DefaultTokenCacheTTL is proxy.token_cache_ttl's default, and
	// MaxTokenCacheTTL and WarnTokenCacheTTL its bounds: a token revoked in
	// Keystone (a logout, a user or project disabled, a role removed)
	// still passes the gate up to that long after the gate validated it.
	// The gate never reuses a validation past the token's own expiry, so
	// the bound matters only for tokens that live longer (Keystone's
	// default lifetime is an hour), and no bound below that lifetime
	// can be known here.
	DefaultTokenCacheTTL = 5 * time.Minute
	MaxTokenCacheTTL     = time.Hour
	WarnTokenCacheTTL    = 5 * time.Minute
	// MaxGrace bounds crl.grace, how long past its nextUpdate a CRL is
	// still used (the revocations of a CA whose CRL stopped coming, or
	// whose fetch is blocked, go unseen that long); WarnGrace: a longer
	// one loads with a warning.
	MaxGrace  = 30 * 24 * time.Hour
	WarnGrace = 7 * 24 * time.Hour
	// DefaultClockSkew and MaxClockSkew are crl.clock_skew's default and
	// bound: how far a CRL's thisUpdate may lie beyond now. A CRL dated
	// further ahead comes from a CA whose clock is wrong, and its
	// thisUpdate would outrank the CA's later, correctly dated CRLs of
	// other scopes or keys (which CRL lifts a hold, which one's freshness
	// counts) until that date.
	DefaultClockSkew = 5 * time.Minute
	MaxClockSkew     = time.Hour
	// DefaultNoNextUpdateMaxAge is crl.no_next_update_max_age's default
	// (crl.DefaultMaxAge): how long after its thisUpdate a CRL without
	// nextUpdate is fresh; MaxGrace bounds it.
	DefaultNoNextUpdateMaxAge = 7 * 24 * time.Hour
	// DefaultNovaDownGrace is sync.nova_down_grace's default, and
	// MaxNovaDownGrace its bound: images that left their source or were
	// superseded stay active and shown at most that long while Nova can't
	// be asked whether servers use them.
	DefaultNovaDownGrace = 24 * time.Hour
	MaxNovaDownGrace     = 30 * 24 * time.Hour
	// MaxBodyLimit bounds proxy.max_body: the gate reads a judged body
	// whole into memory, and Nova itself refuses bodies over
	// oslo.middleware's max_request_body_size (112 KiB by default).
	MaxBodyLimit = 16 << 20
	// DefaultGatedQueueTimeout is proxy.gated_queue_timeout's default and
	// MaxGatedQueueTimeout its bound: a boot refused for want of a slot
	// waits at most that long for its 503, a client holding no memory
	// meanwhile but its request head.
	DefaultGatedQueueTimeout = 2 * time.Second
	MaxGatedQueueTimeout     = 30 * time.Second
	// MaxGatedRequestsLimit bounds proxy.max_gated_requests.
	MaxGatedRequestsLimit = 4096
	// DefaultMaxConnections is proxy.max_connections's default and
	// MaxConnectionsLimit its bound.
	DefaultMaxConnections = 4096
	MaxConnectionsLimit   = 1 << 20
)

// checkBounds refuses durations and sizes beyond their bounds (above).
func (c *Config) checkBounds() error {
	for _, d := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
		why      string
	}{
		{"sync.interval", c.Sync.Interval.Duration, MinInterval, MaxInterval, "the time between two passes"},
		{"sync.jitter", c.Sync.Jitter.Duration, 0, MaxJitter, "the largest delay added to an interval"},
		{"sync.nova_down_grace", c.Sync.NovaDownGrace.Duration, 0, MaxNovaDownGrace, "how long images to retire stay active and shown while Nova can't be asked"},
		{"crl.interval", c.CRL.Interval.Duration, MinInterval, MaxInterval, "the time between two runs: a revocation waits for it"},
		{"crl.jitter", c.CRL.Jitter.Duration, 0, MaxJitter, "the largest delay added to an interval"},
		{"crl.clock_skew", c.CRL.ClockSkew.Duration, 0, MaxClockSkew, "how far a CRL's thisUpdate may lie beyond now: a CRL dated further ahead would outrank its CA's later, correctly dated CRLs until that date"},
		{"crl.no_next_update_max_age", c.CRL.NoNextUpdateMaxAge.Duration, time.Minute, MaxGrace, "how long after its thisUpdate a CRL without nextUpdate is fresh"},
		{"crl.grace", c.CRL.Grace.Duration, 0, MaxGrace, "how long past its nextUpdate a CRL is still used: the revocations of a CA whose CRL stopped coming go unseen that long"},
		{"proxy.cache_ttl", c.Proxy.CacheTTL.Duration, 0, MaxCacheTTL, "how long a Glance lookup is reused: a revocation, a hold or a local blacklist flag reaches the gate only that late"},
		{"proxy.token_cache_ttl", c.Proxy.TokenCacheTTL.Duration, 0, MaxTokenCacheTTL, "how long a user token's validation is reused: a token revoked in Keystone still passes the gate that long"},
		{"proxy.gated_queue_timeout", c.Proxy.GatedQueueTimeout.Duration, 0, MaxGatedQueueTimeout, "how long a boot waits for a slot before its 503"},
	} {
		switch {
		case d.v < d.min:
			return keyErrorf(d.key, " = %q: must be at least %s (%s)", d.v, d.min, d.why)
		case d.v > d.max:
			return keyErrorf(d.key, " = %q: must be at most %s (%s)", d.v, d.max, d.why)
		}
	}
	if c.Proxy.MaxBody > MaxBodyLimit {
		return keyErrorf("proxy.max_body", " = %d: must be at most %d (16 MiB): the gate reads a judged body whole into memory, and Nova refuses bodies over 112 KiB unless its max_request_body_size is raised", c.Proxy.MaxBody, MaxBodyLimit)
	}
	if c.Proxy.MaxGatedRequests > MaxGatedRequestsLimit {
		return keyErrorf("proxy.max_gated_requests", " = %d: must be at most %d: each gated request allocates up to 12 times max_body, plus 20 MiB with contextualisation", c.Proxy.MaxGatedRequests, MaxGatedRequestsLimit)
	}
	if c.Proxy.MaxGatedPerProject > MaxGatedRequestsLimit {
		return keyErrorf("proxy.max_gated_per_project", " = %d: must be at most %d", c.Proxy.MaxGatedPerProject, MaxGatedRequestsLimit)
	}
	if c.Proxy.MaxConnections > MaxConnectionsLimit {
		return keyErrorf("proxy.max_connections", " = %d: must be at most %d", c.Proxy.MaxConnections, MaxConnectionsLimit)
	}
	return nil
}

// Warnings are what an operator should hear about the settings of the
// given sections ("sync", "crl", "proxy"; none: all) that load but widen
// the time within which a revocation, a hold or a local flag takes effect
// (beyond WarnCacheTTL, WarnGrace, WarnCRLInterval). Each daemon logs
// those of its own sections at start.
func (c *Config) Warnings(sections ...string) []string {
	want := func(s string) bool { return len(sections) == 0 || slices.Contains(sections, s) }
	var out []string
	if want("crl") && c.CRL.Interval.Duration > WarnCRLInterval {
		out = append(out, fmt.Sprintf("crl.interval = %q: a revocation or a hold reaches the catalogue, and so the proxy, only up to that long after its CRL is published (keep it at most %s; 1h by default)", c.CRL.Interval.Duration, WarnCRLInterval))
	}
	if want("crl") && c.CRL.Grace.Duration > WarnGrace {
		out = append(out, fmt.Sprintf("crl.grace = %q: a CRL is used that long past its nextUpdate, so the revocations of a CA whose CRL stopped coming (or whose fetch is blocked) go unseen that long (keep it at most %s)", c.CRL.Grace.Duration, WarnGrace))
	}
	if want("proxy") && c.Proxy.CacheTTL.Duration > WarnCacheTTL {
		out = append(out, fmt.Sprintf("proxy.cache_ttl = %q: a revocation, a hold or a local blacklist flag reaches the gate only up to that long after it is written (keep it at most %s; 30s by default)", c.Proxy.CacheTTL.Duration, WarnCacheTTL))
	}
	if want("proxy") && c.Proxy.TokenCacheTTL.Duration > WarnTokenCacheTTL {
		out = append(out, fmt.Sprintf("proxy.token_cache_ttl = %q: a token revoked in Keystone (a logout, a disabled user or project) still passes the gate up to that long after the gate validated it (keep it at most %s, the default)", c.Proxy.TokenCacheTTL.Duration, WarnTokenCacheTTL))
	}
	return out
}

func (c *Config) check() error {
	oneOf := func(key, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return keyErrorf(key, " = %q: must be one of %s", v, strings.Join(allowed, ", "))
	}
	if err := oneOf("trust.namespaces", c.Trust.Namespaces, "enforce", "ignore"); err != nil {
		return err
	}
	if err := oneOf("sync.ingest", c.Sync.Ingest, "auto", "import", "upload"); err != nil {
		return err
	}
	if err := oneOf("sync.retire", c.Sync.Retire, "keep", "hide", "delete"); err != nil {
		return err
	}
	if err := checkStores(c.Sync.Stores, c.Sync.Ingest); err != nil {
		return err
	}
	if err := checkContextVars(c.Context.Vars); err != nil {
		return err
	}
	if err := checkPropertyPatterns("sync.image_properties", c.Sync.ImageProperties); err != nil {
		return err
	}
	if err := oneOf("crl.stale", c.CRL.Stale, "refuse", "warn"); err != nil {
		return err
	}
	if err := oneOf("proxy.volume_policy", c.Proxy.VolumePolicy, VolumeRefuse, VolumeAllow, VolumeCheckImage); err != nil {
		return err
	}
	if err := oneOf("proxy.token_validation", c.Proxy.TokenValidation, TokenValidationSelf, TokenValidationService); err != nil {
		return err
	}
	if err := oneOf("log.format", c.Log.Format, "text", "json"); err != nil {
		return err
	}
	if err := oneOf("log.level", strings.ToLower(c.Log.Level), "debug", "info", "warn", "warning", "error"); err != nil {
		return err
	}
	for _, n := range []struct {
		key string
		v   int64
	}{{"sync.parallel", int64(c.Sync.Parallel)}, {"sync.retries", int64(c.Sync.Retries)},
		{"sync.transfer_min_rate_kib", int64(c.Sync.TransferMinRateKiB)},
		{"sync.transfer_max_resumes", int64(c.Sync.TransferMaxResumes)},
		{"proxy.cache_size", int64(c.Proxy.CacheSize)}, {"proxy.max_body", int64(c.Proxy.MaxBody)},
		{"proxy.max_gated_requests", int64(c.Proxy.MaxGatedRequests)}, {"proxy.max_connections", int64(c.Proxy.MaxConnections)},
		{"proxy.max_gated_per_project", int64(c.Proxy.MaxGatedPerProject)}} {
		if n.v < 0 {
			return keyErrorf(n.key, " = %d: must not be negative (0 or unset: the default)", n.v)
		}
	}
	if err := c.checkBounds(); err != nil {
		return err
	}
	// an empty path would be read as the configuration's directory, or
	// fail naming no file
	for _, l := range []struct {
		key   string
		paths []string
	}{{"trust.ca_files", c.Trust.CAFiles}, {"trust.ca_dirs", c.Trust.CADirs},
		{"trust.registrar_ca_files", c.Trust.RegistrarCAFiles}, {"trust.crl_files", c.Trust.CRLFiles}} {
		for i, p := range l.paths {
			if strings.TrimSpace(p) == "" {
				return keyErrorf(l.key, ": entry %d is empty", i+1)
			}
		}
	}
	for name, vo := range c.VO {
		if err := oneOf("vo."+name+".visibility", vo.Visibility, "private", "shared", "community", "public"); err != nil {
			return err
		}
		if err := oneOf("vo."+name+".listing", vo.Listing, "none", "signed"); err != nil {
			return err
		}
		if err := checkPropertyPatterns("vo."+name+".image_properties", vo.ImageProperties); err != nil {
			return err
		}
	}
	for i, s := range c.Sync.Sources {
		key := fmt.Sprintf("sync.source[%d]", i)
		if (s.Path == "") == (s.URL == "") {
			return keyErrorf(key, ": set exactly one of path and url")
		}
		if s.URL != "" && URLMayHoldCredentials(s.URL) {
			// never echo the URL: it may hold a password
			return keyErrorf(key+".url", ": not a URL without credentials: user:password@ in a source URL would appear in logs, reports and errors; serve the index without them (or through a local proxy that adds them)")
		}
		if len(s.VOs) == 0 {
			return keyErrorf(key, ": vos is empty: a source must name the VOs it may publish for")
		}
		if s.MaxBundles < 0 || s.MaxEntries < 0 || s.ListingTimeout.Duration < 0 {
			return keyErrorf(key, ": max_bundles, max_entries and listing_timeout must not be negative (0 or unset: the defaults)")
		}
		if s.MaxEntries > 0 && s.URL != "" {
			return keyErrorf(key+".max_entries", ": only a directory source (path) walks files and directories")
		}
		for _, v := range s.VOs {
			if _, ok := c.VO[v]; !ok {
				return keyErrorf(key+".vos", ": VO %q has no [vo.%s] section", v, v)
			}
		}
	}
	for i, s := range c.CRL.Sources {
		key := fmt.Sprintf("crl.source[%d]", i)
		n := 0
		for _, v := range []string{s.URL, s.File, s.Dir} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return keyErrorf(key, ": set exactly one of url, file and dir")
		}
		if s.URL != "" && URLMayHoldCredentials(s.URL) {
			// never echo the URL: it may hold a password
			return keyErrorf(key+".url", ": not a URL without credentials: user:password@ in a CRL URL would appear in logs and reports; CRLs are public (RFC 5280), serve them without")
		}
	}
	return nil
}

// resolve makes relative file paths relative to the configuration's directory.
func (c *Config) resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && !strings.Contains(*p, "://") {
			*p = filepath.Join(dir, *p)
		}
	}
	absAll := func(ps []string) {
		for i := range ps {
			abs(&ps[i])
		}
	}
	absAll(c.Trust.CAFiles)
	absAll(c.Trust.CADirs)
	absAll(c.Trust.RegistrarCAFiles)
	absAll(c.Trust.CRLFiles)
	abs(&c.Sync.CAFile)
	abs(&c.Sync.LockFile)
	for i := range c.Sync.Sources {
		abs(&c.Sync.Sources[i].Path)
	}
	abs(&c.CRL.CacheDir)
	for i := range c.CRL.Sources {
		abs(&c.CRL.Sources[i].File)
		abs(&c.CRL.Sources[i].Dir)
	}
	abs(&c.Proxy.TLSCert)
	abs(&c.Proxy.TLSKey)
	abs(&c.Context.Dir)
}

// IsProjectID reports whether s has the shape of a Keystone project id
// (uuid4 hex: 32 hex digits). Project lists are matched against ids only;
// a project name there matches nothing.
func IsProjectID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// ProjectWarnings are what an operator should hear about the project lists
// of the configuration (vo.NAME.projects): entries that are not project
// ids, which Glance takes as image members all the same and which share
// the images with nobody.
func (c *Config) ProjectWarnings() []string {
	var out []string
	names := make([]string, 0, len(c.VO))
	for name := range c.VO {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, p := range c.VO[name].Projects {
			if !IsProjectID(p) {
				out = append(out, fmt.Sprintf("vo.%s.projects: %q is not a Keystone project id (32 hex digits): Glance takes it as an image member all the same, and the images are shared with nobody; use `openstack project show NAME -f value -c id`", name, p))
			}
		}
	}
	return out
}

// URLMayHoldCredentials reports whether raw has user information
// (user:password@, or a token as the user name) or does not parse, in
// which case what stands where they would is unknown. Such a URL is refused
// and never echoed: logs, reports and errors would carry the secret.
//
// A URL without "//" after its scheme ("user:secret@host/path", which
// url.Parse reads as scheme "user" and opaque "secret@host/path") has no
// user information to Go, but its text before an "@" may be a secret all
// the same: any "@" in an opaque URL counts.
func URLMayHoldCredentials(raw string) bool {
	u, err := url.Parse(raw)
	return err != nil || u.User != nil || strings.Contains(u.Opaque, "@")
}

// checkStores checks sync.stores: Glance store ids (enabled_backends
// names: letters, digits, "_" and "-"), each once; an upload (sync.ingest
// = "upload") names one store at most (X-Image-Meta-Store), an import any
// number. Whether Glance has them is asked of Glance at each pass.
func checkStores(stores []string, ingest string) error {
	seen := map[string]bool{}
	for _, st := range stores {
		if st == "" || len(st) > 255 || strings.Trim(st, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			return keyErrorf("sync.stores", ": %q is no Glance store id (the names of glance-api.conf's enabled_backends: letters, digits, _ and -)", st)
		}
		if seen[st] {
			return keyErrorf("sync.stores", ": %q named twice", st)
		}
		seen[st] = true
	}
	if ingest == "upload" && len(stores) > 1 {
		return keyErrorf("sync.stores", ": an upload (sync.ingest = \"upload\") puts an image in one store; name one, or set sync.ingest = \"import\" or \"auto\" to import into all %d", len(stores))
	}
	return nil
}

// checkContextVars refuses a [contextualise.vars] variable named like a
// [contextualise] setting: TOML makes every key after the
// [contextualise.vars] header a variable, so "dir" or "site_name" there is
// a setting written in the wrong place, and the setting itself silently
// left at its default. (A variable no fragment uses, such as one named so
// that no template can refer to it, is warned of by the proxy at start:
// Site.UnusedVars.)
func checkContextVars(vars map[string]string) error {
	for _, n := range slices.Sorted(maps.Keys(vars)) {
		if n == "dir" || n == "site_name" {
			return keyErrorf("contextualise.vars."+n, ": a variable named like the [contextualise] setting %q: TOML puts every key after the [contextualise.vars] header into the variables; move it above that header", n)
		}
	}
	return nil
}
