package contextualise

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden")

const testBoundary = "==imagetrust-test-boundary=="

// testNameToken is the token of the site part filenames in tests.
const testNameToken = "t0k3n"

// fixedBoundary makes Merge's output deterministic for the test's duration:
// the MIME boundary and the token of the site part filenames.
func fixedBoundary(t testing.TB) {
	old, oldTok := newBoundary, newNameToken
	newBoundary = func() (string, error) { return testBoundary, nil }
	newNameToken = func() (string, error) { return testNameToken, nil }
	t.Cleanup(func() { newBoundary, newNameToken = old, oldTok })
}

func testVars() Vars {
	return Vars{
		ImageUUID:  "5f1d2a3e-8c4b-4e6f-9a7d-0b1c2d3e4f50",
		Tag:        "worker",
		VO:         "atlas",
		SiteName:   "example-site",
		ProjectID:  "0123456789abcdef0123456789abcdef",
		UserID:     "fedcba9876543210fedcba9876543210",
		ServerName: "node-1",
		Extra:      map[string]string{"queue": "grid.atlas"},
	}
}

func loadTestSite(t testing.TB) *Site {
	t.Helper()
	s, err := LoadSite("testdata/site")
	if err != nil {
		t.Fatalf("LoadSite: %v", err)
	}
	return s
}

const userCloudConfig = `#cloud-config
timezone: Europe/Paris
hostname: user-host
runcmd:
  - echo user
packages:
  - vim
ntp:
  servers: [user.ntp.example]
`

const userScript = "#!/bin/sh\necho user script\n"

const userMIME = `Content-Type: multipart/mixed; boundary="user-boundary"
MIME-Version: 1.0

--user-boundary
Content-Type: text/cloud-config; charset="us-ascii"
Content-Disposition: attachment; filename="user.cfg"

#cloud-config
hostname: from-mime
runcmd:
  - echo mime

--user-boundary
Content-Type: text/x-shellscript; charset="us-ascii"
Content-Disposition: attachment; filename="user.sh"

#!/bin/sh
echo mime script

--user-boundary--
`

// userUnicodeMIME is plain text to cloud-init, which folds ASCII only: the
// İ (U+0130) lowercases to i in Unicode, not in Python's bytes.lower.
const userUnicodeMIME = "#!/bin/sh\necho \"MİME-Version: café\"\n"

// userCRLFScript is text written on Windows: CRLF line ends, UTF-8 letters,
// a trailing space. It travels quoted-printable, shorter than base64.
const userCRLFScript = "#!/bin/sh\r\n# déjà vu \r\nmkdir -p /srv/data\r\necho 'a = b' > /srv/data/config\r\nlogger -t user \"café ready\"\r\n"

var userBinary = []byte{0x00, 0xff, 0xfe, 'a', 0x80, '\r', '\n', 0xc3, 0x28}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

// bigCompressible is a cloud-config whose base64 merged form is over the
// limit but which gzips far below it.
func bigCompressible() []byte {
	var b strings.Builder
	b.WriteString("#cloud-config\nwrite_files:\n  - path: /etc/big\n    content: |\n")
	for i := 0; b.Len() < 48000; i++ {
		fmt.Fprintf(&b, "      line %05d of a long but repetitive file\n", i)
	}
	return []byte(b.String())
}

