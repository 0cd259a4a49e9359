package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// The forwarder is the gate's fast pass-through path: bodyless GET, HEAD
// and OPTIONS requests (most of what clients send Nova) are written by hand
// to a pooled keep-alive connection to an http:// upstream and the response
// is read back on the handler's own goroutine. http.Transport, which
// httputil.ReverseProxy uses, runs a read and a write goroutine per
// connection and hands every request and response between them and the
// caller over channels: a few goroutine wake-ups per request, which is most
// of what a pass-through costs beyond the system calls. Everything else
// (bodies, upgrades, https upstreams, a custom Options.Transport, odd
// request targets) keeps going through httputil.ReverseProxy.
//
// What reaches Nova is what ReverseProxy would send (see
// TestForwarderMatchesReverseProxy): the request line with the upstream's
// path prefix joined, Host set to the upstream, hop-by-hop headers removed
// (RFC 9110 section 7.6.1: Connection and the fields it lists,
// Proxy-Connection, Keep-Alive, TE except "trailers", Trailer,
// Transfer-Encoding, Upgrade, Proxy-Authenticate, Proxy-Authorization), the
// client's Forwarded and X-Forwarded-* (-Prefix too: see New) replaced by
// X-Forwarded-For, -Host and -Proto, and no User-Agent added. The answer comes back with its
// status, headers (hop-by-hop removed, Location rewritten), 1xx interim
// responses, body (streamed, flushed after every read when its length is
// unknown) and trailers.

// upstreamPool keeps idle keep-alive connections to one http:// upstream.
type upstreamPool struct {
	addr        string // host:port to dial
	host        string // Host header
	prefix      string // escaped path prefix ("" or "/compute")
	query       string // upstream URL's own query
	maxIdle     int
	idleTimeout time.Duration
	hdrTimeout  time.Duration
	dialer      net.Dialer

	mu     sync.Mutex
	idle   []*upConn // LIFO: the most recently used on top
	sweep  *time.Timer
	closed bool
}

// upConn is one connection to the upstream.
type upConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time    // when it went idle
	rd   lazyDeadline // c's read deadline
}

// deadlineSlack is how far short of its timeout a read deadline of the
// forwarder or the fast server may fall: a deadline is moved only when the
// one set is more than this short of the one wanted, so a busy connection
// sets it about once a second, not twice a request (each set is a clock
// read and a timer change in the runtime's poller).
const deadlineSlack = time.Second

// lazyDeadline is a connection's read deadline as last set; zero when
// none is set, or when it is not known (set elsewhere).
type lazyDeadline struct{ at time.Time }

// set gives c the read deadline want, unless the one set is at most
// deadlineSlack short of it.
func (d *lazyDeadline) set(c net.Conn, want time.Time) {
	if !d.at.IsZero() && !d.at.After(want) && want.Sub(d.at) <= deadlineSlack {
		return
	}
	_ = c.SetReadDeadline(want)
	d.at = want
}

// clear removes c's read deadline.
func (d *lazyDeadline) clear(c net.Conn) {
	_ = c.SetReadDeadline(time.Time{})
	d.at = time.Time{}
}

// forget records that c's read deadline was changed elsewhere.
func (d *lazyDeadline) forget() { d.at = time.Time{} }

// newUpstreamPool returns a pool for u, or nil when u is not a plain http
// URL the forwarder can reach directly (https, or a proxy from the
// environment applies to it).
func newUpstreamPool(u *url.URL) *upstreamPool {
	if u.Scheme != "http" || u.Opaque != "" || u.User != nil {
		return nil
	}
	if pu, err := http.ProxyFromEnvironment(&http.Request{URL: u}); err != nil || pu != nil {
		return nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &upstreamPool{
		addr:        addr,
		host:        u.Host,
		prefix:      strings.TrimSuffix(u.EscapedPath(), "/"),
		query:       u.RawQuery,
		maxIdle:     512,
		idleTimeout: 90 * time.Second,
		hdrTimeout:  5 * time.Minute,
		dialer:      net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
	}
}

// get returns an idle connection (reused=true) or, when there is none or
// fresh is set, dials a new one; now is the request's time.
func (p *upstreamPool) get(ctx context.Context, now time.Time, fresh bool) (uc *upConn, reused bool, err error) {
	p.mu.Lock()
	for len(p.idle) > 0 && !fresh {
		uc = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(uc.used) < p.idleTimeout {
			p.mu.Unlock()
			return uc, true, nil
		}
		uc.c.Close()
	}
	p.mu.Unlock()
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	c = directIO(c) // (directio_linux.go)
	return &upConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
}

// put returns a connection whose last response was read completely.
func (p *upstreamPool) put(uc *upConn) {
	uc.used = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		uc.c.Close()
		return
	}
	p.idle = append(p.idle, uc)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.idleTimeout, p.sweepIdle)
	}
	p.mu.Unlock()
}

