package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzGatedBody feeds arbitrary bodies to the gate's parser and judgement.
// Invariants: no panic; a forwarded body is valid JSON without duplicate
// keys, and every image reference in it that the gate reads is a canonical
// UUID of an allowed image.
func FuzzGatedBody(f *testing.F) {
	for _, s := range []string{
		serverBody(idGood), serverBody("el9"), serverBody(strings.ToUpper(idRevoked)),
		bdmBody(`{"source_type":"image","uuid":"` + idGood + `","boot_index":0}`),
		`{"server":{"imageRef":"` + idGood + `","\u0069mageRef":"x"}}`,
		`{"rebuild":{"imageRef":"` + idGood + `","user_data":null}}`, `{"rescue":{"rescue_image_ref":"el9"}}`,
		`{"server":{"block_device_mapping":[{"image_id":"` + idGood + `"}]}}`, `[]`, `{"a":1e999}`,
		// what Python's json.loads reads and a strict parser may not:
		// a BOM, NaN, lone surrogates, deep nesting, a boot index string
		// with a newline (Nova's pattern ^-?[0-9]+$ matches "0\n")
		"\ufeff" + serverBody(idGood), `{"server":{"imageRef":"` + idGood + `","min_count":NaN}}`,
		`{"server":{"imageRef":"\ud800` + idGood + `"}}`, strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40),
		bdmBody(`{"source_type":"volume","uuid":"` + idGood + `","boot_index":"0\n"}`),
		`{"rebuild":{"imageRef":"` + idGood + `"},"rebuild":{"imageRef":"el9"}}`, `{"os-start":null,"rebuild":{"imageRef":"x"}}`,
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	fx := catalogue(f)
	var fwd []byte
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fwd, _ = io.ReadAll(r.Body)
		w.WriteHeader(202)
	}))
	defer nova.Close()
	u, _ := url.Parse(nova.URL)
	p, err := New(Options{Upstream: u, Lookup: fx.glance, Decider: fx.trust, MirrorProject: mirrorProject,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxBody: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	allowed := map[string]bool{idGood: true, idNewer: true, idRunAnyway: true, idSharedA: true, idSharedC: true}
	f.Fuzz(func(t *testing.T, body string, create bool) {
		fwd = nil
		path := "/v2.1/servers"
		if !create {
			path = "/v2.1/servers/x/action"
		}
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		if w.Code != 202 {
			if fwd != nil {
				t.Fatal("refused but forwarded")
			}
			return
		}
		if _, err := parseStrict(fwd); err != nil {
			t.Fatalf("forwarded body does not parse strictly: %v", err)
		}
		var m map[string]any
		_ = json.Unmarshal(fwd, &m)
		check := func(v any) {
			if s, ok := v.(string); ok && s != "" && !allowed[s] {
				t.Fatalf("forwarded image reference %q of %s", s, fwd)
			}
		}
		if srv, ok := m["server"].(map[string]any); ok && create {
			check(srv["imageRef"])
			for _, k := range []string{"block_device_mapping_v2", "block_device_mapping"} {
				arr, _ := srv[k].([]any)
				for _, e := range arr {
					if b, ok := e.(map[string]any); ok {
						if st, _ := b["source_type"].(string); strings.EqualFold(st, "image") {
							check(b["uuid"])
						}
						check(b["image_id"])
					}
				}
			}
		}
		if rb, ok := m["rebuild"].(map[string]any); ok && !create {
			check(rb["imageRef"])
		}
		if rs, ok := m["rescue"].(map[string]any); ok && !create {
			check(rs["rescue_image_ref"])
		}
	})
}

// FuzzParseStrict: what parseStrict accepts is one valid JSON document
// of valid UTF-8 without a byte-order mark, that encoding/json (which the
// forwarded body is re-encoded with) reads as the same value, and whose
// re-encoding parseStrict reads back unchanged; what it refuses, it
// refuses as a body error (400), never otherwise.
func FuzzParseStrict(f *testing.F) {
	for _, s := range []string{
		`{"server":{"imageRef":"x","min_count":1}}`, `{"a":1,"a":2}`, `{"a":{"b":1,"b":1}}`, `[1,]`, `{"a":1}}`,
		`{"a":1} x`, "\ufeff{}", `{"a":NaN}`, `{"\ud800":1,"\ud801":2}`, `{"a":1e999,"b":-0.0,"c":12345678901234567890}`,
		strings.Repeat("[", 70) + strings.Repeat("]", 70), `{"a":"\u0000\t"}`, "{\"a\":\"\xff\"}", ` {} `, `""`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseStrict(b)
		if err != nil {
			if _, ok := err.(*errBody); !ok {
				t.Fatalf("refused with a %T, not a body error: %v", err, err)
			}
			return
		}
		if !json.Valid(b) || !utf8.Valid(b) || bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
			t.Fatalf("accepted %q", b)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var w any
		if err := dec.Decode(&w); err != nil || !reflect.DeepEqual(v, w) {
			t.Fatalf("%q: parseStrict %#v, encoding/json %#v (%v)", b, v, w, err)
		}
		enc, err := encodeJSON(v)
		if err != nil {
			t.Fatalf("%q: re-encoding: %v", b, err)
		}
		if v2, err := parseStrict(enc); err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("%q re-encoded as %q, read back as %#v (%v)", b, enc, v2, err)
		}
	})
}

