// Package devstack tests the parts of the devstack plugin that run without
// devstack: devstack's own functions are stubbed, the plugin's are real.
package devstack

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/internal/ostest"
)

func TestMain(m *testing.M) { os.Exit(ostest.Main(m)) }

// stubs stand in for devstack's functions the plugin calls while sourced
// and while writing its configuration.
const stubs = `
define_plugin() { :; }
enable_service() { :; }
trueorfalse() { local v=${!2:-$1}; case ${v,,} in 1|yes|true|on) echo True;; *) echo False;; esac; }
is_service_enabled() { return 1; }
die() { echo "die: $*" >&2; exit 1; }
get_or_create_project() { echo 0123456789abcdef0123456789abcdef; }
`

// iniStubs stand in for devstack's iniget and iniset, by Python's
// configparser.
const iniStubs = `
iniget() { python3 -c 'import configparser,sys; c=configparser.RawConfigParser(); c.read(sys.argv[1]); print(c.get(sys.argv[2], sys.argv[3], fallback=""))' "$@"; }
iniset() { python3 -c '
import configparser,sys
c=configparser.RawConfigParser(); c.optionxform=str; c.read(sys.argv[1])
if sys.argv[2]!="DEFAULT" and not c.has_section(sys.argv[2]): c.add_section(sys.argv[2])
c.set(sys.argv[2], sys.argv[3], sys.argv[4])
c.write(open(sys.argv[1], "w"))' "$@"; }
`

// TestPluginWritesConfig runs imagetrust_write_config (the demonstration
// PKI and imagetrust.toml) under IPv4 and IPv6 settings: the file loads,
// and the proxy's listen and public_url are addresses Go and clients take
// (an IPv6 literal in brackets).
func TestPluginWritesConfig(t *testing.T) {
	bin := ostest.Binary(t)
	for _, tc := range []struct {
		name, host, listen  string
		wantListen, wantURL string
	}{
		{"ok IPv4", "10.0.0.5", "0.0.0.0", "0.0.0.0:18774", "http://10.0.0.5:18774"},
		{"ok IPv6 (SERVICE_IP_VERSION=6)", "fd00::5", "::", "[::]:18774", "http://[fd00::5]:18774"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			script := stubs + `
set -e
DATA_DIR='` + dir + `'

SERVICE_HOST=` + tc.host + `
SERVICE_LISTEN_ADDRESS=` + tc.listen + `
SERVICE_DOMAIN_NAME=Default
IMAGETRUST_BIN='` + bin + `'
IMAGETRUST_CONF_DIR='` + dir + `/etc'
source devstack/settings
source devstack/plugin.sh
is_service_enabled() { return 0; }
imagetrust_nova_url() { echo http://` + tc.host + `:8774; }
mkdir -p "$IMAGETRUST_CONF_DIR"
imagetrust_write_config
`
			cmd := exec.Command("bash", "-c", script)
			cmd.Dir = "../.."
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			path := filepath.Join(dir, "etc", "imagetrust.toml")
			cfg, err := config.Load(path)
			if err != nil {
				b, _ := os.ReadFile(path)
				t.Fatalf("%v\n%s", err, b)
			}
			if cfg.Proxy.Listen != tc.wantListen || cfg.Proxy.PublicURL != tc.wantURL {
				t.Fatalf("proxy listen %q public_url %q, want %q %q", cfg.Proxy.Listen, cfg.Proxy.PublicURL, tc.wantListen, tc.wantURL)
			}
			if _, _, err := net.SplitHostPort(cfg.Proxy.Listen); err != nil {
				t.Fatalf("listen %q: %v", cfg.Proxy.Listen, err)
			}
			if !strings.Contains(cfg.Proxy.Upstream, tc.host) {
				t.Fatalf("upstream %q", cfg.Proxy.Upstream)
			}
		})
	}
}

