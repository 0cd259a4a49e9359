package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// gateReq is one gated request being judged.
type gateReq struct {
	r      *http.Request
	rt     route
	reqID  string
	now    time.Time
	policy bootPolicy
	// caller is the token's user and project (nil without Options.Identity).
	caller *Caller
	// primary is the image the server boots from (for contextualisation):
	// nil for a volume or an unmanaged image; primarySet once the boot
	// source is decided (imageRef, or the first boot-index-0 entry), so a
	// later entry does not take its place.
	primary    *Image
	primarySet bool
	// serverName is server.name (create) or rebuild.name, for contextualisation.
	serverName string
	// body is the request's body as gateLimited wraps it (nil without)
	body *deadlineBody
}

// newGateReq starts the judgement of a gated request.
func (p *Proxy) newGateReq(r *http.Request, rt route) *gateReq {
	g := &gateReq{r: r, rt: rt, reqID: newRequestID()}
	g.policy = bootPolicy{MirrorProject: p.o.MirrorProject}
	if p.identity == nil {
		g.policy.AllowUnmanaged = rt.project != "" && p.unmanaged[strings.ToLower(rt.project)]
	}
	return g
}

// gate judges a create or action request, whose token gateLimited has
// validated, and either refuses it or forwards the validated,
// re-serialised body. It returns the metrics kind.
func (p *Proxy) gate(w http.ResponseWriter, g *gateReq) string {
	r := g.r
	g.now = p.o.Now()
	body, err := p.judge(r.Context(), g)
	if errors.Is(err, errSlotReclaimed) {
		// (its body not read whole: the connection closes after the answer)
		w.Header().Set("Connection", "close")
		p.overloaded(w, g, gatedProject(g), RejectProjectLimit)
		return "refused"
	}
	if err != nil {
		p.refused(w, g, err)
		return "refused"
	}
	out := r.Clone(context.WithValue(r.Context(), ctxRequestID, g.reqID))
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	out.ContentLength = int64(len(body))
	out.TransferEncoding = nil
	out.Header.Del("Transfer-Encoding")
	out.Header.Del("Content-Encoding")
	out.Header.Set("Content-Length", strconv.Itoa(len(body)))
	out.Header.Set("Content-Type", "application/json")
	if !requestIDRE.MatchString(out.Header.Get("X-Openstack-Request-Id")) {
		// Nova logs a valid inbound id as global_request_id: that links its
		// log lines to the audit line of this decision.
		out.Header.Set("X-Openstack-Request-Id", g.reqID)
	}
	p.rp.ServeHTTP(w, out)
	return "gated"
}

var requestIDRE = regexp.MustCompile(`^req-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$`)

// refused answers a refusal and audits it when it was not an image decision
// (image decisions are audited where they are made).
func (p *Proxy) refused(w http.ResponseWriter, g *gateReq, err error) {
	var rf *refusal
	var be *errBody
	var ua errUnauthenticated
	switch {
	case errors.As(err, &ua):
		p.o.Metrics.decision("refused", "token")
		p.audit(g, "request refused", "reason", "token", "token_present", ua.present)
		// (the body is not read: the token is looked at first)
		unread := closeUnreadBody(w, g.r)
		writeUnauthorized(w, g.reqID, p.o.AuthURI)
		unread()
	case errors.As(err, &rf):
		writeFault(w, g.reqID, rf.status, rf.msg)
		if rf.reason != "" && !strings.HasPrefix(rf.reason, "decision:") {
			p.o.Metrics.decision("refused", rf.reason)
			p.audit(g, "request refused", "reason", rf.reason, "message", rf.msg)
		}
	case errors.As(err, &be):
		p.o.Metrics.decision("refused", "body")
		p.audit(g, "request refused", "reason", "body", "message", be.msg)
		writeFault(w, g.reqID, http.StatusBadRequest, be.msg+"; the image gate does not forward it.")
	default:
		if errors.Is(err, ErrServiceLogin) {
			// Glance was not asked: the proxy's own token could not be
			// renewed
			p.o.Metrics.upstreamError(upstreamKeystone)
		} else {
			p.o.Metrics.upstreamError(upstreamGlance)
		}
		p.o.Metrics.decision("error", "lookup")
		p.audit(g, "request failed", "reason", "lookup", "err", err)
		writeFault(w, g.reqID, http.StatusBadGateway, "The image gate could not look up the image in the image service; try again later.")
	}
}

