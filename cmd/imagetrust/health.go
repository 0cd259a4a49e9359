package main

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// passHealth is the /healthz of a daemon that works in passes (the sync,
// the CRL job): healthy while its last successful pass, or its start when
// it has had none yet, is no older than the window.
//
// Counting from the start matters: a first pass can take long (a new
// site's sync mirrors every image in it), and a /healthz that failed until
// it ended would have a liveness probe restart the daemon before it ever
// finished, and page at every restart.
type passHealth struct {
	started time.Time
	lastOK  atomic.Int64 // Unix nanoseconds of the last successful pass (0: none)
	window  atomic.Int64 // time.Duration
	now     func() time.Time
	// what the 503 says
	what string
}

func newPassHealth(started time.Time, window time.Duration, what string) *passHealth {
	h := &passHealth{started: started, now: time.Now, what: what}
	h.window.Store(int64(window))
	return h
}

// ok records a successful pass ended at t.
func (h *passHealth) ok(t time.Time) { h.lastOK.Store(t.UnixNano()) }

// setWindow changes the window (a reload that changed the interval).
func (h *passHealth) setWindow(d time.Duration) { h.window.Store(int64(d)) }

// healthy reports whether the daemon is healthy at now, and if not why.
func (h *passHealth) healthy(now time.Time) (bool, string) {
	since, what := h.started, "since the start"
	if n := h.lastOK.Load(); n != 0 {
		since, what = time.Unix(0, n), "since the last one"
	}
	window := time.Duration(h.window.Load())
	if now.Sub(since) > window {
		return false, fmt.Sprintf("no successful %s for %s %s (more than %s)", h.what, now.Sub(since).Truncate(time.Second), what, window)
	}
	return true, ""
}

// ServeHTTP implements /healthz: 200 "ok", or 503 with the reason.
func (h *passHealth) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if ok, why := h.healthy(h.now()); !ok {
		http.Error(w, why, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}
