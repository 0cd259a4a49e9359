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