// sweepIdle closes connections idle for longer than idleTimeout (the
// oldest are at the bottom of the stack) and rearms while any remain.
func (p *upstreamPool) sweepIdle() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].used) >= p.idleTimeout {
		p.idle[n].c.Close()
		n++
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	if len(p.idle) > 0 && !p.closed {
		p.sweep.Reset(p.idleTimeout - now.Sub(p.idle[0].used))
	} else {
		p.sweep = nil
	}
}

// closeIdle closes every idle connection and stops pooling.
func (p *upstreamPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, uc := range p.idle {
		uc.c.Close()
	}
	p.idle = nil
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
}

// canForward reports whether the forwarder may take r: a bodyless GET,
// HEAD or OPTIONS (all safe to send again on a fresh connection when a
// pooled one turns out closed), no protocol upgrade, an origin-form target
// and a query ReverseProxy would forward unchanged.
func (p *upstreamPool) canForward(r *http.Request) bool {
	if p == nil || r.ProtoMajor != 1 {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 || len(r.Header["Upgrade"]) > 0 {
		return false
	}
	if r.URL.Opaque != "" || !strings.HasPrefix(r.URL.Path, "/") {
		return false
	}
	return cleanQuery(r.URL.RawQuery)
}

// cleanQuery reports whether ReverseProxy would forward the query as it is
// (it re-encodes queries with semicolons, bad escapes or too many
// parameters).
func cleanQuery(q string) bool {
	if strings.Count(q, "&") >= 1000 {
		return false
	}
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// errHeaderValue is a request header value with a line break (net/http's
// server refuses those, another server might not).
var errHeaderValue = errors.New("request header value contains a line break")

// writeRequest writes r's request head as forwarded to the upstream.
func (p *upstreamPool) writeRequest(bw *bufio.Writer, r *http.Request) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(p.requestURI(r.URL))
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(p.host)
	bw.WriteString("\r\n")
	h := r.Header
	conn := h["Connection"]
	for k, vv := range h {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding", "Upgrade",
			"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix",
			"Host", "Content-Length":
			continue
		case "User-Agent":
			// http.Transport sends the first value only, and none when empty
			if len(vv) > 0 && vv[0] != "" {
				vv = vv[:1]
			} else {
				continue
			}
		}
		if len(conn) > 0 && listedIn(conn, k) {
			continue
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n") {
				return errHeaderValue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if te := h["Te"]; len(te) > 0 && hasToken(te, "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.WriteString(r.Host)
	if r.TLS == nil {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\n\r\n")
	}
	return bw.Flush()
}

// requestURI is the upstream's request target for u: the upstream's path
// prefix and u's escaped path joined by one slash, then the queries.
func (p *upstreamPool) requestURI(u *url.URL) string {
	path := u.EscapedPath()
	if p.prefix != "" {
		path = p.prefix + path
	}
	q := u.RawQuery
	if p.query != "" {
		if q == "" {
			q = p.query
		} else {
			q = p.query + "&" + q
		}
	}
	if q != "" || u.ForceQuery {
		return path + "?" + q
	}
	return path
}

// listedIn reports whether the Connection header values list field name k.
func listedIn(conn []string, k string) bool {
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), k) {
				return true
			}
		}
	}
	return false
}