// FuzzFastHead feeds arbitrary request heads to the fast server's parser.
// Invariant: a head it accepts, with a target fastURL takes, is one
// net/http reads as the same request (method, target and its URL, Host,
// header fields, Connection: close), bodyless; so
// the fast path never reads a request differently from the server it
// stands in for. (What it declines goes to net/http itself.)
func FuzzFastHead(f *testing.F) {
	for _, s := range []string{
		"GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v2.1/fl%61vors?a=%2F&b=1? HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET //servers/x!y? HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a;b=c,d@e:f$g&h+i~j?q\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /v2.1/servers/detail?all_tenants=1 HTTP/1.1\r\nHost: nova:8774\r\nX-Auth-Token: t\r\nAccept: a\r\nAccept: b\r\n\r\n",
		"OPTIONS /x HTTP/1.1\r\nHost: [::1]:80\r\nconnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\nX-A:\t v \t\r\n\r\n",
		// smuggling attempts of the s19 review (each declined here, and
		// net/http re-frames what it forwards): bytes Python's parser
		// takes for whitespace or line ends, underscore and spaced names
		"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\xa0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\nHost: h\nContent-Length: 5\n\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
		"GET /v2.1/flavors?_methodx=1&_meth%FFod=POST HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v2.1/flavors?a\xa0POST HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v2.1/flavors HTTP/1.1\r\nHost: h\r\nOpenStack-API-Version: compute\xa02.57\r\n\r\n",
		"GET http://h/v2.1/flavors HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v2.1/flavors HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		i := bytes.Index(head, crlfcrlf)
		if i < 0 {
			return
		}
		head = head[:i+4]
		var h fastHead
		var u url.URL
		if !parseFastHead(head, &h) {
			return
		}
		fu := fastURL(h.target, &u)
		if fu == nil {
			return // (fastConn.request declines it too)
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("accepted, net/http refuses: %v", err)
		}
		if r.Method != h.method || r.RequestURI != h.target || r.Host != h.host || r.Close != h.close ||
			r.ContentLength != 0 || len(r.TransferEncoding) != 0 {
			t.Fatalf("read differently: %s %s Host %q close %v CL %d TE %v", r.Method, r.RequestURI, r.Host, r.Close,
				r.ContentLength, r.TransferEncoding)
		}
		got := http.Header{}
		for _, fl := range h.fields {
			got[string(fl.name)] = append(got[string(fl.name)], string(fl.value))
		}
		if p := got["Pragma"]; len(p) > 0 && p[0] == "no-cache" && got["Cache-Control"] == nil {
			got["Cache-Control"] = []string{"no-cache"}
		}
		if !reflect.DeepEqual(got, r.Header) {
			t.Fatalf("header fields\nfast %q\nnet/http %q", got, r.Header)
		}
		if !reflect.DeepEqual(*fu, *r.URL) {
			t.Fatalf("URL of %q\nfast %#v\nnet/http %#v", h.target, fu, r.URL)
		}
	})
}

// FuzzPlainAnswer feeds arbitrary upstream answer heads to the fast
// relay's parser. Invariant: a head it takes is one http.ReadResponse
// reads as the same answer (status, header fields, Content-Length), kept
// alive and unchunked, so the fast relay never frames an answer
// differently from relay.
func FuzzPlainAnswer(f *testing.F) {
	for _, s := range plainAnswers {
		f.Add([]byte(s))
	}
	for _, s := range forwarderCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var a plainAnswer
		if !parsePlainAnswer(raw, &a) {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("taken, http.ReadResponse refuses: %v", err)
		}
		if resp.StatusCode != a.status || resp.ContentLength != a.contentLength || resp.Close || len(resp.TransferEncoding) != 0 {
			t.Fatalf("read differently: %d CL %d close %v TE %v", resp.StatusCode, resp.ContentLength, resp.Close, resp.TransferEncoding)
		}
		got := http.Header{}
		for _, fl := range a.fields {
			got[string(a.name(fl))] = append(got[string(a.name(fl))], string(a.value(fl)))
		}
		if !reflect.DeepEqual(got, resp.Header) {
			t.Fatalf("header fields\nfast %q\nnet/http %q", got, resp.Header)
		}
		for i := 1; i < len(a.fields); i++ {
			if bytes.Compare(a.name(a.fields[i]), a.name(a.fields[i-1])) < 0 {
				t.Fatalf("not sorted: %q", a.head)
			}
		}
	})
}