// authenticate validates the token of g's request (when the proxy has an
// Identity) and sets g.caller and the unmanaged-project policy from it. It
// returns errUnauthenticated for no token or one Keystone refuses, and an
// identity refusal (503) when Keystone could not be asked: either way Nova
// is not called. The token is never logged.
func (p *Proxy) authenticate(g *gateReq) error {
	if p.identity == nil || g.caller != nil {
		return nil
	}
	token := userToken(g.r.Header)
	if token == "" {
		p.o.Metrics.token("missing")
		return errUnauthenticated{present: false}
	}
	c, err := p.identity.Validate(withClient(g.r.Context(), clientKey(g.r)), token)
	switch {
	case errors.Is(err, errValidationBusy):
		return err
	case errors.Is(err, ErrInvalidToken):
		return errUnauthenticated{present: true}
	case err != nil:
		p.o.Metrics.upstreamError(upstreamKeystone)
		p.o.Metrics.decision("error", "identity")
		p.audit(g, "request failed", "reason", "identity", "err", err)
		return refuse(http.StatusServiceUnavailable, "decision:identity",
			"The image gate could not validate the request's token with the identity service; try again later.")
	}
	g.caller = c
	g.policy.AllowUnmanaged = c.ProjectID != "" && p.unmanaged[strings.ToLower(c.ProjectID)]
	return nil
}

// errUnauthenticated refuses a gated request without a valid token (401).
type errUnauthenticated struct{ present bool }

func (e errUnauthenticated) Error() string { return "no valid token" }

// audit writes one line about the request g: who (the token's user and
// project once validated; the path's /{project_id} segment, if any, as
// path_project), what and from where.
func (p *Proxy) audit(g *gateReq, msg string, kv ...any) {
	args := make([]any, 0, 24+len(kv))
	args = append(args, "request_id", g.reqID, "method", g.r.Method, "path", truncate(g.r.URL.EscapedPath(), 256))
	if c := g.caller; c != nil {
		args = append(args, "user_id", c.UserID, "user_name", truncate(c.UserName, 64),
			"project_id", c.ProjectID, "project_name", truncate(c.ProjectName, 64))
	}
	args = append(args, "path_project", g.rt.project, "remote", remoteHost(g.r))
	if gid := g.r.Header.Get("X-Openstack-Request-Id"); gid != "" && requestIDRE.MatchString(gid) {
		args = append(args, "global_request_id", gid)
	}
	p.o.Logger.Info(msg, append(args, kv...)...)
}

// readBody checks the headers of a gated request and reads its body.
func (p *Proxy) readBody(r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil, refuse(http.StatusBadRequest, "content-type", "The request has no Content-Type; send Content-Type: application/json.")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" && mt != "application/vnd.openstack.compute+json" {
		return nil, refuse(http.StatusBadRequest, "content-type", "Content-Type %q is not accepted by the image gate; send Content-Type: application/json.", truncate(ct, 64))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return nil, refuse(http.StatusBadRequest, "content-type", "charset %q is not accepted by the image gate; send UTF-8.", truncate(cs, 32))
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, refuse(http.StatusBadRequest, "content-encoding", "Content-Encoding %q is not accepted by the image gate.", truncate(ce, 32))
	}
	if r.ContentLength > p.o.MaxBody {
		return nil, refuse(http.StatusRequestEntityTooLarge, "size", "The request body is larger than %d bytes.", p.o.MaxBody)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, p.o.MaxBody+1))
	if errors.Is(err, errSlotReclaimed) {
		return nil, err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, refuse(http.StatusRequestTimeout, "body", "The request body did not arrive within %s; the image gate does not wait longer for it.", p.bodyTimeout)
	}
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "body", "The request body could not be read.")
	}
	if int64(len(b)) > p.o.MaxBody {
		return nil, refuse(http.StatusRequestEntityTooLarge, "size", "The request body is larger than %d bytes.", p.o.MaxBody)
	}
	return b, nil
}

// judge reads, parses and judges the body, and returns the body to forward.
func (p *Proxy) judge(ctx context.Context, g *gateReq) ([]byte, error) {
	b, err := p.readBody(g.r)
	if err != nil {
		return nil, err
	}
	if g.body != nil && !p.limit.bodyRead(g.body) {
		return nil, errSlotReclaimed // (taken back as the body came)
	}
	v, err := parseStrict(b)
	if err != nil {
		return nil, err
	}
	body, ok := v.(map[string]any)
	if !ok {
		return nil, bodyErrorf("the request body is not a JSON object")
	}
	if g.rt.kind == routeCreate {
		err = p.judgeCreate(ctx, g, body)
	} else {
		err = p.judgeAction(ctx, g, body)
	}
	if err != nil {
		return nil, err
	}
	return encodeJSON(body)
}

// Keys the gate reads; their case variants are refused where they are read.
var (
	bdmKeys    = []string{"source_type", "uuid", "image_id", "boot_index", "destination_type", "volume_id", "snapshot_id"}
	serverKeys = []string{"imageRef", "block_device_mapping_v2", "block_device_mapping", "user_data"}
)

