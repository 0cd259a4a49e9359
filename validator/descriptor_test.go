package validator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodDescriptor = `{"uuid":"0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f","vo":"atlas","tag":"worker","uri":"w.qcow2","size":10,` +
	`"sha512":"` + "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" + `",` +
	`"disk_format":"qcow2","container_format":"bare","created":"2026-01-02T03:04:05Z","properties":{"hw_firmware_type":"uefi"}}`

func TestParseDescriptor(t *testing.T) {
	if _, err := ParseDescriptor([]byte(goodDescriptor)); err != nil {
		t.Fatalf("ok descriptor: %v", err)
	}
	// the hostile corpus: every file must be refused, naming the problem
	files, err := filepath.Glob("testdata/descriptors/fail-*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no hostile corpus: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// fail-<what the error names>[--<variant>].json
			want := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "fail-"), ".json")
			want, _, _ = strings.Cut(want, "--")
			_, err = ParseDescriptor(b)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(strings.ReplaceAll(err.Error(), " ", "-"), want) {
				t.Fatalf("error %q does not name %q", err, want)
			}
		})
	}
}

func FuzzParseDescriptor(f *testing.F) {
	f.Add([]byte(goodDescriptor))
	f.Add([]byte(strings.Replace(goodDescriptor, `"uuid":"0b0e3c4a-7f7a-4c1e-9f57-8a1f3f1d2e3f"`,
		`"uuid":"7989320e-faec-56d8-9794-e0d4b591edc3","uuid_seed":"00112233445566778899aabbccddeeff"`, 1)))
	files, _ := filepath.Glob("testdata/descriptors/*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDescriptor(b)
		if err != nil {
			return
		}
		if d.UUID == "" || d.Size <= 0 || len(d.SHA512) != 128 {
			t.Fatalf("accepted an incomplete descriptor: %+v", d)
		}
		if d.UUIDSeed != "" && !ValidUUIDSeed(d.UUIDSeed) {
			t.Fatalf("accepted a malformed uuid_seed %q", d.UUIDSeed)
		}
		// a seed binds: the binding check passes exactly when the uuid is
		// the one the VO and the seed give
		if err := d.checkBinding(false); (err == nil) != (d.UUIDSeed == "" || d.UUID == BoundUUID(d.VO, d.UUIDSeed)) {
			t.Fatalf("binding of %+v: %v", d, err)
		}
		if err := d.checkBinding(true); (err == nil) != d.Bound() {
			t.Fatalf("required binding of %+v: %v", d, err)
		}
	})
}

// TestDescriptorURICredentialsNotEchoed: a uri with user information is
// refused without repeating it, parsable or not.
func TestDescriptorURICredentialsNotEchoed(t *testing.T) {
	for _, uri := range []string{
		"https://atlas:s3cret@images.example.org/w.qcow2",
		"https://s3cret@images.example.org/w.qcow2",
		"https://atlas:s3cret@images.example.org/%zz.qcow2",
	} {
		b := strings.Replace(goodDescriptor, `"uri":"w.qcow2"`, `"uri":"`+uri+`"`, 1)
		_, err := ParseDescriptor([]byte(b))
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "descriptor field uri") {
			t.Errorf("uri %s: err = %v, want a refusal naming the field, not the secret", uri, err)
		}
	}
}

// TestDescriptorErrorsShort: an error quotes at most a short, escaped
// prefix of an untrusted value (a refusal is logged on every sync pass,
// and a descriptor may be 64 KiB), and still names the field.
func TestDescriptorErrorsShort(t *testing.T) {
	long := strings.Repeat("A", 60000)
	for _, c := range []struct{ name, from, to, field string }{
		{"fail uri scheme", `"uri":"w.qcow2"`, `"uri":"gopher://` + long + `"`, "uri"},
		{"fail vo", `"vo":"atlas"`, `"vo":"` + long + `"`, "vo"},
		{"fail tag", `"tag":"worker"`, `"tag":"x\n` + long + `"`, "tag"},
		{"fail property key", `"hw_firmware_type"`, `"` + long + `!"`, "property"},
		{"fail unknown field", `"vo":"atlas"`, `"vo":"atlas","` + long + `":1`, "unknown field"},
		{"fail created", `"created":"2026-01-02T03:04:05Z"`, `"created":"` + long + `"`, "created"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseDescriptor([]byte(strings.Replace(goodDescriptor, c.from, c.to, 1)))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if len(msg) > 300 || strings.ContainsAny(msg, "\n\r") || !strings.Contains(msg, c.field) || !strings.Contains(msg, "bytes)") {
				t.Fatalf("error (%d bytes) not short, escaped and named: %.400q", len(msg), msg)
			}
		})
	}
}

// TestDescriptorTextControl: the free text that becomes Glance properties
// takes no terminal escape or carriage return (`openstack image show`
// prints it); a description or property value may hold line feeds and tabs.
func TestDescriptorTextControl(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"ok description lines", `"created"`, `"description":"line one\nline\ttwo","created"`, ""},
		{"ok property value lines", `"uefi"`, `"a\nb"`, ""},
		{"fail description escape", `"created"`, `"description":"x\u001b[31m","created"`, "description"},
		{"fail description carriage return", `"created"`, `"description":"x\rforged","created"`, "description"},
		{"fail os_distro line feed", `"created"`, `"os_distro":"debian\n","created"`, "os_distro"},
		{"fail architecture C1", `"created"`, `"architecture":"x86_64\u0085","created"`, "architecture"},
		{"fail os_version DEL", `"created"`, `"os_version":"12\u007f","created"`, "os_version"},
		{"fail property value escape", `"uefi"`, `"\u001b]0;title\u0007"`, "hw_firmware_type"},
		// url.Parse refuses C0 controls and DEL, not C1 ones
		{"fail uri C1 CSI", `"uri":"`, `"uri":"https://x/img\u009b31m`, "uri"},
		{"fail uri C1 next line", `"uri":"`, `"uri":"img\u0085`, "uri"},
		{"fail uri C0 escape", `"uri":"`, `"uri":"img\u001b[31m`, "uri"},
		// nor percent-encoded in the path, which becomes a local file name
		{"fail uri percent-encoded line feed", `"uri":"`, `"uri":"img%0aevil`, "uri"},
		{"fail uri percent-encoded NUL", `"uri":"`, `"uri":"file:///srv/img%00`, "uri"},
		{"fail uri percent-encoded C1 CSI", `"uri":"`, `"uri":"https://x/img%c2%9b31m`, "uri"},
		{"fail uri percent-encoded DEL", `"uri":"`, `"uri":"img%7F`, "uri"},
		{"ok uri percent-encoded space and hash", `"uri":"`, `"uri":"my%20img%23`, ""},
		{"ok uri line feed in the query", `"uri":"`, `"uri":"https://x/img?a=%0a`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseDescriptor([]byte(strings.Replace(goodDescriptor, c.from, c.to, 1)))
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "control")):
				t.Fatalf("error %v, want one naming %s", err, c.want)
			}
		})
	}
}
