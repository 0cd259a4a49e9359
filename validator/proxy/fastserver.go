package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The fast server serves the gate's listener (plain HTTP, or HTTP/1.1 over
// TLS) in place of net/http's server for pass-through traffic. Per
// connection it reads each request head into its own buffer and, when the
// head is one parseFastHead accepts and the request one the forwarder takes
// and the gate passes through (fastEligible: what ServeHTTP would send to
// passThrough and canForward would accept), hands it to the forwarder
// (forward.go) with a fastResponse as the ResponseWriter. At the first
// request that is anything else (a POST, any gated route, a version
// document, a body, an odd or malformed head) it hands the whole connection,
// with the bytes it has buffered and not consumed, to the gate's
// net/http.Server (handoffListener), which serves it from then on exactly as
// it serves every connection without the fast server. Gated requests are
// therefore never seen by the fast path, whatever came before them on the
// connection.
//
// What it saves per request, compared with net/http's server: the
// background read net/http starts to notice a client that goes away (a
// goroutine, a read and a wake-up per request), the per-request
// context, response and buffer allocations, and the parsing of the head
// into fresh maps. What it gives up: a client that goes away while the
// upstream has not answered is noticed only when its answer is written
// (the upstream's answer is still bounded by the forwarder's 5-minute
// header timeout).
//
// Timeouts are net/http's, from the http.Server: the wait for a next
// request is bounded by IdleTimeout, a request head by ReadHeaderTimeout
// (from its first byte), the answer by WriteTimeout. Each deadline is
// moved only when the one set is more than a second short of it
// (lazyDeadline, deadlineSlack), so it may fall up to a second early.
// Shutdown closes the listener and idle connections at once, lets
// requests in flight finish with "Connection: close", and closes what
// remains when its context ends.

// fastBufSize is the size of a connection's read buffer: a request head
// that does not fit in it is handed to net/http (whose limit,
// MaxHeaderBytes, is larger).
const fastBufSize = 8 << 10

var (
	fastReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, fastBufSize) }}
	fastWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// fastServer is the gate's server.
type fastServer struct {
	p  *Proxy
	hs *http.Server // serves the connections handed over
	hl *handoffListener
	// net/http's timeouts, from hs
	readHeaderTimeout, idleTimeout, writeTimeout time.Duration
	tlsHandshakeTimeout                          time.Duration
	errorLog                                     *log.Logger
	// tlsConfig, from hs, makes every connection accepted a TLS one, over
	// directIO (nil: plain HTTP)
	tlsConfig *tls.Config

	// handOvers counts the connections handed over to net/http.
	handOvers atomic.Int64
	// limit, if set, bounds the connections: each counts from its accept
	// until it closes, here or once handed over (handoffConn.Close)
	limit *connLimit

	// closing is set, under mu, when shutdown begins; read without mu on
	// every request (isClosing, setIdle)
	closing atomic.Bool
	mu      sync.Mutex
	ln      net.Listener
	conns   map[*fastConn]struct{}
	wg      sync.WaitGroup
}

// newFastServer serves p in front of hs, which gets every connection the
// fast path does not keep, and whose timeouts it applies.
func newFastServer(p *Proxy, hs *http.Server) *fastServer {
	s := &fastServer{p: p, hs: hs, conns: map[*fastConn]struct{}{}, errorLog: hs.ErrorLog, tlsConfig: hs.TLSConfig,
		readHeaderTimeout: hs.ReadHeaderTimeout, idleTimeout: hs.IdleTimeout, writeTimeout: hs.WriteTimeout}
	if s.readHeaderTimeout <= 0 || (hs.ReadTimeout > 0 && hs.ReadTimeout < s.readHeaderTimeout) {
		s.readHeaderTimeout = hs.ReadTimeout
	}
	if s.idleTimeout <= 0 {
		s.idleTimeout = hs.ReadTimeout
	}
	// as net/http: the shortest of its timeouts bounds a TLS handshake
	for _, d := range []time.Duration{hs.ReadHeaderTimeout, hs.ReadTimeout, hs.WriteTimeout} {
		if d > 0 && (s.tlsHandshakeTimeout == 0 || d < s.tlsHandshakeTimeout) {
			s.tlsHandshakeTimeout = d
		}
	}
	// A connection handed over after a TLS handshake reaches hs as a
	// handoffConn, not a *tls.Conn, so hs would give its requests no TLS
	// state: the connection's context carries it, and the handler puts it
	// back (withHandoffTLS).
	hs.ConnContext = handoffTLSContext
	hs.Handler = withHandoffTLS(hs.Handler)
	return s
}

