package proxy

import (
	"net/url"
	"strings"
)

// routeKind is what a request path means to the gate.
type routeKind int

const (
	routeOther   routeKind = iota // passed through untouched
	routeCreate                   // POST /servers, POST /os-volumes_boot
	routeAction                   // POST /servers/{id}/action, /os-volumes_boot/{id}/action
	routeVersion                  // GET /, /v2, /v2.1 (version documents)
)

// route is the gate's reading of a request path.
type route struct {
	kind routeKind
	// legacyV2 is set for the /v2 mount (Nova ignores microversion headers there).
	legacyV2 bool
	// project is the /{project_id} segment when the path has one.
	project string
	// server is the {id} of an action path.
	server string
}

// classifyPath reads the percent-decoded path the way Nova's urlmap and
// routes would, but more liberally, so that anything Nova could route to a
// server create or action is judged:
//
//   - the path is percent-decoded once, as the WSGI server does for PATH_INFO
//     (so /serv%65rs is /servers and %2F is a slash);
//   - the version segment (v2.1 or v2) is optional (an upstream configured
//     with a versioned URL adds it), and the /{project_id} segment may be any
//     single segment;
//   - segments are compared case-insensitively, and a ".json" suffix on the
//     last segment is ignored. Nova's routes are case-sensitive and have no
//     format suffix since the Pike routing rewrite, so such requests get 404
//     from Nova; judging them anyway costs nothing and does not depend on
//     that detail.
//
// anomalous reports paths no client library sends and whose routing is
// unclear: empty segments (//servers), dot segments, a trailing slash, a
// bad escape or control characters. The gate refuses every POST with such a
// path (400) instead of guessing how Nova would route it.
func classifyPath(escapedPath string) (r route, anomalous bool) {
	p, err := url.PathUnescape(escapedPath)
	if err != nil {
		return route{}, true
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			anomalous = true
		}
	}
	if p == "" || p == "/" {
		return route{kind: routeVersion}, anomalous
	}
	if !strings.HasPrefix(p, "/") {
		anomalous = true
	}
	var segBuf [8]string
	segs := splitPath(strings.TrimPrefix(p, "/"), &segBuf)
	if segs[len(segs)-1] == "" {
		// trailing slash: Nova's routes do not match it (404) but versions do.
		segs = segs[:len(segs)-1]
		if len(segs) != 1 || !isVersionSeg(segs[0]) {
			anomalous = true
		}
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			anomalous = true
		}
	}
	if len(segs) > 0 && isVersionSeg(segs[0]) {
		r.legacyV2 = strings.EqualFold(segs[0], "v2")
		segs = segs[1:]
		if len(segs) == 0 {
			r.kind = routeVersion
			return r, anomalous
		}
	}
	if n := len(segs); n > 0 {
		segs[n-1] = trimJSONSuffix(segs[n-1])
	}
	isColl := func(s string) bool {
		return strings.EqualFold(s, "servers") || strings.EqualFold(s, "os-volumes_boot")
	}
	switch len(segs) {
	case 1:
		if isColl(segs[0]) {
			r.kind = routeCreate
		}
	case 2:
		if isColl(segs[1]) {
			r.kind, r.project = routeCreate, segs[0]
		}
	case 3:
		if isColl(segs[0]) && strings.EqualFold(segs[2], "action") {
			r.kind, r.server = routeAction, segs[1]
		}
	case 4:
		if isColl(segs[1]) && strings.EqualFold(segs[3], "action") {
			r.kind, r.project, r.server = routeAction, segs[0], segs[2]
		}
	}
	return r, anomalous
}

// collapsedVersion reports whether the decoded path, its runs of slashes
// collapsed, is a version document's ("/", "/v2", "/v2.1", any case, a
// trailing slash): nova-api's URL map serves "//", "//v2.1", "/%2Fv2.1"
// and "/v2.1//" as it serves "/" and "/v2.1" (nova-api 26, Zed).
func collapsedVersion(path string) bool {
	seg := ""
	for s := range strings.SplitSeq(path, "/") {
		if s == "" {
			continue
		}
		if seg != "" {
			return false
		}
		seg = s
	}
	return seg == "" || isVersionSeg(seg)
}

func isVersionSeg(s string) bool {
	return strings.EqualFold(s, "v2.1") || strings.EqualFold(s, "v2")
}

func trimJSONSuffix(s string) string {
	if len(s) > 5 && strings.EqualFold(s[len(s)-5:], ".json") {
		return s[:len(s)-5]
	}
	return s
}

// splitPath is strings.Split(p, "/") into buf when the segments fit in
// it (every path the gate judges does), without allocating.
func splitPath(p string, buf *[8]string) []string {
	rest := p
	for n := 0; ; n++ {
		if n == len(buf) {
			return strings.Split(p, "/")
		}
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			buf[n] = rest
			return buf[:n+1]
		}
		buf[n], rest = rest[:i], rest[i+1:]
	}
}
