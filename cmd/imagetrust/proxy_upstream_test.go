package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// TestProxyUpstreamFromCatalog runs `imagetrust proxy` in front of the real
// nova-api with proxy.upstream written as the operator guide's settings
// table says, "Nova's internal compute endpoint": the URL Keystone's
// catalog gives, /v2.1 included, and without it as etc/imagetrust.toml
// shows. Either way GET /v2.1/ through the gate is Nova's v2.1 version
// document. Before, an upstream ending in /v2.1 sent every request to
// …/v2.1/v2.1/…, which Nova answers 401: the proxy started, and every
// boot failed.
func TestProxyUpstreamFromCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the loopback OpenStack")
	}
	c := ostest.Start(t, ostest.Options{WithNova: true})
	if !strings.HasSuffix(c.NovaURL, "/v2.1") {
		t.Fatalf("nova URL %q: want the catalog's …/v2.1", c.NovaURL)
	}
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	for _, tc := range []struct{ name, upstream string }{
		{"ok the catalog's endpoint", c.NovaURL},
		{"ok the catalog's endpoint with a slash", c.NovaURL + "/"},
		{"ok without the version, as the sample", strings.TrimSuffix(c.NovaURL, "/v2.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgPath, listen := proxyConfig(t, dir, fmt.Sprintf("upstream = %q\n", tc.upstream))
			var status int
			var body string
			logs := startProxyCommand(t, c, cfgPath, func() error {
				resp, err := http.Get("http://" + listen + "/v2.1/")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				status, body = resp.StatusCode, string(b)
				return nil
			})
			if status != http.StatusOK || !strings.Contains(body, `"id": "v2.1"`) {
				t.Fatalf("upstream %q: GET /v2.1/ through the gate: %d %.300s\n%s", tc.upstream, status, body, logs.String())
			}
		})
	}
}
