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
// boot failed. An older catalog's …/v2.1/{project_id} works too, the
// project dropped with a warning naming it (before, every request went to
// …/v2.1/{project_id}/v2.1/…).
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
	project := c.Env["MIRROR_PROJECT_ID"]
	if project == "" {
		t.Fatal("no MIRROR_PROJECT_ID in the stack's env")
	}
	base := strings.TrimSuffix(c.NovaURL, "/v2.1")
	for _, tc := range []struct{ name, upstream, warn string }{
		{"ok the catalog's endpoint", c.NovaURL, ""},
		{"ok the catalog's endpoint with a slash", c.NovaURL + "/", ""},
		{"ok without the version, as the sample", base, ""},
		{"ok an older catalog's endpoint with the project", c.NovaURL + "/" + project, "/v2.1/" + project},
		{"ok the legacy v2 endpoint with the project", base + "/v2/" + project + "/", "/v2/" + project},
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
			warned := strings.Contains(logs.String(), "compute API version and project")
			if tc.warn == "" && warned {
				t.Errorf("upstream %q: a warning about a project segment:\n%s", tc.upstream, logs.String())
			}
			if tc.warn != "" && (!warned || !strings.Contains(logs.String(), "dropped="+tc.warn) || !strings.Contains(logs.String(), "setting=proxy.upstream")) {
				t.Errorf("upstream %q: want a warning naming proxy.upstream and dropped=%s:\n%s", tc.upstream, tc.warn, logs.String())
			}
		})
	}
}

// TestProxyUpstreamTemplate: an upstream or public URL copied with its
// Keystone catalog template (`openstack endpoint list` shows
// …/v2.1/%(tenant_id)s; a templated catalog $(tenant_id)s) is a
// configuration error naming the setting and the template, before any
// network call. Before, "%(" made it "not an absolute URL", and
// "$(project_id)s" started a proxy that sent every request to
// …/v2.1/$(project_id)s/v2.1/…, which Nova refuses.
func TestProxyUpstreamTemplate(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, dir, "pki", "init", "pki")
	for _, tc := range []struct{ name, rest, want string }{
		{"fail SQL catalog tenant_id", `upstream = "http://nova:8774/v2/%(tenant_id)s"`, `proxy.upstream "http://nova:8774/v2/%(tenant_id)s" holds the Keystone catalog template %(tenant_id)s`},
		{"fail SQL catalog project_id", `upstream = "http://nova:8774/v2.1/%(project_id)s"`, "proxy.upstream " + `"http://nova:8774/v2.1/%(project_id)s" holds the Keystone catalog template %(project_id)s`},
		{"fail templated catalog", `upstream = "http://nova:8774/v2.1/$(tenant_id)s"`, "holds the Keystone catalog template $(tenant_id)s"},
		{"fail public_url", "upstream = \"http://nova:8774\"\npublic_url = \"https://compute.example.org:8774/v2.1/$(project_id)s\"", "proxy.public_url " + `"https://compute.example.org:8774/v2.1/$(project_id)s" holds`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgPath, _ := proxyConfig(t, dir, tc.rest+"\n")
			code, _, errs := cli(t, dir, "proxy", "--config", cfgPath)
			if code != exitUsage || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, want %d and %q:\n%s", code, exitUsage, tc.want, errs)
			}
		})
	}
}
