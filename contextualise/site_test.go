package contextualise

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// writeSite makes a site directory from relative path -> content.
func writeSite(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadSite(t *testing.T) {
	cases := []struct {
		name    string
		files   map[string]string
		wantErr string // substring; "" for success
	}{
		{"ok empty", map[string]string{"README.md": "docs"}, ""},
		{"ok all vo tag", map[string]string{
			"all/a.yaml":       "#cloud-config\nruncmd: [a]\n",
			"vo/atlas/b.yml":   "#cloud-config\n",
			"tag/atlas/t/c.sh": "#!/bin/sh\necho {{ tag }}\n",
			"all/.swp":         "ignored",
		}, ""},
		{"ok unquoted template", map[string]string{"all/a.cfg": "#cloud-config\nhostname: {{ server_name }}\npath: /etc/{{vo}}.conf\n"}, ""},
		{"fail unknown file", map[string]string{"all/notes.txt": "hello"}, "all/notes.txt: neither a cloud-config fragment"},
		{"fail yaml without header", map[string]string{"all/a.yaml": "runcmd: [a]\n"}, "must start with a #cloud-config line"},
		{"fail bad yaml", map[string]string{"all/a.yaml": "#cloud-config\nruncmd: [a\n"}, "all/a.yaml: YAML"},
		{"fail not a mapping", map[string]string{"all/a.yaml": "#cloud-config\n- a\n"}, "must be a mapping"},
		{"fail unknown variable", map[string]string{"all/a.yaml": "#cloud-config\nx: '{{ hostname }}'\n"}, `unknown template variable "hostname"`},
		{"fail unknown variable in script", map[string]string{"vo/x/a.sh": "#!/bin/sh\necho {{ nope }}\n"}, `vo/x/a.sh: line 2: unknown template variable "nope"`},
		{"fail stray braces", map[string]string{"all/a.sh": "#!/bin/sh\necho {{ tag | upper }}\n"}, "is not a template reference"},
		{"fail template in key", map[string]string{"all/a.yaml": "#cloud-config\n'{{ vo }}': 1\n"}, "not in keys"},
		{"fail merge_how", map[string]string{"all/a.yaml": "#cloud-config\nmerge_how: 'dict(replace)'\n"}, "merge_how is not allowed"},
		{"fail anchors", map[string]string{"all/a.yaml": "#cloud-config\na: &x [1]\nb: *x\n"}, "anchors and aliases"},
		{"fail duplicate key", map[string]string{"all/a.yaml": "#cloud-config\na: 1\na: 2\n"}, `duplicate key "a"`},
		{"fail unknown top directory", map[string]string{"vos/atlas/a.yaml": "#cloud-config\n"}, "unexpected directory"},
		{"fail file in vo", map[string]string{"vo/a.yaml": "#cloud-config\n"}, "want only directories"},
		{"fail nested directory", map[string]string{"all/sub/a.yaml": "#cloud-config\n"}, "unexpected directory"},
		{"fail two documents", map[string]string{"all/a.yaml": "#cloud-config\na: 1\n---\nb: 2\n"}, "exactly one document"},
		{"ok comments only", map[string]string{"all/a.yaml": "#cloud-config\n# nothing yet\n"}, ""},
		{"fail tag cloud-init does not take", map[string]string{"all/a.yaml": "#cloud-config\nruncmd: [!foo x]\n"}, "YAML tag !foo is not one cloud-init's YAML loader takes"},
		{"fail python tag", map[string]string{"all/a.yaml": "#cloud-config\na: !!python/name:os.system x\n"}, "YAML tag !!python/name:os.system"},
		{"fail plain equals sign", map[string]string{"all/a.yaml": "#cloud-config\nbootcmd:\n  - =\n"}, "line 3: a plain = is a YAML 1.1 type"},
		{"fail plain merge value", map[string]string{"all/a.yaml": "#cloud-config\na: <<\n"}, "a plain << is a YAML 1.1 type"},
		{"ok safe tags and quoted = and <<", map[string]string{"all/a.yaml": "#cloud-config\na: !!str 1\nb: !!binary aGk=\nc: !!set {x}\nd: ['=', \"<<\", !!str =]\ne: !<tag:yaml.org,2002:int> 3\n=: key\n"}, ""},
		{"fail reserved text", map[string]string{"all/a.yaml": "#cloud-config\na: __imagetrust_var_0__\n"}, "is reserved"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadSite(writeSite(t, c.files))
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadSite: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("LoadSite error = %v, want one containing %q", err, c.wantErr)
			}
		})
	}
	t.Run("fail missing directory", func(t *testing.T) {
		if _, err := LoadSite(filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Fatal("LoadSite of a missing directory succeeded")
		}
	})
}

