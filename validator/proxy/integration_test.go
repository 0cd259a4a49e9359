package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/ostest"
	"github.com/imagetrust/imagetrust/internal/testutil"
	"github.com/imagetrust/imagetrust/validator"
)

func TestMain(m *testing.M) {
	if up := os.Getenv(envBenchChild); up != "" {
		// this test binary was started as the gate of a benchmark
		os.Exit(benchChild(up))
	}
	os.Exit(ostest.Main(m))
}

// glanceTestLookup is the Lookup the command layer implements, written
// again here against the real Glance (the package itself never imports
// gophercloud).
type glanceTestLookup struct {
	sc    *gophercloud.ServiceClient
	owner string
}

func toImage(im *images.Image) *Image {
	props := map[string]string{}
	for k, v := range im.Properties {
		if s, ok := v.(string); ok {
			props[k] = s
		}
	}
	return &Image{ID: im.ID, Name: im.Name, Owner: im.Owner, Status: string(im.Status), Visibility: string(im.Visibility), Properties: props}
}

func (g *glanceTestLookup) GetImage(ctx context.Context, id string) (*Image, error) {
	im, err := images.Get(ctx, g.sc, id).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return toImage(im), nil
}

func (g *glanceTestLookup) ListTag(ctx context.Context, vo, tag string) ([]*Image, error) {
	// filtered by Glance itself, as the command's lookup does: listing the
	// whole project page by page races with other packages' tests creating
	// and deleting images in the same shared Glance
	props := map[string]string{validator.PropTag: tag}
	if vo != "" {
		props[validator.PropVO] = vo
	}
	all, err := glance.ListByProperties(ctx, g.sc, g.owner, props, nil)
	if err != nil {
		return nil, err
	}
	out := make([]*Image, 0, len(all))
	for _, im := range all {
		out = append(out, &Image{ID: im.ID, Name: im.Name, Owner: im.Owner, Status: string(im.Status), Visibility: string(im.Visibility), Properties: im.Properties})
	}
	return out, nil
}

// novaStack is the loopback OpenStack with nova, a catalogue image uploaded
// by the user of this test process's own mirror project (ownMirror) and a
// flavor.
type novaStack struct {
	c        *ostest.Cloud
	f        *fixture
	mirror   *gophercloud.ServiceClient
	project  string // the mirror project's id
	id       string // the catalogue image
	rec      *Image
	flavorID string
	nova     *url.URL // nova-api's own root URL
}

// ownMirror returns this test process's mirror project on c: a Keystone
// project and user of its own with the stack mirror user's roles
// (ostest.Cloud.ProcessProject), as glancesync's tests have. Not the
// stack's shared mirror project: a sync pass of another test process into
// it (glancesync's or cmd/imagetrust's, on the same stack) hides,
// deactivates or deletes every image of the project whose VO it lists
// completely or has no source for, this test's image among them, between
// its upload and the boot by tag (the lookup then finds no image: the gate
// refuses the boot).
func ownMirror(t testing.TB, c *ostest.Cloud) *ostest.Project {
	t.Helper()
	return c.ProcessProject(t, "proxy")
}

// identity is an Identity validating tokens with the stack's real
// Keystone as the mirror service user, and the auth URI its 401s name.
func (s *novaStack) identity(t *testing.T) (*keystoneTestIdentity, string) {
	t.Helper()
	ao, eo := s.c.AuthOptions(t, ostest.CloudMirror)
	idc, err := openstack.NewIdentityV3(s.c.Provider(t, ostest.CloudMirror), eo)
	if err != nil {
		t.Fatal(err)
	}
	return &keystoneTestIdentity{sc: idc}, ao.IdentityEndpoint
}