// incompressible is random bytes that Nova itself would accept (64000
// base64 characters) but that leave no room for the site's parts.
func incompressible() []byte {
	r := rand.New(rand.NewChaCha8([32]byte{1, 2, 3}))
	b := make([]byte, 48000)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type mergeCase struct {
	name    string
	user    []byte // nil: no user_data in the request
	vars    Vars
	wantErr any // nil, or a pointer to the error type expected
}

func mergeCases(t testing.TB) []mergeCase {
	v := testVars()
	return []mergeCase{
		{name: "ok no user data", vars: v},
		{name: "ok user cloud-config", user: []byte(userCloudConfig), vars: v},
		{name: "ok user shell script", user: []byte(userScript), vars: v},
		{name: "ok user mime multipart", user: []byte(userMIME), vars: v},
		{name: "ok user gzipped", user: gz(t, []byte(userCloudConfig)), vars: v},
		{name: "ok user binary not utf-8", user: userBinary, vars: v},
		{name: "ok user script with CRLF line ends", user: []byte(userCRLFScript), vars: v},
		{name: "ok user text with a unicode MIME-Version", user: []byte(userUnicodeMIME), vars: v},
		{name: "ok user text with a unicode MIME-Version not utf-8", user: []byte(userUnicodeMIME + "# \xff\n"), vars: v},
		{name: "ok vo without own fragments", user: []byte(userCloudConfig), vars: Vars{ImageUUID: "0c1d2e3f-4a5b-4c6d-8e7f-901234567890", VO: "cms", Tag: "x", SiteName: "example-site", ServerName: "n"}},
		{name: "ok gzip needed to fit", user: bigCompressible(), vars: v},
		{name: "fail too large", user: incompressible(), vars: v, wantErr: new(*TooLargeError)},
	}
}

func goldenName(name string) string {
	return filepath.Join("testdata", "golden", strings.ReplaceAll(name, " ", "_")+".golden")
}

// describe renders a Merge result for a golden file: the encoding used and
// the decoded (and gunzipped) document.
func describe(t testing.TB, out string, err error) []byte {
	t.Helper()
	if err != nil {
		return []byte("# error: " + err.Error() + "\n")
	}
	doc, gzipped := decodeOutput(t, out)
	enc := "plain"
	if gzipped {
		enc = "gzip"
	}
	return append([]byte(fmt.Sprintf("# encoding: %s, %d base64 characters\n", enc, len(out))), doc...)
}

// decodeOutput undoes base64 and, when present, the top-level gzip.
func decodeOutput(t testing.TB, out string) ([]byte, bool) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(out)
	if err != nil {
		t.Fatalf("output is not base64: %v", err)
	}
	if !bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		return raw, false
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	doc, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return doc, true
}

func runCase(t testing.TB, s *Site, c mergeCase) (string, error) {
	t.Helper()
	b64 := ""
	if c.user != nil {
		b64 = base64.StdEncoding.EncodeToString(c.user)
	}
	return s.Merge(b64, c.user != nil, c.vars)
}

func TestMergeGolden(t *testing.T) {
	fixedBoundary(t)
	s := loadTestSite(t)
	for _, c := range mergeCases(t) {
		t.Run(c.name, func(t *testing.T) {
			out, err := runCase(t, s, c)
			switch {
			case c.wantErr == nil && err != nil:
				t.Fatalf("Merge: %v", err)
			case c.wantErr != nil && !errors.As(err, c.wantErr):
				t.Fatalf("Merge error = %v, want %T", err, c.wantErr)
			}
			if err == nil && len(out) > MaxUserData {
				t.Fatalf("output is %d base64 characters, over %d", len(out), MaxUserData)
			}
			got := describe(t, out, err)
			path := goldenName(c.name)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatalf("%v (run go test ./contextualise -run TestMergeGolden -update)", rerr)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (rerun with -update and review the diff)\ngot:\n%s", path, got)
			}
		})
	}
}

// TestIsMIME: the same answer as cloud-init's b"mime-version:" in
// bdata[0:4096].lower(), which folds ASCII letters only.
func TestIsMIME(t *testing.T) {
	cases := []struct {
		name string
		data string
		want bool
	}{
		{"ok header", "MIME-Version: 1.0\n", true},
		{"ok any ASCII case", "Content-Type: x\nmIMe-VERSION:1.0\n", true},
		{"ok in the text", "#!/bin/sh\n# MIME-Version: x\n", true},
		{"ok ends at byte 4096", strings.Repeat("x", 4096-13) + "MIME-Version:", true},
		{"ok past byte 4096", strings.Repeat("x", 4096-12) + "MIME-Version:", false},
		{"ok no colon", "MIME-Version 1.0\n", false},
		{"ok dotted capital I", "MİME-Version: 1.0\n", false},
		{"ok dotless small i", "MıME-Version: 1.0\n", false},
		{"ok dotted capital I twice", "M\u0130ME-VERS\u0130ON:", false},
		{"ok not utf-8 around it", "\xff\xc4MIME-VERSION:\xb0", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := isMIME([]byte(c.data)); got != c.want {
				t.Errorf("isMIME(%q) = %v, want %v", c.data, got, c.want)
			}
		})
	}
}

