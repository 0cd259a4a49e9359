package devstack

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestPluginPropertyNamesMatchSnippet: the names the plugin puts in Nova's
// non_inheritable_image_properties (imagetrust_property_names, read from
// the source) are exactly those of etc/nova/nova.conf.snippet, which lists
// every imagetrust_ property (cmd/imagetrust TestNovaSnippetNamesEveryProperty).
// Before, the plugin read validator/record.go and crl/record.go only and
// left out the sync's back-off properties of glancesync/backoff.go
// (imagetrust_sync_refusals, _retry_after, _refused).
func TestPluginPropertyNamesMatchSnippet(t *testing.T) {
	script := stubs + `
set -e
source devstack/settings
source devstack/plugin.sh
IMAGETRUST_SRC_DIR=$PWD
imagetrust_property_names
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = "../.."
	var errb strings.Builder
	cmd.Stderr = &errb // devstack's xtrace
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	plugin := strings.Fields(string(out))
	b, err := os.ReadFile("../../etc/nova/nova.conf.snippet")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^non_inheritable_image_properties = (.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no non_inheritable_image_properties in etc/nova/nova.conf.snippet")
	}
	var snippet []string
	for _, n := range strings.Split(string(m[1]), ",") {
		if strings.HasPrefix(n, "imagetrust_") {
			snippet = append(snippet, n)
		}
	}
	slices.Sort(plugin)
	slices.Sort(snippet)
	if !slices.Equal(plugin, snippet) {
		t.Fatalf("the plugin's names differ from etc/nova/nova.conf.snippet's:\nplugin  %v\nsnippet %v", plugin, snippet)
	}
}
