package contextualise

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// cloudInitPython is Debian's interpreter, where the cloud-init package puts
// its modules; a pyenv python earlier in PATH would not have them.
const cloudInitPython = "/usr/bin/python3"

// cloudInitResult is what testdata/cloudinit_parse.py prints.
type cloudInitResult struct {
	Version string `json:"version"`
	Parts   []struct {
		ContentType string `json:"content_type"`
		Filename    string `json:"filename"`
		PayloadB64  string `json:"payload_b64"`
	} `json:"parts"`
	CloudConfig map[string]any `json:"cloud_config"`
	// Error is set when cloud-init's processing of the data fails: then
	// none of it runs at boot.
	Error string `json:"error"`
}

// requireCloudInit skips when cloud-init's modules are missing, except under
// CI, where a missing parser must fail the run rather than hide it.
func requireCloudInit(t *testing.T) {
	t.Helper()
	out, err := exec.Command(cloudInitPython, "-c", "import cloudinit.user_data, cloudinit.handlers.cloud_config").CombinedOutput()
	if err == nil {
		return
	}
	msg := "cloud-init's python modules are not importable by " + cloudInitPython + " (apt-get install cloud-init): " + strings.TrimSpace(string(out))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func parseWithCloudInit(t *testing.T, userData string) cloudInitResult {
	t.Helper()
	f := filepath.Join(t.TempDir(), "user_data.b64")
	if err := os.WriteFile(f, []byte(userData), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cloudInitPython, "testdata/cloudinit_parse.py", f)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cloudinit_parse.py: %v\n%s", err, stderr.String())
	}
	var r cloudInitResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("cloudinit_parse.py output: %v\n%s", err, out)
	}
	return r
}

// toJSONish decodes YAML the way the checks compare it: through JSON, so
// numbers and maps have the same Go types on both sides.
func toJSONish(t *testing.T, y []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal(y, &v); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// promisedMerge is the documented outcome of the site part's Merge-Type
// over the user's cloud-config: site keys added, lists appended after the
// user's items, mappings merged key by key, the user's scalars kept.
func promisedMerge(user, site map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range user {
		out[k] = v
	}
	for k, sv := range site {
		uv, ok := out[k]
		if !ok {
			out[k] = sv
			continue
		}
		switch u := uv.(type) {
		case []any:
			if s, ok := sv.([]any); ok {
				out[k] = append(append([]any{}, u...), s...)
			}
		case map[string]any:
			if s, ok := sv.(map[string]any); ok {
				out[k] = promisedMerge(u, s)
			}
		}
	}
	return out
}

func TestCloudInitParsesMergedOutput(t *testing.T) {
	requireCloudInit(t)
	fixedBoundary(t)
	s := loadTestSite(t)
	for _, c := range mergeCases(t) {
		if c.wantErr != nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			out, err := runCase(t, s, c)
			if err != nil {
				t.Fatalf("Merge: %v", err)
			}
			r := parseWithCloudInit(t, out)
			doc, _ := decodeOutput(t, out)

			// The site's parts: every script under its unique name, and the
			// site's cloud-config as Merge built it.
			_, scripts := s.fragments(c.vars.VO, c.vars.Tag)
			var siteCC []byte
			for _, p := range r.Parts {
				if p.Filename == "imagetrust-"+testNameToken+"-site.cfg" {
					siteCC, _ = base64.StdEncoding.DecodeString(p.PayloadB64)
				}
			}
			if siteCC == nil {
				t.Fatalf("cloud-init saw no site cloud-config part; parts: %+v", r.Parts)
			}
			for i, sc := range scripts {
				name := "imagetrust-" + testNameToken + "-0" + string(rune('1'+i)) + "-" + sc.base
				if !hasPart(r, "text/x-shellscript", name) {
					t.Errorf("cloud-init lost site script %s; parts: %+v", name, r.Parts)
				}
			}

			// The user's parts.
			user := userPayload(t, c.user)
			var userCC map[string]any
			switch {
			case user == nil:
			case isMIME(user):
				for _, want := range [][2]string{{"text/cloud-config", "user.cfg"}, {"text/x-shellscript", "user.sh"}} {
					if !hasPart(r, want[0], want[1]) {
						t.Errorf("cloud-init lost the user's part %v; parts: %+v", want, r.Parts)
					}
				}
				userCC = toJSONish(t, []byte("hostname: from-mime\nruncmd: [echo mime]\n"))
			default:
				got, _ := base64.StdEncoding.DecodeString(r.Parts[0].PayloadB64)
				if r.Parts[0].Filename != "part-001" || !bytes.Equal(got, user) {
					t.Errorf("cloud-init's first part = %s %q, want part-001 with the user's data %q", r.Parts[0].Filename, got, user)
				}
				if bytes.HasPrefix(user, []byte("#cloud-config")) {
					userCC = toJSONish(t, user)
				}
				if bytes.HasPrefix(user, []byte("#!")) && r.Parts[0].ContentType != "text/x-shellscript" {
					t.Errorf("user script typed %s, want text/x-shellscript", r.Parts[0].ContentType)
				}
			}

			want := promisedMerge(userCC, toJSONish(t, siteCC))
			if !reflect.DeepEqual(r.CloudConfig, want) {
				g, _ := json.MarshalIndent(r.CloudConfig, "", " ")
				w, _ := json.MarshalIndent(want, "", " ")
				t.Errorf("cloud-init %s merged cloud-config:\n%s\nwant:\n%s\ndocument:\n%s", r.Version, g, w, doc)
			}
			if userCC != nil {
				if tz := r.CloudConfig["timezone"]; userCC["timezone"] != nil && tz != userCC["timezone"] {
					t.Errorf("timezone = %v, want the user's %v", tz, userCC["timezone"])
				}
				if urc, ok := userCC["runcmd"].([]any); ok {
					if rc, _ := r.CloudConfig["runcmd"].([]any); len(rc) <= len(urc) || !reflect.DeepEqual(rc[:len(urc)], urc) {
						t.Errorf("runcmd = %v, want the user's commands %v first, then the site's", rc, urc)
					}
				}
			}
		})
	}
}