// fastEligible reports whether the fast path may take r: a request that
// ServeHTTP passes through (never a POST, never a version document) and
// that the forwarder takes.
func (p *Proxy) fastEligible(r *http.Request) bool {
	if r.Method == http.MethodPost || methodOverride(r.URL.RawQuery) {
		return false
	}
	if maybeVersionPath(r.URL.Path) {
		if rt, _ := classifyPath(r.URL.EscapedPath()); rt.kind == routeVersion || collapsedVersion(r.URL.Path) {
			return false
		}
	}
	return p.pool.canForward(r)
}

// serve accepts connections on ln until shutdown; it returns
// http.ErrServerClosed then.
func (s *fastServer) serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.hl = &handoffListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
	s.mu.Unlock()
	go func() {
		if err := s.hs.Serve(s.hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logf("proxy: serving handed-over connections: %v", err)
		}
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// as net/http: back off on errors such as too many open files
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.logf("http: Accept error: %v; retrying in %v", err, delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		var ent *connEntry
		if s.limit != nil {
			if ent = s.limit.admit(c); ent == nil {
				continue
			}
		}
		if s.tlsConfig != nil {
			c = tls.Server(directIO(c), s.tlsConfig)
		}
		fc := s.track(c, ent)
		if fc == nil {
			c.Close()
			if ent != nil {
				s.limit.release(ent)
			}
			return http.ErrServerClosed
		}
		go fc.serve()
	}
}

// shutdown stops accepting, closes idle connections, and waits for the
// others to finish their request until ctx ends, when it closes them. The
// net/http server of the handed-over connections is shut down by its
// owner.
func (s *fastServer) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	ln := s.ln
	if s.hl != nil {
		s.hl.Close() // no more hand-overs
	}
	for fc := range s.conns {
		// (a connection that goes idle after this load sees closing:
		// setIdle)
		if fc.idle.Load() {
			_ = fc.c.SetReadDeadline(aLongTimeAgo)
		}
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for fc := range s.conns {
			fc.c.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *fastServer) isClosing() bool { return s.closing.Load() }

func (s *fastServer) logf(format string, a ...any) {
	if s.errorLog != nil {
		s.errorLog.Printf(format, a...)
	}
}

// track registers a new connection, counted as ent (nil when shutting
// down).
func (s *fastServer) track(c net.Conn, ent *connEntry) *fastConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil
	}
	s.wg.Add(1)
	fc := &fastConn{s: s, c: c, ent: ent}
	s.conns[fc] = struct{}{}
	return fc
}

// setIdle marks fc idle or busy; false means the server is shutting down
// and the connection must end. Without a lock: fc stores its state, then
// loads closing, where shutdown stores closing, then loads each state (both
// sequentially consistent), so either the connection sees shutdown begun
// or shutdown sees it idle and interrupts its wait.
func (s *fastServer) setIdle(fc *fastConn, idle bool) bool {
	fc.idle.Store(idle)
	return !s.closing.Load()
}

func (s *fastServer) forget(fc *fastConn) {
	if fc.ent != nil {
		fc.s.limit.release(fc.ent) // (nil once handed over: handoffConn.Close does it)
	}
	s.mu.Lock()
	delete(s.conns, fc)
	s.mu.Unlock()
	s.wg.Done()
}