func (p *Proxy) judgeCreate(ctx context.Context, g *gateReq, body map[string]any) error {
	if err := checkKeyCase(body, "the request body", "server"); err != nil {
		return err
	}
	srv, ok := body["server"].(map[string]any)
	if !ok {
		return bodyErrorf("the request body has no server object")
	}
	if err := checkKeyCase(srv, "server", serverKeys...); err != nil {
		return err
	}
	imageRef, err := optString(srv, "imageRef", "server.imageRef")
	if err != nil {
		return err
	}
	if g.serverName, err = optString(srv, "name", "server.name"); err != nil {
		return err
	}
	if imageRef != "" {
		id, img, err := p.resolve(ctx, g, imageRef, "server.imageRef")
		if err != nil {
			return err
		}
		srv["imageRef"] = id
		g.primary, g.primarySet = img, true
	}
	if v := srv["block_device_mapping_v2"]; v != nil {
		arr, ok := v.([]any)
		if !ok {
			return bodyErrorf("server.block_device_mapping_v2 is not a list")
		}
		for i, e := range arr {
			if err := p.judgeBDM(ctx, g, e, fmt.Sprintf("server.block_device_mapping_v2[%d]", i), imageRef == "", false); err != nil {
				return err
			}
		}
	}
	if v := srv["block_device_mapping"]; v != nil {
		arr, ok := v.([]any)
		if !ok {
			return bodyErrorf("server.block_device_mapping is not a list")
		}
		for i, e := range arr {
			if err := p.judgeBDM(ctx, g, e, fmt.Sprintf("server.block_device_mapping[%d]", i), imageRef == "", true); err != nil {
				return err
			}
		}
	}
	return p.contextualise(g, srv)
}

// judgeBDM judges one block device mapping entry: every image source and
// every image_id key is resolved, judged and canonicalised; a volume or
// snapshot that may be the boot disk is judged by judgeVolume.
func (p *Proxy) judgeBDM(ctx context.Context, g *gateReq, e any, where string, noImageRef, legacy bool) error {
	m, ok := e.(map[string]any)
	if !ok {
		return bodyErrorf("%s is not an object", where)
	}
	if err := checkKeyCase(m, where, bdmKeys...); err != nil {
		return err
	}
	st, err := optString(m, "source_type", where+".source_type")
	if err != nil {
		return err
	}
	boot0, bootable, err := bootIndex(m["boot_index"], where)
	if err != nil {
		return err
	}
	if strings.EqualFold(st, "image") {
		ref, err := optString(m, "uuid", where+".uuid")
		if err != nil {
			return err
		}
		if ref == "" {
			return bodyErrorf("%s has source_type image but no uuid", where)
		}
		id, img, err := p.resolve(ctx, g, ref, where+".uuid")
		if err != nil {
			return err
		}
		m["uuid"] = id
		if boot0 && !g.primarySet {
			g.primary, g.primarySet = img, true
		}
	}
	if _, present := m["image_id"]; present {
		ref, err := optString(m, "image_id", where+".image_id")
		if err != nil {
			return err
		}
		if ref != "" {
			id, img, err := p.resolve(ctx, g, ref, where+".image_id")
			if err != nil {
				return err
			}
			m["image_id"] = id
			if boot0 && !g.primarySet {
				g.primary, g.primarySet = img, true
			}
		}
	}
	if legacy {
		boot0 = true // the legacy format has no boot index: any volume may be the root disk
	} else {
		if !bootable && !noImageRef {
			// a data volume (no boot index, or a negative one): what the
			// server boots is judged elsewhere. Any boot_index >= 0 is a
			// boot device to Nova and the hypervisor (libvirt lists them
			// all in its boot order): a blank or failing boot_index 0 falls
			// through to the next one, so each is judged.
			return nil
		}
		switch {
		case strings.EqualFold(st, "volume"):
			if err := p.judgeVolume(ctx, g, m, "uuid", false, where, boot0); err != nil {
				return err
			}
		case strings.EqualFold(st, "snapshot"):
			if err := p.judgeVolume(ctx, g, m, "uuid", true, where, boot0); err != nil {
				return err
			}
		}
	}
	// Every volume_id and snapshot_id key is judged as what it names.
	// Nova's v2 schema admits these legacy keys too, and
	// BlockDeviceDict.from_api only sets <source_type>_id from uuid: a
	// volume_id beside a blank, image or snapshot source is the volume
	// Nova's driver attaches instead of creating one. A legacy entry keeps
	// both keys (from_legacy), and the snapshot driver attaches volume_id
	// when it is set.
	for _, k := range [...]string{"snapshot_id", "volume_id"} {
		if _, present := m[k]; !present {
			continue
		}
		id, err := optString(m, k, where+"."+k)
		if err != nil {
			return err
		}
		if id == "" {
			continue
		}
		if err := p.judgeVolume(ctx, g, m, k, k == "snapshot_id", where, boot0); err != nil {
			return err
		}
	}
	return nil
}

