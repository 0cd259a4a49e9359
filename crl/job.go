package crl

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Catalog is the mirror project's image catalogue (Glance in production).
type Catalog interface {
	// List returns the catalogue images (those with imagetrust_record_version).
	List(ctx context.Context) ([]Image, error)
	// SetProperties sets and removes image properties.
	SetProperties(ctx context.Context, id string, set map[string]string, remove []string) error
	// Deactivate makes an image unbootable and its data unreadable.
	Deactivate(ctx context.Context, id string) error
	// Reactivate undoes Deactivate.
	Reactivate(ctx context.Context, id string) error
	// Get reads one image again, as List returns it (ErrImageGone when it
	// no longer exists): the job checks with it that its writes held.
	Get(ctx context.Context, id string) (Image, error)
}

// ErrImageGone is what Catalog.Get answers for an image that no longer
// exists.
var ErrImageGone = errors.New("image no longer exists")

// JobConfig is what the CRL job needs to know.
type JobConfig struct {
	// CAs are the CA certificates CRLs may come from: roots and intermediates
	// of the people and Registrar CAs (see LoadCAs).
	CAs []*x509.Certificate
	// Chains, when set, judges the records' chains against the verifier's
	// trust anchors (ChainChecker; validator.Trust): an image whose record
	// no longer chains to them is "unknown" unless a CRL revokes or holds
	// it. nil: records are judged by CRLs alone. CAs and the IGTF
	// directories of Sources only widen which CRLs are accepted, never
	// which records are trusted: an image that chains only to them is
	// unknown, as the proxy refuses it.
	Chains ChainChecker
	// Sources are the CRL locations.
	Sources []Source
	// UseDistributionPoints also fetches the HTTP(S) CRL distribution points
	// named in the CA certificates (the CRLs of their issuers).
	UseDistributionPoints bool
	// CacheDir keeps the last good CRL of each CA ("" = no disk cache).
	CacheDir string
	// Policy decides image states.
	Policy Policy
	// ClockSkew is how far thisUpdate may lie in the future.
	ClockSkew time.Duration
	// MaxAge is how long after its thisUpdate a CRL without nextUpdate is
	// fresh (Index.MaxAge; zero: DefaultMaxAge).
	MaxAge time.Duration
	// Timeout bounds one HTTP request; Retries is how often a failed one is retried.
	Timeout time.Duration
	Retries int
	// WriteSettle is how long the job waits after a round of writes before
	// it reads the images again to check that they held (checkWrites;
	// DefaultWriteSettle in production). 0: no wait, the images are read
	// at once (tests).
	WriteSettle time.Duration
}

// Job is the CRL job: fetch, accept, cache, judge, write. Run it with Run;
// it is not safe for concurrent Runs.
type Job struct {
	cfg     JobConfig
	cat     Catalog
	log     *slog.Logger
	metrics *Metrics
	http    *retryablehttp.Client
	// dpHTTP fetches the distribution points named in certificates
	// (guardDP: public addresses only)
	dpHTTP *retryablehttp.Client
	cache  diskCache
	// sigs remembers what each record's imagetrust_signature holds, from
	// one run to the next (EmbeddedCAs still chains every certificate
	// again each run)
	sigs sigMemo
	// trusted remembers the verdicts of cfg.Chains from one run to the
	// next (trustMemo)
	trusted trustMemo
	// points remembers the distribution points of the certificates each
	// record's imagetrust_signature embeds, from one run to the next
	// (pointsMemo)
	points pointsMemo
	// local is the imagetrust_local_validity of each image as the last run
	// listed it (localFlags); nil until loaded
	local map[string]string
	// Now is the clock (tests replace it).
	Now func() time.Time
}

// NewJob builds a job. metrics may be nil.
func NewJob(cfg JobConfig, cat Catalog, log *slog.Logger, metrics *Metrics) *Job {
	hc := retryablehttp.NewClient()
	hc.RetryMax = cfg.Retries
	hc.RetryWaitMin = 200 * time.Millisecond
	hc.RetryWaitMax = 2 * time.Second
	hc.HTTPClient.Timeout = cfg.Timeout
	hc.Logger = log
	dp := retryablehttp.NewClient()
	dp.RetryMax, dp.RetryWaitMin, dp.RetryWaitMax, dp.Logger = hc.RetryMax, hc.RetryWaitMin, hc.RetryWaitMax, log
	dp.HTTPClient.Timeout = cfg.Timeout
	guardDP(dp)
	return &Job{cfg: cfg, cat: cat, log: log, metrics: metrics, http: hc, dpHTTP: dp, cache: diskCache{dir: cfg.CacheDir}, Now: time.Now}
}