// fastConn is one client connection of the fast server.
type fastConn struct {
	s    *fastServer
	c    net.Conn
	src  fastSource // what br reads
	br   *bufio.Reader
	bw   *bufio.Writer
	head fastHead
	hdr  http.Header
	vals []string      // backing array of hdr's values
	req  *http.Request // reused, with ctx as its context
	resp fastResponse
	date fastDate
	// ctx ends when the client is seen gone during a request (watch)
	ctx    context.Context
	cancel context.CancelFunc
	watch  clientWatch
	rd     lazyDeadline         // c's read deadline, as the request loop set it
	tls    *tls.ConnectionState // after the handshake, when c is a *tls.Conn
	idle   atomic.Bool          // waiting for a next request (setIdle)
	url    url.URL              // the request's URL when fastURL needs no parse
	// ent is the connection's place in the connection limit (nil without
	// one, and once handed over)
	ent *connEntry
}

// fastSource is the connection as its read buffer sees it: first the byte
// the client watch read, if any, then the connection.
type fastSource struct {
	c       net.Conn
	pending []byte
}

func (s *fastSource) Read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	return s.c.Read(p)
}

// watchAfter is how long a request waits for its answer before the
// connection is watched for the client going away.
const watchAfter = 50 * time.Millisecond

// clientWatch notices a client that goes away while its request waits on
// the upstream, as net/http's background read does, but only for requests
// that take longer than watchAfter (net/http starts one for every request,
// which is much of what a fast pass-through costs): a timer starts a read
// of one byte on the connection; EOF or an error cancels the connection's
// context and interrupts the forwarder's exchange on the upstream
// connection it tracks, a byte (the start of a pipelined request) is kept
// for the read buffer.
type clientWatch struct {
	timer *time.Timer
	mu    sync.Mutex
	state int // watchIdle, watchArmed, watchReading
	// set: the timer is set, and its function will look at state (arm
	// leaves a set timer as it is, rather than resetting it for every
	// request); since: when the armed request arrived
	set   bool
	since time.Time
	done  chan struct{}
	b     [1]byte
	// up is the upstream connection of the exchange in flight (track),
	// interrupted set when the client went away during it; gone is set
	// once the client went away
	up                *upConn
	gone, interrupted bool
}

// track makes uc the upstream connection a client going away interrupts
// (for the fast server, in place of the context.AfterFunc forward
// registers for net/http's requests: no allocation, no registration in
// the context).
func (w *clientWatch) track(uc *upConn) {
	w.mu.Lock()
	w.up, w.interrupted = uc, w.gone
	if w.gone {
		_ = uc.c.SetDeadline(aLongTimeAgo)
	}
	w.mu.Unlock()
}

// untrack ends the tracking of the exchange and reports, as the stop
// function of context.AfterFunc does, whether it was not interrupted.
func (w *clientWatch) untrack() bool {
	w.mu.Lock()
	ok := !w.interrupted
	w.up, w.interrupted = nil, false
	w.mu.Unlock()
	return ok
}

const (
	watchIdle = iota
	watchArmed
	watchReading
)

// arm starts the watch of the request that arrived at start. The timer is
// set only when it is not already: one set for an earlier request fires
// early for this one, and is set again for what is left of watchAfter.
func (fc *fastConn) arm(start time.Time) {
	w := &fc.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state, w.since = watchArmed, start
	switch {
	case w.set:
	case w.timer == nil:
		w.timer = time.AfterFunc(watchAfter, fc.watchClient)
	default:
		w.timer.Reset(watchAfter)
	}
	w.set = true
}

// disarm ends the watch and waits for its read to end. The timer is left
// to fire: its function sees no request armed and lets it be.
func (fc *fastConn) disarm() {
	w := &fc.watch
	w.mu.Lock()
	st := w.state
	w.state = watchIdle
	w.mu.Unlock()
	if st == watchReading {
		_ = fc.c.SetReadDeadline(aLongTimeAgo)
		<-w.done
		fc.rd.forget()
	}
}