func TestShippedExampleSite(t *testing.T) {
	s, err := LoadSite("../etc/contextualise")
	if err != nil {
		t.Fatalf("etc/contextualise: %v", err)
	}
	v := Vars{ImageUUID: "5f1d2a3e-8c4b-4e6f-9a7d-0b1c2d3e4f50", VO: "atlas", Tag: "worker-el9", SiteName: "example", ProjectID: "p", ServerName: "s",
		Extra: map[string]string{"squid_proxy": "http://squid.example.org:3128"}}
	user := base64.StdEncoding.EncodeToString([]byte("#cloud-config\npackages: [htop]\n"))
	fixedBoundary(t)
	out, err := s.Merge(user, true, v)
	if err != nil {
		t.Fatalf("Merge with the shipped example site: %v", err)
	}
	requireCloudInit(t)
	r := parseWithCloudInit(t, out)
	if !hasPart(r, "text/x-shellscript", "imagetrust-"+testNameToken+"-01-50-motd.sh") {
		t.Errorf("cloud-init lost the example script; parts: %+v", r.Parts)
	}
	pk, _ := r.CloudConfig["packages"].([]any)
	rc, _ := r.CloudConfig["runcmd"].([]any)
	wf, _ := r.CloudConfig["write_files"].([]any)
	if len(pk) != 2 || pk[0] != "htop" || pk[1] != "cvmfs" || len(rc) != 3 || len(wf) != 2 {
		t.Errorf("cloud-init merged the example into packages %v, runcmd %v, %d write_files; want [htop cvmfs], 3 commands, 2 files", pk, rc, len(wf))
	}
}

func TestMergeUnchanged(t *testing.T) {
	s, err := LoadSite(writeSite(t, map[string]string{"vo/atlas/a.yaml": "#cloud-config\nruncmd: [a]\n", "vo/cms/empty.yaml": "#cloud-config\n"}))
	if err != nil {
		t.Fatal(err)
	}
	ud := base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\n"))
	cases := []struct {
		name string
		b64  string
		has  bool
		vo   string
		want string
	}{
		{"ok other vo keeps user data", ud, true, "lhcb", ud},
		{"ok other vo without user data", "", false, "lhcb", ""},
		{"ok empty fragments only", ud, true, "cms", ud},
		{"ok invalid base64 untouched when nothing applies", "!!", true, "lhcb", "!!"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.Merge(c.b64, c.has, Vars{VO: c.vo})
			if err != nil || got != c.want {
				t.Fatalf("Merge = %q, %v; want %q", got, err, c.want)
			}
		})
	}
	if !s.Applies("atlas", "") || s.Applies("lhcb", "x") {
		t.Error("Applies disagrees with the site's fragments")
	}
}