// UsedCRL is a CRL a run decided with.
type UsedCRL struct {
	Issuer     string    `json:"issuer"`
	Number     string    `json:"number"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	Source     string    `json:"source"`
	Entries    int       `json:"entries"`
	Stale      bool      `json:"stale"`
	// Superseded: a newer CRL of the same CA speaks for everything this one
	// does (the CA no longer publishes its scope); still searched for
	// revocations, not watched for staleness.
	Superseded bool `json:"superseded,omitempty"`
}

// Refusal is a source whose CRL was not used this run.
type Refusal struct {
	Source string `json:"source"`
	Issuer string `json:"issuer,omitempty"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// Report is the outcome of one run.
type Report struct {
	Started time.Time `json:"started"`
	DryRun  bool      `json:"dry_run"`
	CRLs    []UsedCRL `json:"crls"`
	Refused []Refusal `json:"refused"`
	Images  int       `json:"images"`
	// EmbeddedCAs counts the intermediate CAs found in the records'
	// signatures that chain to a configured CA (see EmbeddedCAs).
	EmbeddedCAs int `json:"embedded_cas"`
	// Untrusted counts the images judged unknown because their record no
	// longer chains to the configured trust anchors (JobConfig.Chains),
	// whether or not their flag changed this run.
	Untrusted int      `json:"untrusted"`
	Changes   []Change `json:"changes"`
	// InTransit are the images judged revoked or on hold whose data Glance
	// was still writing (queued, saving, uploading, importing): Glance
	// cannot deactivate them, and may overwrite the flag written now when
	// the write ends. A later run deactivates them once active
	// (TransitRecheck).
	InTransit []string `json:"in_transit,omitempty"`
	// LostWrites are the changes that did not hold: the image, read again
	// after the writes (JobConfig.WriteSettle), no longer had what the job
	// wrote after MaxWriteAttempts writes, as a concurrent Glance write
	// saved the image as it read it before the job's write. Such an image
	// may boot while it should not: `crl --once` exits 4 and the daemon
	// runs again within TransitRecheck.
	LostWrites []LostWrite `json:"lost_writes,omitempty"`
	// LocalFlagsGone are the images whose imagetrust_local_validity the
	// last run (of this daemon, or recorded in the cache directory) saw and
	// this run does not (localFlags): an operator removed it, or a
	// concurrent Glance write lost it.
	LocalFlagsGone []LocalFlagGone `json:"local_flags_gone,omitempty"`
	Writes         int             `json:"writes"`
	// FailedWrites counts the writes of image changes, and the reads
	// that check them, that failed (each also in Errors): such an image
	// may not have what the job meant it to have (a revoked image still
	// active), so the daemon runs again within TransitRecheck, as for
	// LostWrites, rather than an interval later.
	FailedWrites int      `json:"failed_writes,omitempty"`
	Errors       []string `json:"errors,omitempty"`
	Warnings     []string `json:"warnings,omitempty"`
}

// Run does one pass: it builds the index of CRLs (cached ones first, then
// every source), judges every catalogue image and, unless dryRun, writes
// what differs. The error is non-nil when the catalogue could not be listed
// or a write failed; refused CRLs are in the report, not errors.
func (j *Job) Run(ctx context.Context, dryRun bool) (*Report, error) {
	now := j.Now()
	rep := &Report{Started: now.UTC(), DryRun: dryRun}
	if c := j.cfg.Chains; c != nil {
		// a trust that trusts nothing is a configuration mistake, not a
		// rotation: refused before anything is listed or written
		if err := CheckTrust(c); err != nil {
			return rep, fmt.Errorf("crl job: %w: refusing to run, as every image would become unknown", err)
		}
	}
	imgs, err := j.cat.List(ctx)
	if err != nil {
		return rep, fmt.Errorf("crl job: list catalogue: %w", err)
	}
	j.localFlags(imgs, rep, dryRun)
	// the rollback floor the catalogue records: what stands in for the
	// cache's numbers when the cache is lost (catalogueFloor)
	floor := catalogueFloor(imgs)
	anchors, dirErrs := j.anchors()
	emb := embeddedCAs(imgs, anchors, now, &j.sigs)
	rep.EmbeddedCAs = len(emb.CAs)
	if emb.Truncated {
		msg := fmt.Sprintf("the catalogue embeds more CA certificates than a run reads (%d that chain, %d in all, %d a record): only the first were considered", MaxEmbeddedCAs, maxCollected, maxPerRecord)
		rep.Warnings = append(rep.Warnings, msg)
		j.log.Warn("embedded cas truncated", "max", MaxEmbeddedCAs)
	}
	if emb.Unchained > 0 || emb.Unreadable > 0 {
		j.log.Info("embedded cas ignored", "unchained", emb.Unchained, "unreadable_records", emb.Unreadable)
	}
	// a cache error fails the run, after the judging and writing: a
	// revocation in hand is still applied
	records := slices.ContainsFunc(imgs, func(img Image) bool { return isRecord(img.Properties) })
	cas := append(anchors, emb.CAs...)
	ix, cacheErr := j.buildIndex(ctx, now, dryRun, rep, cas, dirErrs, floor, records)
	var errs []error
	if cacheErr != nil {
		errs = append(errs, cacheErr)
	}
	counts := map[string]int{}
	// Judge, with the covering CRLs of each issuer, key and kind of
	// certificate worked out once this run
	judging := newCoverMemo(ix, now, j.cfg.Policy.Grace)
	j.points.begin()
	judging.points = &j.points
	if ix.namesPoints() {
		// (an intermediate the trust files hold is judged by the points
		// its certificate names, whether a signature embeds it or not)
		judging.known = certsPoints(cas)
	}
	untrusted := j.trusted.begin(j.cfg.Chains)
	// the images that become unknown this run for want of trust, and the
	// first such reason, for the warning of a mass change (MassUntrustedPercent)
	var flipped int
	var firstWhy string
	// the changes to write, once every image is judged (write)
	var todo []pendingWrite
	for _, img := range imgs {
		if !isRecord(img.Properties) {
			continue
		}
		rep.Images++
		d := judging.judge(img, j.cfg.Policy)
		// a revocation or a hold a CRL proves stands (its CA's CRL was
		// accepted), and so does a revoked flag (Plan); otherwise a record
		// that no longer chains to the configured trust is unknown,
		// whatever its CRLs say
		if (d.state == StateValid || d.state == StateUnknown) && img.Properties[PropGlobalValidity] != StateRevoked {
			if why := untrusted(img.Properties); why != "" {
				d = desired{state: StateUnknown, why: why}
				rep.Untrusted++
				if img.Properties[PropGlobalValidity] != StateUnknown {
					if flipped++; firstWhy == "" {
						firstWhy = why
					}
				}
			}
		}
		state, rev, why := d.state, d.rev, d.why
		ch := Plan(img, state, rev, why)
		final := state
		if img.Properties[PropGlobalValidity] == StateRevoked {
			final = StateRevoked
		}
		counts[final]++
		if (final == StateRevoked || final == StateHold) && inTransit(img, ch != nil && len(ch.Set) > 0 && !dryRun) {
			rep.InTransit = append(rep.InTransit, img.ID)
		}
		if ch == nil {
			continue
		}
		rep.Changes = append(rep.Changes, *ch)
		j.log.Info("image change", "image", ch.ImageID, "from", ch.From, "to", ch.To, "why", ch.Why,
			"deactivate", ch.Deactivate, "reactivate", ch.Reactivate, "dry_run", dryRun)
		if dryRun {
			continue
		}
		todo = append(todo, pendingWrite{img: img, d: desired{state: state, rev: rev, why: why}, ch: ch})
	}
	errs = append(errs, j.write(ctx, todo, rep)...)
	j.trusted.end()
	j.points.end()
	j.metrics.images(counts)
	j.metrics.untrusted(rep.Untrusted)
	if flipped > 0 && flipped*100 > rep.Images*MassUntrustedPercent {
		msg := fmt.Sprintf("%d of %d catalogue images became unknown this run because their record no longer chains to a configured CA (first: %s): if no CA was meant to leave [trust] (ca_files, ca_dirs, registrar_ca_files), restore it and they are valid again at the next run", flipped, rep.Images, firstWhy)
		rep.Warnings = append(rep.Warnings, msg)
		j.log.Warn("many images no longer chain to a configured CA", "images", flipped, "of", rep.Images, "first", firstWhy)
	}
	if err := errors.Join(errs...); err != nil {
		return rep, err
	}
	j.metrics.success(j.Now())
	return rep, nil
}

// inTransit reports whether Glance may still overwrite the properties of
// img (Report.InTransit): its data is being written (saving, uploading,
// importing: Glance saves, when the write ends, the image as it read it
// when the write began), or it is queued and this run wrote its flag (a
// write may have begun since the listing). A queued image that already
// carried its flag keeps it through a write that begins later, and a
// killed one is never written again: neither is in transit.
func inTransit(img Image, wrote bool) bool {
	switch img.Status {
	case "saving", "uploading", "importing":
		return true
	case "queued":
		return wrote
	}
	return false
}

// apply writes one change so that a failed step is tried again by the
// next run and never makes a refused image bootable:
//   - properties before a deactivation, so that a hold's deactivation is
//     recorded (crl-hold) before it is made (a hold whose property write
//     fails leaves the image as it was until the next run: deactivating it
//     unrecorded would keep it deactivated for good once the hold lifts);
//     for a revocation, which is final and needs no record, a failed
//     property write (a full property quota, say) still deactivates;
//   - a reactivation before the properties, while they still say hold (the
//     proxy refuses the image until "valid" is written): a failed
//     reactivation leaves the crl-hold marker, so the next run tries again.
func (j *Job) apply(ctx context.Context, ch *Change) (int, error) {
	n := 0
	if ch.Reactivate {
		if err := j.cat.Reactivate(ctx, ch.ImageID); err != nil {
			return n, fmt.Errorf("image %s: reactivate: %w", ch.ImageID, err)
		}
		n++
	}
	if len(ch.Set) > 0 || len(ch.Remove) > 0 {
		if err := j.cat.SetProperties(ctx, ch.ImageID, ch.Set, ch.Remove); err != nil {
			err = fmt.Errorf("image %s: set properties: %w", ch.ImageID, err)
			if ch.Deactivate && ch.To == StateRevoked {
				if derr := j.cat.Deactivate(ctx, ch.ImageID); derr != nil {
					return n, errors.Join(err, fmt.Errorf("image %s: deactivate: %w", ch.ImageID, derr))
				}
				n++
			}
			return n, err
		}
		n++
	}
	if ch.Deactivate {
		if err := j.cat.Deactivate(ctx, ch.ImageID); err != nil {
			return n, fmt.Errorf("image %s: deactivate: %w", ch.ImageID, err)
		}
		n++
	}
	return n, nil
}

// lastGood is the persisted rollback state of one CA.
type lastGood struct {
	number *big.Int
	sum    [32]byte
}

// anchors are the CAs whose CRLs the job accepts and to which embedded
// intermediates must chain: the configured ones and those of the IGTF
// directory sources (read once a run; dirErrs has the directories that
// could not be read, for buildIndex to report).
func (j *Job) anchors() (cas []*x509.Certificate, dirErrs map[string]error) {
	cas = append(cas, j.cfg.CAs...)
	for _, s := range j.cfg.Sources {
		if s.Dir == "" {
			continue
		}
		dirCAs, err := LoadCAs(nil, []string{s.Dir})
		if err != nil {
			if dirErrs == nil {
				dirErrs = map[string]error{}
			}
			dirErrs[s.Dir] = err
			continue
		}
		cas = append(cas, dirCAs...)
	}
	return cas, dirErrs
}

// buildIndex loads the cached CRLs, then fetches and accepts every source.
// cas are the CAs whose CRLs are accepted (and whose distribution points
// are fetched): anchors and the intermediates EmbeddedCAs found. The index
// is always returned; the error says the cache could not be written.
// floor is the rollback floor of the catalogue (catalogueFloor), checked
// besides the cache's numbers.
//
// records says whether the catalogue holds any record: without one, a CRL
// whose issuer the job does not know judges no image and is not used
// (unused), rather than refused.
func (j *Job) buildIndex(ctx context.Context, now time.Time, dryRun bool, rep *Report, cas []*x509.Certificate, dirErrs map[string]error, floor map[string]floorMark, records bool) (*Index, error) {
	ix := &Index{ClockSkew: j.cfg.ClockSkew, MaxAge: j.cfg.MaxAge}
	// each source is read, or fetched, just before it is taken in, and its
	// bytes dropped after: one CRL in memory at a time
	var srcs []func() fetched
	httpSt := j.cache.loadHTTP()
	var urls []string
	// the URLs the configuration names ([[crl.source]] url): fetched
	// without the distribution points' address policy (guardDP)
	configured := map[string]bool{}
	for _, s := range j.cfg.Sources {
		switch {
		case s.URL != "":
			urls = append(urls, s.URL)
			configured[s.URL] = true
		case s.File != "":
			srcs = append(srcs, readSource(s.File))
		case s.Dir != "":
			if err := dirErrs[s.Dir]; err != nil {
				srcs = append(srcs, failedSource(s.Dir, err))
				continue
			}
			files, err := igtfCRLs(s.Dir)
			if err != nil {
				srcs = append(srcs, failedSource(s.Dir, err))
			}
			for _, f := range files {
				srcs = append(srcs, readSource(f))
			}
		}
	}
	if j.cfg.UseDistributionPoints {
		for _, ca := range cas {
			for _, u := range ca.CRLDistributionPoints {
				if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
					urls = append(urls, u)
				}
			}
		}
	}
	// Cached CRLs first: the baseline a failed fetch falls back to, and the
	// rollback state.
	last := map[string]lastGood{}
	seen := map[string]bool{}
	// the CAs (caKey) of which the cache held a rollback baseline, of any
	// scope: a CRL accepted of another CA has none (noBaseline)
	baseline := map[string]bool{}
	for _, ca := range cas {
		k := caKey(ca)
		if seen[k] {
			continue
		}
		seen[k] = true
		// the CA's complete CRL (no issuingDistributionPoint), then those
		// of its other scopes (scopeKey)
		idps := append([]string{""}, j.cache.scopes(k)...)
		for _, idp := range idps {
			if j.loadCached(ix, ca, k, idp, last, now, rep, floor) {
				baseline[k] = true
			}
		}
	}
	sort.Strings(urls)
	pending := map[string]httpState{}
	// whether a 304 may stand for the cached CRL is decided on what the
	// cache brought, before anything fetched is taken in: the cache names
	// of the CRLs loaded from it, computed once (not once a URL)
	var cachedNames map[string]bool
	if len(urls) > 0 {
		cachedNames = map[string]bool{}
		for _, c := range ix.CRLs() {
			cachedNames[cacheName(scopeKey(c.CA, c.Header))] = true
		}
	}
	for i, u := range urls {
		if i > 0 && urls[i-1] == u {
			continue
		}
		st := httpSt[u]
		conditional := st.CA != "" && cachedNames[st.CA]
		hc := j.http
		if !configured[u] {
			hc = j.dpHTTP
		}
		srcs = append(srcs, func() fetched {
			f, nst := fetchURL(ctx, hc, u, st, conditional)
			if f.err == nil && !f.notModified {
				// kept only once the CRL is accepted: validators saved for a
				// refused CRL would turn every later fetch into a 304 and the
				// CRL (a revocation in it) would never be looked at again
				pending[u] = nst
			}
			return f
		})
	}
	// the parsed CRLs by fingerprint (the cache's, then each accepted one):
	// a source whose bytes are those of a CRL already parsed this run (an
	// unchanged CRL, most runs) is not parsed and indexed again
	parsed := map[[32]byte]*List{}
	for _, c := range ix.CRLs() {
		parsed[c.Fingerprint()] = c.List
	}
	var cacheErrs []error
	for _, src := range srcs {
		f := src()
		if f.notModified {
			continue
		}
		if f.err != nil {
			j.refuse(rep, f.name, &Error{Reason: ReasonFetch, Err: f.err})
			continue
		}
		c, err := j.intake(ix, cas, last, floor, f, now, parsed)
		if errors.Is(err, errUnknownIssuer) && !records {
			j.unused(rep, f.name, err)
			delete(httpSt, f.name)
			continue
		}
		if err != nil {
			j.refuse(rep, f.name, err)
			delete(httpSt, f.name) // fetched whole next run
			continue
		}
		parsed[c.Fingerprint()] = c.List
		k := scopeKey(c.CA, c.Header)
		if st, ok := pending[f.name]; ok {
			st.CA = cacheName(k)
			httpSt[f.name] = st
		}
		lg, had := last[k]
		if had && lg.sum == c.Fingerprint() {
			continue
		}
		if !had {
			j.noBaseline(rep, c, baseline, floor)
		}
		last[k] = lastGood{number: c.Header.Number, sum: c.Fingerprint()}
		j.metrics.accepted()
		j.log.Info("crl accepted", "issuer", c.Header.Issuer.String(), "number", c.Header.Number.String(), "source", f.name, "entries", c.Len())
		if !dryRun {
			err := j.cache.store(k, c)
			if idp := idpValue(c.Header); err == nil && idp != nil {
				err = j.cache.addScope(caKey(c.CA), string(idp))
			}
			if err != nil {
				j.log.Error("crl cache write failed", "err", err)
				cacheErrs = append(cacheErrs, err)
			}
		}
	}
	if !dryRun {
		if err := j.cache.storeHTTP(httpSt); err != nil {
			j.log.Error("crl cache write failed", "err", err)
			cacheErrs = append(cacheErrs, err)
		}
	}
	var cacheErr error
	if err := errors.Join(cacheErrs...); err != nil {
		// the run still judges and writes (a revocation in hand is
		// applied), but fails: a cache that cannot be written is a CRL a
		// later run may not have when a fetch fails
		rep.Errors = append(rep.Errors, "crl cache: "+err.Error())
		cacheErr = fmt.Errorf("crl job: crl cache: %w", err)
	}
	// the age and nextUpdate metrics, by CA (issuer and key): the oldest
	// thisUpdate and the first nextUpdate of its CRLs that no newer one of
	// the CA supersedes (an abandoned scope stays searched, not watched)
	times := map[crlSeries]crlTimes{}
	for _, c := range ix.CRLs() {
		stale := c.Stale(now, j.cfg.Policy.Grace)
		superseded := ix.Superseded(c)
		rep.CRLs = append(rep.CRLs, UsedCRL{Issuer: c.Header.Issuer.String(), Number: c.Header.Number.String(),
			ThisUpdate: c.Header.ThisUpdate.UTC(), NextUpdate: c.Header.NextUpdate.UTC(), Source: c.Source, Entries: c.Len(), Stale: stale,
			Superseded: superseded})
		if superseded {
			continue
		}
		if j.metrics != nil {
			s := crlSeries{issuer: c.Header.Issuer.String(), key: keyID(c)}
			t, seen := times[s]
			if tu := c.Header.ThisUpdate; !seen || tu.Before(t.thisUpdate) {
				t.thisUpdate = tu
			}
			if nu := c.NextUpdate(); t.nextUpdate.IsZero() || nu.Before(t.nextUpdate) {
				t.nextUpdate = nu
			}
			times[s] = t
		}
		if stale {
			msg := "CRL of " + c.Header.Issuer.String() + " is stale (" + nextUpdateText(c) + ")"
			rep.Warnings = append(rep.Warnings, msg)
			j.metrics.refused(ReasonStale)
			j.log.Warn("crl stale", "issuer", c.Header.Issuer.String(), "next_update", c.NextUpdate(), "refuse", j.cfg.Policy.RefuseStale)
		}
	}
	j.metrics.crlTimes(times)
	slices.SortFunc(rep.CRLs, func(a, b UsedCRL) int {
		return cmp.Or(strings.Compare(a.Issuer, b.Issuer), strings.Compare(a.Source, b.Source), strings.Compare(a.Number, b.Number))
	})
	return ix, cacheErr
}