// watchClient runs on the timer's goroutine.
func (fc *fastConn) watchClient() {
	w := &fc.watch
	w.mu.Lock()
	if w.state != watchArmed {
		w.set = false
		w.mu.Unlock()
		return
	}
	if left := watchAfter - time.Since(w.since); left > 0 {
		// set for an earlier request
		w.timer.Reset(left)
		w.mu.Unlock()
		return
	}
	w.state, w.set = watchReading, false
	w.done = make(chan struct{})
	// cleared under the lock: a disarm that sees watchReading sets its past
	// deadline after this, never before (the read would then wait with no
	// deadline, IdleTimeout lost, the connection's goroutine in disarm)
	_ = fc.c.SetReadDeadline(time.Time{})
	w.mu.Unlock()
	defer close(w.done)
	n, err := fc.c.Read(w.b[:])
	switch {
	case n == 1:
		fc.src.pending = w.b[:1]
	case err != nil && !isTimeoutErr(err):
		// the client went away: its context ends first, so that whatever
		// fails of the exchange interrupted next finds it ended
		fc.cancel()
		w.mu.Lock()
		w.gone = true
		if w.up != nil {
			_ = w.up.c.SetDeadline(aLongTimeAgo)
			w.interrupted = true
		}
		w.mu.Unlock()
	}
}

// isTimeoutErr reports a deadline error (disarm interrupting the read).
func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serve runs the connection's request loop.
func (fc *fastConn) serve() {
	s, c := fc.s, fc.c
	if tc, ok := c.(*tls.Conn); ok {
		st, ok := fc.handshake(tc)
		if !ok {
			s.forget(fc)
			return
		}
		fc.tls = st
	}
	dc := directIO(c) // (deadlines, close and hand-over use c)
	fc.src.c = dc
	fc.br = fastReaders.Get().(*bufio.Reader)
	fc.br.Reset(&fc.src)
	fc.bw = fastWriters.Get().(*bufio.Writer)
	fc.bw.Reset(dc)
	handedOver := false
	fc.ctx, fc.cancel = context.WithCancel(context.Background())
	fc.req = new(http.Request).WithContext(fc.ctx)
	fc.req.TLS = fc.tls
	defer func() {
		if err := recover(); err != nil {
			// as net/http: a panic ends the connection, not the process
			fc.s.logf("http: panic serving %v: %v", c.RemoteAddr(), err)
		}
		fc.cancel()
		if fc.watch.timer != nil {
			fc.disarm()
			fc.watch.timer.Stop()
		}
		if !handedOver {
			c.Close()
		}
		fc.br.Reset(nil)
		fastReaders.Put(fc.br)
		fc.bw.Reset(nil)
		fastWriters.Put(fc.bw)
		s.forget(fc)
	}()
	fc.hdr = http.Header{}
	fc.vals = make([]string, 0, 32)
	fc.resp = fastResponse{bw: fc.bw, conn: dc, watch: &fc.watch, header: http.Header{}, closing: s.isClosing, date: &fc.date, held: make([]byte, 0, heldBack)}
	remote := c.RemoteAddr().String()
	var writeDeadline, last time.Time // last: when the last answer was written
	for first := true; ; first = false {
		if !first && fc.br.Buffered() == 0 {
			fc.rd.set(c, last.Add(s.idleTimeout))
			if !s.setIdle(fc, true) {
				return
			}
			fc.ent.setIdleSince(last) // (the connection limit may close it for a new one)
			if _, err := fc.br.Peek(1); err != nil {
				return
			}
			if l := s.limit; l != nil && l.testHookIdleEnd != nil {
				l.testHookIdleEnd()
			}
			if !fc.ent.setBusy() {
				return // closed for a new connection as this request came: not served
			}
		}
		if !s.setIdle(fc, false) {
			return
		}
		now := time.Now() // (one clock read for the request's deadlines and latency)
		if buf, _ := fc.br.Peek(fc.br.Buffered()); !bytes.Contains(buf, crlfcrlf) {
			// (a head already in whole needs no read, nor a deadline)
			fc.rd.set(c, now.Add(s.readHeaderTimeout))
		}
		n, err := fc.readHead()
		if err != nil {
			return // as net/http: no answer to a client that stops or times out
		}
		if n == 0 || !fc.request(remote, n) {
			handedOver = fc.handOver()
			return
		}
		_, _ = fc.br.Discard(n)
		if s.writeTimeout > 0 {
			// moved when more than a second short of WriteTimeout (so at
			// most a second earlier than net/http's, and rarely reset)
			if d := now.Add(s.writeTimeout); d.Sub(writeDeadline) > time.Second {
				_ = c.SetWriteDeadline(d)
				writeDeadline = d
			}
		}
		var reuse bool
		if reuse, last = fc.serveRequest(now); !reuse {
			return
		}
	}
}