// TestPluginConfiguresNova runs configure_imagetrust_nova on nova.conf
// files (devstack's iniget and iniset stood in for by Python's
// configparser): nova-api's gets every imagetrust_ property in
// non_inheritable_image_properties, keeping what was there, and
// enable_proxy_headers_parsing; run twice, the list does not grow.
func TestPluginConfiguresNova(t *testing.T) {
	dir := t.TempDir()
	api, cpu := filepath.Join(dir, "nova.conf"), filepath.Join(dir, "nova-cpu.conf")
	for _, p := range []string{api, cpu} {
		if err := os.WriteFile(p, []byte("[DEFAULT]\nnon_inheritable_image_properties = cache_in_nova,bittorrent,site_secret\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := stubs + iniStubs + `
set -e
source devstack/settings
source devstack/plugin.sh
IMAGETRUST_SRC_DIR=$PWD
NOVA_CONF='` + api + `'
NOVA_CPU_CONF='` + cpu + `'
configure_imagetrust_nova
configure_imagetrust_nova
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	b, err := os.ReadFile(api)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for _, want := range []string{"[oslo_middleware]\nenable_proxy_headers_parsing = True", "cache_in_nova,bittorrent,site_secret,imagetrust_", ",imagetrust_vo\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("nova.conf lacks %q:\n%s", want, conf)
		}
	}
	if n := strings.Count(conf, "imagetrust_vo"); n != 1 {
		t.Errorf("imagetrust_vo %d times after two runs:\n%s", n, conf)
	}
	b, err = os.ReadFile(cpu)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "oslo_middleware") || !strings.Contains(string(b), "imagetrust_vo") {
		t.Errorf("nova-cpu.conf:\n%s", b)
	}
}

// TestPluginGlancePolicy runs configure_imagetrust_glance on a Glance
// whose policy file already holds the rules of an earlier imagetrust (the
// deactivate, reactivate and publicize_image rules only) and one rule of
// the operator's own: every rule of etc/glance/policy.yaml the file lacked
// is added once (a second run adds nothing), with the mirror's role
// substituted, and the operator's rule is kept as it was.
func TestPluginGlancePolicy(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	api := filepath.Join(dir, "glance-api.conf")
	old := "\"deactivate\": \"role:admin or (role:mirrorrole and project_id:%(project_id)s)\"\n" +
		"\"reactivate\": \"role:admin or (role:mirrorrole and project_id:%(project_id)s)\"\n" +
		"\"publicize_image\": \"role:admin or (role:mirrorrole and project_id:%(project_id)s)\"\n" +
		"\"delete_image\": \"role:admin\"\n"
	if err := os.WriteFile(policy, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(api, []byte("[DEFAULT]\nnode_staging_uri = file:///tmp/x\n[oslo_policy]\npolicy_file = "+policy+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := stubs + iniStubs + `
set -e
source devstack/settings
source devstack/plugin.sh
IMAGETRUST_SRC_DIR=$PWD
IMAGETRUST_MIRROR_ROLE=mirrorrole
GLANCE_API_CONF='` + api + `'
GLANCE_CONF_DIR='` + dir + `'
DATA_DIR='` + dir + `'
configure_imagetrust_glance
configure_imagetrust_glance
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), `warning: Glance policy "delete_image" kept`) {
		t.Errorf("no warning for the operator's delete_image rule:\n%s", out)
	}
	b, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	ours, err := os.ReadFile("../../etc/glance/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ours), "\n") {
		if !strings.HasPrefix(line, `"`) {
			continue
		}
		name := line[:strings.Index(line, ":")+1]
		if n := strings.Count("\n"+got, "\n"+name); n != 1 {
			t.Errorf("rule %s %d times:\n%s", name, n, got)
		}
		if name != `"delete_image":` && !strings.Contains(got, strings.ReplaceAll(line, "role:imagetrust ", "role:mirrorrole ")) {
			t.Errorf("rule %s missing or changed:\n%s", name, got)
		}
	}
	if !strings.Contains(got, "\"delete_image\": \"role:admin\"\n") {
		t.Errorf("the operator's delete_image rule changed:\n%s", got)
	}
	if strings.Contains(got, "role:imagetrust ") {
		t.Errorf("the mirror's role not substituted:\n%s", got)
	}
}
