package glance

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestPropertyPatch(t *testing.T) {
	cur := map[string]string{"imagetrust_a": "1", "imagetrust_b": "2", "x/y~z": "3"}
	tests := []struct {
		name    string
		set     map[string]string
		remove  []string
		want    string // JSON of the operations
		wantErr bool
	}{
		{name: "ok nothing", want: "null"},
		{name: "ok same values", set: map[string]string{"imagetrust_a": "1"}, remove: []string{"absent"}, want: "null"},
		{name: "ok add new key", set: map[string]string{"imagetrust_c": "v"},
			want: `[{"op":"add","path":"/imagetrust_c","value":"v"}]`},
		{name: "ok replace changed key", set: map[string]string{"imagetrust_a": "9"},
			want: `[{"op":"replace","path":"/imagetrust_a","value":"9"}]`},
		{name: "ok remove existing, skip missing", remove: []string{"imagetrust_b", "imagetrust_b", "nope"},
			want: `[{"op":"remove","path":"/imagetrust_b"}]`},
		{name: "ok pointer escapes", set: map[string]string{"x/y~z": "4"},
			want: `[{"op":"replace","path":"/x~1y~0z","value":"4"}]`},
		{name: "ok sorted", set: map[string]string{"imagetrust_z": "1", "imagetrust_a": "0"},
			want: `[{"op":"replace","path":"/imagetrust_a","value":"0"},{"op":"add","path":"/imagetrust_z","value":"1"}]`},
		{name: "fail set and remove", set: map[string]string{"k": "v"}, remove: []string{"k"}, wantErr: true},
		{name: "fail base attribute", set: map[string]string{"name": "v"}, wantErr: true},
		{name: "fail spaces", set: map[string]string{" k": "v"}, wantErr: true},
		{name: "fail empty key", remove: []string{""}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := propertyPatch(cur, tt.set, tt.remove)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error, ops %v", ops)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(ops)
			if string(got) != tt.want {
				t.Fatalf("ops\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAttributePatch(t *testing.T) {
	yes, name := true, "n"
	tests := []struct {
		name string
		opts AttributeOpts
		want string
	}{
		{"ok nothing", AttributeOpts{}, "null"},
		{"ok hidden", AttributeOpts{Hidden: &yes}, `[{"op":"replace","path":"/os_hidden","value":true}]`},
		{"ok all", AttributeOpts{Name: &name, Visibility: "private", Hidden: new(bool)},
			`[{"op":"replace","path":"/name","value":"n"},{"op":"replace","path":"/visibility","value":"private"},{"op":"replace","path":"/os_hidden","value":false}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := json.Marshal(attributePatch(tt.opts))
			if string(got) != tt.want {
				t.Fatalf("ops\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestImageUnmarshal(t *testing.T) {
	doc := `{"id":"0f9d2f4e-0000-4000-8000-000000000001","name":"n","status":"queued","owner":"p",
	"visibility":"shared","os_hidden":true,"protected":false,"os_hash_algo":null,"os_hash_value":null,
	"checksum":null,"size":null,"virtual_size":null,"disk_format":"raw","container_format":"bare",
	"min_disk":2,"min_ram":0,"tags":["a"],"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:06Z",
	"self":"/v2/images/x","file":"/v2/images/x/file","schema":"/v2/schemas/image","stores":"fs",
	"imagetrust_vo":"atlas","os_distro":"debian","numeric":5}`
	var im Image
	if err := json.Unmarshal([]byte(doc), &im); err != nil {
		t.Fatal(err)
	}
	if im.ID != "0f9d2f4e-0000-4000-8000-000000000001" || !im.Hidden || im.MinDisk != 2 || im.Size != 0 || im.HashValue != "" {
		t.Fatalf("base fields: %+v", im)
	}
	want := map[string]string{"imagetrust_vo": "atlas", "os_distro": "debian", "numeric": "5"}
	if !reflect.DeepEqual(im.Properties, want) {
		t.Fatalf("properties %v, want %v", im.Properties, want)
	}
	if im.CreatedAt.IsZero() || im.UpdatedAt.Before(im.CreatedAt) {
		t.Fatalf("times %v %v", im.CreatedAt, im.UpdatedAt)
	}
}
