package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestNovaSnippetNamesEveryProperty: etc/nova/nova.conf.snippet's
// non_inheritable_image_properties must name every catalogue property (the
// option takes exact names, not prefixes), or users' snapshots of a
// catalogue VM fail under Glance's property protections. The names are
// taken from the record files, as the devstack plugin takes them.
func TestNovaSnippetNamesEveryProperty(t *testing.T) {
	var want []string
	for _, f := range []string{"../../validator/record.go", "../../crl/record.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"(imagetrust_[a-z0-9_]+)"`).FindAllStringSubmatch(string(b), -1) {
			want = append(want, m[1])
		}
	}
	b, err := os.ReadFile("../../etc/nova/nova.conf.snippet")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^non_inheritable_image_properties = (.*)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("no non_inheritable_image_properties line")
	}
	have := strings.Split(m[1], ",")
	for _, n := range want {
		if !slices.Contains(have, n) {
			t.Errorf("etc/nova/nova.conf.snippet: non_inheritable_image_properties lacks %s", n)
		}
	}
}