// loadCached adds the cached CRL of one scope of ca (caK: caKey(ca); idp:
// its issuingDistributionPoint value, "" for none) to ix, the baseline a
// failed fetch falls back to, and its number to last, the rollback state.
// It reports whether the cache held a state for the scope. A cached CRL
// numbered below the catalogue's floor (a cache restored from an old
// backup) is refused (ReasonRollback) and not used; its number still
// stands as the cache's baseline, and the floor is checked on every CRL
// taken in (intake).
func (j *Job) loadCached(ix *Index, ca *x509.Certificate, caK, idp string, last map[string]lastGood, now time.Time, rep *Report, floor map[string]floorMark) bool {
	key := scopeKeyOf(caK, idp)
	der, st, err := j.cache.load(key)
	if err != nil {
		rep.Warnings = append(rep.Warnings, err.Error())
		j.log.Warn("crl cache unreadable", "issuer", ca.Subject.String(), "err", err)
		return false
	}
	if st == nil {
		return false
	}
	if n, ok := new(big.Int).SetString(st.Number, 10); ok {
		lg := lastGood{number: n}
		if sum, err := decodeSum(st.Fingerprint); err == nil {
			lg.sum = sum
		}
		last[key] = lg
		if m, ok := floorOf(floor, caK, []byte(idp)); ok && n.Cmp(m.number) < 0 {
			// older than a CRL accepted before: not used, as if fetched
			j.refuse(rep, "cache:"+st.Source, &Error{Reason: ReasonRollback, Issuer: ca.Subject.String(),
				Err: fmt.Errorf("cached CRL number %s is lower than %s, the number of a CRL of this CA and scope recorded on catalogue image %s (%s): the cache at %s is older than what was accepted (restored from an old backup?)",
					n, m.number, m.image, PropRevCRLNumber, j.cfg.CacheDir)})
			return true
		}
	}
	if der == nil {
		return true
	}
	l, err := ParseList(der)
	if err == nil {
		_, err = ix.AddList(l, ca, now, "cache:"+st.Source)
	}
	if err != nil {
		rep.Warnings = append(rep.Warnings, "cached CRL of "+ca.Subject.String()+": "+err.Error())
		j.log.Warn("cached crl refused", "issuer", ca.Subject.String(), "err", err)
	}
	return true
}

