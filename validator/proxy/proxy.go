package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/validator"
)

// Decider is the pure boot decision; *validator.Trust implements it.
type Decider interface {
	DecideBoot(img validator.CatalogImage, p validator.BootPolicy, now time.Time) validator.Decision
	DecideTag(cands []validator.CatalogImage, p validator.BootPolicy, now time.Time) (validator.Decision, []validator.Decision)
}

// UserData contextualises a boot's user data. b says what boots and for
// whom, userDataB64 is the user's base64 user_data and has whether the
// request carried one (a JSON null counts as none). It returns the user_data
// to forward and whether to set it; an error refuses the request with 400
// and the error's text (so the text must be fit for users, e.g. "merged user
// data exceeds 65535 characters"), or with 500 when it wraps ErrSiteContext.
type UserData func(b Boot, userDataB64 string, has bool) (string, bool, error)

// Boot is what the gate knows of a create or rebuild it contextualises.
type Boot struct {
	// Image is the catalogue image that boots: nil for a boot from a
	// volume the volume policy allowed, and for an image outside the
	// catalogue that the project may boot (its imagetrust_ properties are
	// its owner's word, not the catalogue's).
	Image *Image
	// Caller is the token's user and project (nil without Options.Identity).
	Caller *Caller
	// ServerName is server.name of a create, rebuild.name of a rebuild that
	// renames the server, "" otherwise (the gate does not ask Nova).
	ServerName string
	// Request is the incoming request (headers only: its body is consumed).
	Request *http.Request
}

// ErrSiteContext marks a UserData error that is the site's fault (a broken
// fragment, say): the gate answers 500 instead of 400 and logs it.
var ErrSiteContext = errors.New("site contextualisation failed")

// Volume policies for boots from Cinder volumes and snapshots.
const (
	VolumeRefuse = "refuse"
	VolumeAllow  = "allow"
)

// Options configure a Proxy.
type Options struct {
	// Upstream is Nova's own compute endpoint, unversioned (http://nova:8774)
	// or with the path Nova is mounted at (SCRIPT_NAME, e.g. /compute). The
	// request path is appended to it. A trailing /v2.1 or /v2, as
	// Keystone's catalog gives the endpoint, is dropped, and so is a
	// trailing /v2.1/{project_id} or /v2/{project_id} (TrimEndpoint); one
	// holding a catalog template (%(tenant_id)s) is refused.
	Upstream *url.URL
	// PublicURL is the proxy's URL as users see it; version documents are
	// rewritten to it. Nil means scheme and Host of each request. A
	// trailing version, or version and project, is dropped, as from
	// Upstream.
	PublicURL *url.URL
	// Lookup finds images (service credentials); it is cached by the proxy.
	Lookup Lookup
	// Decider judges images.
	Decider Decider
	// MirrorProject owns the catalogue.
	MirrorProject string
	// UnmanagedProjects may boot images outside the catalogue (matched
	// against the caller's project, or without Identity against the
	// /{project_id} segment of the request path; see doc.go).
	UnmanagedProjects []string
	// Identity validates the token of every gated request (nil: no
	// validation, the caller unknown; for tests and embedding).
	Identity Identity
	// TokenCacheTTL bounds how long a validated token is cached (default
	// DefaultTokenCacheTTL, never past the token's expiry; negative
	// disables).
	TokenCacheTTL time.Duration
	// AuthURI is Keystone's public URL, sent in WWW-Authenticate with a 401
	// as keystonemiddleware does ("" = no header).
	AuthURI string
	// VolumePolicy is VolumeRefuse (default) or VolumeAllow. It decides
	// boot volumes and snapshots when Volumes is nil, and those made from no
	// image when it is set.
	VolumePolicy string
	// Volumes, if set, finds the image a boot volume or snapshot was made
	// from, which is then judged (see the warning on Volumes).
	Volumes Volumes
	// MaxBody bounds a judged request body (default 1 MiB).
	MaxBody int64
	// CacheTTL (default 30s; negative disables) and CacheSize (default 10000) bound the lookup cache.
	CacheTTL  time.Duration
	CacheSize int
	// LookupTimeout bounds each Glance, Keystone and Cinder call the gate
	// makes for a decision (default 30s): a service that accepts the
	// connection and never answers fails the decision (503 or 502, never
	// an allow) instead of holding every boot of that image or token.
	LookupTimeout time.Duration
	// MaxGated bounds the gated requests (create, rebuild, rescue, other
	// server actions) judged and forwarded at once (default
	// DefaultMaxGatedFor(MaxBody, UserData != nil): 16 at 1 MiB with
	// contextualisation). Each allocates up to GatedRequestCost. One that
	// finds every slot taken waits up to GatedQueueTimeout (default
	// DefaultGatedQueueTimeout), unless MaxGated requests wait already,
	// then is refused 503.
	MaxGated          int
	GatedQueueTimeout time.Duration
	// MaxGatedPerProject is one project's share of the MaxGated slots
	// (default DefaultMaxGatedPerProjectFor(MaxGated): half; over
	// MaxGated is MaxGated). The project is the token's (without
	// Identity, the path's /{project_id} segment, if any). The slots are
	// shared work-conserving and fair (gatedLimit): a project borrows
	// beyond its share what nobody else asks for, a slot given back goes
	// to the waiting request whose project holds the fewest, and a
	// request still waiting at the queue timeout while its project holds
	// its share or more is refused 503 (reason project-limit).
	MaxGatedPerProject int
	// UserData, if set, contextualises server create and rebuild.
	UserData UserData
	// Logger receives the audit lines (required).
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Transport reaches Nova (default: a tuned clone of http.DefaultTransport).
	Transport http.RoundTripper
}

