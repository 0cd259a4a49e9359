package config

import (
	"encoding"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// structKeys walks t (a struct of `toml` fields) and returns the dotted
// path of every setting: an array of tables' fields under its name
// ("sync.source.url"), a map of tables' under NAME ("vo.NAME.creators"),
// and a map of plain values (contextualise.vars) as one key.
func structKeys(prefix string, t reflect.Type) []string {
	var out []string
	textType := reflect.TypeFor[encoding.TextUnmarshaler]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case reflect.PointerTo(ft).Implements(textType):
			out = append(out, path)
		case ft.Kind() == reflect.Struct:
			out = append(out, structKeys(path, ft)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, structKeys(path, ft.Elem())...)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			out = append(out, structKeys(path+".NAME", ft.Elem())...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// normalizeKey writes the NAME of a [vo.NAME] table as NAME.
func normalizeKey(k string) string {
	if rest, ok := strings.CutPrefix(k, "vo."); ok {
		if _, tail, ok := strings.Cut(rest, "."); ok {
			return "vo.NAME." + tail
		}
		return "vo.NAME"
	}
	return k
}

var (
	sampleHeader = regexp.MustCompile(`^\[\[?([a-z0-9_.]+)\]\]?\s*(#.*)?$`)
	// a key line, set or commented out ("# key = value"; prose in a
	// comment that starts like one names a key all the same)
	sampleKey = regexp.MustCompile(`^(?:#\s*)?([a-z][a-z0-9_]*)\s*=\s`)
)

// sampleKeys reads etc/imagetrust.toml's keys, set or commented out
// ("# max_bundles = 10000"), each with the dotted path of the table it is
// in; the keys of [contextualise.vars] are variables, not settings.
func sampleKeys(t *testing.T, doc string) map[string]int {
	t.Helper()
	out := map[string]int{}
	table := ""
	for i, line := range strings.Split(doc, "\n") {
		s := strings.TrimSpace(line)
		if m := sampleHeader.FindStringSubmatch(s); m != nil {
			table = normalizeKey(m[1])
			continue
		}
		m := sampleKey.FindStringSubmatch(s)
		if m == nil || table == "" || table == "contextualise.vars" {
			continue
		}
		k := table + "." + m[1]
		if _, ok := out[k]; !ok {
			out[k] = i + 1
		}
	}
	return out
}

var codeSpan = regexp.MustCompile("`([^`\n]+)`")

// docKeys reads the settings a Markdown document names in code spans, by
// their dotted path (`sync.interval`, `vo.NAME.projects`) or as in TOML
// (`[proxy] tls_cert`, `[[sync.source]] url`), with or without a value
// (`sync.retire = "delete"`).
func docKeys(doc string) map[string]bool {
	out := map[string]bool{}
	for _, m := range codeSpan.FindAllStringSubmatch(doc, -1) {
		s := strings.TrimSpace(m[1])
		s, _, _ = strings.Cut(s, " =")
		if strings.HasPrefix(s, "[") {
			end := strings.LastIndex(s, "]")
			table := strings.Trim(s[:end+1], "[]")
			key := strings.TrimSpace(s[end+1:])
			if key == "" {
				continue
			}
			s = table + "." + key
		}
		out[normalizeKey(s)] = true
	}
	return out
}

// TestConfigKeysDocumented checks that every setting of the Config structs
// is shown in the sample etc/imagetrust.toml (set, or as a commented-out
// "# key = value" line in its table) and named by its full path in
// docs/operator-guide.md or docs/glancesync.md, and that every key the
// sample shows is a setting: a key added to the code, or renamed, without
// its documentation fails here.
func TestConfigKeysDocumented(t *testing.T) {
	keys := structKeys("", reflect.TypeFor[Config]())
	if !slices.Contains(keys, "sync.source.allow_private") || !slices.Contains(keys, "vo.NAME.creators") || !slices.Contains(keys, "contextualise.vars") {
		t.Fatalf("the walk of Config misses keys: %v", keys)
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sample := sampleKeys(t, read("../../etc/imagetrust.toml"))
	documented := docKeys(read("../../docs/operator-guide.md"))
	for k := range docKeys(read("../../docs/glancesync.md")) {
		documented[k] = true
	}
	for _, k := range keys {
		// a map of plain values: its table's header is the sample's key
		if _, ok := sample[k]; !ok && !strings.Contains(read("../../etc/imagetrust.toml"), "["+k+"]") {
			t.Errorf("etc/imagetrust.toml does not show %s (as a key, or a commented-out `# %s = ...` line in its table)", k, k[strings.LastIndex(k, ".")+1:])
		}
		if !documented[k] {
			t.Errorf("docs/operator-guide.md and docs/glancesync.md name %s nowhere (as `%s` or `[table] key`)", k, k)
		}
	}
	for k, line := range sample {
		if !slices.Contains(keys, k) {
			t.Errorf("etc/imagetrust.toml:%d shows %s, which is no setting", line, k)
		}
	}
}
