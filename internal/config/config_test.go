package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/fsutil"
)

func TestParse(t *testing.T) {
	c, err := Parse([]byte(`
[trust]
ca_files = ["people.pem"]
[vo.atlas]
creators = ["/CN=a"]
[sync]
interval = "5m"
[[sync.source]]
path = "/cvmfs/x"
vos = ["atlas"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sync.Interval.Duration != 5*time.Minute || c.Sync.Retire != "hide" || c.CRL.Stale != "refuse" ||
		c.Proxy.CacheTTL.Duration != 30*time.Second || c.Proxy.TokenCacheTTL.Duration != 5*time.Minute || c.VO["atlas"].Visibility != "shared" ||
		c.Sync.LockFile != "/var/lib/imagetrust/sync.lock" || c.Sync.NovaDownGrace.Duration != 24*time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
}

// TestLogLevels: the spellings the logger takes load (any case, "warning").
func TestLogLevels(t *testing.T) {
	for _, l := range []string{"debug", "INFO", "warn", "Warning", "error"} {
		if _, err := Parse([]byte("[log]\nlevel = \"" + l + "\"")); err != nil {
			t.Errorf("level %q: %v", l, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	cases := map[string]string{
		"fail unknown key":                     "[trust]\ncafiles = []",
		"fail unknown section":                 "[trsut]\nx = 1",
		"fail bad duration":                    "[sync]\ninterval = \"soon\"",
		"fail negative duration":               "[sync]\ninterval = \"-1m\"",
		"fail bad retire":                      "[sync]\nretire = \"burn\"",
		"fail bad ingest":                      "[sync]\ningest = \"copy\"",
		"fail bad stale":                       "[crl]\nstale = \"ignore\"",
		"fail source with path and url":        "[vo.a]\n[[sync.source]]\npath = \"x\"\nurl = \"https://y\"\nvos = [\"a\"]",
		"fail source without vos":              "[[sync.source]]\npath = \"x\"",
		"fail source url with password":        "[vo.a]\n[[sync.source]]\nurl = \"https://user:secret@y/index.json\"\nvos = [\"a\"]",
		"fail source url with user":            "[vo.a]\n[[sync.source]]\nurl = \"https://user@y/index.json\"\nvos = [\"a\"]",
		"fail source for an unknown VO":        "[[sync.source]]\npath = \"x\"\nvos = [\"nope\"]",
		"fail crl source with two kinds":       "[[crl.source]]\nfile = \"a\"\nurl = \"https://b\"",
		"fail crl source url with password":    "[[crl.source]]\nurl = \"http://user:secret@crl.example/ca.crl\"",
		"fail bad visibility":                  "[vo.a]\nvisibility = \"everyone\"",
		"fail bad listing":                     "[vo.a]\nlisting = \"sources\"",
		"fail not TOML":                        "this is = not [toml",
		"fail wrong type":                      "[sync]\nparallel = \"two\"",
		"fail volume policy":                   "[proxy]\nvolume_policy = \"maybe\"",
		"fail token validation":                "[proxy]\ntoken_validation = \"admin\"",
		"fail token validation case":           "[proxy]\ntoken_validation = \"Self\"",
		"fail log format":                      "[log]\nformat = \"xml\"",
		"fail log level":                       "[log]\nlevel = \"warnig\"",
		"fail negative parallel":               "[sync]\nparallel = -1",
		"fail negative retries":                "[sync]\nretries = -3",
		"fail negative transfer rate":          "[sync]\ntransfer_min_rate_kib = -1",
		"fail negative transfer resumes":       "[sync]\ntransfer_max_resumes = -1",
		"fail negative max body":               "[proxy]\nmax_body = -1",
		"fail sync interval 1ms":               "[sync]\ninterval = \"1ms\"",
		"fail sync interval a century":         "[sync]\ninterval = \"876000h\"",
		"fail sync interval past a week":       "[sync]\ninterval = \"169h\"",
		"fail sync jitter past a week":         "[sync]\njitter = \"169h\"",
		"fail crl interval 999ms":              "[crl]\ninterval = \"999ms\"",
		"fail crl interval a century":          "[crl]\ninterval = \"876000h\"",
		"fail crl jitter a century":            "[crl]\njitter = \"876000h\"",
		"fail crl grace past 30 days":          "[crl]\ngrace = \"721h\"",
		"fail crl clock skew past an hour":     "[crl]\nclock_skew = \"61m\"",
		"fail no nextUpdate max age 30d+":      "[crl]\nno_next_update_max_age = \"721h\"",
		"fail nova down grace past 30 days":    "[sync]\nnova_down_grace = \"721h\"",
		"fail cache ttl past an hour":          "[proxy]\ncache_ttl = \"61m\"",
		"fail token cache ttl past an hour":    "[proxy]\ntoken_cache_ttl = \"61m\"",
		"fail token cache ttl negative":        "[proxy]\ntoken_cache_ttl = \"-1s\"",
		"fail max body past 16 MiB":            "[proxy]\nmax_body = 16777217",
		"fail negative max gated requests":     "[proxy]\nmax_gated_requests = -1",
		"fail max gated requests past 4096":    "[proxy]\nmax_gated_requests = 4097",
		"fail negative max gated per project":  "[proxy]\nmax_gated_per_project = -1",
		"fail max gated per project past 4096": "[proxy]\nmax_gated_per_project = 4097",
		"fail gated queue timeout past 30s":    "[proxy]\ngated_queue_timeout = \"31s\"",
		"fail gated queue timeout negative":    "[proxy]\ngated_queue_timeout = \"-1s\"",
		"fail negative max connections":        "[proxy]\nmax_connections = -1",
		"fail max connections past 1Mi":        "[proxy]\nmax_connections = 1048577",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(in)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestTokenCacheTTL: proxy.token_cache_ttl, how long the gate reuses a
// user token's validation (a token revoked in Keystone passes that long),
// is read from the file, 5m when left out or 0 (as every duration), and
// bounded to 1h (TestBounds, TestParseRefuses).
func TestTokenCacheTTL(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     time.Duration
	}{
		{"ok default", "", 5 * time.Minute},
		{"ok 0s is the default", "[proxy]\ntoken_cache_ttl = \"0s\"", 5 * time.Minute},
		{"ok 1s", "[proxy]\ntoken_cache_ttl = \"1s\"", time.Second},
		{"ok 90s", "[proxy]\ntoken_cache_ttl = \"90s\"", 90 * time.Second},
		{"ok an hour", "[proxy]\ntoken_cache_ttl = \"1h\"", time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.in))
			if err != nil || cfg.Proxy.TokenCacheTTL.Duration != c.want {
				t.Fatalf("%v, %v; want %s", cfg, err, c.want)
			}
		})
	}
}

// TestOverloadLimits: proxy.max_gated_requests (0, the default: the proxy
// derives it from max_body), proxy.max_gated_per_project (0, the default:
// the proxy derives it from max_gated_requests), proxy.gated_queue_timeout (2s by default, as
// 0) and proxy.max_connections (4096 by default) are read from the file
// and bounded (TestParseRefuses).
func TestOverloadLimits(t *testing.T) {
	for _, c := range []struct {
		name, in     string
		gated, conns int
		timeout      time.Duration
	}{
		{"ok defaults", "", 0, 4096, 2 * time.Second},
		{"ok zeros are the defaults", "[proxy]\nmax_gated_requests = 0\nmax_connections = 0\ngated_queue_timeout = \"0s\"", 0, 4096, 2 * time.Second},
		{"ok set", "[proxy]\nmax_gated_requests = 8\nmax_connections = 100\ngated_queue_timeout = \"500ms\"\nmax_gated_per_project = 3", 8, 100, 500 * time.Millisecond},
		{"ok bounds", "[proxy]\nmax_gated_requests = 4096\nmax_connections = 1048576\ngated_queue_timeout = \"30s\"", 4096, 1 << 20, 30 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 3}[c.name == "ok set"]; cfg.Proxy.MaxGatedPerProject != want {
				t.Errorf("max_gated_per_project %d, want %d", cfg.Proxy.MaxGatedPerProject, want)
			}
			if p := cfg.Proxy; p.MaxGatedRequests != c.gated || p.MaxConnections != c.conns || p.GatedQueueTimeout.Duration != c.timeout {
				t.Errorf("max_gated_requests %d, max_connections %d, gated_queue_timeout %s; want %d, %d, %s",
					p.MaxGatedRequests, p.MaxConnections, p.GatedQueueTimeout.Duration, c.gated, c.conns, c.timeout)
			}
		})
	}
}

func TestVolumePolicy(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"ok default refuse", "", VolumeRefuse},
		{"ok refuse", "[proxy]\nvolume_policy = \"refuse\"", VolumeRefuse},
		{"ok allow", "[proxy]\nvolume_policy = \"allow\"", VolumeAllow},
		{"ok check-image", "[proxy]\nvolume_policy = \"check-image\"", VolumeCheckImage},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.in))
			if err != nil || cfg.Proxy.VolumePolicy != c.want {
				t.Fatalf("volume_policy %v, %v; want %s", cfg, err, c.want)
			}
		})
	}
}

// TestTokenValidation: proxy.token_validation is self unless set to
// service; other values are refused (TestParseRefuses).
func TestTokenValidation(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"ok default self", "", TokenValidationSelf},
		{"ok empty is the default", "[proxy]\ntoken_validation = \"\"", TokenValidationSelf},
		{"ok self", "[proxy]\ntoken_validation = \"self\"", TokenValidationSelf},
		{"ok service", "[proxy]\ntoken_validation = \"service\"", TokenValidationService},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.in))
			if err != nil || cfg.Proxy.TokenValidation != c.want {
				t.Fatalf("token_validation %v, %v; want %s", cfg, err, c.want)
			}
		})
	}
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "imagetrust.toml")
	if err := os.WriteFile(p, []byte("[trust]\nca_files = [\"pki/ca.pem\", \"/abs/ca.pem\"]\n[crl]\ncache_dir = \"cache\"\n[sync]\nlock_file = \"sync.lock\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Trust.CAFiles[0] != filepath.Join(dir, "pki/ca.pem") || c.Trust.CAFiles[1] != "/abs/ca.pem" || c.CRL.CacheDir != filepath.Join(dir, "cache") ||
		c.Sync.LockFile != filepath.Join(dir, "sync.lock") {
		t.Fatalf("paths: %v %s %s", c.Trust.CAFiles, c.CRL.CacheDir, c.Sync.LockFile)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestSampleConfig: etc/imagetrust.toml, the commented sample, loads.
func TestSampleConfig(t *testing.T) {
	if _, err := Load("../../etc/imagetrust.toml"); err != nil {
		t.Fatal(err)
	}
}

// TestProjectWarnings: a VO's projects that are not Keystone project ids
// (a name, a hyphenated uuid) are warned about; ids in either case are not.
func TestProjectWarnings(t *testing.T) {
	c, err := Parse([]byte(`
[vo.atlas]
visibility = "shared"
projects = ["4f1e7a8c9b2d4e6f8a0b1c2d3e4f5a6b", "4F1E7A8C9B2D4E6F8A0B1C2D3E4F5A6B", "atlas-users"]
[vo.cms]
visibility = "shared"
projects = ["4f1e7a8c-9b2d-4e6f-8a0b-1c2d3e4f5a6b"]
`))
	if err != nil {
		t.Fatal(err)
	}
	w := c.ProjectWarnings()
	if len(w) != 2 || !strings.Contains(w[0], `vo.atlas.projects: "atlas-users"`) || !strings.Contains(w[1], "vo.cms.projects") {
		t.Fatalf("warnings %q", w)
	}
	for _, s := range []string{"", "4f1e7a8c9b2d4e6f8a0b1c2d3e4f5a6", "\x104f1e7a8c9b2d4e6f8a0b1c2d3e4f5a6", "4f1e7a8c9b2d4e6f8a0b1c2d3e4f5a6g"} {
		if IsProjectID(s) {
			t.Errorf("IsProjectID(%q)", s)
		}
	}
}

// TestErrorsNameTheLine: a key the configuration refuses (unknown, or a
// value out of its range) is named with the line it is on, so that an
// operator finds the typo in a long file.
func TestErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"fail unknown key in a table", "[trust]\nstrict = true\nca_file = [\"a\"]\n", "line 3: trust.ca_file"},
		{"fail unknown key in the second table", "[trust]\n\n[sync]\n# comment\nintervall = \"5m\"\n", "line 5: sync.intervall"},
		{"fail unknown table names the table once", "[trust]\n[trsut]\nx = 1\n", "unknown keys: line 2: trsut"},
		{"fail unknown dotted key", "trust.crl_file = \"a\"\n", "line 1: trust.crl_file"},
		{"fail unknown key after a multi-line array", "[trust]\nca_files = [\n  \"a\", # [x]\n  \"b\",\n]\ncrl_file = \"c\"\n", "line 6: trust.crl_file"},
		{"fail unknown key in the second source", "[vo.a]\n[[sync.source]]\npath = \"x\"\nvos = [\"a\"]\n[[sync.source]]\npath = \"y\"\nvo = [\"a\"]\n", "line 7: sync.source.vo"},
		{"fail unknown quoted key", "[proxy]\n\"tls_ca\" = \"x\"\n", "line 2: proxy.tls_ca"},
		{"fail two unknown keys in file order", "[sync]\nintervall = \"5m\"\n[trust]\nca_file = \"a\"\n", "unknown keys: line 2: sync.intervall; line 4: trust.ca_file"},
		{"fail bad value", "[sync]\nparallel = 2\nretire = \"burn\"\n", "line 3: sync.retire = \"burn\""},
		{"fail bad value in a table header", "[crl]\n\n[crl]\n", "line 3"},
		{"fail bad source", "[vo.a]\n[[sync.source]]\npath = \"x\"\nvos = [\"a\"]\n\n[[sync.source]]\npath = \"y\"\n", "line 6: sync.source[1]: vos is empty"},
		{"fail bad visibility", "[vo.a]\nvisibility = \"everyone\"\n", "line 2: vo.a.visibility"},
		{"fail negative count", "[proxy]\nmax_body = -1\n", "line 2: proxy.max_body = -1"},
		{"fail empty ca_files entry", "[trust]\nca_files = [\"/etc/a.pem\", \"\"]\n", "line 2: trust.ca_files: entry 2 is empty"},
		{"fail empty crl_files entry", "[trust]\n\ncrl_files = [\"\"]\n", "line 3: trust.crl_files: entry 1 is empty"},
		{"fail empty registrar_ca_files entry", "[trust]\nregistrar_ca_files = [\"\"]\n", "trust.registrar_ca_files: entry 1 is empty"},
		{"fail empty ca_dirs entry", "[trust]\nca_dirs = [\" \"]\n", "trust.ca_dirs: entry 1 is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestLoadRefusesWritableByOthers: a configuration file that every user
// of the host may write (or replace, in a directory every user may write
// without the sticky bit) decides what the site trusts for anyone: it is
// refused, naming the file and its mode.
func TestLoadRefusesWritableByOthers(t *testing.T) {
	// no group is a user private group here (fsutil's TestUserPrivateGroup
	// has that rule): group-writable cases are refused whatever the
	// machine's groups
	saved := fsutil.AccountFiles
	t.Cleanup(func() { fsutil.AccountFiles = saved })
	fsutil.AccountFiles.Passwd, fsutil.AccountFiles.Group = "/nonexistent/passwd", "/nonexistent/group"
	for _, c := range []struct {
		name          string
		file, dir     os.FileMode
		link          bool // the path is a link in dir to the file elsewhere
		wantErrSubstr string
	}{
		{name: "ok 0640 in 0750", file: 0o640, dir: 0o750},
		{name: "ok 0644 in 0755", file: 0o644, dir: 0o755},
		{name: "ok 0640 in a sticky 1777 directory", file: 0o640, dir: 0o1777},
		{name: "fail group-writable 0660", file: 0o660, dir: 0o750, wantErrSubstr: "could change what this site trusts (install -m 0640 -o root -g imagetrust): writable by group "},
		{name: "fail in a group-writable directory", file: 0o640, dir: 0o770, wantErrSubstr: "is writable by group "},
		{name: "fail world-writable 0666", file: 0o666, dir: 0o755, wantErrSubstr: "writable by every user (mode 0666"},
		{name: "fail world-writable 0602", file: 0o602, dir: 0o755, wantErrSubstr: "writable by every user (mode 0602"},
		{name: "fail in a world-writable directory", file: 0o640, dir: 0o777, wantErrSubstr: "writable by every user (mode 0777"},
		{name: "ok a link in a 0755 directory", file: 0o640, dir: 0o755, link: true},
		{name: "fail a link in a world-writable directory to a safe file", file: 0o640, dir: 0o777, link: true, wantErrSubstr: "writable by every user (mode 0777"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etc")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "imagetrust.toml")
			if err := os.WriteFile(p, []byte("[log]\nlevel = \"info\"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			chmod := func(p string, m os.FileMode) {
				if m&0o1000 != 0 {
					m = m&0o777 | os.ModeSticky
				}
				if err := os.Chmod(p, m); err != nil {
					t.Fatal(err)
				}
			}
			chmod(p, c.file)
			chmod(dir, c.dir)
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
			if c.link {
				// the path given is a link, in a directory of mode c.dir,
				// to the file in a safe directory
				safe := filepath.Join(t.TempDir(), "safe")
				if err := os.Mkdir(safe, 0o755); err != nil {
					t.Fatal(err)
				}
				q := filepath.Join(safe, "imagetrust.toml")
				if err := os.Rename(p, q); err != nil {
					t.Fatal(err)
				}
				chmod(dir, 0o700)
				if err := os.Symlink(q, p); err != nil {
					t.Fatal(err)
				}
				chmod(dir, c.dir)
			}
			_, err := Load(p)
			if c.wantErrSubstr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErrSubstr) {
				t.Fatalf("error %v, want %q", err, c.wantErrSubstr)
			}
		})
	}
}

// TestURLMayHoldCredentials: user information is found in every form a
// URL can carry it, including one without "//" that url.Parse reads as an
// opaque URL of scheme "user".
func TestURLMayHoldCredentials(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"https://crl.example.org/ca.crl", false},
		{"http://127.0.0.1:5000/v3", false},
		{"https://crl.example.org/a@b.crl", false},
		{"https://user:secret@crl.example.org/ca.crl", true},
		{"https://token@crl.example.org/ca.crl", true},
		{"user:secret@crl.example.org/ca.crl", true},
		{"https:user:secret@crl.example.org/ca.crl", true},
		{"https://crl.example.org/%zz", true}, // does not parse
	} {
		if got := URLMayHoldCredentials(tc.url); got != tc.want {
			t.Errorf("URLMayHoldCredentials(%q) = %v, want %v", tc.url, got, tc.want)
		}
	}
}

// TestBounds: the bounds themselves load; what is beyond them is refused
// naming the key and the bound (TestParseRefuses), and what loads but
// widens the time within which a revocation, a hold or a local flag takes
// effect gives a warning of its own section. The sample's values give none.
func TestBounds(t *testing.T) {
	for _, in := range []string{
		"[sync]\ninterval = \"1s\"\njitter = \"168h\"",
		"[sync]\ninterval = \"168h\"",
		"[crl]\ninterval = \"1s\"",
		"[crl]\ninterval = \"168h\"\njitter = \"168h\"\ngrace = \"720h\"",
		"[proxy]\ncache_ttl = \"1h\"\nmax_body = 16777216\ntoken_cache_ttl = \"1h\"",
	} {
		if _, err := Parse([]byte(in)); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
	_, err := Parse([]byte("[crl]\nstale = \"warn\"\ngrace = \"1000h\""))
	if err == nil || !strings.Contains(err.Error(), "line 3: crl.grace") || !strings.Contains(err.Error(), "at most 720h0m0s") {
		t.Errorf("grace of 1000h: %v, want line 3: crl.grace ... at most 720h0m0s", err)
	}
	c, err := Parse([]byte("[crl]\ninterval = \"25h\"\ngrace = \"169h\"\n[proxy]\ncache_ttl = \"6m\"\ntoken_cache_ttl = \"6m\""))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sections []string
		want     []string
	}{
		{nil, []string{"crl.interval", "crl.grace", "proxy.cache_ttl", "proxy.token_cache_ttl"}},
		{[]string{"crl"}, []string{"crl.interval", "crl.grace"}},
		{[]string{"proxy"}, []string{"proxy.cache_ttl", "proxy.token_cache_ttl"}},
		{[]string{"sync"}, nil},
	} {
		ws := c.Warnings(tc.sections...)
		if len(ws) != len(tc.want) {
			t.Errorf("Warnings(%v) = %q, want one for each of %v", tc.sections, ws, tc.want)
			continue
		}
		for i, k := range tc.want {
			if !strings.HasPrefix(ws[i], k+" = ") {
				t.Errorf("Warnings(%v)[%d] = %q, want it about %s", tc.sections, i, ws[i], k)
			}
		}
	}
	c, err = Parse([]byte("[crl]\ninterval = \"24h\"\ngrace = \"168h\"\n[proxy]\ncache_ttl = \"5m\"\ntoken_cache_ttl = \"5m\""))
	if err != nil {
		t.Fatal(err)
	}
	if ws := c.Warnings(); len(ws) != 0 {
		t.Errorf("at the warning bounds: %q", ws)
	}
	b, err := os.ReadFile("../../etc/imagetrust.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c, err = Parse(b); err != nil {
		t.Fatal(err)
	}
	if ws := c.Warnings(); len(ws) != 0 {
		t.Errorf("the sample: %q", ws)
	}
}

// TestSourceAllowPrivate: [[sync.source]] allow_private loads (false by
// default); a misspelling is still refused as an unknown key, a string as
// the wrong type.
func TestSourceAllowPrivate(t *testing.T) {
	c, err := Parse([]byte("[vo.a]\n[[sync.source]]\nurl = \"https://mirror.site.example/index.json\"\nvos = [\"a\"]\nallow_private = true\n[[sync.source]]\npath = \"/cvmfs/x\"\nvos = [\"a\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Sync.Sources[0].AllowPrivate || c.Sync.Sources[1].AllowPrivate {
		t.Fatalf("allow_private: %+v", c.Sync.Sources)
	}
	for in, want := range map[string]string{
		"allow_privat = true":     "line 5: sync.source.allow_privat",
		"allow_private = \"yes\"": "allow_private",
	} {
		_, err := Parse([]byte("[vo.a]\n[[sync.source]]\npath = \"x\"\nvos = [\"a\"]\n" + in + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %q", in, err, want)
		}
	}
}

// TestSourceListingLimits: [[sync.source]] max_bundles, max_entries and
// listing_timeout load (unset: 0, glancesync's defaults); negative values,
// and max_entries on an index source (it walks no tree), are refused.
func TestSourceListingLimits(t *testing.T) {
	c, err := Parse([]byte("[vo.a]\n[[sync.source]]\npath = \"/cvmfs/x\"\nvos = [\"a\"]\nmax_bundles = 50000\nmax_entries = 5000000\nlisting_timeout = \"2h\"\n[[sync.source]]\nurl = \"https://x.example/index.json\"\nvos = [\"a\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Sync.Sources[0]; s.MaxBundles != 50000 || s.MaxEntries != 5000000 || s.ListingTimeout.Duration != 2*time.Hour {
		t.Fatalf("limits: %+v", s)
	}
	if s := c.Sync.Sources[1]; s.MaxBundles != 0 || s.MaxEntries != 0 || s.ListingTimeout.Duration != 0 {
		t.Fatalf("defaults: %+v", s)
	}
	for in, want := range map[string]string{
		"path = \"x\"\nmax_bundles = -1":                       "must not be negative",
		"path = \"x\"\nlisting_timeout = \"-1m\"":              "negative",
		"url = \"https://x.example/i.json\"\nmax_entries = 10": "sync.source[0].max_entries: only a directory source",
		"path = \"x\"\nmax_entrys = 10":                        "sync.source.max_entrys",
	} {
		_, err := Parse([]byte("[vo.a]\n[[sync.source]]\nvos = [\"a\"]\n" + in + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %q", in, err, want)
		}
	}
}
