package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/sync/singleflight"
)

// Caller is who sent a gated request, as Keystone describes the request's
// token.
type Caller struct {
	UserID, UserName       string
	ProjectID, ProjectName string
	Roles                  []string
	// ExpiresAt is when the token expires (zero: unknown). The gate caches
	// a validation no longer than that.
	ExpiresAt time.Time
}

// Identity validates the token of a gated request. The command layer
// implements it with Keystone (GET /v3/auth/tokens, authenticated with the
// token itself, or with the proxy's own service token).
type Identity interface {
	// Validate returns the token's caller, an error wrapping
	// ErrInvalidToken when Keystone refuses the token (unknown, expired,
	// revoked), or another error when Keystone could not be asked.
	Validate(ctx context.Context, token string) (*Caller, error)
}

// ErrInvalidToken is what an Identity returns (wrapped or not) for a token
// Keystone does not accept.
var ErrInvalidToken = errors.New("invalid token")

// userToken is the request's token, read as keystonemiddleware reads it
// (X-Auth-Token, else X-Storage-Token). A repeated header reads as no token:
// the WSGI server would join the values into a token nobody validated.
func userToken(h http.Header) string {
	for _, name := range []string{"X-Auth-Token", "X-Storage-Token"} {
		switch v := h.Values(name); len(v) {
		case 0:
		case 1:
			return v[0]
		default:
			return ""
		}
	}
	return ""
}

// writeUnauthorized answers 401 as keystonemiddleware in Nova's pipeline
// does (auth_token's process_request), with Nova's request id headers.
func writeUnauthorized(w http.ResponseWriter, reqID, authURI string) {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": http.StatusUnauthorized, "title": "Unauthorized",
		"message": "The request you have made requires authentication.",
	}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Openstack-Request-Id", reqID)
	h.Set("X-Compute-Request-Id", reqID)
	if authURI != "" {
		h.Set("WWW-Authenticate", `Keystone uri="`+authURI+`"`)
	}
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(body)
}

// DefaultTokenCacheTTL is how long the gate reuses a token's validation
// when Options.TokenCacheTTL is 0 (proxy.token_cache_ttl's default). A
// token revoked in Keystone still passes the gate up to that long after
// the gate validated it; a validation is never reused past the token's
// own expiry.
const DefaultTokenCacheTTL = 5 * time.Minute

// cachedIdentity is an Identity with a bounded cache in front of it, keyed
// by the SHA-256 of the token (the token itself is never kept). A
// validation is cached until the token expires or for ttl, whichever comes
// first; refusals and errors are not cached. Concurrent validations of one
// token share one call.
type cachedIdentity struct {
	next    Identity
	ttl     time.Duration
	now     func() time.Time
	metrics *Metrics
	// timeout bounds one call of next (callTimeout)
	timeout time.Duration
	// places, when set, bounds the calls of next under way at once (one
	// per token not in the cache, concurrent requests of one token
	// sharing it), shared out between clients (clientKey, from the
	// context: withClient) as gated slots are between projects: a place
	// given back goes to the waiting validation whose client holds the
	// fewest, and a client's waiting validations give way to another
	// client's (gatedLimit). A call that gets no place within the limit's
	// timeout fails with errValidationBusy. A cached token never waits.
	places *gatedLimit
	// knownPlaces, when set, take the place of places for the validations
	// of known clients, up to a client's share of them (enter): the
	// clients a token was validated for, by next, within knownClientTTL
	// (known, at most knownClientsMax of them, the least recently
	// validated forgotten first). A flood of made-up tokens from
	// many addresses fills places and their waiting places, and the first
	// request of a new user's token then waits or is refused
	// validation-busy; a user who renews a token where they used the last
	// one does not wait behind it, as no made-up token makes a client
	// known.
	knownPlaces *gatedLimit
	known       *ttlLRU[string, struct{}]

	group singleflight.Group
	cache *ttlLRU[[sha256.Size]byte, *Caller]
}

func newCachedIdentity(next Identity, ttl time.Duration, size int, now func() time.Time, m *Metrics) *cachedIdentity {
	return &cachedIdentity{next: next, ttl: ttl, now: now, metrics: m, cache: newTTLLRU[[sha256.Size]byte, *Caller](size, now)}
}

// Validate implements Identity.
func (c *cachedIdentity) Validate(ctx context.Context, token string) (*Caller, error) {
	key := sha256.Sum256([]byte(token))
	if cl, ok := c.get(key); ok {
		c.metrics.token("hit")
		return cl, nil
	}
	v, err, _ := c.group.Do(string(key[:]), func() (any, error) {
		client := clientOf(ctx)
		if places, ok := c.enter(context.WithoutCancel(ctx), client); !ok { // (one place per token: its callers share it)
			return nil, errValidationBusy
		} else if places != nil {
			defer places.release(client)
		}
		// The shared call must not die with the first caller's request,
		// nor outlive a Keystone that never answers.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout(c.timeout))
		defer cancel()
		cl, err := c.next.Validate(cctx, token)
		if err != nil {
			return nil, err
		}
		c.put(key, cl)
		if c.known != nil && client != "" {
			c.known.put(client, struct{}{}, c.now().Add(knownClientTTL))
		}
		return cl, nil
	})
	switch {
	case errors.Is(err, errValidationBusy):
		return nil, err // (counted as the request's refusal, validation-busy)
	case errors.Is(err, ErrInvalidToken):
		c.metrics.token("invalid")
		return nil, err
	case err != nil:
		c.metrics.token("error")
		return nil, err
	}
	c.metrics.token("validated")
	return v.(*Caller), nil
}