func TestMergeErrors(t *testing.T) {
	fixedBoundary(t)
	s := loadTestSite(t)
	bomb := gz(t, bytes.Repeat([]byte{'a'}, maxDecompressed+1))
	cases := []struct {
		name     string
		b64      string
		vars     func(*Vars)
		userErr  bool // want *UserDataError
		contains string
	}{
		{"fail invalid base64", "not base64!", nil, true, "not valid base64"},
		{"fail mime not utf-8", base64.StdEncoding.EncodeToString([]byte("MIME-Version: 1.0\n\n\xff")), nil, true, "must be UTF-8"},
		{"fail gzip bomb", base64.StdEncoding.EncodeToString(bomb), nil, true, "expands to more than"},
		{"fail server name with shell characters", "", func(v *Vars) { v.ServerName = "x; rm -rf /" }, true, "server name: this site's boot context uses it"},
		{"fail server name missing", "", func(v *Vars) { v.ServerName = "" }, true, "server name: this site's boot context uses it, and the request does not give one"},
		{"fail server name with leading dash", "", func(v *Vars) { v.ServerName = "-rf" }, true, "server_name"},
		{"fail server name dot-dot", "", func(v *Vars) { v.ServerName = ".." }, true, "server_name"},
		{"fail server name dot", "", func(v *Vars) { v.ServerName = "." }, true, "server_name"},
		{"fail server name with a path", "", func(v *Vars) { v.ServerName = "../../etc/cron.d/x" }, true, "server_name"},
		{"fail server name with a slash", "", func(v *Vars) { v.ServerName = "a/b" }, true, "may not be . or .."},
		{"fail server name with an assignment", "", func(v *Vars) { v.ServerName = "a=b" }, true, "only letters, digits and . _ -"},
		{"fail server name remote-like", "", func(v *Vars) { v.ServerName = "root@host:x" }, true, "server_name"},
		{"fail site variable missing", "", func(v *Vars) { delete(v.Extra, "queue") }, false, "var.queue"},
		{"fail site value unsafe", "", func(v *Vars) { v.SiteName = "a b" }, false, "site_name"},
		{"fail site value dot-dot segment", "", func(v *Vars) { v.Extra["queue"] = "http://squid.example.org:3128/../x" }, false, "var.queue"},
		{"fail site value dot-dot", "", func(v *Vars) { v.SiteName = ".." }, false, "path segment"},
		{"fail catalogue value dot segment", "", func(v *Vars) { v.ImageUUID = "./x" }, false, "template variable image_uuid"},
		{"fail keystone value dot-dot", "", func(v *Vars) { v.ProjectID = "a/.." }, false, "project_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := testVars()
			v.Extra = map[string]string{"queue": "q"}
			if c.vars != nil {
				c.vars(&v)
			}
			_, err := s.Merge(c.b64, c.b64 != "", v)
			var ude *UserDataError
			if err == nil || errors.As(err, &ude) != c.userErr || !strings.Contains(err.Error(), c.contains) {
				t.Fatalf("Merge error = %v (UserDataError %v), want one containing %q, UserDataError %v", err, errors.As(err, &ude), c.contains, c.userErr)
			}
		})
	}
}

// TestMergeSiteContextTooLarge: a site context over Nova's limit on its own
// is the site's fault (an ordinary error, answered 500), not the user's; a
// merge over the limit with a site context that fits says what the site's
// part takes.
func TestMergeSiteContextTooLarge(t *testing.T) {
	noise := append(incompressible(), incompressible()...)
	big := "#!/bin/sh\n# " + base64.StdEncoding.EncodeToString(noise) + "\n"
	s, err := LoadSite(writeSite(t, map[string]string{"all/big.sh": big}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		user string
	}{{"fail without user data", ""}, {"fail with user data", "#!/bin/sh\necho hi\n"}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Merge(base64.StdEncoding.EncodeToString([]byte(tc.user)), tc.user != "", testVars())
			var tl *TooLargeError
			var ude *UserDataError
			if err == nil || errors.As(err, &tl) || errors.As(err, &ude) || !strings.Contains(err.Error(), "the site's context for VO") {
				t.Fatalf("Merge error = %v, want the site's own error", err)
			}
		})
	}
	t.Run("fail user data too large names the site's share", func(t *testing.T) {
		_, err := loadTestSite(t).Merge(base64.StdEncoding.EncodeToString(incompressible()), true, testVars())
		var tl *TooLargeError
		if !errors.As(err, &tl) || tl.Site <= 0 || tl.Site >= tl.Limit || tl.Size <= tl.Limit {
			t.Fatalf("Merge error = %#v, want a TooLargeError with the site's share", err)
		}
	})
}

