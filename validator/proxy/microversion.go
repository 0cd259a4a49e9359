package proxy

import (
	"net/http"
	"strconv"
	"strings"
)

// microversion is a compute API microversion (major.minor).
type microversion struct{ major, minor int }

func (v microversion) atLeast(major, minor int) bool {
	return v.major > major || v.major == major && v.minor >= minor
}

// requestMicroversion reads the compute microversion the way Nova does
// (wsgi.py set_api_version_request with microversion-parse): the standard
// OpenStack-API-Version header first, where the last comma-separated item
// whose service is "compute" wins, then the legacy X-OpenStack-Nova-API-Version
// header, where the last item wins; "latest" is the highest version; no
// header means 2.1. The legacy /v2 mount ignores both headers (2.1).
// ok is false for a value Nova refuses with 400.
func requestMicroversion(h http.Header, legacyV2 bool) (v microversion, ok bool) {
	if legacyV2 {
		return microversion{2, 1}, true
	}
	val := ""
	for _, item := range splitHeader(h.Values("OpenStack-API-Version")) {
		f := strings.Fields(item)
		if len(f) == 2 && strings.EqualFold(f[0], "compute") {
			val = f[1]
		}
	}
	if val == "" {
		if items := splitHeader(h.Values("X-OpenStack-Nova-API-Version")); len(items) > 0 {
			val = items[len(items)-1]
		}
	}
	if val == "" {
		return microversion{2, 1}, true
	}
	if strings.EqualFold(val, "latest") {
		return microversion{2, 1 << 30}, true
	}
	maj, min, found := strings.Cut(val, ".")
	if !found {
		return microversion{}, false
	}
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	if err1 != nil || err2 != nil || a < 1 || b < 0 || maj[0] == '0' || len(min) > 1 && min[0] == '0' || maj[0] == '+' || min[0] == '+' {
		return microversion{}, false
	}
	return microversion{a, b}, true
}

func splitHeader(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}
