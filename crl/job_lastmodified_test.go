package crl

import (
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/pki"
)

// TestJobLastModifiedWithinTheSecond: HTTP dates have whole seconds, so a
// CRL replaced within the second it was served (a CA publishing a
// revocation right after its scheduled CRL) keeps the Last-Modified of the
// one served. The job must not send that Last-Modified back: the server
// would answer 304 to every later run until the CRL changes once more, and
// the revocation would go unseen for a whole CRL period. A Last-Modified a
// second or more before the answer's Date is kept, and a 304 to it keeps
// the cached CRL. The server has no ETag: Last-Modified is all it offers.
func TestJobLastModifiedWithinTheSecond(t *testing.T) {
	const date = "Mon, 01 Jun 2026 12:00:00 GMT"
	cases := []struct {
		name         string
		lastModified string // of both CRLs
		wantRevoked  bool
		want304      int
	}{
		{"ok CRL replaced within the second it was served is fetched whole", date, true, 0},
		{"ok Last-Modified a second before Date: 304 keeps the cached CRL", "Mon, 01 Jun 2026 11:59:59 GMT", false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			var mu sync.Mutex
			var body []byte
			notModified := 0
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				rw.Header().Set("Date", date)
				if ims := r.Header.Get("If-Modified-Since"); ims != "" {
					since, err1 := http.ParseTime(ims)
					lm, err2 := http.ParseTime(c.lastModified)
					if err1 == nil && err2 == nil && !lm.After(since) {
						notModified++
						rw.WriteHeader(http.StatusNotModified)
						return
					}
				}
				rw.Header().Set("Last-Modified", c.lastModified)
				_, _ = rw.Write(body)
			}))
			defer srv.Close()
			cache := t.TempDir()
			runAt := func(now time.Time) {
				j := w.job(t, cache, now, true)
				j.cfg.Sources = []Source{{URL: srv.URL + "/registrar.crl"}}
				run(t, j)
			}
			serve := func(b []byte) { mu.Lock(); body = b; mu.Unlock() }
			serve(crlT(w.registrar, 1))
			runAt(t0)
			serve(crlT(w.registrar, 2, pki.Revoked{Serial: big.NewInt(11), Time: t0.Add(-2 * time.Hour), Reason: ReasonKeyCompromise}))
			runAt(t0.Add(time.Hour))
			img := w.cat.get("img-1")
			if revoked := img.Properties[PropGlobalValidity] == StateRevoked; revoked != c.wantRevoked {
				t.Errorf("img-1 revoked %v, want %v (304 answers: %d)", revoked, c.wantRevoked, notModified)
			}
			if notModified != c.want304 {
				t.Errorf("%d 304 answers, want %d", notModified, c.want304)
			}
		})
	}
}