// hasToken reports whether a comma-separated header lists token.
func hasToken(vv []string, token string) bool {
	for _, v := range vv {
		for f := range strings.SplitSeq(v, ",") {
			f, _, _ = strings.Cut(f, ";")
			if strings.EqualFold(textproto.TrimString(f), token) {
				return true
			}
		}
	}
	return false
}

// removeHopByHop deletes the hop-by-hop fields of a response header.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		delete(h, k)
	}
}

// aLongTimeAgo is a deadline that has passed: it interrupts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// errTooMany1xx ends an exchange whose upstream sends 1xx answers forever.
var errTooMany1xx = errors.New("upstream sent too many 1xx responses")

// forward passes r to the upstream over a pooled connection and streams
// the answer to w (see the comment at the top of this file).
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	pool := p.pool
	ctx := r.Context()
	var now time.Time
	if fw, ok := w.(*fastResponse); ok && !fw.start.IsZero() {
		now = fw.start // (the fast server's clock read for this request)
	} else {
		now = time.Now()
	}
	for attempt := 0; ; attempt++ {
		// a retry after a stale connection dials: when the upstream
		// restarted, every idle connection is as dead as the first
		uc, reused, err := pool.get(ctx, now, attempt > 0)
		if err != nil {
			p.forwardError(w, r, err)
			return
		}
		// a client that goes away interrupts the exchange
		watch, stop := interruptOnGone(w, ctx, uc)
		resp, err := p.exchange(uc, r, w, now)
		if err != nil {
			// interrupted: the client went away, which is what failed
			// the exchange (the fast server's watch interrupts it a moment
			// before it cancels ctx, so ctx.Err alone may not tell yet)
			gone := !stopInterrupt(watch, stop)
			uc.c.Close()
			var stale *staleConnError
			if errors.As(err, &stale) {
				if reused && attempt == 0 && !gone && ctx.Err() == nil {
					continue // the upstream had closed the idle connection
				}
				err = stale.err
			}
			if gone {
				err = fmt.Errorf("%w: the client went away: %w", context.Canceled, err)
			}
			p.forwardError(w, r, err)
			return
		}
		var reusable, abort bool
		if resp == nil {
			// a plain answer for the fast server (fastrelay.go)
			reusable, abort = p.relayPlain(uc, w.(*fastResponse), r)
		} else {
			reusable, abort = p.relay(w, r, resp)
		}
		if stopInterrupt(watch, stop) && reusable && uc.br.Buffered() == 0 {
			pool.put(uc)
		} else {
			uc.c.Close()
		}
		if abort {
			// the upstream failed mid-body: abort the client's response so
			// that it sees a truncated answer, not a complete one
			panic(http.ErrAbortHandler)
		}
		return
	}
}

// interruptOnGone makes a client that goes away (ctx ends) interrupt the
// exchange on uc: through the fast server's client watch when w is the
// fast server's, otherwise with a context.AfterFunc, whose stop function
// it returns.
func interruptOnGone(w http.ResponseWriter, ctx context.Context, uc *upConn) (*clientWatch, func() bool) {
	if fw, ok := w.(*fastResponse); ok && fw.watch != nil {
		fw.watch.track(uc)
		return fw.watch, nil
	}
	return nil, context.AfterFunc(ctx, func() { _ = uc.c.SetDeadline(aLongTimeAgo) })
}

// stopInterrupt ends what interruptOnGone set up and reports whether the
// exchange was not interrupted.
func stopInterrupt(watch *clientWatch, stop func() bool) bool {
	if watch != nil {
		return watch.untrack()
	}
	return stop()
}

// staleConnError is a failure before any byte of the answer arrived: on a
// reused connection, the upstream closed it while it was idle.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string { return e.err.Error() }
func (e *staleConnError) Unwrap() error { return e.err }