// readHead waits for a complete request head in the read buffer and
// returns its length, or 0 when the connection must be handed over (its
// first line is not one the fast path takes, or the head does not fit).
func (fc *fastConn) readHead() (int, error) {
	br := fc.br
	from, lineChecked := 0, false
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf[max(from-3, 0):], crlfcrlf); i >= 0 {
			return max(from-3, 0) + i + 4, nil
		}
		if !lineChecked {
			if j := bytes.IndexByte(buf, '\n'); j >= 0 {
				if !fastRequestLine(buf[:j+1]) {
					return 0, nil
				}
				lineChecked = true
			}
		}
		if len(buf) == br.Size() {
			return 0, nil
		}
		from = len(buf)
		if _, err := br.Peek(from + 1); err != nil {
			return 0, err
		}
	}
}

// request parses the head of n bytes into fc.req and reports whether the
// fast path takes it.
func (fc *fastConn) request(remote string, n int) bool {
	buf, _ := fc.br.Peek(n)
	h := &fc.head
	if !parseFastHead(buf, h) {
		return false
	}
	u := fastURL(h.target, &fc.url)
	if u == nil {
		return false
	}
	hdr := fc.hdr
	clear(hdr)
	vals := fc.vals[:0]
	for _, f := range h.fields {
		if vv, ok := hdr[f.name]; ok {
			hdr[f.name] = append(vv, f.value)
			continue
		}
		vals = append(vals, f.value)
		hdr[f.name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	fc.vals = vals
	// as net/http's request parsing does
	if p := hdr["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := hdr["Cache-Control"]; !ok {
			hdr["Cache-Control"] = []string{"no-cache"}
		}
	}
	r := fc.req // (field by field: its context stays)
	r.Method, r.URL, r.Proto, r.ProtoMajor, r.ProtoMinor = h.method, u, "HTTP/1.1", 1, 1
	r.Header, r.Body, r.Host, r.RemoteAddr, r.RequestURI, r.Close = hdr, http.NoBody, h.host, remote, h.target, h.close
	return fc.s.p.fastEligible(r)
}

// serveRequest forwards fc.req, which arrived at start, and reports
// whether the connection may carry another request, and when the answer
// was written.
func (fc *fastConn) serveRequest(start time.Time) (reuse bool, end time.Time) {
	r, w := fc.req, &fc.resp
	w.reset(r.Method == http.MethodHead, r.Close)
	w.start = start
	fc.arm(start)
	defer func() {
		fc.disarm()
		if err := recover(); err != nil {
			// as net/http: what reached the connection's buffer goes out
			// (a truncated answer), the connection closes
			_ = fc.bw.Flush()
			if err != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				fc.s.logf("http: panic serving %v: %v\n%s", r.RemoteAddr, err, buf)
			}
			reuse = false
		}
	}()
	fc.s.p.forward(w, r)
	reuse = w.finish() && fc.ctx.Err() == nil
	end = time.Now()
	fc.s.p.o.Metrics.observe("passthrough", end.Sub(start).Seconds())
	return reuse, end
}

