package proxy

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// The fast server's request head parser (see fastserver.go). It accepts
// only the plainest HTTP/1.1 requests the forwarder can take: a GET, HEAD
// or OPTIONS request line "METHOD /origin-form-target HTTP/1.1", header
// lines "Name: value" with CRLF line ends, ASCII only, no obs-fold, exactly
// one Host, no body and nothing that announces one (Transfer-Encoding, a
// Content-Length other than a single "0", Expect), no Upgrade. Anything else,
// valid or not, is left to net/http, which answers it (or refuses it) as
// it always has: the parser never refuses, it only declines.

// fastHead is one request head the parser accepted.
type fastHead struct {
	method string // GET, HEAD or OPTIONS
	target string // the request target, origin-form
	host   string // the Host field's value
	close  bool   // Connection lists "close"
	// fields are the header fields but Host, names canonical, values
	// without surrounding whitespace, in the order received
	fields []fastField
}

// fastField is one header field.
type fastField struct{ name, value string }

// crlfcrlf ends a request head.
var crlfcrlf = []byte("\r\n\r\n")

// fastMethod returns the method a request line starts with when it is one
// the fast server takes (as a constant, so that no string is allocated),
// and the length of the method and its space.
func fastMethod(line []byte) (string, int) {
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		return http.MethodGet, 4
	case bytes.HasPrefix(line, []byte("HEAD ")):
		return http.MethodHead, 5
	case bytes.HasPrefix(line, []byte("OPTIONS ")):
		return http.MethodOptions, 8
	}
	return "", 0
}

// fastRequestLine reports whether line (up to and including its LF) can
// start a request the fast server takes, so that anything else is handed
// over as soon as its first line is in.
func fastRequestLine(line []byte) bool {
	m, n := fastMethod(line)
	return m != "" && len(line) > n+len(" HTTP/1.1\r\n") && bytes.HasSuffix(line, []byte(" HTTP/1.1\r\n"))
}

// parseFastHead parses head, which ends with the blank line, into h (whose
// fields slice is reused). It reports false when the fast server must
// not take the request.
func parseFastHead(head []byte, h *fastHead) bool {
	fields := h.fields[:0]
	*h = fastHead{}
	h.fields = fields
	if !plainLines(head) {
		return false
	}
	s := string(head) // the one copy: every field below is a substring of it
	line, rest, _ := strings.Cut(s, "\r\n")
	m, n := fastMethod(head)
	if m == "" || len(line) <= n+len(" HTTP/1.1") || !strings.HasSuffix(line, " HTTP/1.1") {
		return false
	}
	target := line[n : len(line)-len(" HTTP/1.1")]
	if target == "" || target[0] != '/' || strings.ContainsAny(target, " \t#") {
		return false
	}
	h.method, h.target = m, target
	hosts, cls := 0, 0
	for {
		// (plainLines: every CR is followed by an LF, and every LF
		// follows a CR)
		eol := strings.IndexByte(rest, '\r')
		if eol < 0 {
			return false // (no blank line: not a head readHead found)
		}
		if eol == 0 {
			break // the blank line
		}
		line, rest = rest[:eol], rest[eol+2:]
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return false
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if token, canonical := tokenName(name); !token {
			return false // (also obs-fold: the line starts with a space)
		} else if strings.IndexByte(name, '_') >= 0 {
			return false // (net/http's side drops it: stripUnderscoreFields)
		} else if !canonical {
			name = textproto.CanonicalMIMEHeaderKey(name)
		}
		switch name {
		case "Host":
			hosts++
			if !fastHostValue(value) {
				return false
			}
			h.host = value
			continue
		case "Content-Length":
			cls++
			if value != "0" {
				return false
			}
		case "Transfer-Encoding", "Expect", "Upgrade":
			return false
		case "Connection":
			if hasToken([]string{value}, "close") {
				h.close = true
			}
		}
		h.fields = append(h.fields, fastField{name, value})
	}
	return hosts == 1 && cls <= 1 && len(h.fields) <= 100
}

// plainText reports whether b is all visible ASCII, space and tab: a line
// of a head without its CRLF.
func plainText(b []byte) bool { return plainScan(b, textBytes) }

