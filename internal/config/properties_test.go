package config

import (
	"slices"
	"strings"
	"testing"
)

// TestImagePropertiesPatterns: sync.image_properties and
// vo.NAME.image_properties load path.Match patterns of property names, and
// a pattern path.Match cannot read, or that could match no property name,
// is refused naming the key and the pattern.
func TestImagePropertiesPatterns(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		// err: a part of the error; "" loads
		err string
	}{
		{name: "ok unset", toml: "[sync]\n"},
		{name: "ok every property", toml: "[sync]\nimage_properties = [\"*\"]"},
		{name: "ok none", toml: "[sync]\nimage_properties = []"},
		{name: "ok names and globs", toml: "[sync]\nimage_properties = [\"hw_disk_bus\", \"hw_vif_*\", \"os_?ype\", \"hw_[a-c]*\", \"trait:CUSTOM_*\"]"},
		{name: "ok a VO's", toml: "[vo.atlas]\nimage_properties = [\"hw_*\"]"},
		{name: "fail unclosed bracket", toml: "[sync]\nimage_properties = [\"hw_disk_bus\", \"hw_[abc\"]", err: `sync.image_properties: pattern "hw_[abc"`},
		{name: "fail bad range", toml: "[sync]\nimage_properties = [\"hw_[z-a\"]", err: `pattern "hw_[z-a"`},
		{name: "fail trailing escape", toml: "[sync]\nimage_properties = [\"hw_\\\\\"]", err: `pattern "hw_\\"`},
		{name: "fail empty pattern", toml: "[sync]\nimage_properties = [\"\"]", err: "sync.image_properties: entry 1 is empty"},
		{name: "fail name=value", toml: "[sync]\nimage_properties = [\"hw_disk_bus=virtio\"]", err: `pattern "hw_disk_bus=virtio" matches no property name`},
		{name: "fail space", toml: "[sync]\nimage_properties = [\"hw disk bus\"]", err: "matches no property name"},
		{name: "fail slash", toml: "[sync]\nimage_properties = [\"hw/*\"]", err: "matches no property name"},
		{name: "fail a VO's bad pattern", toml: "[vo.atlas]\nimage_properties = [\"[\"]", err: `vo.atlas.image_properties: pattern "["`},
		{name: "fail not a list", toml: "[sync]\nimage_properties = \"*\"", err: "image_properties"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.toml))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err != "" && err == nil:
				t.Fatal("loaded")
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Fatalf("error %q does not say %q", err, tc.err)
			}
		})
	}
}

// TestImagePropertyPolicy: a VO's image_properties replaces
// sync.image_properties (an empty list too: nothing passes), which replaces
// DefaultImageProperties; the default lets the guest's virtual hardware
// through and none of the properties with which Nova claims host
// resources, steers placement or skips its own checks.
func TestImagePropertyPolicy(t *testing.T) {
	c, err := Parse([]byte(`
[vo.atlas]
[vo.cms]
image_properties = ["hw_disk_bus"]
[vo.lhcb]
image_properties = []
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, vo, prop string
		allowed        bool
	}{
		{"ok default hw_disk_bus", "atlas", "hw_disk_bus", true},
		{"ok default hw_rng_model", "atlas", "hw_rng_model", true},
		{"ok default os_type", "atlas", "os_type", true},
		{"fail default hw_cpu_policy", "atlas", "hw_cpu_policy", false},
		{"fail default hw_mem_encryption", "atlas", "hw_mem_encryption", false},
		{"fail default hw_numa_nodes", "atlas", "hw_numa_nodes", false},
		{"fail default trait", "atlas", "trait:CUSTOM_X", false},
		{"fail default img_signature", "atlas", "img_signature", false},
		{"fail default img_config_drive", "atlas", "img_config_drive", false},
		{"fail default cinder_img_volume_type", "atlas", "cinder_img_volume_type", false},
		{"fail default os_command_line", "atlas", "os_command_line", false},
		{"fail default hw_ipxe_boot", "atlas", "hw_ipxe_boot", false},
		{"ok VO's own list", "cms", "hw_disk_bus", true},
		{"fail VO's own list replaces the default", "cms", "hw_rng_model", false},
		{"fail VO's empty list", "lhcb", "hw_disk_bus", false},
		{"fail VO without section: the default", "alice", "hw_cpu_policy", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PropertyAllowed(c.ImagePropertyPatterns(tc.vo), tc.prop); got != tc.allowed {
				t.Fatalf("%s for VO %s: allowed %v, want %v", tc.prop, tc.vo, got, tc.allowed)
			}
		})
	}
	t.Run("ok sync list replaces the default", func(t *testing.T) {
		c.Sync.ImageProperties = []string{"*"}
		if !PropertyAllowed(c.ImagePropertyPatterns("atlas"), "hw_cpu_policy") || PropertyAllowed(c.ImagePropertyPatterns("cms"), "hw_cpu_policy") {
			t.Fatal(`sync.image_properties = ["*"] lets hw_cpu_policy through for atlas, not for cms (its own list)`)
		}
	})
	t.Run("ok default sorted and free of duplicates", func(t *testing.T) {
		if !slices.IsSorted(DefaultImageProperties) || len(slices.Compact(slices.Clone(DefaultImageProperties))) != len(DefaultImageProperties) {
			t.Fatal("DefaultImageProperties: not sorted, or a name twice")
		}
		if err := checkPropertyPatterns("default", DefaultImageProperties); err != nil {
			t.Fatal(err)
		}
	})
}
