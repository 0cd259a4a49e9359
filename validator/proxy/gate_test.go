package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Image ids of the bypass table.
const (
	idGood       = "aaaaaaaa-0000-4000-8000-000000000001"
	idNewer      = "aaaaaaaa-0000-4000-8000-000000000002"
	idRevoked    = "aaaaaaaa-0000-4000-8000-000000000003"
	idBlack      = "aaaaaaaa-0000-4000-8000-000000000004"
	idExpired    = "aaaaaaaa-0000-4000-8000-000000000005"
	idRunAnyway  = "aaaaaaaa-0000-4000-8000-000000000006"
	idRevokedRA  = "aaaaaaaa-0000-4000-8000-000000000007"
	idQueued     = "aaaaaaaa-0000-4000-8000-000000000008"
	idSnapshot   = "aaaaaaaa-0000-4000-8000-000000000009"
	idTampered   = "aaaaaaaa-0000-4000-8000-00000000000a"
	idAlias      = "aaaaaaaa-0000-4000-8000-00000000000b"
	idSharedA    = "aaaaaaaa-0000-4000-8000-00000000000c"
	idSharedC    = "aaaaaaaa-0000-4000-8000-00000000000d"
	idNotYet     = "aaaaaaaa-0000-4000-8000-00000000000e"
	idOldRevoked = "aaaaaaaa-0000-4000-8000-00000000000f"
	idUnknown    = "bbbbbbbb-0000-4000-8000-000000000000"
	userProject  = "0123456789abcdef0123456789abcdef"
)

// catalogue fills the fixture with the images of the bypass table.
func catalogue(t testing.TB) *fixture {
	f := newFixture(t)
	now := time.Now()
	past := func(d time.Duration) time.Time { return now.Add(-d) }
	f.add(imageSpec{id: idGood, vo: "atlas", tag: "el9", created: past(72 * time.Hour)})
	f.add(imageSpec{id: idNewer, vo: "atlas", tag: "el9", created: past(48 * time.Hour)})
	f.add(imageSpec{id: idRevoked, vo: "atlas", tag: "el9", created: past(24 * time.Hour), global: "revoked"})
	f.add(imageSpec{id: idBlack, vo: "atlas", tag: "el8", local: "blacklist"})
	f.add(imageSpec{id: idExpired, vo: "atlas", tag: "old", notBefore: past(400 * 24 * time.Hour), notAfter: past(24 * time.Hour)})
	f.add(imageSpec{id: idRunAnyway, vo: "atlas", tag: "old2", notBefore: past(400 * 24 * time.Hour), notAfter: past(24 * time.Hour), local: "run-anyway"})
	f.add(imageSpec{id: idRevokedRA, vo: "atlas", tag: "old3", global: "revoked", local: "run-anyway"})
	f.add(imageSpec{id: idQueued, vo: "atlas", tag: "q", status: "queued"})
	f.add(imageSpec{id: idNotYet, vo: "atlas", tag: "future", notBefore: now.Add(24 * time.Hour), notAfter: now.Add(48 * time.Hour)})
	f.add(imageSpec{id: idOldRevoked, vo: "atlas", tag: "dead", global: "revoked"})
	// a user's snapshot: Nova copied every imagetrust_ property of the good image
	good, _ := f.glance.GetImage(t.Context(), idGood)
	snap := &Image{ID: idSnapshot, Owner: userProject, Status: "active", Properties: map[string]string{}}
	for k, v := range good.Properties {
		snap.Properties[k] = v
	}
	f.glance.put(snap)
	// an edited record: a later expiry than the signed one
	tam := f.add(imageSpec{id: idTampered, vo: "atlas", tag: "tam", notBefore: past(400 * 24 * time.Hour), notAfter: past(24 * time.Hour)})
	tam.Properties["imagetrust_image_not_after"] = now.Add(365 * 24 * time.Hour).UTC().Format(time.RFC3339)
	f.alias(idAlias, "atlas", "el9")
	f.add(imageSpec{id: idSharedA, vo: "atlas", tag: "shared"})
	f.add(imageSpec{id: idSharedC, vo: "cms", tag: "shared"})
	return f
}