// errValidationBusy: too many tokens were being validated at once
// (cachedIdentity.places) for this one's validation to begin in time.
var errValidationBusy = errors.New("too many token validations under way")

// maxValidationsFor is how many tokens the gate validates with Keystone at
// once, with maxGated gated slots: as many, at least 4 and at most 64. A
// request whose token is not cached waits for one of them up to the gated
// queue timeout: a flood of made-up tokens, each a Keystone call, gets
// 503s beyond that instead of as many concurrent Keystone calls as the
// gate has connections, while the site's users, whose tokens are cached
// after their first request, do not wait at all (newValidationPlaces),
// and known clients' new tokens wait in places of their own
// (cachedIdentity.knownPlaces: a quarter as many again).
func maxValidationsFor(maxGated int) int { return min(max(maxGated, 4), 64) }

// enter takes a validation place for client, waiting up to the places'
// timeout: in knownPlaces for a known client while it holds and waits for
// fewer than its share of them, else in places. It returns the places to
// release (nil: no bound) and false when none came free. A known client
// that floods made-up tokens (any user's one real token makes its address
// known) thus keeps its share of the known clients' places and no more:
// taking every free one, and then every waiting place, it would make the
// other known clients' new tokens wait behind its flood.
func (c *cachedIdentity) enter(ctx context.Context, client string) (*gatedLimit, bool) {
	if c.knownPlaces != nil && client != "" {
		if _, known := c.known.get(client); known {
			if reason, ok := c.knownPlaces.acquireWithinShare(ctx, client); ok {
				return c.knownPlaces, reason == ""
			}
		}
	}
	if c.places == nil {
		return nil, true
	}
	return c.places, c.places.acquire(ctx, client) == ""
}

// How long, and how many, clients stay known (cachedIdentity.known): a
// day covers a user's renewals of an hour's token; 4096 client keys take
// a few hundred KiB.
const (
	knownClientTTL  = 24 * time.Hour
	knownClientsMax = 4096
)

// limitValidations bounds c's validations for a gate with maxGated slots
// and queue timeout wait: newValidationPlaces, and a quarter as many
// places again (at least one) for known clients, a client's share a
// quarter of them (at least one).
func (c *cachedIdentity) limitValidations(maxGated int, wait time.Duration) {
	c.places = newValidationPlaces(maxGated, wait)
	k := max(maxValidationsFor(maxGated)/4, 1)
	c.knownPlaces = newGatedLimit(k, max(k/4, 1), wait, nil)
	c.known = newTTLLRU[string, struct{}](knownClientsMax, c.now)
}

// newValidationPlaces is the bound of cachedIdentity.places for a gate
// with maxGated slots and queue timeout wait: maxValidationsFor(maxGated)
// places, a client's share a quarter of them (at least one), no metrics
// of their own (a refusal is counted as the request's, validation-busy).
func newValidationPlaces(maxGated int, wait time.Duration) *gatedLimit {
	n := maxValidationsFor(maxGated)
	return newGatedLimit(n, max(n/4, 1), wait, nil)
}

// clientKey names the client of r for the validation places: its IPv4
// address, or the /64 of its IPv6 one (a host's usual allocation, whose
// addresses it chooses freely).
func clientKey(r *http.Request) string {
	h := remoteHost(r)
	a, err := netip.ParseAddr(h)
	if err != nil {
		return h
	}
	if a = a.Unmap(); a.Is6() {
		return netip.PrefixFrom(a.WithZone(""), 64).Masked().String()
	}
	return a.String()
}

type clientCtxKey struct{}

// withClient returns ctx carrying the client key of the request it
// serves (clientKey), for cachedIdentity's validation places.
func withClient(ctx context.Context, client string) context.Context {
	return context.WithValue(ctx, clientCtxKey{}, client)
}

// clientOf is the client key withClient put in ctx ("" when none).
func clientOf(ctx context.Context) string {
	s, _ := ctx.Value(clientCtxKey{}).(string)
	return s
}

func (c *cachedIdentity) get(key [sha256.Size]byte) (*Caller, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	return c.cache.get(key)
}

// put keeps a validation until the token expires or for ttl, whichever
// comes first.
func (c *cachedIdentity) put(key [sha256.Size]byte, cl *Caller) {
	if c.ttl <= 0 {
		return
	}
	now := c.now()
	expires := now.Add(c.ttl)
	if !cl.ExpiresAt.IsZero() && cl.ExpiresAt.Before(expires) {
		expires = cl.ExpiresAt
	}
	if !now.Before(expires) {
		return
	}
	c.cache.put(key, cl, expires)
}
