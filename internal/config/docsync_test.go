package config

import (
	"encoding"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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
	t.Run("defaults", func(t *testing.T) { checkDocumentedDefaults(t, read("../../docs/operator-guide.md"), keys) })
}

// defaultsElsewhere are the settings whose documented default the config
// package does not set (it leaves them zero or nil), with where it is
// set: their defaults are not read from the config package.
var defaultsElsewhere = map[string]string{
	"sync.aliases":                "nil: on (glancesync.Syncer.aliasesOn)",
	"proxy.fast_passthrough":      "nil: on (cmd/imagetrust proxy)",
	"sync.source.max_bundles":     "glancesync.DefaultMaxBundles",
	"sync.source.max_entries":     "glancesync.DefaultMaxEntries",
	"sync.source.listing_timeout": "glancesync's listing defaults",
	"vo.NAME.creators":            "a list: no default to read",
	"vo.NAME.approvers":           "a list: no default to read",
	"vo.NAME.listing_signers":     "nil: the VO's approvers (validator.Trust.VerifyListing)",
	"vo.NAME.image_properties":    "nil: sync.image_properties (ImagePropertyPatterns)",
	"sync.image_properties":       "nil: DefaultImageProperties (ImagePropertyPatterns)",
	"sync.source.vos":             "required",
	"proxy.listen":                "required",
	"proxy.upstream":              "required",
	"sync.source.path":            "one of path and url is required",
	"sync.source.url":             "one of path and url is required",
	"crl.source.url":              "one of url, file and dir is required",
	"crl.source.file":             "one of url, file and dir is required",
	"crl.source.dir":              "one of url, file and dir is required",
}

var parenNote = regexp.MustCompile(`\s*\([^)]*\)`)

// checkDocumentedDefaults checks the operator guide's "Settings reference"
// table: each default a row gives for a key (the defaults, separated by
// commas, in the keys' order, or one for all) is the value the config package gives the
// setting when it is left out (Config.defaults on an empty configuration
// with one VO and one source of each kind), unless the setting's default is
// set elsewhere (defaultsElsewhere); and every setting has a row. Before,
// the table's defaults were written from the code by hand, and a default
// changed in the code left the table wrong.
func checkDocumentedDefaults(t *testing.T, guide string, keys []string) {
	_, table, ok := strings.Cut(guide, "\n## Settings reference\n")
	if !ok {
		t.Fatal("docs/operator-guide.md has no \"## Settings reference\"")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	c := Config{VO: map[string]VO{"x": {}}, Sync: Sync{Sources: []Source{{}}}, CRL: CRL{Sources: []CRLSource{{}}}}
	c.defaults()
	rows := map[string]bool{}
	checked := 0
	for _, line := range strings.Split(table, "\n") {
		cols := strings.Split(line, "|")
		if len(cols) < 4 || !strings.HasPrefix(strings.TrimSpace(cols[1]), "`") {
			continue
		}
		var rowKeys []string
		for _, m := range codeSpan.FindAllStringSubmatch(cols[1], -1) {
			rowKeys = append(rowKeys, m[1])
			rows[m[1]] = true
		}
		defs := strings.Split(parenNote.ReplaceAllString(cols[2], ""), ",")
		for i, k := range rowKeys {
			if _, ok := defaultsElsewhere[k]; ok {
				continue
			}
			if len(defs) != len(rowKeys) && len(defs) != 1 {
				t.Errorf("settings reference: the row of %s gives %d defaults for %d keys: %q", strings.Join(rowKeys, ", "), len(defs), len(rowKeys), cols[2])
				break
			}
			doc := strings.Trim(strings.TrimSpace(defs[min(i, len(defs)-1)]), "`")
			v, err := fieldOf(reflect.ValueOf(c), k)
			if err != "" {
				t.Errorf("settings reference: %s: %s", k, err)
				continue
			}
			if msg := sameDefault(v, doc); msg != "" {
				t.Errorf("settings reference: %s: documented default %q, the code's %s", k, doc, msg)
			}
			checked++
		}
	}
	for _, k := range keys {
		if !rows[k] {
			t.Errorf("settings reference: no row for %s", k)
		}
	}
	t.Logf("%d documented defaults checked", checked)
	if checked < 40 {
		t.Errorf("only %d defaults checked: the table's format changed?", checked)
	}
}

// fieldOf is the field of v (a Config) at the dotted path k, through the
// first element of a slice of tables and any value of a map of them (NAME).
func fieldOf(v reflect.Value, k string) (reflect.Value, string) {
	for _, part := range strings.Split(k, ".") {
		switch v.Kind() {
		case reflect.Slice:
			v = v.Index(0)
		case reflect.Map:
			v = v.MapIndex(v.MapKeys()[0])
			if part == "NAME" {
				continue
			}
		}
		if v.Kind() != reflect.Struct {
			return v, "not a table before " + part
		}
		found := false
		for i := range v.NumField() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("toml"), ",")
			if name == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return v, "no setting " + part
		}
	}
	return v, ""
}

// sameDefault compares a field's value with a documented default ("15m",
// "2", "\"auto\"", "/var/lib/x", "[]", "{}", "false", "\"\""), or says
// why not.
func sameDefault(v reflect.Value, doc string) string {
	if d, ok := v.Interface().(Duration); ok {
		want, err := time.ParseDuration(doc)
		if err != nil {
			return "is a duration, " + d.String()
		}
		if d.Duration != want {
			return "is " + d.String()
		}
		return ""
	}
	switch v.Kind() {
	case reflect.String:
		if s, err := strconv.Unquote(doc); err == nil {
			doc = s
		}
		if v.String() != doc {
			return strconv.Quote(v.String())
		}
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(doc, 10, 64)
		if err != nil || n != v.Int() {
			return "is " + strconv.FormatInt(v.Int(), 10)
		}
	case reflect.Bool:
		if strconv.FormatBool(v.Bool()) != doc {
			return "is " + strconv.FormatBool(v.Bool())
		}
	case reflect.Slice:
		if doc != "[]" || v.Len() != 0 {
			return "is a list of " + strconv.Itoa(v.Len())
		}
	case reflect.Map:
		if doc != "{}" || v.Len() != 0 {
			return "is a map of " + strconv.Itoa(v.Len())
		}
	default:
		return "is a " + v.Kind().String() + ", not compared"
	}
	return ""
}