type gateCase struct {
	name   string
	method string // default POST
	path   string
	ctype  string // default application/json; "-" for none
	body   string
	hdr    map[string]string
	// want is the status the client gets: 202 means forwarded.
	want int
	// fault is the Nova fault name of a refusal.
	fault string
	// check inspects the forwarded body.
	check func(t *testing.T, fwd map[string]any)
	// msg is a substring of the refusal message.
	msg string
}

func imageRefIs(id string) func(t *testing.T, fwd map[string]any) {
	return func(t *testing.T, fwd map[string]any) {
		t.Helper()
		got := fwd["server"].(map[string]any)["imageRef"]
		if got != id {
			t.Errorf("forwarded imageRef = %v, want %s", got, id)
		}
	}
}

func bdmBody(entries string) string {
	return `{"server":{"name":"vm","flavorRef":"1","imageRef":"","block_device_mapping_v2":[` + entries + `]}}`
}

func TestGateBypassTable(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	g := newGate(t, f, nova.srv.URL, func(o *Options) { o.MaxBody = 4096; o.UnmanagedProjects = []string{"feedfacefeedfacefeedfacefeedface"} })
	big := `{"server":{"name":"` + strings.Repeat("x", 5000) + `","imageRef":"` + idGood + `"}}`
	cases := []gateCase{
		{name: "ok canonical uuid", path: "/v2.1/servers", body: serverBody(idGood), want: 202, check: imageRefIs(idGood)},
		{name: "ok upper-case uuid canonicalised", path: "/v2.1/servers", body: serverBody(strings.ToUpper(idGood)), want: 202, check: imageRefIs(idGood)},
		{name: "ok uuid without hyphens canonicalised", path: "/v2.1/servers", body: serverBody(strings.ReplaceAll(idGood, "-", "")), want: 202, check: imageRefIs(idGood)},
		{name: "ok braced uuid canonicalised", path: "/v2.1/servers", body: serverBody("{" + idGood + "}"), want: 202, check: imageRefIs(idGood)},
		{name: "ok urn uuid canonicalised", path: "/v2.1/servers", body: serverBody("urn:uuid:" + idGood), want: 202, check: imageRefIs(idGood)},
		{name: "fail upper-case revoked uuid", path: "/v2.1/servers", body: serverBody(strings.ToUpper(idRevoked)), want: 403, fault: "forbidden", msg: "revoked"},
		{name: "fail urn revoked uuid", path: "/v2.1/servers", body: serverBody("urn:uuid:{" + idRevoked + "}"), want: 403, fault: "forbidden"},
		{name: "fail revoked imageRef", path: "/v2.1/servers", body: serverBody(idRevoked), want: 403, fault: "forbidden", msg: idRevoked},
		{name: "fail blacklisted imageRef", path: "/v2.1/servers", body: serverBody(idBlack), want: 403, fault: "forbidden", msg: "blacklisted"},
		{name: "fail expired imageRef", path: "/v2.1/servers", body: serverBody(idExpired), want: 403, fault: "forbidden", msg: "expired"},
		{name: "ok expired with run-anyway", path: "/v2.1/servers", body: serverBody(idRunAnyway), want: 202, check: imageRefIs(idRunAnyway)},
		{name: "fail revoked with run-anyway", path: "/v2.1/servers", body: serverBody(idRevokedRA), want: 403, fault: "forbidden"},
		{name: "fail image not active", path: "/v2.1/servers", body: serverBody(idQueued), want: 403, fault: "forbidden"},
		{name: "fail certificate not yet valid", path: "/v2.1/servers", body: serverBody(idNotYet), want: 403, fault: "forbidden"},
		{name: "fail edited record", path: "/v2.1/servers", body: serverBody(idTampered), want: 403, fault: "forbidden", msg: "imagetrust_image_not_after"},
		{name: "fail user snapshot with copied properties", path: "/v2.1/servers", body: serverBody(idSnapshot), want: 403, fault: "forbidden", msg: "catalogue"},
		{name: "fail unknown image", path: "/v2.1/servers", body: serverBody(idUnknown), want: 404, fault: "itemNotFound"},
		{name: "ok unknown image for an unmanaged project", path: "/v2.1/feedfacefeedfacefeedfacefeedface/servers", body: serverBody(strings.ToUpper(idUnknown)), want: 202, check: imageRefIs(idUnknown)},
		{name: "ok snapshot for an unmanaged project", path: "/v2.1/feedfacefeedfacefeedfacefeedface/servers", body: serverBody(idSnapshot), want: 202, check: imageRefIs(idSnapshot)},
		{name: "fail snapshot for a managed project", path: "/v2.1/" + userProject + "/servers", body: serverBody(idSnapshot), want: 403, fault: "forbidden"},

		{name: "ok tag resolves to newest bootable", path: "/v2.1/servers", body: serverBody("el9"), want: 202, check: imageRefIs(idNewer)},
		{name: "ok VO/TAG resolves", path: "/v2.1/servers", body: serverBody("atlas/el9"), want: 202, check: imageRefIs(idNewer)},
		{name: "ok tag alias uuid resolves", path: "/v2.1/servers", body: serverBody(strings.ToUpper(idAlias)), want: 202, check: imageRefIs(idNewer)},
		{name: "fail tag without bootable image", path: "/v2.1/servers", body: serverBody("dead"), want: 403, fault: "forbidden", msg: idOldRevoked},
		{name: "fail unknown tag", path: "/v2.1/servers", body: serverBody("nosuchtag"), want: 404, fault: "itemNotFound"},
		{name: "fail tag in two VOs", path: "/v2.1/servers", body: serverBody("shared"), want: 409, fault: "conflictingRequest", msg: "atlas/shared"},
		{name: "ok VO/TAG where VOs share a tag", path: "/v2.1/servers", body: serverBody("cms/shared"), want: 202, check: imageRefIs(idSharedC)},
		{name: "fail malformed reference", path: "/v2.1/servers", body: serverBody("http://glance/v2/images/" + idGood), want: 400, fault: "badRequest"},

		{name: "fail BDM image source revoked", path: "/v2.1/servers", body: bdmBody(`{"source_type":"image","uuid":"` + idRevoked + `","boot_index":0,"destination_type":"volume","volume_size":1}`), want: 403, fault: "forbidden"},
		{name: "fail BDM image source revoked at boot_index 1", path: "/v2.1/servers", body: `{"server":{"name":"vm","imageRef":"` + idGood + `","block_device_mapping_v2":[{"source_type":"image","uuid":"` + idRevoked + `","boot_index":"1","destination_type":"volume","volume_size":1}]}}`, want: 403, fault: "forbidden"},
		{name: "ok BDM image source canonicalised", path: "/v2.1/servers", body: bdmBody(`{"source_type":"image","uuid":"` + strings.ToUpper(idGood) + `","boot_index":0,"destination_type":"volume","volume_size":1}`), want: 202,
			check: func(t *testing.T, fwd map[string]any) {
				bdm := fwd["server"].(map[string]any)["block_device_mapping_v2"].([]any)[0].(map[string]any)
				if bdm["uuid"] != idGood {
					t.Errorf("uuid = %v", bdm["uuid"])
				}
			}},
		{name: "fail BDM image_id key revoked", path: "/v2.1/servers", body: `{"server":{"name":"vm","imageRef":"` + idGood + `","block_device_mapping_v2":[{"source_type":"blank","image_id":"` + idRevoked + `","boot_index":-1,"destination_type":"local"}]}}`, want: 403, fault: "forbidden"},
		{name: "fail legacy BDM image_id key revoked", path: "/v2/servers", body: `{"server":{"name":"vm","imageRef":"` + idGood + `","block_device_mapping":[{"image_id":"` + idRevoked + `","device_name":"vdb"}]}}`, want: 403, fault: "forbidden"},
		{name: "fail boot from volume (policy refuse)", path: "/v2.1/servers", body: bdmBody(`{"source_type":"volume","uuid":"` + idUnknown + `","boot_index":"0","destination_type":"volume"}`), want: 403, fault: "forbidden", msg: "volume"},
		{name: "fail legacy BDM volume (policy refuse)", path: "/v2/servers", body: `{"server":{"name":"vm","imageRef":"","block_device_mapping":[{"volume_id":"` + idUnknown + `","device_name":"vda"}]}}`, want: 403, fault: "forbidden"},
		{name: "ok data volume beside a catalogue image", path: "/v2.1/servers", body: `{"server":{"name":"vm","imageRef":"` + idGood + `","block_device_mapping_v2":[{"source_type":"volume","uuid":"` + idUnknown + `","boot_index":-1,"destination_type":"volume"}]}}`, want: 202},
		{name: "ok data volume without boot index", path: "/v2.1/servers", body: `{"server":{"name":"vm","imageRef":"` + idGood + `","block_device_mapping_v2":[{"source_type":"volume","uuid":"` + idUnknown + `","destination_type":"volume"}]}}`, want: 202},
		// any boot_index >= 0 is a boot device: a blank root falls through
		// to the next one
		{name: "fail volume at boot_index 1 (policy refuse)", path: "/v2.1/servers", body: `{"server":{"name":"vm","imageRef":"` + idGood + `","block_device_mapping_v2":[{"source_type":"volume","uuid":"` + idUnknown + `","boot_index":1,"destination_type":"volume"}]}}`, want: 403, fault: "forbidden", msg: "volume"},
		{name: "fail volume after a blank root (policy refuse)", path: "/v2.1/servers", body: `{"server":{"name":"vm","imageRef":"` + idGood + `","block_device_mapping_v2":[{"source_type":"blank","boot_index":0,"destination_type":"volume","volume_size":1},{"source_type":"volume","uuid":"` + idUnknown + `","boot_index":"2","destination_type":"volume"}]}}`, want: 403, fault: "forbidden", msg: "volume"},

		{name: "fail rebuild to blacklisted", path: "/v2.1/servers/" + idUnknown + "/action", body: `{"rebuild":{"imageRef":"` + idBlack + `"}}`, want: 403, fault: "forbidden"},
		{name: "ok rebuild canonicalised", path: "/v2.1/servers/" + idUnknown + "/action", body: `{"rebuild":{"imageRef":"{` + strings.ToUpper(idGood) + `}"}}`, want: 202,
			check: func(t *testing.T, fwd map[string]any) {
				if got := fwd["rebuild"].(map[string]any)["imageRef"]; got != idGood {
					t.Errorf("imageRef = %v", got)
				}
			}},
		{name: "fail rebuild via os-volumes_boot action", path: "/v2.1/os-volumes_boot/" + idUnknown + "/action", body: `{"rebuild":{"imageRef":"` + idRevoked + `"}}`, want: 403, fault: "forbidden"},
		{name: "fail rescue with revoked ref", path: "/v2.1/servers/" + idUnknown + "/action", body: `{"rescue":{"rescue_image_ref":"` + idRevoked + `"}}`, want: 403, fault: "forbidden"},
		// without a ref Nova rescues from the server's base image or own
		// image, which the gate cannot see: it asks for the image
		{name: "fail rescue without ref", path: "/v2.1/servers/" + idUnknown + "/action", body: `{"rescue":null}`, want: 400, fault: "badRequest", msg: "rescue_image_ref"},
		{name: "fail rescue with an empty object", path: "/v2.1/servers/" + idUnknown + "/action", body: `{"rescue":{}}`, want: 400, fault: "badRequest", msg: "rescue_image_ref"},
		{name: "ok rescue with a catalogue image", path: "/v2.1/servers/" + idUnknown + "/action", body: `{"rescue":{"rescue_image_ref":"` + idGood + `"}}`, want: 202},
		{name: "ok other action forwarded", path: "/v2.1/servers/" + idUnknown + "/action", body: `{"os-stop":null}`, want: 202},
		{name: "fail action with two keys", path: "/v2.1/servers/" + idUnknown + "/action", body: `{"os-stop":null,"rebuild":{"imageRef":"` + idRevoked + `"}}`, want: 400, fault: "badRequest"},
		{name: "fail REBUILD case variant", path: "/v2.1/servers/" + idUnknown + "/action", body: `{"REBUILD":{"imageRef":"` + idRevoked + `"}}`, want: 400, fault: "badRequest"},

		{name: "fail os-volumes_boot", path: "/v2.1/os-volumes_boot", body: serverBody(idRevoked), want: 403, fault: "forbidden"},
		{name: "fail project id prefix", path: "/v2.1/" + userProject + "/servers", body: serverBody(idRevoked), want: 403, fault: "forbidden"},
		{name: "fail legacy v2", path: "/v2/servers", body: serverBody(idRevoked), want: 403, fault: "forbidden"},
		{name: "fail legacy v2 with project id", path: "/v2/" + userProject + "/servers", body: serverBody(idRevoked), want: 403, fault: "forbidden"},
		{name: "fail percent-encoded path", path: "/v2.1/serv%65rs", body: serverBody(idRevoked), want: 403, fault: "forbidden"},
		{name: "fail percent-encoded slash", path: "/v2.1/servers%2F" + idUnknown + "%2Faction", body: `{"rebuild":{"imageRef":"` + idRevoked + `"}}`, want: 403, fault: "forbidden"},
		{name: "fail upper-case path", path: "/V2.1/SERVERS", body: serverBody(idRevoked), want: 403, fault: "forbidden"},
		{name: "fail json suffix", path: "/v2.1/servers.json", body: serverBody(idRevoked), want: 403, fault: "forbidden"},
		{name: "fail double slash", path: "/v2.1//servers", body: serverBody(idGood), want: 400, fault: "badRequest"},
		{name: "fail dot segment", path: "/v2.1/x/../servers", body: serverBody(idGood), want: 400, fault: "badRequest"},
		{name: "fail trailing slash", path: "/v2.1/servers/", body: serverBody(idGood), want: 400, fault: "badRequest"},
		// Nova's router routes by ?_method= and then runs the create or
		// action with the PUT's body (routes' use_method_override)
		{name: "fail PUT create with _method=POST", method: http.MethodPut, path: "/v2.1/servers?_method=POST", body: serverBody(idRevoked), want: 400, fault: "badRequest", msg: "_method"},
		{name: "fail PUT rebuild with _method=post", method: http.MethodPut, path: "/v2.1/servers/" + idUnknown + "/action?x=1&_method=post", body: `{"rebuild":{"imageRef":"` + idRevoked + `"}}`, want: 400, fault: "badRequest", msg: "_method"},
		{name: "fail escaped _method", method: http.MethodPut, path: "/v2.1/servers?%5Fmethod=POST&x=_method", body: serverBody(idRevoked), want: 400, fault: "badRequest"},
		// the slow path re-encodes a query with ';' or a bad escape
		{name: "fail escaped _method and a semicolon", method: http.MethodPut, path: "/v2.1/servers?%5Fmethod=POST&x;", body: serverBody(idRevoked), want: 400, fault: "badRequest"},
		{name: "fail escaped _method and a bad escape", method: http.MethodPut, path: "/v2.1/servers?%5Fmethod=POST&x=%zz", body: serverBody(idRevoked), want: 400, fault: "badRequest"},
		{name: "fail _meth%6Fd and a semicolon", method: http.MethodPut, path: "/v2.1/servers?_meth%6Fd=POST&x;", body: serverBody(idRevoked), want: 400, fault: "badRequest"},
		{name: "fail POST create with _method", path: "/v2.1/servers?_method=POST", body: serverBody(idGood), want: 400, fault: "badRequest"},
		{name: "fail GET with _method", method: http.MethodGet, path: "/v2.1/servers?_method=POST", want: 400, fault: "badRequest"},
		// eventlet passes the method as sent; routes matches it by case today
		{name: "fail lower-case post", method: "post", path: "/v2.1/servers", body: serverBody(idGood), want: 400, fault: "badRequest", msg: "method"},
		{name: "fail mixed-case Post", method: "Post", path: "/v2.1/servers", body: serverBody(idRevoked), want: 400, fault: "badRequest", msg: "method"},

		{name: "fail duplicate imageRef keys", path: "/v2.1/servers", body: `{"server":{"imageRef":"` + idGood + `","imageRef":"` + idRevoked + `"}}`, want: 400, fault: "badRequest", msg: "duplicate"},
		{name: "fail duplicate server keys", path: "/v2.1/servers", body: `{"server":{"imageRef":"` + idGood + `"},"server":{"imageRef":"` + idRevoked + `"}}`, want: 400, fault: "badRequest"},
		{name: "fail duplicate keys deep", path: "/v2.1/servers", body: `{"server":{"imageRef":"` + idGood + `","metadata":{"a":"1","a":"2"}}}`, want: 400, fault: "badRequest"},
		{name: "fail IMAGEREF case variant", path: "/v2.1/servers", body: `{"server":{"imageRef":"` + idGood + `","IMAGEREF":"` + idRevoked + `"}}`, want: 400, fault: "badRequest", msg: "case variant"},
		{name: "fail escaped imageRef duplicate", path: "/v2.1/servers", body: `{"server":{"imageRef":"` + idGood + `","\u0069mageRef":"` + idRevoked + `"}}`, want: 400, fault: "badRequest", msg: "duplicate"},
		{name: "fail escaped imageRef revoked", path: "/v2.1/servers", body: `{"server":{"\u0069mageRef":"` + idRevoked + `"}}`, want: 403, fault: "forbidden"},
		{name: "ok escaped imageRef re-serialised", path: "/v2.1/servers", body: `{"server":{"\u0069mageRef":"` + idGood + `"}}`, want: 202, check: imageRefIs(idGood)},
		{name: "fail missing content type", path: "/v2.1/servers", ctype: "-", body: serverBody(idRevoked), want: 400, fault: "badRequest"},
		{name: "fail text/plain content type", path: "/v2.1/servers", ctype: "text/plain", body: serverBody(idGood), want: 400, fault: "badRequest"},
		{name: "ok compute media type", path: "/v2.1/servers", ctype: "application/vnd.openstack.compute+json", body: serverBody(idGood), want: 202},
		{name: "fail gzip content encoding", path: "/v2.1/servers", body: serverBody(idGood), hdr: map[string]string{"Content-Encoding": "gzip"}, want: 400, fault: "badRequest"},
		{name: "fail oversize body", path: "/v2.1/servers", body: big, want: 413, fault: "overLimit"},
		{name: "fail unparsable body", path: "/v2.1/servers", body: `{"server":{"imageRef":"` + idGood + `"}`, want: 400, fault: "badRequest"},
		{name: "fail NaN", path: "/v2.1/servers", body: `{"server":{"imageRef":"` + idGood + `","min_count":NaN}}`, want: 400, fault: "badRequest"},
		{name: "fail trailing data", path: "/v2.1/servers", body: serverBody(idGood) + `{}`, want: 400, fault: "badRequest"},
		{name: "fail invalid utf-8", path: "/v2.1/servers", body: `{"server":{"name":"` + "\xff" + `","imageRef":"` + idGood + `"}}`, want: 400, fault: "badRequest"},
		{name: "fail non-string imageRef", path: "/v2.1/servers", body: `{"server":{"imageRef":["` + idGood + `"]}}`, want: 400, fault: "badRequest"},
		{name: "fail no server object", path: "/v2.1/servers", body: `{"Server":{"imageRef":"` + idRevoked + `"}}`, want: 400, fault: "badRequest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runGateCase(t, g, nova, c)
		})
	}
}

