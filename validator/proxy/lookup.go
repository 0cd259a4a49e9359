package proxy

import (
	"context"
	"errors"
	"strconv"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrNotFound is what a Lookup returns (wrapped or not) for an image that does not exist.
var ErrNotFound = errors.New("image not found")

// ErrServiceLogin is what a Lookup returns (wrapped) when Glance could not
// be asked because the proxy's own login to Keystone failed: its service
// token could not be renewed (Keystone refused its credentials, or could
// not be reached). The lookup fails as any other (502), but it counts in
// imagetrust_proxy_upstream_errors_total as service="keystone", not
// "glance": Glance is not at fault.
var ErrServiceLogin = errors.New("the proxy's login to Keystone failed")

// Image is a Glance image as the gate needs it.
type Image struct {
	ID         string
	Name       string
	Owner      string
	Status     string
	Visibility string
	// Properties are the image's custom properties (string values only).
	Properties map[string]string
}

// Lookup finds images in Glance. The command layer implements it with the
// proxy's own service credentials; the gate never sees a user's token.
type Lookup interface {
	// GetImage returns one image by canonical id, or ErrNotFound.
	GetImage(ctx context.Context, id string) (*Image, error)
	// ListTag returns the mirror project's images with imagetrust_tag=tag
	// (and imagetrust_vo=vo when vo != "").
	ListTag(ctx context.Context, vo, tag string) ([]*Image, error)
}

// cachedLookup is a Lookup with a TTL cache of bounded size in front of it.
// Concurrent misses for one key share one call (singleflight). Absent images
// are cached like present ones; other errors are not cached.
type cachedLookup struct {
	next    Lookup
	ttl     time.Duration
	now     func() time.Time
	metrics *Metrics
	// timeout bounds one call of next (callTimeout)
	timeout time.Duration

	group singleflight.Group
	cache *ttlLRU[string, *cacheEntry]
}

type cacheEntry struct {
	key  string
	img  *Image
	imgs []*Image
	err  error // nil or ErrNotFound
	// started is when the call that fetched it began
	started time.Time
}

func newCachedLookup(next Lookup, ttl time.Duration, size int, now func() time.Time, m *Metrics) *cachedLookup {
	return &cachedLookup{next: next, ttl: ttl, now: now, metrics: m, cache: newTTLLRU[string, *cacheEntry](size, now)}
}

func (c *cachedLookup) get(key string) (*cacheEntry, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	return c.cache.get(key)
}

// callTimeout is how long one shared Glance or Keystone call may take: d,
// or Options.LookupTimeout's default when d is not set.
func callTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return 30 * time.Second
	}
	return d
}

// put caches e until ttl after started, when the call that filled it
// began: Glance may have answered with what it held at any moment of the
// call, so an answer is never served longer than ttl after the state it
// may show (a revocation written just after the call began).
func (c *cachedLookup) put(e *cacheEntry, started time.Time) {
	if c.ttl <= 0 {
		return
	}
	if exp := started.Add(c.ttl); exp.After(c.now()) {
		c.cache.put(e.key, e, exp)
	}
}

// load returns the cached entry of key, or fills it with one call that
// concurrent misses share. A request takes a shared call's answer only
// when the call began no more than the TTL before the request came (with
// the cache disabled, not before it came): Glance may have answered with
// what it held as the call began, and a call may take longer than the TTL
// (up to LookupTimeout), so a request that joined a call begun earlier
// would otherwise be judged on a state older than the TTL (a revocation
// written in between unseen). Such a request starts a call of its own
// (one, shared by the others in that case; with the cache disabled, each
// may start one, as it would have had it come a moment later).
func (c *cachedLookup) load(ctx context.Context, key string, fill func(ctx context.Context) (*cacheEntry, error)) (*cacheEntry, error) {
	if e, ok := c.get(key); ok {
		c.metrics.cacheHit()
		return e, nil
	}
	c.metrics.cacheMiss()
	arrived := c.now()
	flight := key
	for {
		v, err, _ := c.group.Do(flight, func() (any, error) {
			// The shared call must not die with the first caller's request,
			// nor outlive a Glance that never answers.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout(c.timeout))
			defer cancel()
			started := c.now()
			e, err := fill(cctx)
			if err != nil {
				return nil, err
			}
			e.key, e.started = key, started
			c.put(e, started)
			return e, nil
		})
		if err != nil {
			return nil, err
		}
		e := v.(*cacheEntry)
		if !e.started.Add(max(c.ttl, 0)).Before(arrived) {
			return e, nil
		}
		// The requests that joined the stale call ask again in one call
		// of their own, named after the stale one (a Forget of key would
		// let each of them start one, a herd on a slow Glance), or take
		// its answer from the cache when it has already returned. It
		// begins after the stale call returned, so after each of them
		// came: the loop ends at the next turn.
		flight = key + "\x00after\x00" + strconv.FormatInt(e.started.UnixNano(), 10)
		if e, ok := c.get(key); ok && !e.started.Add(c.ttl).Before(arrived) {
			return e, nil
		}
	}
}

// GetImage implements Lookup.
func (c *cachedLookup) GetImage(ctx context.Context, id string) (*Image, error) {
	e, err := c.load(ctx, "id\x00"+id, func(ctx context.Context) (*cacheEntry, error) {
		img, err := c.next.GetImage(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return &cacheEntry{err: ErrNotFound}, nil
		}
		if err != nil {
			return nil, err
		}
		return &cacheEntry{img: img}, nil
	})
	if err != nil {
		return nil, err
	}
	if e.err != nil {
		return nil, e.err
	}
	return e.img, nil
}

// ListTag implements Lookup.
func (c *cachedLookup) ListTag(ctx context.Context, vo, tag string) ([]*Image, error) {
	e, err := c.load(ctx, "tag\x00"+vo+"\x00"+tag, func(ctx context.Context) (*cacheEntry, error) {
		imgs, err := c.next.ListTag(ctx, vo, tag)
		if err != nil {
			return nil, err
		}
		return &cacheEntry{imgs: imgs}, nil
	})
	if err != nil {
		return nil, err
	}
	return e.imgs, nil
}