// noBaseline reports a CRL accepted with no rollback baseline for its scope
// in the cache. A CA with none of any scope (baseline: by caKey) is warned
// of, once a run: on a first run that is expected, on any other it means
// the cache was lost and only the catalogue's floor (catalogueFloor)
// protects against an older CRL becoming the baseline. A new scope of a CA
// the cache knows is only logged (a CA starting another distribution point
// or an ARL, or moving its URL).
func (j *Job) noBaseline(rep *Report, c *CRL, baseline map[string]bool, floor map[string]floorMark) {
	ck := c.caKey()
	issuer := c.Header.Issuer.String()
	if baseline[ck] {
		j.log.Info("crl of a new scope", "issuer", issuer, "key", keyID(c), "number", c.Header.Number.String())
		return
	}
	baseline[ck] = true // once a CA a run
	msg := fmt.Sprintf("first CRL seen for CA %s (key %s): no rollback baseline; %s", issuer, keyID(c), lostCache(j.cfg.CacheDir))
	if m, ok := floorOf(floor, c.caKey(), idpValue(c.Header)); ok {
		msg += fmt.Sprintf(" (CRL number %s, recorded on catalogue image %s, stands in as the floor)", m.number, m.image)
	}
	rep.Warnings = append(rep.Warnings, msg)
	j.log.Warn("crl without rollback baseline", "issuer", issuer, "key", keyID(c), "number", c.Header.Number.String(), "cache_dir", j.cfg.CacheDir)
}