func runGateCase(t *testing.T, g *gateEnv, nova *recordingNova, c gateCase) {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	ctype := c.ctype
	switch ctype {
	case "":
		ctype = "application/json"
	case "-":
		ctype = ""
	}
	before := nova.count()
	resp, body := do(t, method, g.srv.URL+c.path, ctype, c.body, c.hdr)
	if resp.StatusCode != c.want {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, body)
	}
	if c.want == 202 {
		rec, ok := nova.last()
		if !ok || nova.count() != before+1 {
			t.Fatal("request not forwarded")
		}
		if rec.ContentLen != int64(len(rec.Body)) || len(rec.TE) != 0 {
			t.Errorf("forwarded Content-Length %d for %d bytes, transfer-encoding %v", rec.ContentLen, len(rec.Body), rec.TE)
		}
		if rec.Header.Get("Content-Type") != "application/json" {
			t.Errorf("forwarded Content-Type %q", rec.Header.Get("Content-Type"))
		}
		var fwd map[string]any
		if err := json.Unmarshal(rec.Body, &fwd); err != nil {
			t.Fatalf("forwarded body: %v", err)
		}
		if c.check != nil {
			c.check(t, fwd)
		}
		return
	}
	if nova.count() != before {
		t.Fatal("refused request reached the upstream")
	}
	name, code, msg := fault(t, body)
	if name != c.fault || code != c.want {
		t.Errorf("fault %s/%d, want %s/%d", name, code, c.fault, c.want)
	}
	if !strings.Contains(msg, c.msg) {
		t.Errorf("message %q does not contain %q", msg, c.msg)
	}
	rid := resp.Header.Get("X-Openstack-Request-Id")
	if !requestIDRE.MatchString(rid) || resp.Header.Get("X-Compute-Request-Id") != rid {
		t.Errorf("request id headers %q / %q", rid, resp.Header.Get("X-Compute-Request-Id"))
	}
}

