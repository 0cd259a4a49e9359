package contextualise

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// hostileCase is user data a cloud-init user may send.
type hostileCase struct {
	name string
	user []byte
	// failsAlone: cloud-init's processing of the data fails on its own
	// (then none of it runs, and none of the merged document either).
	failsAlone bool
	// trailingEOL: the user's last part gains the line end that ends it
	// in the merged document (a MIME document without its closing
	// delimiter, where Python's parser drops the last line end).
	trailingEOL bool
}

func hostileCases(t *testing.T) []hostileCase {
	inc := filepath.Join(t.TempDir(), "included.cfg")
	if err := os.WriteFile(inc, []byte("#cloud-config\nruncmd: [echo included]\ntimezone: Included/Zone\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mimeWith := func(parts ...string) []byte {
		var b strings.Builder
		b.WriteString("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"ub\"\n\n")
		for _, p := range parts {
			b.WriteString("--ub\n" + p + "\n")
		}
		b.WriteString("--ub--\n")
		return []byte(b.String())
	}
	const cc = "#cloud-config\ntimezone: User/Zone\nruncmd: [echo user]\n"
	return []hostileCase{
		{name: "merge_how replacing lists", user: []byte("#cloud-config\nmerge_how: 'list(replace)+dict(replace,recurse_list)+str()'\nruncmd: [echo user]\ntimezone: User/Zone\nntp: {servers: [u.example]}\n")},
		{name: "merge_type replacing lists", user: []byte("#cloud-config\nmerge_type: 'list(replace)+dict(replace)+str()'\nruncmd: [echo user]\n")},
		{name: "merge_how as a list", user: []byte("#cloud-config\nmerge_how:\n - name: list\n   settings: [replace]\n - name: dict\n   settings: [replace]\nruncmd: [echo user]\n")},
		{name: "cloud-config-archive", user: []byte("#cloud-config-archive\n- type: text/cloud-config\n  content: |\n    #cloud-config\n    runcmd: [echo archived]\n- \"#!/bin/sh\\necho archived script\\n\"\n")},
		{name: "cloud-config-archive entry of no known type", failsAlone: true, user: []byte("#cloud-config-archive\n- {type: foo, content: x}\n")},
		{name: "cloud-config-archive entry not text", failsAlone: true, user: []byte("#cloud-config-archive\n- {content: 5}\n")},
		{name: "include", user: []byte("#include\nfile://" + inc + "\n")},
		{name: "include unreachable", failsAlone: true, user: []byte("#include\n" + inc + ".missing\n")},
		{name: "MIME nested deeply", failsAlone: true, user: gz(t, deepMIME(1000))},
		{name: "include-once", user: []byte("#include-once\n" + inc + "\n")},
		{name: "shell script", user: []byte("#!/bin/sh\necho user\n")},
		{name: "cloud-boothook", user: []byte("#cloud-boothook\n#!/bin/sh\necho boothook\n")},
		{name: "jinja template", user: []byte("## template: jinja\n#cloud-config\nruncmd: ['echo {{ v1.instance_id }}']\n")},
		{name: "part-handler", user: []byte("#part-handler\ndef list_types():\n    return ['text/x-user']\ndef handle_part(data, ctype, filename, payload):\n    pass\n")},
		{name: "cloud-config-jsonp", user: []byte("#cloud-config-jsonp\n[{\"op\": \"add\", \"path\": \"/runcmd\", \"value\": [\"echo jsonp\"]}]\n")},
		{name: "gzip cloud-config", user: gz(t, []byte(cc))},
		{name: "gzip MIME", user: gz(t, []byte(userMIME))},
		{name: "gzip script", user: gz(t, []byte("#!/bin/sh\necho gz\n"))},
		{name: "gzip twice", user: gz(t, gz(t, []byte(cc)))},
		{name: "MIME nested", user: mimeWith("Content-Type: multipart/alternative; boundary=\"inner\"\n\n--inner\nContent-Type: text/cloud-config\n\n"+cc+"\n--inner\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho inner\n\n--inner--\n", "Content-Type: text/x-shellscript\n\n#!/bin/sh\necho outer\n")},
		{name: "MIME include-url part", user: mimeWith("Content-Type: text/x-include-url\n\n" + inc + "\n")},
		{name: "MIME part named like a site part", user: mimeWith("Content-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"imagetrust-site.cfg\"\n\n#!/bin/sh\necho a\n", "Content-Type: text/cloud-config\nContent-Disposition: attachment; filename=\"part-003\"\n\n"+cc)},
		{name: "MIME base64 part", user: mimeWith("Content-Type: text/cloud-config\nContent-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString([]byte(cc)) + "\n")},
		{name: "MIME quoted-printable part", user: mimeWith("Content-Type: text/x-shellscript\nContent-Transfer-Encoding: quoted-printable\n\n#!/bin/sh\necho caf=C3=A9 =3D=\n x\n")},
		{name: "MIME gzip part", user: mimeWith("Content-Type: application/x-gzip\nContent-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString(gz(t, []byte(cc))) + "\n")},
		{name: "MIME CRLF", user: bytes.ReplaceAll([]byte(userMIME), []byte("\n"), []byte("\r\n"))},
		{name: "MIME without a body", user: []byte("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"ub\"\n")},
		{name: "MIME without the closing delimiter", trailingEOL: true, user: []byte("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"ub\"\n\n--ub\nContent-Type: text/cloud-config\n\n" + cc)},
		{name: "MIME after a From line", user: []byte("From someone\nMIME-Version: 1.0\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho from\n")},
		{name: "MIME header continuation first", user: []byte(" folded\nMIME-Version: 1.0\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho folded\n")},
		{name: "MIME message/rfc822", user: mimeWith("Content-Type: message/rfc822\n\nMIME-Version: 1.0\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho inner message\n")},
		{name: "MIME single part with CTE", user: []byte("MIME-Version: 1.0\nContent-Type: text/cloud-config\nContent-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString([]byte(cc)) + "\n")},
		{name: "MIME-Version in a script", user: []byte("#!/bin/sh\n# MIME-Version: 1.0\necho mime in script\n")},
		{name: "MIME with a BOM", user: []byte("\ufeff" + userMIME)},
		{name: "MIME lowercase header", user: bytes.Replace([]byte(userMIME), []byte("MIME-Version"), []byte("mime-version"), 1)},
		{name: "not UTF-8", user: []byte("#!/bin/sh\necho \xff\xfe caf\xe9\n")},
		{name: "CRLF cloud-config", user: []byte("#cloud-config\r\ntimezone: User/Zone\r\nruncmd: [echo user]\r\n")},
		{name: "BOM cloud-config", user: []byte("\ufeff" + cc)},
		{name: "leading blank line", user: []byte("\n  " + cc)},
		{name: "whitespace only", user: []byte(" \n\t\n")},
		{name: "cloud-config not a mapping", user: []byte("#cloud-config\n- a\n- b\n")},
		{name: "cloud-config scalar", user: []byte("#cloud-config\njust a string\n")},
		{name: "cloud-config bad YAML", user: []byte("#cloud-config\nruncmd: [a\n")},
		{name: "cloud-config anchors", user: []byte("#cloud-config\na: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nruncmd: *a\n")},
		{name: "cloud-config two documents", user: []byte(cc + "---\nruncmd: [echo second]\n")},
		{name: "cloud-config site keys", user: []byte("#cloud-config\ndisable_root: false\nssh_authorized_keys: [ssh-ed25519 AAAA user]\nusers: [default, {name: u}]\nbootcmd: [echo boot]\nwrite_files: [{path: /u, content: u}]\nruncmd: [echo user]\ntimezone: User/Zone\nntp: {enabled: false}\n")},
	}
}

// TestCloudInitHostileUserData compares what cloud-init makes of each
// hostile or unusual user data alone and merged with the site's context:
// the user's parts are the same (type, name and payload, in order), the
// site's parts follow them, and the merged cloud-config is the user's with
// the site's added as documented (lists appended, the user's scalars kept).
func TestCloudInitHostileUserData(t *testing.T) {
	requireCloudInit(t)
	fixedBoundary(t)
	s := loadTestSite(t)
	v := testVars()
	for _, c := range hostileCases(t) {
		t.Run(c.name, func(t *testing.T) {
			ud := base64.StdEncoding.EncodeToString(c.user)
			alone := parseWithCloudInit(t, ud)
			if (alone.Error != "") != c.failsAlone {
				t.Fatalf("cloud-init alone: error %q, want an error %v", alone.Error, c.failsAlone)
			}
			out, err := s.Merge(ud, true, v)
			if err != nil {
				t.Fatalf("Merge: %v", err)
			}
			merged := parseWithCloudInit(t, out)
			if (merged.Error != "") != c.failsAlone {
				t.Fatalf("cloud-init on the merged data: error %q, want one only when it fails alone (%q)", merged.Error, alone.Error)
			}
			if c.failsAlone {
				return
			}
			for i := range alone.Parts {
				// cloud-init's type for the top-level text it does not
				// recognise; a part of the merged document is text/plain
				// (no handler takes either)
				if alone.Parts[i].ContentType == "text/x-not-multipart" {
					alone.Parts[i].ContentType = "text/plain"
				}
			}
			if c.trailingEOL {
				last := &alone.Parts[len(alone.Parts)-1]
				p, _ := base64.StdEncoding.DecodeString(last.PayloadB64)
				last.PayloadB64 = base64.StdEncoding.EncodeToString(append(p, '\n'))
			}
			n := len(alone.Parts)
			if len(merged.Parts) < n || !reflect.DeepEqual(merged.Parts[:n], alone.Parts) {
				a, _ := json.MarshalIndent(alone.Parts, "", " ")
				m, _ := json.MarshalIndent(merged.Parts, "", " ")
				t.Fatalf("the user's parts differ; alone:\n%s\nmerged:\n%s", a, m)
			}
			var siteCC []byte
			var names []string
			for _, p := range merged.Parts[n:] {
				names = append(names, p.ContentType+" "+p.Filename)
				if p.Filename == "imagetrust-"+testNameToken+"-site.cfg" {
					siteCC, _ = base64.StdEncoding.DecodeString(p.PayloadB64)
				}
			}
			want := []string{
				"text/x-shellscript imagetrust-" + testNameToken + "-01-90-hello.sh",
				"text/x-shellscript imagetrust-" + testNameToken + "-02-40-register.sh",
				"text/cloud-config imagetrust-" + testNameToken + "-site.cfg",
			}
			if !reflect.DeepEqual(names, want) {
				t.Fatalf("the site's parts = %q, want %q", names, want)
			}
			wantCC := promisedMerge(alone.CloudConfig, toJSONish(t, siteCC))
			if !reflect.DeepEqual(merged.CloudConfig, wantCC) {
				g, _ := json.MarshalIndent(merged.CloudConfig, "", " ")
				w, _ := json.MarshalIndent(wantCC, "", " ")
				t.Errorf("merged cloud-config:\n%s\nwant:\n%s", g, w)
			}
		})
	}
}

// deepMIME is a multipart document nested n levels deep.
func deepMIME(n int) []byte {
	var b strings.Builder
	b.WriteString("MIME-Version: 1.0\n")
	for i := range n {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\n", i, i)
	}
	b.WriteString("Content-Type: text/x-shellscript\n\n#!/bin/sh\necho deep\n")
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\n", i)
	}
	return []byte(b.String())
}

// TestCloudInitYAMLTypes: the YAML LoadSite refuses in a site fragment
// (tags, plain = and <<) is what cloud-init's loader cannot construct, so
// it would drop the site's cloud-config on every boot; what it takes
// (standard tags, = and << quoted) reaches cloud-init.
func TestCloudInitYAMLTypes(t *testing.T) {
	requireCloudInit(t)
	for _, y := range []string{"a: !foo x\n", "a: !!python/name:os.system x\n", "bootcmd:\n  - =\n", "a: <<\n"} {
		frag := "#cloud-config\n" + y
		if _, err := LoadSite(writeSite(t, map[string]string{"all/a.yaml": frag})); err == nil {
			t.Errorf("LoadSite took %q", frag)
		}
		// cloud-init's loader logs the error and returns the default
		cmd := exec.Command(cloudInitPython, "-c", "import sys; from cloudinit import util; print(util.load_yaml(sys.stdin.read(), default='refused', allowed=(dict,)))")
		cmd.Stdin = strings.NewReader(frag)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(out)) != "refused" {
			t.Errorf("cloud-init's load_yaml takes %q (as %s): the refusal is needless", frag, out)
		}
	}
	fixedBoundary(t)
	s, err := LoadSite(writeSite(t, map[string]string{"all/a.yaml": "#cloud-config\na: !!str 1\nb: !!binary aGk=\nc: !!set {x}\nd: ['=', \"<<\", !!str =]\ne: !<tag:yaml.org,2002:int> 3\n=: key\n"}))
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Merge("", false, testVars())
	if err != nil {
		t.Fatal(err)
	}
	r := parseWithCloudInit(t, out)
	for _, k := range []string{"a", "b", "c", "d", "e", "="} {
		if _, ok := r.CloudConfig[k]; !ok {
			t.Errorf("cloud-init's merged cloud-config lacks the site's %q: %v", k, r.CloudConfig)
		}
	}
}
