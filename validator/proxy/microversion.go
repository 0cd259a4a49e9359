package proxy

import (
	"net/http"
	"strings"
)

// microversion is a compute API microversion (major.minor).
type microversion struct{ major, minor int }

func (v microversion) atLeast(major, minor int) bool {
	return v.major > major || v.major == major && v.minor >= minor
}

// requestMicroversion reads the compute microversion exactly as Nova does
// (wsgi.py set_api_version_request with microversion-parse 1.0 and
// api_version_request.py):
//
//   - the values of each header are joined with commas (eventlet joins a
//     repeated field so);
//   - OpenStack-API-Version: the last comma-separated item that splits into
//     a service and a version, whose service is "compute" (any case), wins;
//   - without one, X-OpenStack-Nova-API-Version: its last item, even empty;
//   - no header means 2.1, "latest" (that case only) the highest version,
//     anything else must be MAJOR.MINOR without leading zeros.
//
// Whitespace is Python's (str.split() and str.strip() on the Latin-1 text
// eventlet decodes a field into): besides space and tab, the bytes 0x85
// (NEL) and 0xa0 (no-break space), which net/http keeps in a value as
// they are. Read with Go's whitespace, "compute\xa02.57" was no version
// to the gate (2.1: rebuild user data left alone) and 2.57 to Nova, which
// then took the rebuild's user_data without the site's contextualisation.
// The legacy /v2 mount ignores both headers (2.1). ok is false for a value
// Nova refuses with 400.
func requestMicroversion(h http.Header, legacyV2 bool) (v microversion, ok bool) {
	if legacyV2 {
		return microversion{2, 1}, true
	}
	val, found := "", false
	if std := h.Values("OpenStack-API-Version"); len(std) > 0 {
		items := strings.Split(strings.Join(std, ","), ",")
		for i := len(items) - 1; i >= 0; i-- {
			service, version, two := pySplit1(pyTrim(items[i]))
			if two && strings.EqualFold(service, "compute") {
				val, found = pyTrim(version), true
				break
			}
		}
	}
	if !found {
		if legacy := h.Values("X-OpenStack-Nova-API-Version"); len(legacy) > 0 {
			items := strings.Split(strings.Join(legacy, ","), ",")
			val, found = pyTrim(items[len(items)-1]), true
		}
	}
	if !found {
		return microversion{2, 1}, true
	}
	if val == "latest" {
		return microversion{2, 1 << 30}, true
	}
	// ^([1-9]\d*)\.([1-9]\d*|0)$ (Python's $ also matches before a final
	// newline, which a field value cannot hold)
	maj, min, dot := strings.Cut(val, ".")
	a, okA := decimal(maj)
	b, okB := decimal(min)
	if !dot || !okA || !okB || maj[0] == '0' || len(min) > 1 && min[0] == '0' {
		return microversion{}, false
	}
	return microversion{a, b}, true
}

// decimal parses 1 to 9 ASCII digits (a larger version is out of Nova's
// range, which Nova refuses too).
func decimal(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// pySpace reports whether Python's str.split() and str.strip() take the
// Latin-1 character of byte c for whitespace.
func pySpace(c byte) bool {
	return c == ' ' || '\t' <= c && c <= '\r' || 0x1c <= c && c <= 0x1f || c == 0x85 || c == 0xa0
}

// pyTrim is Python's str.strip() on a Latin-1 string.
func pyTrim(s string) string {
	for len(s) > 0 && pySpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && pySpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// pySplit1 is Python's s.split(None, 1) on a string without surrounding
// whitespace, two reporting whether it gives two parts.
func pySplit1(s string) (first, rest string, two bool) {
	for i := 0; i < len(s); i++ {
		if pySpace(s[i]) {
			j := i
			for j < len(s) && pySpace(s[j]) {
				j++
			}
			return s[:i], s[j:], j < len(s)
		}
	}
	return s, "", false
}