// Proxy is the Nova-facing boot gate: an http.Handler that judges server
// create, rebuild and rescue requests and streams everything else to Nova.
type Proxy struct {
	o         Options
	lookup    Lookup
	identity  Identity
	unmanaged map[string]bool
	rp        *httputil.ReverseProxy
	// pool is the fast pass-through path's (forward.go); nil when the
	// upstream is not plain http or Options.Transport is set.
	pool *upstreamPool
	// limit bounds the gated requests at once; rejects logs its refusals
	limit   *gatedLimit
	rejects *overloadLog
	// bodyTimeout bounds the body read of a request holding a slot
	// (gatedBodyTimeout)
	bodyTimeout time.Duration
}

type ctxKey int

const (
	ctxVersionDoc ctxKey = iota
	ctxRequestID
)

// New checks the options and builds a Proxy.
func New(o Options) (*Proxy, error) {
	if o.Upstream == nil || o.Upstream.Scheme == "" || o.Upstream.Host == "" {
		return nil, errors.New("proxy: upstream URL must be absolute")
	}
	for _, u := range []*url.URL{o.Upstream, o.PublicURL} {
		if u == nil {
			continue
		}
		if t := CatalogTemplate(u.Path); t != "" {
			return nil, fmt.Errorf("proxy: URL %s holds the catalog template %s: give the endpoint without it", u.Redacted(), t)
		}
	}
	o.Upstream = withoutVersion(o.Upstream)
	if o.PublicURL != nil {
		o.PublicURL = withoutVersion(o.PublicURL)
	}
	if o.Lookup == nil || o.Decider == nil || o.Logger == nil {
		return nil, errors.New("proxy: Lookup, Decider and Logger are required")
	}
	if o.MirrorProject == "" {
		return nil, errors.New("proxy: mirror project is required")
	}
	switch o.VolumePolicy {
	case "":
		o.VolumePolicy = VolumeRefuse
	case VolumeRefuse, VolumeAllow:
	default:
		return nil, fmt.Errorf("proxy: volume policy %q: must be refuse or allow", o.VolumePolicy)
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = 30 * time.Second
	}
	if o.MaxGated <= 0 {
		o.MaxGated = DefaultMaxGatedFor(o.MaxBody, o.UserData != nil)
	}
	if o.MaxGatedPerProject <= 0 {
		o.MaxGatedPerProject = DefaultMaxGatedPerProjectFor(o.MaxGated)
	}
	o.MaxGatedPerProject = min(o.MaxGatedPerProject, o.MaxGated) // (over it: no bound of its own)
	if o.GatedQueueTimeout <= 0 {
		o.GatedQueueTimeout = DefaultGatedQueueTimeout
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var pool *upstreamPool
	if o.Transport == nil {
		o.Transport = newTransport()
		pool = newUpstreamPool(o.Upstream)
	}
	p := &Proxy{o: o, unmanaged: map[string]bool{}, pool: pool, bodyTimeout: gatedBodyTimeout(o.MaxBody),
		limit: newGatedLimit(o.MaxGated, o.MaxGatedPerProject, o.GatedQueueTimeout, o.Metrics),
		rejects: newOverloadLog(o.Logger, "gated request refused: overloaded",
			"gated requests refused: overloaded (summary)")}
	for _, pr := range o.UnmanagedProjects {
		p.unmanaged[strings.ToLower(pr)] = true
	}
	cl := newCachedLookup(o.Lookup, o.CacheTTL, o.CacheSize, o.Now, o.Metrics)
	cl.timeout = o.LookupTimeout
	p.lookup = cl
	if o.Identity != nil {
		if o.TokenCacheTTL == 0 {
			o.TokenCacheTTL = DefaultTokenCacheTTL
		}
		ci := newCachedIdentity(o.Identity, o.TokenCacheTTL, o.CacheSize, o.Now, o.Metrics)
		ci.timeout = o.LookupTimeout
		ci.limitValidations(o.MaxGated, o.GatedQueueTimeout)
		p.identity = ci
	}
	up := *o.Upstream
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&up)
			pr.SetXForwarded()
			// ReverseProxy drops the client's Forwarded and X-Forwarded-For,
			// -Host and -Proto, but not X-Forwarded-Prefix, which Nova's
			// http_proxy_to_wsgi (enable_proxy_headers_parsing) puts before
			// SCRIPT_NAME: the client would choose the path of every link
			// Nova writes (version documents, Location, next links).
			pr.Out.Header.Del("X-Forwarded-Prefix")
			// No request trailers: Nova's WSGI server (eventlet) reads one
			// line after a chunked body's last chunk, so a second trailer
			// line would be read as the next request on the upstream
			// connection, whose answer another client would then get.
			pr.Out.Trailer = nil
			if pr.In.Context().Value(ctxVersionDoc) != nil {
				// the document is rewritten: ask for it uncompressed
				pr.Out.Header.Del("Accept-Encoding")
			}
		},
		Transport:      o.Transport,
		BufferPool:     copyBuffers,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.upstreamError,
		// FlushInterval 0: ReverseProxy flushes responses of unknown length
		// (streams) after every write anyway; fixed-length bodies are copied
		// in large writes, which is what throughput needs.
		ErrorLog: httpErrorLog(o.Logger),
	}
	return p, nil
}

