package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/testpki"
)

// TestSecretFilesReadableByOthers: the daemons warn, naming the setting,
// the file and its mode, when a file that holds a secret they use
// (clouds.yaml through OS_CLIENT_CONFIG_FILE, the proxy's tls_key) is
// readable by every user of the host; a 0640 or 0600 file is not warned
// about. No case needs OpenStack: the auth_url is a local server that
// refuses every login.
func TestSecretFilesReadableByOthers(t *testing.T) {
	dir := publish(t)
	lockFileIn(t, dir)
	keystone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer keystone.Close()
	cloudsYAML := func(mode os.FileMode) string {
		p := filepath.Join(t.TempDir(), "clouds.yaml")
		doc := fmt.Sprintf("clouds:\n  test:\n    auth:\n      auth_url: %s/v3\n      username: u\n      password: secret\n      project_name: p\n      user_domain_name: Default\n      project_domain_name: Default\n", keystone.URL)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile, _ := testpki.TLSServer(t, dir, "proxy")
	proxyCfg, _ := proxyConfig(t, dir, fmt.Sprintf("upstream = \"http://127.0.0.1:1\"\ntls_cert = %q\ntls_key = %q\n", certFile, keyFile))
	for _, tc := range []struct {
		name    string
		clouds  os.FileMode
		key     os.FileMode
		args    []string
		want    string // "" for no warning
		wantNot string
	}{
		{name: "fail sync with a world-readable clouds.yaml warns", clouds: 0o644, key: 0o600,
			args: []string{"sync", "--once", "--config", "pki/imagetrust.toml"}, want: "OS_CLIENT_CONFIG_FILE"},
		{name: "fail crl with a world-readable clouds.yaml warns", clouds: 0o604, key: 0o600,
			args: []string{"crl", "--once", "--config", "pki/imagetrust.toml"}, want: "OS_CLIENT_CONFIG_FILE"},
		{name: "fail proxy with a world-readable tls_key warns", clouds: 0o640, key: 0o644,
			args: []string{"proxy", "--config", proxyCfg}, want: "proxy.tls_key", wantNot: "OS_CLIENT_CONFIG_FILE"},
		{name: "ok sync with a 0640 clouds.yaml", clouds: 0o640, key: 0o600,
			args: []string{"sync", "--once", "--config", "pki/imagetrust.toml"}},
		{name: "ok proxy with 0600 and 0640 files", clouds: 0o640, key: 0o600,
			args: []string{"proxy", "--config", proxyCfg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Chmod(keyFile, tc.key); err != nil {
				t.Fatal(err)
			}
			vars := map[string]string{"OS_CLOUD": "test", "OS_CLIENT_CONFIG_FILE": cloudsYAML(tc.clouds)}
			code, out, errs := cliEnv(t, dir, vars, tc.args...)
			if code != exitCredentials || !strings.Contains(errs, "keystone refused the credentials") {
				t.Fatalf("exit %d, want %d (the credentials refused):\n%s%s", code, exitCredentials, out, errs)
			}
			warned := strings.Contains(errs, "readable by every user")
			switch {
			case tc.want == "" && warned:
				t.Fatalf("warned:\n%s", errs)
			case tc.want != "" && (!warned || !strings.Contains(errs, tc.want)):
				t.Fatalf("no warning naming %s:\n%s", tc.want, errs)
			case tc.wantNot != "" && strings.Contains(errs, tc.wantNot):
				t.Fatalf("warning names %s:\n%s", tc.wantNot, errs)
			}
		})
	}
}
