package validator

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestDescriptorTitleControl: a title is shown by inspect, Glance (the image
// name) and dashboards; a C0 or C1 control character in it (a line break, a
// terminal escape) is refused, by name and without echoing the title, while
// ordinary UTF-8 is kept.
func TestDescriptorTitleControl(t *testing.T) {
	for _, tc := range []struct {
		name, title string
		ok          bool
	}{
		{"ok plain", "ATLAS worker node", true},
		{"ok UTF-8 letters and symbols", "Wörker nœud ✓ 工作节点", true},
		{"fail newline", "ok\n  signature\tmatches", false},
		{"fail tab", "a\tb", false},
		{"fail ESC (C0)", "ok\x1b[31m", false},
		{"fail DEL", "a\x7fb", false},
		{"fail CSI (C1)", "a\u009b31mb", false},
		{"fail NEL (C1)", "a\u0085b", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := json.Marshal(tc.title)
			b := strings.Replace(goodDescriptor, `"created"`, `"title":`+string(q)+`,"created"`, 1)
			d, err := ParseDescriptor([]byte(b))
			if tc.ok {
				if err != nil || d.Title != tc.title {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrTitleControl) {
				t.Fatalf("want ErrTitleControl, got %v", err)
			}
			if strings.ContainsAny(err.Error(), "\n\t\x1b\x7f\u009b\u0085") {
				t.Fatalf("the error echoes the control characters: %q", err)
			}
		})
	}
}