// originForm reports whether the request target is a path ("/…", RFC 9112
// origin-form), or "*" for OPTIONS. Any other form is refused for every
// method: Go reads "x:%2Fv2.1%2Fservers" as an opaque URL with an empty
// path (a version document to the gate) and forwards the opaque part as
// the request line, which Nova's server decodes into /v2.1/servers, a
// server create no check had seen. A request made in this process (no
// RequestURI) is judged by its URL alone.
func originForm(r *http.Request) bool {
	if r.URL.Opaque != "" || r.URL.Scheme != "" || r.URL.Host != "" {
		return false
	}
	t := r.RequestURI
	return t == "" || t[0] == '/' || (r.Method == http.MethodOptions && t == "*")
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	stripUnderscoreFields(r.Header)
	dropConnectionFields(r.Header)
	if !originForm(r) {
		p.refuseRequest(w, r, start, "target",
			"The request target must be a path (/...): the image gate does not forward other forms.")
		return
	}
	if r.Method != http.MethodPost && strings.EqualFold(r.Method, http.MethodPost) {
		// Nova's router matches methods by case today; the gate does not
		// rely on it
		p.refuseRequest(w, r, start, "method",
			"The request method must be POST in upper case: the image gate does not forward other spellings.")
		return
	}
	if methodOverride(r.URL.RawQuery) {
		p.refuseRequest(w, r, start, "method-override",
			"The _method query parameter (a method override) is not accepted: send the request with its own method.")
		return
	}
	if r.Method != http.MethodPost && !maybeVersionPath(r.URL.Path) {
		p.passThrough(w, r)
		p.o.Metrics.observe("passthrough", time.Since(start).Seconds())
		return
	}
	rt, anomalous := classifyPath(r.URL.EscapedPath())
	switch {
	case r.Method == http.MethodPost && anomalous:
		p.refuseRequest(w, r, start, "path",
			"The request path is not in canonical form (empty or dot segments, trailing slash or bad escapes); the image gate does not forward it.")
	case r.Method == http.MethodPost && (rt.kind == routeCreate || rt.kind == routeAction):
		kind := p.gateLimited(w, r, rt)
		p.o.Metrics.observe(kind, time.Since(start).Seconds())
	case (rt.kind == routeVersion || collapsedVersion(r.URL.Path)) && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxVersionDoc, true)))
		p.o.Metrics.observe("version", time.Since(start).Seconds())
	default:
		p.passThrough(w, r)
		p.o.Metrics.observe("passthrough", time.Since(start).Seconds())
	}
}