func startNovaStack(t *testing.T) *novaStack {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the loopback OpenStack")
	}
	c := ostest.Start(t, ostest.Options{WithNova: true})
	ctx := t.Context()
	f := newFixture(t)
	id := "cccccccc-0000-4000-8000-" + fmt.Sprintf("%012x", time.Now().UnixNano()&0xffffffffffff)
	rec := f.add(imageSpec{id: id, vo: "atlas", tag: fmt.Sprintf("it%d", time.Now().UnixNano()%1000000)})

	own := ownMirror(t, c)
	mirror := own.Image
	vis := images.ImageVisibilityPublic
	_, err := images.Create(ctx, mirror, images.CreateOpts{ID: id, Name: rec.Name, DiskFormat: "raw", ContainerFormat: "bare",
		Visibility: &vis, Properties: rec.Properties}).Extract()
	if err != nil {
		t.Fatalf("create image: %v", err)
	}
	t.Cleanup(func() { _ = images.Delete(context.Background(), mirror, id).ExtractErr() })
	if err := imagedata.Upload(ctx, mirror, id, bytes.NewReader(make([]byte, 1024))).ExtractErr(); err != nil {
		t.Fatalf("upload: %v", err)
	}

	admin := c.ComputeClient(t, ostest.CloudAdmin)
	flavorID := fmt.Sprintf("it-%d", time.Now().UnixNano())
	if _, err := flavors.Create(ctx, admin, flavors.CreateOpts{ID: flavorID, Name: flavorID, RAM: 64, VCPUs: 1, Disk: gophercloud.IntToPointer(1)}).Extract(); err != nil {
		t.Fatalf("create flavor: %v", err)
	}
	t.Cleanup(func() { _ = flavors.Delete(context.Background(), admin, flavorID).ExtractErr() })

	nova, _ := url.Parse(strings.TrimSuffix(strings.TrimSuffix(c.NovaURL, "/"), "/v2.1"))
	return &novaStack{c: c, f: f, mirror: mirror, project: own.ID, id: id, rec: rec, flavorID: flavorID, nova: nova}
}

// viaGate is a compute client of cloudName whose requests go to the gate.
func (s *novaStack) viaGate(t *testing.T, cloudName, gateURL string) (gate, direct *gophercloud.ServiceClient) {
	direct = s.c.ComputeClient(t, cloudName)
	g := *direct
	g.Endpoint = gateURL + "/v2.1/"
	g.ResourceBase = ""
	g.Microversion = "2.37"
	return &g, direct
}

