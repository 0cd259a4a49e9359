package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveMetrics serves /metrics (reg) and /healthz (health) on addr, the
// listen address of the sync or the CRL daemon (key names it in errors),
// with every http.Server timeout set and request heads bounded. The
// address is bound before it returns: one that is taken or not this
// host's is an error, for the daemon to refuse to start with (monitoring
// that silently never comes up is found only when it is needed). stop
// shuts the server down, waiting at most 10 s for requests in flight.
func serveMetrics(key, addr string, reg *prometheus.Registry, health http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", health)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "listen", addr, "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		wg.Wait()
	}, nil
}

// startHealth is the /healthz of a daemon from its start on: while it
// waits for OpenStack (startWait), 503 with the reason; once its passes
// run (started), their passHealth answers. The proxy uses it only while
// it waits: proxy.Serve has a /healthz of its own.
type startHealth struct {
	why    atomic.Pointer[string]
	passes atomic.Pointer[passHealth]
}

// waiting sets what the 503 says.
func (h *startHealth) waiting(why string) {
	if h != nil {
		h.why.Store(&why)
	}
}

// started hands /healthz over to the daemon's passes.
func (h *startHealth) started(p *passHealth) {
	if h != nil {
		h.passes.Store(p)
	}
}

// ServeHTTP implements /healthz.
func (h *startHealth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := h.passes.Load(); p != nil {
		p.ServeHTTP(w, r)
		return
	}
	why := "starting: logging in to Keystone"
	if s := h.why.Load(); s != nil {
		why = *s
	}
	http.Error(w, why, http.StatusServiceUnavailable)
}

// daemonStartWait is the wait for OpenStack at start of a daemon (nil
// when daemon is false: --once and --dry-run try once), with setting's
// address listen ("": none) served from the start: /metrics, and a
// /healthz answering 503 while it waits (health, which the daemon then
// hands on), so that a listen address that is taken is told before any
// request. stop ends that server (nothing to end without one); an error
// is a configuration error of the caller's.
func daemonStartWait(daemon bool, setting, listen string, reg *prometheus.Registry, log *slog.Logger) (wait *startWait, health *startHealth, stop func(), err error) {
	stop = func() {}
	if !daemon {
		return nil, nil, stop, nil
	}
	if listen != "" {
		health = &startHealth{}
		if stop, err = serveMetrics(setting, listen, reg, health, log); err != nil {
			return nil, nil, nil, err
		}
	}
	return newStartWait(log, reg, health), health, stop, nil
}