// readSource reads a CRL file when its turn comes.
func readSource(name string) func() fetched {
	return func() fetched {
		b, err := readFileLimited(name)
		return fetched{name: name, body: b, err: err}
	}
}

// failedSource is a source that could not be listed.
func failedSource(name string, err error) func() fetched {
	return func() fetched { return fetched{name: name, err: err} }
}

// intake parses a fetched CRL, finds the CA that signed it and accepts it
// into ix if the persisted rollback state and the catalogue's floor
// (checkFloor) allow. parsed holds CRLs parsed before, by fingerprint:
// bytes whose SHA-256 is one of them are those of that CRL's DER
// (ParseList of the same bytes gives the same List), so its List is taken
// instead of a new parse; the signer check and everything after it run as
// for new bytes.
func (j *Job) intake(ix *Index, cas []*x509.Certificate, last map[string]lastGood, floor map[string]floorMark, f fetched, now time.Time, parsed map[[32]byte]*List) (*CRL, error) {
	// the CA is found, and the signature checked, before the entries are
	// indexed (ParseListChecked)
	var signer *x509.Certificate
	check := func(h *x509.RevocationList) error {
		var firstErr error
		for _, ca := range cas {
			if !SameName(ca.RawSubject, h.RawIssuer) {
				continue
			}
			if err := Verify(h, ca); err != nil {
				if firstErr == nil || reasonIs(firstErr, ReasonWrongIssuer) {
					firstErr = err
				}
				continue
			}
			signer = ca
			return nil
		}
		if firstErr == nil {
			firstErr = wrapf(ReasonWrongIssuer, h, "%w %q", errUnknownIssuer, h.Issuer.String())
		}
		return firstErr
	}
	var l *List
	var err error
	if same, ok := parsed[sha256.Sum256(f.body)]; ok {
		l, err = same, check(same.Header)
	} else {
		l, err = ParseListChecked(f.body, check)
	}
	if err != nil {
		return nil, err
	}
	lg, cached := last[scopeKey(signer, l.Header)]
	if cached {
		if err := CheckNumber(l.Header, lg.number, lg.sum, l.Fingerprint()); err != nil {
			return nil, err
		}
	}
	if err := checkFloor(floor, signer, l.Header, cached, j.cfg.CacheDir); err != nil {
		return nil, err
	}
	return ix.AddList(l, signer, now, f.name)
}