// exchange writes r on uc and reads the head of the final response,
// relaying 1xx interim responses (103 Early Hints, say) to w as
// ReverseProxy does. A 101 is an error: the forwarder never asks for an
// upgrade. For the fast server, a plain answer is left in uc's buffer,
// parsed into w's plainAnswer, and exchange returns no response and no
// error (fastrelay.go). The head must arrive within the pool's header
// timeout of now, the request's time.
func (p *Proxy) exchange(uc *upConn, r *http.Request, w http.ResponseWriter, now time.Time) (*http.Response, error) {
	if err := p.pool.writeRequest(uc.bw, r); err != nil {
		if errors.Is(err, errHeaderValue) {
			return nil, err
		}
		return nil, &staleConnError{err}
	}
	// (the head's deadline; a plain answer whose body is in the buffer
	// leaves it set, to be moved by a later exchange: relayPlain)
	uc.rd.set(uc.c, now.Add(p.pool.hdrTimeout))
	if _, err := uc.br.Peek(1); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err // a timeout, or the client went away
		}
		return nil, &staleConnError{err}
	}
	if fw, ok := w.(*fastResponse); ok {
		if buf, _ := uc.br.Peek(uc.br.Buffered()); parsePlainAnswer(buf, &fw.plain) {
			// (nil, nil): the fast relay takes it (fastrelay.go)
			return nil, nil
		}
	}
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(uc.br, r)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 {
			uc.rd.clear(uc.c)
			return resp, nil
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, errors.New("upstream switched protocols unasked")
		}
		if n == 16 {
			return nil, errTooMany1xx
		}
		h := w.Header()
		for k, vv := range resp.Header {
			h[k] = vv
		}
		w.WriteHeader(resp.StatusCode)
		clear(h)
	}
}

// relay writes resp to w: headers (hop-by-hop removed, Location
// rewritten), status, body and trailers. It reports whether the upstream
// connection may carry another request, and whether the client's response
// must be aborted (the upstream failed mid-body).
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request, resp *http.Response) (reusable, abort bool) {
	removeHopByHop(resp.Header)
	if loc := resp.Header.Get("Location"); loc != "" {
		if nl, ok := p.rewriteHref(loc, p.publicBaseIn(r)); ok {
			resp.Header.Set("Location", nl)
		}
	}
	if resp.StatusCode == http.StatusMultipleChoices && r.Method == http.MethodGet {
		// nova-api's version choices (versions.go)
		if err := p.rewriteDocument(resp, p.publicBaseIn(r)); err != nil {
			return false, r.Context().Err() == nil // the upstream failed mid-body
		}
	}
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	flush := resp.ContentLength < 0 || isEventStream(resp.Header)
	if flush {
		// a stream's head goes out at once, whenever its body comes
		http.NewResponseController(w).Flush()
	}
	bp := copyBuffers.p.Get().(*[]byte)
	err := copyBody(w, resp.Body, *bp, flush)
	copyBuffers.p.Put(bp)
	if err != nil {
		resp.Body.Close()
		// a client that is gone has nothing left to be told
		return false, !errors.Is(err, errClientWrite) && r.Context().Err() == nil
	}
	resp.Body.Close() // (populates resp.Trailer)
	if len(resp.Trailer) > 0 {
		// force chunking, so that the trailers have somewhere to go
		http.NewResponseController(w).Flush()
		if len(resp.Trailer) == announced {
			for k, vv := range resp.Trailer {
				h[k] = vv
			}
		} else {
			for k, vv := range resp.Trailer {
				for _, v := range vv {
					h.Add(http.TrailerPrefix+k, v)
				}
			}
		}
	}
	return !resp.Close, false
}

// errClientWrite marks a failed write to the client.
var errClientWrite = errors.New("writing to the client failed")

// copyBody copies the body, flushing after every write when flush is set.
func copyBody(w http.ResponseWriter, body io.Reader, buf []byte, flush bool) error {
	var fl http.Flusher
	if flush {
		fl, _ = w.(http.Flusher)
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return fmt.Errorf("%w: %w", errClientWrite, err)
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// isEventStream reports a text/event-stream response (flushed as it comes).
func isEventStream(h http.Header) bool {
	ct := h.Get("Content-Type")
	if ct == "" {
		return false
	}
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

// forwardError answers a request the forwarder could not pass on.
func (p *Proxy) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		err = fmt.Errorf("%w: %w", context.Canceled, err)
	}
	p.upstreamError(w, r, err)
}