// refuseRequest answers a request the gate will not read further with a
// Nova badRequest, one log line and the refusal metrics.
func (p *Proxy) refuseRequest(w http.ResponseWriter, r *http.Request, start time.Time, reason, msg string) {
	reqID := newRequestID()
	p.o.Logger.Info("request refused", "request_id", reqID, "method", r.Method,
		"path", truncate(r.URL.EscapedPath(), 256), "remote", remoteHost(r), "reason", reason)
	p.o.Metrics.decision("refused", reason)
	writeFault(w, reqID, http.StatusBadRequest, msg)
	p.o.Metrics.observe("refused", time.Since(start).Seconds())
}

// CloseIdleConnections closes the idle upstream connections of the fast
// pass-through path; Serve calls it once the servers have shut down.
func (p *Proxy) CloseIdleConnections() {
	if p.pool != nil {
		p.pool.closeIdle()
	}
}

// passThrough streams r to Nova untouched: through the forwarder when it
// can take r, else through httputil.ReverseProxy.
func (p *Proxy) passThrough(w http.ResponseWriter, r *http.Request) {
	if p.pool.canForward(r) {
		p.forward(w, r)
		return
	}
	p.rp.ServeHTTP(w, r)
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		// the client went away; nobody reads the answer. Not an upstream
		// error: the metric is alerted on, and a client must not be able
		// to raise it by hanging up.
		w.WriteHeader(499)
		return
	}
	p.o.Metrics.upstreamError(upstreamNova)
	reqID, _ := r.Context().Value(ctxRequestID).(string)
	if reqID == "" {
		reqID = newRequestID()
	}
	p.o.Logger.Warn("upstream error", "request_id", reqID, "method", r.Method, "err", err)
	writeFault(w, reqID, http.StatusBadGateway, "The compute service behind the image gate could not be reached; try again later.")
}

// stripUnderscoreFields deletes every request field whose name holds an
// underscore, before the gate reads any and so that Nova never sees one.
// Nova's WSGI server (eventlet) names a field in the environ by upper-casing
// it and turning hyphens into underscores, so X_Auth_Token and X-Auth-Token
// are both HTTP_X_AUTH_TOKEN there, and keystonemiddleware reads that
// before X-Storage-Token: the gate would validate one token and Nova
// another (and OpenStack_API_Version would set a microversion the gate
// did not read). nginx ignores such fields by default too
// (underscores_in_headers off).
func stripUnderscoreFields(h http.Header) {
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
		}
	}
}

// dropConnectionFields deletes the fields the Connection field names, before
// the gate reads any: httputil.ReverseProxy deletes them on the way to Nova
// (RFC 9110 7.6.1), so with "Connection: X-Auth-Token" the gate would
// validate that token while Nova, without it, reads X-Storage-Token (and a
// listed OpenStack-API-Version would be read by the gate only).
// The hop-by-hop fields themselves are left to ReverseProxy, which reads
// some before it drops them (TE: trailers is sent on, Upgrade kept).
func dropConnectionFields(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(f)); f != "" && !hopByHopField[f] {
				delete(h, f)
			}
		}
	}
}

// hopByHopField holds the fields httputil.ReverseProxy drops itself.
var hopByHopField = map[string]bool{"Connection": true, "Proxy-Connection": true, "Keep-Alive": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true}