// handOver gives the connection, with the bytes read and not consumed, to
// the net/http server; false when it is shutting down (the connection is
// then closed).
func (fc *fastConn) handOver() bool {
	buf, _ := fc.br.Peek(fc.br.Buffered())
	fc.s.handOvers.Add(1)
	hc := &handoffConn{Conn: fc.c, buf: append(bytes.Clone(buf), fc.src.pending...), tls: fc.tls, l: fc.s.limit, e: fc.ent}
	_ = fc.c.SetDeadline(time.Time{})
	if fc.s.isClosing() {
		return false
	}
	if !fc.s.hl.deliver(hc) {
		return false // (hc never closed: fc's end closes c and releases)
	}
	fc.ent = nil
	return true
}

// handoffListener is the net.Listener the net/http server serves: its
// connections are the ones the fast server hands over.
type handoffListener struct {
	addr      net.Addr
	ch        chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

// Accept implements net.Listener.
func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("accept: %w", net.ErrClosed)
	}
}

// Close implements net.Listener.
func (l *handoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener: the gate's listening address.
func (l *handoffListener) Addr() net.Addr { return l.addr }

// deliver passes c to the server; false when the listener is closed.
func (l *handoffListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// handoffConn is a handed-over connection: its reads return the bytes the
// fast server had buffered, then the connection's. tls is the state of its
// TLS connection, if it is one (the handshake done).
type handoffConn struct {
	net.Conn
	buf []byte
	tls *tls.ConnectionState
	// e, if set, is the connection's place in the connection limit l,
	// given back at Close (and marked idle between requests:
	// connLimit.connState)
	l *connLimit
	e *connEntry
}

// Close implements net.Conn.
func (c *handoffConn) Close() error {
	err := c.Conn.Close()
	if c.e != nil {
		c.l.release(c.e)
	}
	return err
}

// Read implements net.Conn.
func (c *handoffConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handshake runs the TLS handshake of a new connection as net/http does:
// within tlsHandshakeTimeout, a plain-HTTP request answered with a 400,
// errors logged. It closes tc when it fails. The connection counts as idle
// meanwhile, so that shutdown interrupts the handshake (the deadline is
// set before, so that shutdown's comes after it).
func (fc *fastConn) handshake(tc *tls.Conn) (*tls.ConnectionState, bool) {
	s := fc.s
	if d := s.tlsHandshakeTimeout; d > 0 {
		_ = tc.SetDeadline(time.Now().Add(d))
	}
	if !s.setIdle(fc, true) {
		_ = tc.Close()
		return nil, false
	}
	if err := tc.HandshakeContext(context.Background()); err != nil {
		reason := err.Error()
		if re, ok := err.(tls.RecordHeaderError); ok && re.Conn != nil && plainHTTPRecord(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			_ = re.Conn.Close()
			reason = "client sent an HTTP request to an HTTPS server"
		}
		s.logf("http: TLS handshake error from %s: %v", tc.RemoteAddr(), reason)
		_ = tc.Close()
		return nil, false
	}
	_ = tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	return &st, true
}

// plainHTTPRecord reports a TLS record header that is the start of a
// plain-HTTP request instead (net/http's rule).
func plainHTTPRecord(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// handoffTLSKey is the context key of a handed-over connection's TLS
// state.
type handoffTLSKey struct{}

// handoffTLSContext is the http.Server's ConnContext: a handed-over TLS
// connection's state goes into its context.
func handoffTLSContext(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*handoffConn); ok && hc.tls != nil {
		return context.WithValue(ctx, handoffTLSKey{}, hc.tls)
	}
	return ctx
}

// withHandoffTLS gives the requests of a handed-over TLS connection the
// TLS state net/http would have given them (r.TLS), from the connection's
// context (handoffTLSContext).
func withHandoffTLS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if st, ok := r.Context().Value(handoffTLSKey{}).(*tls.ConnectionState); ok {
				r = r.WithContext(r.Context()) // (a shallow copy: handlers leave r as it came)
				r.TLS = st
			}
		}
		h.ServeHTTP(w, r)
	})
}
