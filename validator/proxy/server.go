package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerOptions configure Serve.
type ServerOptions struct {
	// Listen is the gate's address; HealthListen the address of /healthz and
	// /metrics ("" = no health listener).
	Listen, HealthListen string
	// TLSCert and TLSKey, when both set, make the gate's listener HTTPS.
	TLSCert, TLSKey string
	// ReloadTLS, when set, makes Serve load TLSCert and TLSKey again at
	// each receive (a renewed certificate, say: SIGHUP in the command).
	// New handshakes use the new pair; a pair that does not load leaves the
	// current one in use, and the error is logged.
	ReloadTLS <-chan struct{}
	// Gatherer serves /metrics (nil = no /metrics).
	Gatherer prometheus.Gatherer
	// ShutdownTimeout bounds the graceful shutdown (default 30s).
	ShutdownTimeout time.Duration
	// Ready, if set, receives the bound addresses once both listeners listen.
	Ready  func(gate, health net.Addr)
	Logger *slog.Logger
	// NetHTTPOnly serves every gate connection with net/http's server. By
	// default a gate whose handler is a *Proxy with the forwarder's fast
	// path is served by the fast server (fastserver.go), which answers
	// pass-through requests itself (over TLS too, HTTP/1.1 as net/http
	// serves it here) and hands connections over to net/http at their
	// first other request.
	NetHTTPOnly bool
	// MaxConns bounds the client connections the gate's listener holds
	// (default DefaultMaxConns), plain or TLS, on the fast server and on
	// net/http's; one beyond it takes the place of the connection idle the
	// longest, or is accepted and closed at once when none is (limit.go).
	MaxConns int
}

// newServer is an http.Server with every timeout set. Reads are bounded by
// the body limit and ReadTimeout; WriteTimeout is long because it bounds a
// whole passed-through response (Nova's slowest calls take minutes).
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      10 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          httpErrorLog(log),
	}
}

// HealthHandler serves /healthz (200 "ok") and, when g is not nil, /metrics.
func HealthHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return mux
}

// testHookFastServer and testHookConnLimit, when set (by tests), are
// given the fast server and the connection limit Serve makes.
var (
	testHookFastServer func(*fastServer)
	testHookConnLimit  func(*connLimit)
)

// Serve runs the gate (and the health listener) until ctx ends, then shuts
// down gracefully: listeners close at once, requests in flight get
// ShutdownTimeout to finish.
func Serve(ctx context.Context, gate http.Handler, o ServerOptions) error {
	if o.Logger == nil {
		return errors.New("proxy: ServerOptions.Logger is required")
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen: %w", err)
	}
	gs := newServer(gate, o.Logger)
	if (o.TLSCert == "") != (o.TLSKey == "") {
		ln.Close()
		return errors.New("proxy: set both tls_cert and tls_key, or neither")
	}
	if o.TLSCert != "" {
		kp := &keyPair{certFile: o.TLSCert, keyFile: o.TLSKey}
		if err := kp.load(); err != nil {
			ln.Close()
			return err
		}
		gs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: kp.get}
		if o.ReloadTLS != nil {
			rctx, stop := context.WithCancel(ctx) // (ends when Serve returns)
			defer stop()
			go func() {
				for {
					select {
					case <-rctx.Done():
						return
					case <-o.ReloadTLS:
						if err := kp.load(); err != nil {
							o.Logger.Error("TLS key pair reload failed; keeping the current one", "err", err)
							continue
						}
						o.Logger.Info("TLS key pair reloaded", "cert", o.TLSCert)
					}
				}
			}()
		}
	}
	servers := []*http.Server{gs}
	listeners := []net.Listener{ln}
	var healthAddr net.Addr
	if o.HealthListen != "" {
		hl, err := lc.Listen(ctx, "tcp", o.HealthListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("proxy: health listen: %w", err)
		}
		servers = append(servers, newServer(HealthHandler(o.Gatherer), o.Logger))
		listeners = append(listeners, hl)
		healthAddr = hl.Addr()
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	var metrics *Metrics
	maxGated, perProject := 0, 0
	if p, ok := gate.(*Proxy); ok {
		metrics, maxGated, perProject = p.o.Metrics, p.limit.n, p.limit.perProject
	}
	conns := newConnLimit(o.MaxConns, metrics, o.Logger)
	gs.ConnState = conns.connState // (idle connections, which the limit may close for new ones)
	if testHookConnLimit != nil {
		testHookConnLimit(conns)
	}
	var fast *fastServer
	if p, ok := gate.(*Proxy); ok && p.pool != nil && !o.NetHTTPOnly {
		fast = newFastServer(p, gs) // (it does the TLS itself: gs.TLSConfig)
		fast.limit = conns          // (counted at its accept: a wrapped conn would lose directIO)
		if testHookFastServer != nil {
			testHookFastServer(fast)
		}
	} else {
		listeners[0] = &limitListener{Listener: ln, l: conns}
		if gs.TLSConfig != nil {
			listeners[0] = tls.NewListener(listeners[0], gs.TLSConfig)
		}
	}
	servedConn(gs) // (after newFastServer's ConnContext: it wraps it)
	o.Logger.Info("proxy listening", "listen", ln.Addr().String(), "tls", o.TLSCert != "", "health", fmt.Sprint(healthAddr),
		"max_connections", o.MaxConns, "max_gated_requests", maxGated, "max_gated_per_project", perProject)
	if o.Ready != nil {
		o.Ready(ln.Addr(), healthAddr)
	}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		if i == 0 && fast != nil {
			go func() { errc <- fast.serve(listeners[0]) }()
			continue
		}
		go func() { errc <- s.Serve(listeners[i]) }()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.ShutdownTimeout)
	defer cancel()
	// all at once: the fast server's connections and those it handed
	// over to net/http wind down together
	shutdowns := make(chan error, len(servers)+1)
	n := len(servers)
	if fast != nil {
		n++
		go func() { shutdowns <- fast.shutdown(sctx) }()
	}
	for _, s := range servers {
		go func() { shutdowns <- s.Shutdown(sctx) }()
	}
	for range n {
		if err := <-shutdowns; err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("proxy: shutdown: %w", err))
		}
	}
	if errors.Is(runErr, http.ErrServerClosed) {
		runErr = nil
	}
	if c, ok := gate.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	o.Logger.Info("proxy stopped")
	return runErr
}

// keyPair is the listener's TLS certificate and key, loaded from their
// files and swapped whole on reload.
type keyPair struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// load reads the pair; on error the current one stays.
func (k *keyPair) load() error {
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("proxy: TLS key pair: %w", err)
	}
	k.cur.Store(&c)
	return nil
}

// get is the tls.Config's GetCertificate.
func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}