// FuzzPlainLines: plainLines, eight bytes at a time where it can, says
// what the byte-at-a-time check says of every input, and so does plainText
// of an input without CR or LF (and refuses any with one).
func FuzzPlainLines(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX: \x7f\r\n\r\n",
		"abcdefg\rhijklmnop\n", "\t\t\t\t\t\t\t\t\r\n", "abcdefgh\xff", "\x1f", "~~~~~~~~~~~~~~~~\x80",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := plainLines(b), plainBytes(b, 0, len(b)); got != want {
			t.Fatalf("plainLines(%q) = %v, byte at a time %v", b, got, want)
		}
		want := !bytes.ContainsAny(b, "\r\n") && plainBytes(b, 0, len(b))
		if got := plainText(b); got != want {
			t.Fatalf("plainText(%q) = %v, byte at a time %v", b, got, want)
		}
	})
}

// FuzzSplitPath: splitPath, into a fixed array when the segments fit,
// splits as strings.Split does.
func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"", "/", "v2.1/servers", "v2/p/servers/x/action", "a/b/c/d/e/f/g/h", "a/b/c/d/e/f/g/h/i", "//", "////////////"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		var buf [8]string
		if got, want := splitPath(p, &buf), strings.Split(p, "/"); !slices.Equal(got, want) {
			t.Fatalf("splitPath(%q) = %q, strings.Split %q", p, got, want)
		}
	})
}

// FuzzRequestMicroversion: requestMicroversion reads header values as a
// second, line-for-line transcription of microversion-parse and Nova's
// APIVersionRequest (Python's str.split(None, 1) and str.strip() on
// eventlet's Latin-1 text, with the string functions of the strings
// package) does. TestMicroversionMatchesNova compares both with the stack's
// nova-api.
func FuzzRequestMicroversion(f *testing.F) {
	for _, s := range [][2]string{
		{"compute 2.57", ""}, {"compute\xa02.57", ""}, {"compute\x852.57", ""}, {"\xa0compute 2.57\xa0", ""},
		{"compute 2.60, compute 2.57 x", ""}, {"volume 3.5", "2.58,"}, {"", "2.40, 2.58\xa0"},
		{"compute LATEST", ""}, {"compute latest", ""}, {"compute 2.-0", ""}, {"compute 02.1", ""},
		{"compute\x1c2.57", ""}, {"compute 2.99999999999999999999", ""}, {",,compute 2.1,,", ""},
	} {
		f.Add(s[0], s[1])
	}
	pySpaceRune := func(r rune) bool { return r < 0x100 && pySpace(byte(r)) }
	// Latin-1: each byte one rune, as eventlet decodes a field value
	latin1 := func(s string) string {
		rs := make([]rune, len(s))
		for i := 0; i < len(s); i++ {
			rs[i] = rune(s[i])
		}
		return string(rs)
	}
	model := func(std, legacy string, hasStd, hasLegacy bool) (microversion, bool) {
		std, legacy = latin1(std), latin1(legacy)
		var val *string
		if hasStd {
			items := strings.Split(std, ",")
			for i := len(items) - 1; i >= 0 && val == nil; i-- {
				parts := strings.FieldsFunc(items[i], pySpaceRune)
				if len(parts) < 2 || !strings.EqualFold(parts[0], "compute") {
					continue
				}
				// split(None, 1): the rest after the first run of spaces
				rest := strings.TrimLeftFunc(strings.TrimPrefix(strings.TrimLeftFunc(items[i], pySpaceRune), parts[0]), pySpaceRune)
				v := strings.TrimFunc(rest, pySpaceRune)
				val = &v
			}
		}
		if val == nil && hasLegacy {
			items := strings.Split(legacy, ",")
			v := strings.TrimFunc(items[len(items)-1], pySpaceRune)
			val = &v
		}
		switch {
		case val == nil:
			return microversion{2, 1}, true
		case *val == "latest":
			return microversion{2, 1 << 30}, true
		}
		m := regexp.MustCompile(`^([1-9][0-9]{0,8})\.([1-9][0-9]{0,8}|0)$`).FindStringSubmatch(*val)
		if m == nil {
			return microversion{}, false
		}
		a, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		return microversion{a, b}, true
	}
	f.Fuzz(func(t *testing.T, std, legacy string) {
		h := http.Header{}
		if std != "" {
			h["Openstack-Api-Version"] = strings.Split(std, "\n")
		}
		if legacy != "" {
			h["X-Openstack-Nova-Api-Version"] = strings.Split(legacy, "\n")
		}
		got, gotOK := requestMicroversion(h, false)
		want, wantOK := model(strings.ReplaceAll(std, "\n", ","), strings.ReplaceAll(legacy, "\n", ","), std != "", legacy != "")
		if got != want || gotOK != wantOK {
			t.Fatalf("std %q legacy %q: %v %v, model %v %v", std, legacy, got, gotOK, want, wantOK)
		}
	})
}