// TestIntegrationNova boots through the gate into a real nova-api (with
// real Keystone and Glance on loopback): a catalogue image by uuid and by
// tag answers 202 from Nova; the same image, revoked, is refused by the gate.
func TestIntegrationNova(t *testing.T) {
	s := startNovaStack(t)
	ctx := t.Context()
	p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
		MirrorProject: s.project, CacheTTL: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	gate := httptest.NewServer(p)
	defer gate.Close()

	viaGate, demo := s.viaGate(t, ostest.CloudDemo, gate.URL)
	boot := func(ref string) (string, error) {
		srv, err := servers.Create(ctx, viaGate, servers.CreateOpts{Name: "it", ImageRef: ref, FlavorRef: s.flavorID, Networks: "none"}, nil).Extract()
		if err != nil {
			return "", err
		}
		t.Cleanup(func() { _ = servers.Delete(context.Background(), demo, srv.ID).ExtractErr() })
		// nova-api runs with etc/nova/nova.conf.snippet
		// (enable_proxy_headers_parsing): the links of its answer name the
		// gate, from the X-Forwarded-* fields the gate sends, not Nova's
		// internal address
		if len(srv.Links) == 0 {
			t.Errorf("server %s: no links in Nova's answer", srv.ID)
		}
		for _, l := range srv.Links {
			if href, _ := l.(map[string]any)["href"].(string); !strings.HasPrefix(href, gate.URL+"/") {
				t.Errorf("server %s: link %v does not name the gate %s", srv.ID, l, gate.URL)
			}
		}
		return srv.ID, nil
	}
	tag := s.rec.Properties[validator.PropTag]
	for _, ref := range []string{strings.ToUpper(s.id), tag, "atlas/" + tag} {
		if _, err := boot(ref); err != nil {
			t.Fatalf("boot %s through the gate: %v", ref, err)
		}
	}

	_, err = images.Update(ctx, s.mirror, s.id, images.UpdateOpts{
		images.UpdateImageProperty{Op: images.ReplaceOp, Name: validator.PropGlobalValidity, Value: "revoked"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	_, err = boot(s.id)
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) || ue.Actual != http.StatusForbidden || !strings.Contains(string(ue.Body), `"forbidden"`) {
		t.Fatalf("revoked image: %v", err)
	}

	// Nova's router honours ?_method=POST on a PUT (routes'
	// use_method_override) and creates the server: the gate refuses it.
	override := func(sc *gophercloud.ServiceClient, codes ...int) (map[string]any, error) {
		body := map[string]any{"server": map[string]any{"name": "override", "imageRef": s.id, "flavorRef": s.flavorID, "networks": "none"}}
		var out map[string]any
		_, err := sc.Put(ctx, sc.ServiceURL("servers")+"?_method=POST", body, &out, &gophercloud.RequestOpts{OkCodes: codes,
			MoreHeaders: map[string]string{"OpenStack-API-Version": "compute 2.37"}})
		return out, err
	}
	direct, err := override(demo, http.StatusAccepted)
	if err != nil {
		t.Fatalf("PUT ?_method=POST to nova-api itself: %v", err)
	}
	if srv, _ := direct["server"].(map[string]any); srv != nil {
		if id, _ := srv["id"].(string); id != "" {
			t.Cleanup(func() { _ = servers.Delete(context.Background(), demo, id).ExtractErr() })
		}
	}
	_, err = override(viaGate, http.StatusAccepted)
	if !errors.As(err, &ue) || ue.Actual != http.StatusBadRequest || !strings.Contains(string(ue.Body), "_method") {
		t.Fatalf("PUT ?_method=POST through the gate: %v", err)
	}

	// A request target that is not a path: Go reads "http:%2Fv2.1%2Fservers"
	// as an opaque URL with an empty path, and forwarded the opaque part as
	// the request line; eventlet decodes "%2Fv2.1%2Fservers" into
	// /v2.1/servers and Nova creates the server. The gate refuses the
	// target.
	escaped := url.PathEscape(strings.TrimSuffix(s.nova.Path, "/") + "/v2.1/servers")
	opaque := func(hostport, target string) (int, map[string]any) {
		body := `{"server":{"name":"opaque","imageRef":"` + s.id + `","flavorRef":"` + s.flavorID + `","networks":"none"}}`
		c, err := net.Dial("tcp", hostport)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\nOpenStack-API-Version: compute 2.37\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", target, hostport, demo.ProviderClient.Token(), len(body), body)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		raw, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(raw, &out) != nil {
			out = map[string]any{"raw": string(raw), "target": target}
		}
		return resp.StatusCode, out
	}
	code, out := opaque(s.nova.Host, escaped)
	if code != http.StatusAccepted {
		t.Fatalf("escaped target to nova-api itself: %d %v", code, out)
	}
	if srv, _ := out["server"].(map[string]any); srv != nil {
		if id, _ := srv["id"].(string); id != "" {
			t.Cleanup(func() { _ = servers.Delete(context.Background(), demo, id).ExtractErr() })
		}
	}
	gu, _ := url.Parse(gate.URL)
	if code, out := opaque(gu.Host, "http:"+escaped); code != http.StatusBadRequest {
		t.Fatalf("opaque target through the gate: %d %v", code, out)
	}
}

// keystoneTestIdentity is the Identity the command layer implements,
// written again here with gophercloud's tokens.Get against the real
// Keystone (the package itself never imports gophercloud).
type keystoneTestIdentity struct{ sc *gophercloud.ServiceClient }

func (k *keystoneTestIdentity) Validate(ctx context.Context, token string) (*Caller, error) {
	r := tokens.Get(ctx, k.sc, token)
	if gophercloud.ResponseCodeIs(r.Err, http.StatusNotFound) || gophercloud.ResponseCodeIs(r.Err, http.StatusUnauthorized) {
		return nil, ErrInvalidToken
	}
	if r.Err != nil {
		return nil, r.Err
	}
	tok, err := r.ExtractToken()
	if err != nil {
		return nil, err
	}
	u, err := r.ExtractUser()
	if err != nil {
		return nil, err
	}
	pr, err := r.ExtractProject()
	if err != nil || pr == nil {
		return nil, fmt.Errorf("project: %v", err)
	}
	return &Caller{UserID: u.ID, UserName: u.Name, ProjectID: pr.ID, ProjectName: pr.Name, ExpiresAt: tok.ExpiresAt}, nil
}

// TestIntegrationIdentity boots as the demo user through a gate that
// validates tokens with the real Keystone (as the mirror service user): the
// audit line names the demo user and project; a bogus token is refused with
// the 401 nova-api's keystonemiddleware gives, without reaching Nova.
func TestIntegrationIdentity(t *testing.T) {
	s := startNovaStack(t)
	ctx := t.Context()
	id, authURI := s.identity(t)
	logs := &testutil.SyncBuffer{}
	p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
		MirrorProject: s.project, Identity: id, AuthURI: authURI,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	gate := httptest.NewServer(p)
	defer gate.Close()

	viaGate, demo := s.viaGate(t, ostest.CloudDemo, gate.URL)
	srv, err := servers.Create(ctx, viaGate, servers.CreateOpts{Name: "it-identity", ImageRef: s.id, FlavorRef: s.flavorID, Networks: "none"}, nil).Extract()
	if err != nil {
		t.Fatalf("demo boot through the gate: %v", err)
	}
	t.Cleanup(func() { _ = servers.Delete(context.Background(), demo, srv.ID).ExtractErr() })

	// the demo user's ids, as Keystone has them
	res, ok := demo.ProviderClient.GetAuthResult().(tokens.CreateResult)
	if !ok {
		t.Fatal("demo: not a v3 token")
	}
	du, err := res.ExtractUser()
	if err != nil {
		t.Fatal(err)
	}
	dp, err := res.ExtractProject()
	if err != nil {
		t.Fatal(err)
	}
	var audit map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "boot decision" {
			audit = m
		}
	}
	if audit == nil || audit["user_id"] != du.ID || audit["project_id"] != dp.ID || audit["user_name"] != "demo" ||
		audit["allowed"] != true || audit["image"] != s.id {
		t.Fatalf("audit line %v, want user %s project %s:\n%s", audit, du.ID, dp.ID, logs.String())
	}
	if tok := demo.ProviderClient.Token(); tok == "" || strings.Contains(logs.String(), tok) {
		t.Error("the demo token was logged")
	}

	// a bogus token: the gate's 401 and nova-api's own (keystonemiddleware)
	body := serverBody(s.id)
	for _, target := range []string{gate.URL + "/v2.1/servers", s.c.NovaURL + "/servers"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Auth-Token", "gAAAAABbogus-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: bogus token: %d %s", target, resp.StatusCode, b)
		}
		checkUnauthorized(t, resp, b)
		var m map[string]map[string]any
		_ = json.Unmarshal(b, &m)
		if m["error"]["message"] != "The request you have made requires authentication." {
			t.Errorf("%s: 401 body %s", target, b)
		}
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", target)
		}
	}
	if strings.Contains(logs.String(), "bogus-token") {
		t.Error("the bogus token was logged")
	}
}