func TestMergeDetails(t *testing.T) {
	fixedBoundary(t)
	s, err := LoadSite(writeSite(t, map[string]string{
		"all/a.yaml": "#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 0644\npackage_upgrade: yes\nhostname: {{ server_name }}\nport: '{{ var.port }}'\n",
		"all/run.sh": "#!/bin/sh\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	v := Vars{ServerName: "123", Extra: map[string]string{"port": "8080"}}
	user := "#cloud-config\n# mentions imagetrust-01-run.sh and imagetrust-site.cfg\n"
	out, err := s.Merge(base64.StdEncoding.EncodeToString([]byte(user)), true, v)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := decodeOutput(t, out)
	for _, want := range []string{
		"permissions: 0644\n",                   // YAML 1.1 octal kept as written, not 644
		"package_upgrade: yes\n",                // YAML 1.1 boolean kept as written
		"hostname: \"123\"\n",                   // substituted values are strings
		"port: \"8080\"\n",                      // even where the template was quoted
		`filename="imagetrust-t0k3n-01-run.sh"`, // the user cannot guess the token
		`filename="imagetrust-t0k3n-site.cfg"`,
	} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}

	t.Run("fail boundary always in payload", func(t *testing.T) {
		user := base64.StdEncoding.EncodeToString([]byte("x " + testBoundary))
		if _, err := s.Merge(user, true, v); err == nil || !strings.Contains(err.Error(), "no MIME boundary") {
			t.Fatalf("Merge error = %v, want a boundary error", err)
		}
	})
}

// TestMergeUserDataChecks: what the merge refuses in the user's data before
// it does any work on it, and how the site part names stay the site's own
// whatever the user's data holds, in one scan of it.
func TestMergeUserDataChecks(t *testing.T) {
	s, err := LoadSite(writeSite(t, map[string]string{"all/run.sh": "#!/bin/sh\n"}))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("#!/bin/sh\necho user\n"))
	_ = zw.Close()
	broken := append([]byte{}, gz.Bytes()[:gz.Len()-6]...) // truncated: no checksum
	for name, ud := range map[string]string{
		"fail over Nova's limit":         strings.Repeat("A", MaxUserData+1),
		"fail gzip that does not expand": base64.StdEncoding.EncodeToString(broken),
		"fail not base64":                "not base64!",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Merge(ud, true, Vars{})
			var ue *UserDataError
			if !errors.As(err, &ue) {
				t.Fatalf("Merge error = %v, want a UserDataError", err)
			}
		})
	}
	t.Run("fail over Nova's limit says so in the file's bytes", func(t *testing.T) {
		// the user's file is what `openstack server create --user-data`
		// takes; base64 is the client's business
		ud := base64.StdEncoding.EncodeToString(make([]byte, 60000))
		_, err := s.Merge(ud, true, Vars{})
		want := "user_data: 80000 characters of base64 (a file of about 60000 bytes), over Nova's limit of 65535 characters (a file of at most 49149 bytes); shorten it"
		if err == nil || err.Error() != want {
			t.Fatalf("Merge error = %v, want %s", err, want)
		}
		if base64.StdEncoding.EncodedLen(maxUserDataBytes) > MaxUserData || base64.StdEncoding.EncodedLen(maxUserDataBytes+1) <= MaxUserData {
			t.Fatalf("maxUserDataBytes %d is not the largest file within the limit", maxUserDataBytes)
		}
	})
	t.Run("ok a token the user data holds is drawn again", func(t *testing.T) {
		fixedBoundary(t)
		tokens := []string{"aaaa", "bbbb"}
		newNameToken = func() (string, error) { tok := tokens[0]; tokens = tokens[1:]; return tok, nil }
		user := base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\n# imagetrust-aaaa-01-run.sh\n"))
		out, err := s.Merge(user, true, Vars{})
		if err != nil {
			t.Fatal(err)
		}
		if doc, _ := decodeOutput(t, out); !bytes.Contains(doc, []byte(`filename="imagetrust-bbbb-01-run.sh"`)) {
			t.Errorf("site part not renamed:\n%s", doc)
		}
	})
	t.Run("fail the user data holds every token drawn", func(t *testing.T) {
		fixedBoundary(t)
		user := base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\n# imagetrust-" + testNameToken + "\n"))
		if _, err := s.Merge(user, true, Vars{}); err == nil || !strings.Contains(err.Error(), "part name prefix") {
			t.Fatalf("Merge error = %v", err)
		}
	})
}

