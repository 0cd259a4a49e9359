package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"

	"github.com/imagetrust/imagetrust/glancesync"
)

// TestNovaUntrustedCertificateCannotTell: a Nova endpoint whose TLS
// certificate this host does not trust (here a server with a certificate of
// its own CA, which the client was not given) is "cannot tell"
// (glancesync.ErrServersUnknown: the sync deactivates and hides the image),
// not "cannot ask now": asking again cannot mend a certificate, and an image
// left for the next pass would stay active and shown for ever, a failed
// outcome every pass. Before, a TLS error was "cannot ask now".
func TestNovaUntrustedCertificateCannotTell(t *testing.T) {
	var asked atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		asked.Store(true)
		_, _ = w.Write([]byte(`{"servers": []}`))
	}))
	defer srv.Close()
	pc := &gophercloud.ProviderClient{}
	sc := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: srv.URL + "/", ResourceBase: srv.URL + "/v2.1/", Type: "compute"}
	_, known, err := (&novaServers{sc: sc}).InUse(t.Context(), uuid.NewString())
	if asked.Load() {
		t.Fatal("the request reached the server: the certificate was trusted")
	}
	if known || !errors.Is(err, glancesync.ErrServersUnknown) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("InUse with an untrusted certificate: known %v, %v; want ErrServersUnknown naming the certificate", known, err)
	}
}

// TestNovaAnswersClassified: what novaServers makes of Nova's answers to
// its servers query. 403 (no right to list every project's servers) and
// 404 (an endpoint without the API: a path mistyped in the catalog) are
// "cannot tell" (glancesync.ErrServersUnknown: the image is deactivated
// and hidden); 500, 503 (a down cell with
// list_records_by_skipping_down_cells = false, a load balancer without a
// backend) and 429 are "cannot ask now" (any other error: the retirement
// waits for the next pass). 200 with a server is in use, with none
// unused. Nova here is an HTTP server giving those answers; the real
// Nova's 403 and an unreachable one are TestSyncStartsWithNovaDown's. It
// fails if the 5xx/429 exception in InUse goes (a Nova restarting would
// have the images deactivated on a guess) or if the other 4xx are no
// longer ErrServersUnknown (an image kept active for ever).
func TestNovaAnswersClassified(t *testing.T) {
	for _, c := range []struct {
		status         int
		body           string
		inUse, known   bool
		unknown, fails bool
	}{
		{status: 200, body: `{"servers": [{"id": "a"}]}`, inUse: true, known: true},
		{status: 200, body: `{"servers": []}`, known: true},
		{status: 403, body: `{"forbidden": {"code": 403}}`, unknown: true, fails: true},
		{status: 404, body: `not found`, unknown: true, fails: true},
		{status: 500, body: `{}`, fails: true},
		{status: 503, body: `Service Unavailable`, fails: true},
		{status: 429, body: `{}`, fails: true},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(c.status)
			_, _ = w.Write([]byte(c.body))
		}))
		pc := &gophercloud.ProviderClient{}
		sc := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: srv.URL + "/", ResourceBase: srv.URL + "/v2.1/", Type: "compute"}
		inUse, known, err := (&novaServers{sc: sc}).InUse(t.Context(), uuid.NewString())
		srv.Close()
		if inUse != c.inUse || known != c.known || (err != nil) != c.fails || errors.Is(err, glancesync.ErrServersUnknown) != c.unknown {
			t.Errorf("Nova answering %d: in use %v, known %v, %v; want in use %v, known %v, an error %v, ErrServersUnknown %v",
				c.status, inUse, known, err, c.inUse, c.known, c.fails, c.unknown)
		}
	}
}