// TestIntegrationNovaVersionPaths: nova-api answers GETs of many paths
// besides /, /v2 and /v2.1 with version documents ("//v2.1", "/%2Fv2.1",
// "///": its URL map collapses runs of slashes) or with the version
// choices (300: "/./v2.1", "/V2.1", "/foo"), every href naming its own
// address. Through the gate, served by net/http and by the fast server,
// no href may lead around it. (The stack's nova-api parses the gate's
// X-Forwarded-* fields, so its hrefs name the gate anyway; the test first
// checks that nova-api answers each path so, which is what the stand-in
// of TestVersionDocumentRewrite copies to show the rewrite.)
func TestIntegrationNovaVersionPaths(t *testing.T) {
	s := startNovaStack(t)
	p, err := New(Options{Upstream: s.nova, Lookup: &glanceTestLookup{sc: s.mirror, owner: s.project}, Decider: s.f.trust,
		MirrorProject: s.project, CacheTTL: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	plain := httptest.NewServer(p)
	defer plain.Close()
	paths := []string{"/", "/v2.1", "//", "///", "//v2.1", "/%2Fv2.1", "/v2.1//", "//v2.1/", "//v2", "/./v2.1", "/V2.1",
		"/v2.1.json", "/foo", "/" + strings.Repeat("/", 20) + "v2.1"}
	root := strings.TrimSuffix(s.nova.String(), "/")
	for _, path := range paths {
		resp, err := http.Get(root + path)
		if err != nil {
			t.Fatalf("GET %s from nova-api: %v", path, err)
		}
		var doc any
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		var found []string
		collectHrefs(doc, &found)
		if (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusMultipleChoices) || err != nil || len(found) == 0 {
			t.Errorf("GET %s from nova-api: %d, %v, hrefs %v: not a version document", path, resp.StatusCode, err, found)
		}
	}
	for _, gate := range []string{plain.URL, serveGate(t, p).URL} {
		for _, path := range paths {
			resp, err := http.Get(gate + path) // (the path sent as it is)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusMultipleChoices {
				t.Errorf("GET %s: status %d: %.200s", path, resp.StatusCode, body)
				continue
			}
			var doc any
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("GET %s: %v: %.200s", path, err, body)
			}
			var found []string
			collectHrefs(doc, &found)
			named := false
			for _, h := range found {
				if strings.HasPrefix(h, s.nova.Scheme+"://"+s.nova.Host) {
					t.Errorf("GET %s (%d): href %s names nova-api itself", path, resp.StatusCode, h)
				}
				named = named || strings.HasPrefix(h, gate+"/")
			}
			if !named {
				t.Errorf("GET %s (%d): no href names the gate: %v", path, resp.StatusCode, found)
			}
		}
	}
}