// TestMergeEmptyValues: a template variable without a value is never
// rendered as nothing ("rm -rf /scratch/{{ server_name }}"): the user's
// own value missing is the user's error, any other the site's.
func TestMergeEmptyValues(t *testing.T) {
	s, err := LoadSite(writeSite(t, map[string]string{"all/clean.sh": "#!/bin/sh\nrm -rf /scratch/{{ server_name }}/{{ project_id }}\n"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Merge("", false, Vars{ProjectID: "p"})
	var ue *UserDataError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "server_name") {
		t.Errorf("no server name: %v, want a UserDataError", err)
	}
	_, err = s.Merge("", false, Vars{ServerName: "vm"})
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "project_id") {
		t.Errorf("no project id: %v, want the site's error", err)
	}
	if _, err := s.Merge("", false, Vars{ServerName: "vm", ProjectID: "p"}); err != nil {
		t.Errorf("both given: %v", err)
	}
}

// TestCheckSiteVars: a site value a fragment uses and the configuration
// lacks (or leaves empty, or makes unsafe) is an error at start-up, naming
// the fragment, not a 500 at every boot.
func TestCheckSiteVars(t *testing.T) {
	s, err := LoadSite(writeSite(t, map[string]string{
		"all/a.yaml":            "#cloud-config\nwrite_files:\n  - path: /etc/{{ site_name }}\n    content: '{{ image_uuid }}'\n",
		"tag/atlas/worker/b.sh": "#!/bin/sh\necho {{ var.proxy }} {{ server_name }}\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		v    Vars
		want string // "" = ok
	}{
		"ok both given":      {Vars{SiteName: "s", Extra: map[string]string{"proxy": "http://p:3128"}}, ""},
		"fail no site name":  {Vars{Extra: map[string]string{"proxy": "http://p:3128"}}, "a.yaml"},
		"fail var missing":   {Vars{SiteName: "s"}, "b.sh"},
		"fail var empty":     {Vars{SiteName: "s", Extra: map[string]string{"proxy": ""}}, "b.sh"},
		"fail var unsafe":    {Vars{SiteName: "s", Extra: map[string]string{"proxy": "a b"}}, "b.sh"},
		"ok var url path":    {Vars{SiteName: "s", Extra: map[string]string{"proxy": "http://p:3128/a/b..c/"}}, ""},
		"fail var dot-dot":   {Vars{SiteName: "s", Extra: map[string]string{"proxy": "http://p:3128/a/../b"}}, "b.sh"},
		"fail site name dot": {Vars{SiteName: ".", Extra: map[string]string{"proxy": "http://p:3128"}}, "a.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			err := s.CheckSiteVars(tc.v)
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckSiteVars = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestTemplateValues: what a value may hold. None has a "." or ".." path
// segment, so DIR/{{ x }} stays in DIR; the user's server name is one
// portable file name (no '/', '=', ':', '@'), so DIR/{{ server_name }} is one
// entry of DIR; the site's own values may be URLs.
func TestTemplateValues(t *testing.T) {
	cases := []struct {
		name string
		ref  string
		val  string
		want string // "" = ok; else "user" or "site": whose error
	}{
		{"ok server name", "server_name", "node-1.example_2", ""},
		{"ok server name with dots not a segment", "server_name", "..a", ""},
		{"ok server name ending in dots", "server_name", "a..", ""},
		{"fail server name dot-dot", "server_name", "..", "user"},
		{"fail server name dot", "server_name", ".", "user"},
		{"fail server name path", "server_name", "../../etc/cron.d/x", "user"},
		{"fail server name slash", "server_name", "a/b", "user"},
		{"fail server name trailing slash", "server_name", "a/", "user"},
		{"fail server name assignment", "server_name", "a=b", "user"},
		{"fail server name remote", "server_name", "host:x", "user"},
		{"fail server name user at", "server_name", "root@host", "user"},
		{"fail server name option", "server_name", "-rf", "user"},
		{"ok site url", "var.proxy", "http://squid.example.org:3128", ""},
		{"ok site url path", "var.proxy", "http://squid.example.org:3128/a/.b/c../", ""},
		{"ok site absolute path", "var.proxy", "/opt/site", ""},
		{"fail site dot-dot segment", "var.proxy", "http://squid.example.org:3128/../x", "site"},
		{"fail site leading dot segment", "var.proxy", "./x", "site"},
		{"fail site trailing dot-dot", "var.proxy", "a/..", "site"},
		{"fail site dot-dot", "site_name", "..", "site"},
		{"fail catalogue dot segment", "tag", "a/./b", "site"},
		{"fail keystone dot-dot", "project_id", "..", "site"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Vars{ServerName: c.val, SiteName: c.val, Tag: c.val, ProjectID: c.val, Extra: map[string]string{"proxy": c.val}}
			got, err := v.lookup(c.ref)
			var ue *UserDataError
			switch {
			case c.want == "" && (err != nil || got != c.val):
				t.Fatalf("lookup(%s) = %q, %v; want %q", c.ref, got, err, c.val)
			case c.want != "" && err == nil:
				t.Fatalf("lookup(%s) = %q, want an error", c.ref, got)
			case c.want != "" && errors.As(err, &ue) != (c.want == "user"):
				t.Fatalf("lookup(%s) error %v: UserDataError %v, want the %s's error", c.ref, err, ue != nil, c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.ref):
				t.Fatalf("lookup(%s) error %v does not name the variable", c.ref, err)
			}
		})
	}
}

// TestUnusedVars: the variables no fragment of any layer refers to (a
// cloud-config or a script, for every boot, a VO or a tag) are listed, so
// that the proxy can warn of a setting written after [contextualise.vars].
func TestUnusedVars(t *testing.T) {
	s, err := LoadSite(writeSite(t, map[string]string{
		"all/10.cfg":              "#cloud-config\nwrite_files:\n  - path: /etc/squid\n    content: \"{{ var.squid }}\"\n",
		"vo/atlas/20.sh":          "#!/bin/sh\necho {{ var.quota }}\n",
		"tag/atlas/worker/30.cfg": "#cloud-config\nbootcmd:\n  - echo {{ var.queue }} {{ site_name }}\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	got := s.UnusedVars(map[string]string{"squid": "a", "quota": "1", "queue": "q", "level": "debug", "cache_ttl": "10s"})
	if strings.Join(got, ",") != "cache_ttl,level" {
		t.Fatalf("unused %q, want cache_ttl and level", got)
	}
	if got := s.UnusedVars(nil); len(got) != 0 {
		t.Fatalf("unused of none: %q", got)
	}
}

// TestMergeGzipBombCost: what one request within Nova's limit makes the
// merge allocate is bounded, whatever the user's gzip expands to. The worst
// data is what decompresses to the most and costs the most to re-encode:
// low-entropy bytes that are not text travel quoted-printable (3 bytes for
// each) and base64, and both documents are gzipped when neither fits. With
// an 8 MiB bound one 10 KB request cost 140-170 MB.
func TestMergeGzipBombCost(t *testing.T) {
	s := loadTestSite(t)
	r := rand.New(rand.NewChaCha8([32]byte{9}))
	sparse := func(n, every int) []byte {
		b := make([]byte, n)
		for i := range b {
			if r.IntN(every) == 0 {
				b[i] = byte(r.IntN(256))
			}
		}
		return b
	}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"zeros at the bound", make([]byte, maxDecompressed)},
		{"sparse bytes at the bound", sparse(maxDecompressed, 300)},
		{"zeros far over the bound", make([]byte, 8<<20)},
		{"sparse bytes far over the bound", sparse(8<<20, 2500)},
	} {
		t.Run(c.name, func(t *testing.T) {
			ud := base64.StdEncoding.EncodeToString(gz(t, c.data))
			if len(ud) > MaxUserData {
				t.Fatalf("test data: %d characters, over Nova's limit", len(ud))
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := s.Merge(ud, true, testVars())
			runtime.ReadMemStats(&after)
			var tl *TooLargeError
			var ue *UserDataError
			if err != nil && !errors.As(err, &tl) && !errors.As(err, &ue) {
				t.Fatalf("Merge: %v", err)
			}
			const limit = 48 << 20
			got := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d-character request expanding to %d bytes: %d MB allocated (err %v)", len(ud), len(c.data), got>>20, err)
			if got > limit {
				t.Errorf("Merge of a %d-character request (expanding to %d bytes) allocated %d MB, want at most %d MB (err %v)", len(ud), len(c.data), got>>20, limit>>20, err)
			}
		})
	}
}