// bootIndex reads a boot_index (integer, numeric string or null): zero
// says it is the root disk, bootable that Nova counts it a boot device
// (a boot_index of 0 or more).
func bootIndex(v any, where string) (zero, bootable bool, err error) {
	var f float64
	switch t := v.(type) {
	case nil:
		return false, false, nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(t))
		if err != nil {
			return false, false, bodyErrorf("%s.boot_index %q is not a number", where, truncate(t, 32))
		}
		f = float64(n)
	case interface{ String() string }: // json.Number
		if f, err = strconv.ParseFloat(t.String(), 64); err != nil {
			return false, false, bodyErrorf("%s.boot_index is not a number", where)
		}
	default:
		return false, false, bodyErrorf("%s.boot_index is not a number", where)
	}
	return f == 0, f >= 0, nil
}

func (p *Proxy) judgeAction(ctx context.Context, g *gateReq, body map[string]any) error {
	if err := checkKeyCase(body, "the action", "rebuild", "rescue"); err != nil {
		return err
	}
	if len(body) != 1 {
		return bodyErrorf("an action request must have exactly one key")
	}
	if v, ok := body["rebuild"]; ok {
		m, ok := v.(map[string]any)
		if !ok {
			return bodyErrorf("rebuild is not an object")
		}
		if err := checkKeyCase(m, "rebuild", "imageRef", "user_data"); err != nil {
			return err
		}
		ref, err := optString(m, "imageRef", "rebuild.imageRef")
		if err != nil {
			return err
		}
		if ref == "" {
			return bodyErrorf("rebuild has no imageRef")
		}
		id, img, err := p.resolve(ctx, g, ref, "rebuild.imageRef")
		if err != nil {
			return err
		}
		m["imageRef"] = id
		g.primary, g.primarySet = img, true
		// user_data on rebuild exists from microversion 2.57; below it Nova
		// refuses the key (or strips it on /v2), so it is left alone there.
		if _, present := m["user_data"]; present {
			if g.serverName, err = optString(m, "name", "rebuild.name"); err != nil {
				return err
			}
			mv, ok := requestMicroversion(g.r.Header, g.rt.legacyV2)
			if !ok && p.o.UserData != nil {
				// Nova refuses a version it cannot read; the gate does
				// not guess which one it read instead
				return refuse(http.StatusBadRequest, "user-data",
					"The request's compute microversion (OpenStack-API-Version) could not be read; send \"compute X.Y\".")
			}
			if ok && mv.atLeast(2, 57) {
				return p.contextualise(g, m)
			}
		}
		return nil
	}
	if v, ok := body["rescue"]; ok {
		// Without rescue_image_ref Nova boots the rescue VM from the
		// server's image_base_image_ref (an image property) or its own
		// image, which may have been revoked or blacklisted since it was
		// created, or (booted from a volume) from what the volume's image
		// metadata says: the gate asks for the image to judge instead.
		m, ok := v.(map[string]any)
		if !ok && v != nil {
			return bodyErrorf("rescue is not an object")
		}
		if err := checkKeyCase(m, "rescue", "rescue_image_ref"); err != nil {
			return err
		}
		ref, err := optString(m, "rescue_image_ref", "rescue.rescue_image_ref")
		if err != nil {
			return err
		}
		if ref == "" {
			return bodyErrorf("rescue has no rescue_image_ref: name the catalogue image to rescue the server with (openstack server rescue --image IMAGE), so that the image gate can check it")
		}
		id, _, err := p.resolve(ctx, g, ref, "rescue.rescue_image_ref")
		if err != nil {
			return err
		}
		m["rescue_image_ref"] = id
	}
	return nil
}

// contextualise applies the UserData hook to obj["user_data"].
func (p *Proxy) contextualise(g *gateReq, obj map[string]any) error {
	if p.o.UserData == nil {
		return nil
	}
	ud, err := optString(obj, "user_data", "user_data")
	if err != nil {
		return err
	}
	b := Boot{Image: g.primary, Caller: g.caller, ServerName: g.serverName, Request: g.r}
	nu, set, err := p.o.UserData(b, ud, obj["user_data"] != nil)
	if errors.Is(err, ErrSiteContext) {
		p.o.Logger.Error("contextualisation failed", "request_id", g.reqID, "err", err)
		return refuse(http.StatusInternalServerError, "site-context", "The site's contextualisation failed; please report request %s to the site operators.", g.reqID)
	}
	if err != nil {
		return refuse(http.StatusBadRequest, "user-data", "%v", err)
	}
	if set {
		obj["user_data"] = nu
	}
	return nil
}

// optString reads a string-or-null key; absent and null read as "".
func optString(m map[string]any, key, where string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", bodyErrorf("%s is not a string", where)
	}
	return s, nil
}