// TestIntegrationOwnMirrorProject: the integration tests' catalogue image
// is in this test process's own mirror project (ownMirror), not in the
// stack's shared one, which other test processes' sync passes hide,
// deactivate and delete images of; and a second startNovaStack of the
// process uses the same project. Before, the image was the stack mirror
// user's: one `imagetrust sync --once` (or glancesync pass) of another
// process into the shared project, with the image's VO (atlas) configured
// and no complete source of its, hid it between its upload and the boot by
// tag, and the lookup found no image for the tag.
func TestIntegrationOwnMirrorProject(t *testing.T) {
	s := startNovaStack(t)
	shared := s.c.ImageClient(t, ostest.CloudMirror)
	res, ok := shared.ProviderClient.GetAuthResult().(tokens.CreateResult)
	if !ok {
		t.Fatal("mirror: not a v3 token")
	}
	proj, err := res.ExtractProject()
	if err != nil {
		t.Fatal(err)
	}
	if s.project == proj.ID {
		t.Fatalf("the test image is in the stack's shared mirror project %s", proj.ID)
	}
	im, err := images.Get(t.Context(), s.c.ImageClient(t, ostest.CloudAdmin), s.id).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if im.Owner != s.project {
		t.Errorf("the test image's owner is %s, want the process's own mirror project %s", im.Owner, s.project)
	}
	if again := startNovaStack(t); again.project != s.project {
		t.Errorf("a second startNovaStack uses project %s, the first %s: want one per process", again.project, s.project)
	}
}