func reasonIs(err error, reason string) bool {
	var e *Error
	return errors.As(err, &e) && e.Reason == reason
}

// isRecord reports whether an image's properties are a catalogue record the
// job judges: a record version, and not a tag alias.
func isRecord(props map[string]string) bool {
	return props[PropRecordVersion] != "" && props[PropAlias] == ""
}

// errUnknownIssuer is the CRL of a CA that is neither configured nor
// embedded in a catalogue record's signature (EmbeddedCAs).
var errUnknownIssuer = errors.New("no CA configured or embedded in a catalogue record is named")

// unused reports a CRL of an issuer the job does not know (errUnknownIssuer)
// on a catalogue with no record as a warning, not a refusal: with trust
// files that hold only the roots, the job learns the intermediate CAs from
// the records, so a new site before its first sync, or one whose every
// image was deleted, knows none, and their CRLs judge no image. A CRL of a
// CA that a record carries later is used from that run on. With records in
// the catalogue, an unknown issuer's CRL stays a refusal (a CA taken out
// of [trust] whose CRL is still configured: its images become unknown),
// and so does, always, a CRL of a known CA's name whose signature or key
// identifier does not match.
func (j *Job) unused(rep *Report, source string, err error) {
	issuer := issuerOf(err)
	rep.Warnings = append(rep.Warnings, fmt.Sprintf("CRL %s not used: %s (it judges no catalogue image; a CRL of an intermediate CA is used once a record carries that CA)", source, err))
	j.log.Warn("crl not used: its issuer is no known CA", "source", source, "issuer", issuer)
}

// issuerOf is the issuer name an *Error carries ("" for another error).
func issuerOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Issuer
	}
	return ""
}

func (j *Job) refuse(rep *Report, source string, err error) {
	r := Refusal{Source: source, Reason: ReasonParse, Error: err.Error()}
	var e *Error
	if errors.As(err, &e) {
		r.Reason, r.Issuer = e.Reason, e.Issuer
	}
	rep.Refused = append(rep.Refused, r)
	j.metrics.refused(r.Reason)
	j.log.Warn("crl refused", "source", source, "issuer", r.Issuer, "reason", r.Reason, "err", err)
}

func decodeSum(s string) ([32]byte, error) {
	var out [32]byte
	b, err := hexDecode(s)
	if err != nil || len(b) != 32 {
		return out, errors.New("bad fingerprint")
	}
	copy(out[:], b)
	return out, nil
}
