package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/glance"
)

// TestSilentServiceTimesOut: a service in the catalog that accepts
// connections and never answers (a wedged Glance) no longer hangs a
// command: every request of the provider client gets its response head
// within responseHeaderTimeout. Keystone here is a stand-in (a token with a
// catalog naming the silent endpoint), said so: the real Keystone of
// tests/openstack cannot list an endpoint that never answers without
// changing the shared catalog.
func TestSilentServiceTimesOut(t *testing.T) {
	defer func(d time.Duration) { responseHeaderTimeout = d }(responseHeaderTimeout)
	responseHeaderTimeout = 300 * time.Millisecond

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // read nothing, answer nothing
		}
	}()
	keystone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v3/auth/tokens" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Subject-Token", "token")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":{"methods":["password"],"expires_at":"2099-01-01T00:00:00.000000Z",`+
			`"user":{"id":"u","name":"imagetrust","domain":{"id":"default","name":"Default"}},`+
			`"project":{"id":"p","name":"mirror","domain":{"id":"default","name":"Default"}},`+
			`"catalog":[{"type":"image","name":"glance","id":"s","endpoints":[{"id":"e","interface":"public","region":"RegionOne","region_id":"RegionOne","url":"http://%s"}]}]}}`, silent.Addr())
	}))
	defer keystone.Close()
	env := map[string]string{"OS_AUTH_URL": keystone.URL + "/v3", "OS_USERNAME": "imagetrust", "OS_PASSWORD": "x",
		"OS_PROJECT_NAME": "mirror", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne"}
	done := make(chan error, 1)
	go func() {
		// gophercloud's service discovery (a GET of the endpoint, without
		// a context) is the first request to the silent endpoint
		sc, _, err := openImageClient(context.Background(), "", func(k string) string { return env[k] })
		if err == nil {
			_, err = glance.ListByProperties(context.Background(), sc, "p", nil, nil)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a silent Glance answered")
		}
		t.Logf("%v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("a request to a silent Glance still waits after 20 s")
	}
}