// methodOverride reports whether a raw query could override the request's
// method in Nova. Nova's router (routes' RoutesMiddleware, with
// use_method_override on) routes a request whose QUERY_STRING holds the
// literal "_method", and whose decoded query has a _method parameter, by
// the method that parameter names, then restores the real one: PUT
// /servers?_method=POST runs the server create with the PUT's body, and the
// gate, which judges POSTs, would pass it through. A query with a _method
// key (decoded, in any case) is refused, escaped or not: httputil.ReverseProxy
// re-encodes a query with a ';' or a bad escape, which turns _meth%6Fd into
// the literal. No OpenStack client sends one. A query with neither the
// literal nor any escape costs two searches.
func methodOverride(rawQuery string) bool {
	if !strings.Contains(rawQuery, "_method") && strings.IndexByte(rawQuery, '%') < 0 {
		return false
	}
	for _, pair := range strings.FieldsFunc(rawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		k, _, _ := strings.Cut(pair, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if strings.EqualFold(k, "_method") {
			return true
		}
	}
	return false
}

// maybeVersionPath is a cheap pre-check: only short paths, or paths with
// a run of slashes (collapsedVersion), can be version documents.
func maybeVersionPath(p string) bool { return len(p) <= 16 || strings.Contains(p, "//") }

func newRequestID() string { return "req-" + uuid.NewString() }

func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// withoutVersion is u without the compute API version ("/v2.1", "/v2")
// its path may end in, and without the project segment that may follow it
// (TrimEndpoint).
func withoutVersion(u *url.URL) *url.URL {
	base, _ := TrimEndpoint(u)
	return base
}

// TrimEndpoint is u without the compute API version ("/v2.1", "/v2") its
// path may end in, or without the version and the one segment after it
// (/v2.1/{project_id}, /v2/{project_id}), and the part it dropped ("" for
// none). Keystone's catalog gives Nova's endpoint and the proxy's with
// the version (http://10.0.0.5:8774/v2.1), an older one with the project
// as well (…/v2.1/6f0…, or …/v2/6f0…), and the requests the proxy forwards
// keep their own path: an upstream taken from the catalog as it is sent
// /v2.1/servers to …/v2.1/v2.1/servers, which Nova refuses, and such a
// public URL made the links of the version documents …/v2.1/v2.1/. To
// Nova the one segment after a version is the project (a
// /{project_id} prefix every route may have, [0-9a-f-]+ unless
// [osapi_v21] project_id_regex says otherwise) or the first of a route
// (servers, flavors...), and no compute endpoint ends in a route: the
// segment is dropped whatever it spells (the command warns), and a
// version deeper in the path is kept (http://nova/v2.1/a/b is a mount).
// A catalog template (CatalogTemplate) is not a project: New refuses it.
func TrimEndpoint(u *url.URL) (*url.URL, string) {
	c := *u
	p := strings.TrimSuffix(c.Path, "/")
	for _, v := range []string{"/v2.1", "/v2"} {
		if base, ok := strings.CutSuffix(p, v); ok {
			c.Path, c.RawPath = base, ""
			return &c, v
		}
	}
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		for _, v := range []string{"/v2.1", "/v2"} {
			if base, ok := strings.CutSuffix(p[:i], v); ok {
				c.Path, c.RawPath = base, ""
				return &c, p[len(base):]
			}
		}
	}
	return &c, ""
}

// CatalogTemplate is the Keystone catalog template that s holds
// ("%(tenant_id)s", "$(project_id)s": an endpoint copied from `openstack
// endpoint list` or a templated catalog, which Keystone fills in only in
// a token's catalog), or "" when it holds none. No compute endpoint holds
// one: Nova would read the template as the project and refuse every
// request.
func CatalogTemplate(s string) string {
	for _, open := range []string{"%(", "$("} {
		i := strings.Index(s, open)
		if i < 0 {
			continue
		}
		end := strings.IndexByte(s[i:], ')')
		if end < 0 {
			return s[i:]
		}
		end += i + 1
		if end < len(s) && s[end] == 's' {
			end++
		}
		return s[i:end]
	}
	return ""
}