// plainLines reports whether b holds only the bytes the fast paths take in a
// message head: visible ASCII, space and tab, with every line ended by CRLF
// (a CR only before an LF, an LF only after a CR).
func plainLines(b []byte) bool { return plainScan(b, plainBytes) }

// plainScan is plainText and plainLines: eight bytes at a time where none
// of them is a control byte or above 0x7e (most of a head), and slow, a
// byte at a time, where one is and for the bytes after the last eight.
func plainScan(b []byte, slow func(b []byte, from, to int) bool) bool {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		const ones, highs = 0x0101010101010101, 0x8080808080808080
		// a byte below 0x20, or above 0x7e (Hacker's Delight; exact for
		// whether there is any)
		if ((x-0x20*ones)&^x|(x+ones)|x)&highs == 0 {
			continue
		}
		if !slow(b, i, i+8) {
			return false
		}
	}
	return slow(b, i, len(b))
}

// textBytes is plainText for b[from:to].
func textBytes(b []byte, from, to int) bool {
	for _, c := range b[from:to] {
		if headBytes[c]&hbPlain == 0 {
			return false
		}
	}
	return true
}

// plainBytes is plainLines for b[from:to], CRs and LFs checked against
// their neighbours in b.
func plainBytes(b []byte, from, to int) bool {
	for i := from; i < to; i++ {
		switch headBytes[b[i]] &^ (hbToken | hbPath) {
		case hbPlain:
		case hbCR:
			if i+1 >= len(b) || b[i+1] != '\n' {
				return false
			}
		case hbLF:
			if i == 0 || b[i-1] != '\r' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// tokenName reports, in one pass, whether name is an RFC 9110 token (a
// field name) and whether it is already in the form
// textproto.CanonicalMIMEHeaderKey gives it (most senders use that).
func tokenName(name string) (token, canonical bool) {
	if name == "" {
		return false, false
	}
	canonical, upper := true, true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if headBytes[c]&hbToken == 0 {
			return false, false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	return true, canonical
}

// trimOWS is strings.Trim(v, " \t") (or bytes.Trim).
func trimOWS[T string | []byte](v T) T {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// The classes of headBytes: what a byte may be in a head (plainLines),
// whether it is a token character (tokenName), and whether url keeps it
// unescaped in a path (fastURL). A table, because the
// heads of every request and every answer of the fast paths go through
// both, a byte at a time.
const (
	hbPlain = 1 << iota // visible ASCII, space or tab
	hbCR
	hbLF
	hbToken // (with hbPlain) a tchar of RFC 9110
	hbPath  // (with hbPlain) a byte url keeps as it is in a path (fastURL)
)

var headBytes = func() (t [256]uint8) {
	for c := ' '; c < 0x7f; c++ {
		t[c] = hbPlain
	}
	t['\t'] = hbPlain
	t['\r'], t['\n'] = hbCR, hbLF
	for c := 0; c < 256; c++ {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0 {
			t[c] |= hbToken
		}
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_.~$&+,/:;=@", byte(c)) >= 0 {
			t[c] |= hbPath // (unreserved, the sub-delimiters url leaves in a path, / : @)
		}
	}
	return t
}()

// fastHostValue reports whether a Host value is a plain host[:port] the
// fast server takes (letters, digits, - . _ : and IPv6 brackets).
func fastHostValue(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._:[]", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// fastURL returns the URL of an origin-form request target as
// url.ParseRequestURI gives it (nil when it refuses the target). A target
// whose path has only the bytes url keeps unescaped in a path (so no
// RawPath) is set into u without a parse or an allocation; any other goes
// through url.ParseRequestURI. FuzzFastHead compares the two.
func fastURL(target string, u *url.URL) *url.URL {
	path, query, hasQuery := strings.Cut(target, "?")
	if path == "" || path[0] != '/' {
		return parseRequestURI(target)
	}
	for i := 0; i < len(path); i++ {
		if headBytes[path[i]]&hbPath == 0 {
			return parseRequestURI(target)
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c < ' ' || c >= 0x7f {
			return parseRequestURI(target)
		}
	}
	*u = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
	return u
}

func parseRequestURI(target string) *url.URL {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	return u
}