// BenchmarkMerge measures one merge of a small user cloud-config with the
// test site (all, vo and tag fragments, two scripts).
func BenchmarkMerge(b *testing.B) {
	s := loadTestSite(b)
	ud := base64.StdEncoding.EncodeToString([]byte(userCloudConfig))
	v := testVars()
	for b.Loop() {
		if _, err := s.Merge(ud, true, v); err != nil {
			b.Fatal(err)
		}
	}
}

// TestQuotedPrintable: the exact encoding, and lines of at most 76
// characters. That cloud-init decodes it byte for byte is checked in
// cloudinit_test.go (TestCloudInitGzippedText and the merge cases).
func TestQuotedPrintable(t *testing.T) {
	long := strings.Repeat("x", 100)
	cases := []struct {
		name string
		in   string
		want string
	}{
		{"ok printable ASCII as is", "#!/bin/sh\necho hi\n", "#!/bin/sh\necho hi\n"},
		{"ok CR LF", "a\r\nb\r\n", "a=0D\nb=0D\n"},
		{"ok equals sign", "a=b", "a=3Db"},
		{"ok UTF-8 and Latin-1", "café \xe9\xff", "caf=C3=A9 =E9=FF"},
		{"ok space and tab inside a line", "a b\tc", "a b\tc"},
		{"ok space and tab before a line break", "a \nb\t\n", "a=20\nb=09\n"},
		{"ok space and tab at the end", "a \t", "a =09"},
		{"ok space alone", " ", "=20"},
		{"ok control bytes", "\x00\x1b\x7f", "=00=1B=7F"},
		{"ok long line soft-broken", long, long[:75] + "=\n" + long[75:]},
		{"ok escape not split", strings.Repeat("x", 74) + "\xff", strings.Repeat("x", 74) + "=\n=FF"},
		{"ok no soft break at the end", strings.Repeat("x", 75), strings.Repeat("x", 75)},
		{"ok empty", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := string(quotedPrintable([]byte(c.in)))
			if got != c.want {
				t.Errorf("quotedPrintable(%q) = %q, want %q", c.in, got, c.want)
			}
			for _, l := range strings.Split(got, "\n") {
				if len(l) > 76 {
					t.Errorf("line of %d characters: %q", len(l), l)
				}
			}
		})
	}
}

// TestMergeSizeEdges: a merged document whose base64 fits Nova's limit
// (49149 bytes, 65532 characters) is sent as it is; one byte more and it
// is gzipped.
func TestMergeSizeEdges(t *testing.T) {
	fixedBoundary(t)
	s := loadTestSite(t)
	v := testVars()
	user := func(n int) string {
		return base64.StdEncoding.EncodeToString(append([]byte("#!/bin/sh\n"), bytes.Repeat([]byte("x"), n-10)...))
	}
	out, err := s.Merge(user(100), true, v)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := decodeOutput(t, out)
	overhead := len(doc) - 100
	for _, c := range []struct {
		n       int
		gzipped bool
	}{
		{maxUserDataBytes - overhead - 1, false},
		{maxUserDataBytes - overhead, false},
		{maxUserDataBytes - overhead + 1, true},
	} {
		out, err := s.Merge(user(c.n), true, v)
		if err != nil {
			t.Fatalf("Merge of %d bytes: %v", c.n, err)
		}
		doc, gzipped := decodeOutput(t, out)
		if gzipped != c.gzipped || len(out) > MaxUserData || len(doc) != c.n+overhead {
			t.Errorf("user data of %d bytes: document %d bytes, sent as %d characters, gzipped %v; want gzipped %v", c.n, len(doc), len(out), gzipped, c.gzipped)
		}
		if !c.gzipped && len(doc) == maxUserDataBytes && len(out) != 65532 {
			t.Errorf("a %d-byte document is %d characters, want 65532", len(doc), len(out))
		}
	}
}