// chunkedReader hides its length so that the client sends a chunked body.
type chunkedReader struct{ r io.Reader }

func (c chunkedReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestGateChunkedBody(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	g := newGate(t, f, nova.srv.URL, nil)
	for _, c := range []struct {
		name string
		ref  string
		want int
	}{{"ok chunked body forwarded with a length", idGood, 202}, {"fail chunked body revoked", idRevoked, 403}} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, g.srv.URL+"/v2.1/servers", chunkedReader{strings.NewReader(serverBody(c.ref))})
			req.Header.Set("Content-Type", "application/json")
			req.TransferEncoding = []string{"chunked"}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
			if c.want == 202 {
				rec, _ := nova.last()
				if len(rec.TE) != 0 || rec.ContentLen != int64(len(rec.Body)) {
					t.Errorf("forwarded chunked: TE %v, length %d for %d bytes", rec.TE, rec.ContentLen, len(rec.Body))
				}
			}
		})
	}
}

func TestGateVolumePolicyAllow(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	g := newGate(t, f, nova.srv.URL, func(o *Options) { o.VolumePolicy = VolumeAllow })
	runGateCase(t, g, nova, gateCase{name: "ok boot from volume (policy allow)", path: "/v2.1/servers",
		body: bdmBody(`{"source_type":"volume","uuid":"` + idUnknown + `","boot_index":0,"destination_type":"volume"}`), want: 202})
	runGateCase(t, g, nova, gateCase{name: "fail BDM image still judged", path: "/v2.1/servers",
		body: bdmBody(`{"source_type":"image","uuid":"` + idRevoked + `","boot_index":0,"destination_type":"volume","volume_size":1}`), want: 403, fault: "forbidden"})
}
