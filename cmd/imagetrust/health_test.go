package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPassHealth: /healthz of the sync and the CRL daemons is healthy from
// the start for one window (a long first pass must not fail it), then only
// while the last successful pass is within the window.
func TestPassHealth(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	h := newPassHealth(t0, time.Hour, "sync pass")
	check := func(at time.Duration, want bool, why string) {
		t.Helper()
		now := t0.Add(at)
		h.now = func() time.Time { return now }
		ok, got := h.healthy(now)
		if ok != want || !strings.Contains(got, why) {
			t.Errorf("at +%s: healthy %v %q, want %v %q", at, ok, got, want, why)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if code := rec.Code; (code == http.StatusOK) != want {
			t.Errorf("at +%s: /healthz %d %q", at, code, rec.Body.String())
		}
	}
	check(0, true, "")
	check(59*time.Minute, true, "") // the first pass is still running
	check(61*time.Minute, false, "no successful sync pass for 1h1m0s since the start")
	h.ok(t0.Add(90 * time.Minute))
	check(90*time.Minute, true, "")
	check(150*time.Minute, true, "")
	check(151*time.Minute, false, "since the last one")
	h.setWindow(3 * time.Hour) // a reload with a longer interval
	check(151*time.Minute, true, "")
}