func hasPart(r cloudInitResult, ctype, filename string) bool {
	for _, p := range r.Parts {
		if p.ContentType == ctype && p.Filename == filename {
			return true
		}
	}
	return false
}

// userPayload is the user's data as cloud-init sees it: gunzipped.
func userPayload(t *testing.T, user []byte) []byte {
	t.Helper()
	if user == nil {
		return nil
	}
	b, err := decodeUserData(base64.StdEncoding.EncodeToString(user))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wordyText is a shell script of about size bytes: echo lines of words drawn
// from alphabet, so it compresses about as well as real text (a quarter to a
// third of its size), with eol line ends and extra after the first line.
func wordyText(size int, alphabet, eol, extra string) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{7}))
	letters := []rune(alphabet)
	words := make([]string, 400)
	for i := range words {
		w := make([]rune, 3+r.IntN(8))
		for j := range w {
			w[j] = letters[r.IntN(len(letters))]
		}
		words[i] = string(w)
	}
	var b bytes.Buffer
	b.WriteString("#!/bin/sh" + eol + extra)
	for b.Len() < size {
		b.WriteString("echo")
		for range 3 + r.IntN(8) {
			b.WriteString(" " + words[r.IntN(len(words))])
		}
		fmt.Fprintf(&b, " %d%s", r.IntN(100000), eol)
	}
	return b.Bytes()
}

// TestCloudInitGzippedText: text the user gzipped to fit Nova's limit still
// fits with the site's context when it is not plain ASCII (CRLF line ends,
// UTF-8 letters, a Latin-1 byte), and cloud-init gets it back byte for byte.
// A base64 part would hide the text's repetitions from gzip (a 51940-
// character request came out at 80800 and was refused).
func TestCloudInitGzippedText(t *testing.T) {
	requireCloudInit(t)
	fixedBoundary(t)
	s := loadTestSite(t)
	cases := []struct {
		name string
		user []byte
	}{
		{"ok CRLF shell text, a Latin-1 byte", wordyText(125000, "abcdefghijklmnopqrstuvwxyz", "\r\n", "# caf\xe9 \xff\r\n")},
		{"ok UTF-8 text", wordyText(125000, "abcdéfghijklmnopqrstuvwxyzàü", "\n", "")},
		{"ok Cyrillic text", wordyText(125000, "абвгдежзийклмнопрстуфхцчшщъыьэюя", "\n", "")},
		{"ok trailing white space, '=' and no final line break", append(wordyText(125000, "abcdefghijklmnopqrstuvwxyz=", "  \n", "é\t\n"), " \t"...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var z bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
			_, _ = zw.Write(c.user)
			_ = zw.Close()
			ud := base64.StdEncoding.EncodeToString(z.Bytes())
			if len(ud) > MaxUserData*4/5 {
				t.Fatalf("test data: the user's request is %d characters, want it well under Nova's limit", len(ud))
			}
			out, err := s.Merge(ud, true, testVars())
			if err != nil {
				t.Fatalf("Merge of a %d-character request: %v", len(ud), err)
			}
			if len(out) > MaxUserData {
				t.Fatalf("output %d characters, over %d", len(out), MaxUserData)
			}
			r := parseWithCloudInit(t, out)
			got, _ := base64.StdEncoding.DecodeString(r.Parts[0].PayloadB64)
			if r.Parts[0].Filename != "part-001" || r.Parts[0].ContentType != "text/x-shellscript" {
				t.Errorf("cloud-init's first part is %s %s, want part-001 text/x-shellscript", r.Parts[0].Filename, r.Parts[0].ContentType)
			}
			if !bytes.Equal(got, c.user) {
				i := 0
				for i < min(len(got), len(c.user)) && got[i] == c.user[i] {
					i++
				}
				t.Errorf("cloud-init's first part differs from the user's data at byte %d: %q, want %q", i, got[i:min(len(got), i+40)], c.user[i:min(len(c.user), i+40)])
			}
			t.Logf("request %d characters, merged %d", len(ud), len(out))
		})
	}
}
