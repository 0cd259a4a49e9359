package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func TestUserDataHook(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	type call struct {
		img string
		ud  string
		has bool
	}
	var calls []call
	g := newGate(t, f, nova.srv.URL, func(o *Options) {
		o.UnmanagedProjects = []string{labProject}
		o.UserData = func(b Boot, ud string, has bool) (string, bool, error) {
			id := ""
			if b.Image != nil {
				id = b.Image.ID
			}
			calls = append(calls, call{id, ud, has})
			if ud == "dG9vbG9uZw==" {
				return "", false, errors.New("merged user data exceeds 65535 characters of base64")
			}
			return "bWVyZ2Vk", true, nil
		}
	})
	action := "/v2.1/servers/" + idUnknown + "/action"
	cases := []struct {
		name, path, body string
		mv               string
		want             int
		fwdUD            any // forwarded user_data (nil: absent or null)
		call             *call
	}{
		{"ok create with user data", "/v2.1/servers", `{"server":{"imageRef":"el9","user_data":"dXNlcg=="}}`, "", 202, "bWVyZ2Vk", &call{idNewer, "dXNlcg==", true}},
		{"ok create without user data", "/v2.1/servers", serverBody(idGood), "", 202, "bWVyZ2Vk", &call{idGood, "", false}},
		{"ok os-volumes_boot with user data", "/v2.1/os-volumes_boot", `{"server":{"imageRef":"el9","user_data":"dXNlcg=="}}`, "", 202, "bWVyZ2Vk", &call{idNewer, "dXNlcg==", true}},
		{"ok create with empty user data", "/v2.1/servers", `{"server":{"imageRef":"el9","user_data":""}}`, "", 202, "bWVyZ2Vk", &call{idNewer, "", true}},
		{"ok create from BDM image", "/v2.1/servers", bdmBody(`{"source_type":"image","uuid":"` + idGood + `","boot_index":0,"destination_type":"volume","volume_size":1}`), "", 202, "bWVyZ2Vk", &call{idGood, "", false}},
		// an image outside the catalogue, which the project may boot, is no
		// catalogue image: its imagetrust_vo and _tag are its owner's word,
		// and name no site context
		{"ok unmanaged image passed as none", "/v2.1/" + labProject + "/servers", serverBody(idSnapshot), "", 202, "bWVyZ2Vk", &call{"", "", false}},
		{"fail merge too large", "/v2.1/servers", `{"server":{"imageRef":"el9","user_data":"dG9vbG9uZw=="}}`, "", 400, nil, &call{idNewer, "dG9vbG9uZw==", true}},
		{"fail non-string user data", "/v2.1/servers", `{"server":{"imageRef":"el9","user_data":5}}`, "", 400, nil, nil},
		{"fail USER_DATA case variant", "/v2.1/servers", `{"server":{"imageRef":"el9","USER_DATA":"eA=="}}`, "", 400, nil, nil},
		{"ok rebuild 2.57 with user data", action, `{"rebuild":{"imageRef":"` + idGood + `","user_data":"dXNlcg=="}}`, "compute 2.57", 202, "bWVyZ2Vk", &call{idGood, "dXNlcg==", true}},
		{"ok rebuild 2.57 clearing user data", action, `{"rebuild":{"imageRef":"` + idGood + `","user_data":null}}`, "compute 2.57", 202, "bWVyZ2Vk", &call{idGood, "", false}},
		// nova-api reads 2.57 in these (Python's whitespace: no-break
		// space, NEL), and takes the rebuild's user_data
		{"ok rebuild 2.57 after a no-break space", action, `{"rebuild":{"imageRef":"` + idGood + `","user_data":"dXNlcg=="}}`, "compute\xa02.57", 202, "bWVyZ2Vk", &call{idGood, "dXNlcg==", true}},
		{"ok rebuild 2.57 then a no-break space", action, `{"rebuild":{"imageRef":"` + idGood + `","user_data":"dXNlcg=="}}`, "compute 2.57\xa0", 202, "bWVyZ2Vk", &call{idGood, "dXNlcg==", true}},
		{"ok rebuild 2.57 after a NEL", action, `{"rebuild":{"imageRef":"` + idGood + `","user_data":"dXNlcg=="}}`, "compute\x852.57", 202, "bWVyZ2Vk", &call{idGood, "dXNlcg==", true}},
		{"fail rebuild with user data, unreadable microversion", action, `{"rebuild":{"imageRef":"` + idGood + `","user_data":"dXNlcg=="}}`, "compute 2.57 x", 400, nil, nil},
		{"ok rebuild 2.56 left alone", action, `{"rebuild":{"imageRef":"` + idGood + `","user_data":"dXNlcg=="}}`, "compute 2.56", 202, "dXNlcg==", nil},
		{"ok rebuild without user data left alone", action, `{"rebuild":{"imageRef":"` + idGood + `"}}`, "compute 2.90", 202, nil, nil},
		// a rescue has no user_data: Nova serves the stored one
		{"ok rescue not contextualised", action, `{"rescue":{"rescue_image_ref":"` + idGood + `"}}`, "compute 2.90", 202, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls = nil
			hdr := map[string]string{}
			if c.mv != "" {
				hdr["OpenStack-API-Version"] = c.mv
			}
			resp, body := do(t, http.MethodPost, g.srv.URL+c.path, "application/json", c.body, hdr)
			if resp.StatusCode != c.want {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if c.call == nil && len(calls) != 0 || c.call != nil && (len(calls) != 1 || calls[0] != *c.call) {
				t.Errorf("hook calls %+v, want %+v", calls, c.call)
			}
			if c.want != 202 {
				return
			}
			rec, _ := nova.last()
			var fwd map[string]map[string]any
			_ = json.Unmarshal(rec.Body, &fwd)
			obj := fwd["server"]
			if obj == nil {
				obj = fwd["rebuild"]
			}
			if obj["user_data"] != c.fwdUD {
				t.Errorf("forwarded user_data %v, want %v", obj["user_data"], c.fwdUD)
			}
		})
	}
}

func TestAuditAndMetrics(t *testing.T) {
	f := catalogue(t)
	nova := newRecordingNova(t)
	g := newGate(t, f, nova.srv.URL, nil)
	gid := "req-12345678-1234-4234-8234-123456789abc"
	do(t, http.MethodPost, g.srv.URL+"/v2.1/"+userProject+"/servers", "application/json", serverBody(idRevoked), map[string]string{"X-Openstack-Request-Id": gid, "X-Auth-Token": "secret-token"})
	do(t, http.MethodPost, g.srv.URL+"/v2.1/servers", "application/json", serverBody("el9"), nil)
	do(t, http.MethodPost, g.srv.URL+"/v2.1/servers", "application/json", `{"server":{"imageRef":"`+idGood+`","imageRef":"x"}}`, nil)
	do(t, http.MethodGet, g.srv.URL+"/v2.1/flavors", "", "", nil)

	lines := strings.Split(strings.TrimSpace(g.logs.String()), "\n")
	var audits []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "boot decision" || m["msg"] == "request refused" {
			audits = append(audits, m)
		}
	}
	if len(audits) != 3 {
		t.Fatalf("%d audit lines, want 3:\n%s", len(audits), g.logs.String())
	}
	a := audits[0]
	if a["path_project"] != userProject || a["image"] != idRevoked || a["allowed"] != false || a["global_request_id"] != gid ||
		!strings.HasPrefix(a["request_id"].(string), "req-") || a["reasons"] == nil {
		t.Errorf("audit line of the refusal: %v", a)
	}
	if b := audits[1]; b["image"] != idNewer || b["allowed"] != true || b["tag"] != "el9" || b["vo"] != "atlas" || b["candidates"] != float64(3) {
		t.Errorf("audit line of the tag boot: %v", b)
	}
	if strings.Contains(g.logs.String(), "secret-token") {
		t.Error("the token was logged")
	}
	// the forwarded request carries the gate's request id as global id
	rec := nova.reqs[0]
	if id := rec.Header.Get("X-Openstack-Request-Id"); id != audits[1]["request_id"] {
		t.Errorf("forwarded request id %q, audit %v", id, audits[1]["request_id"])
	}
	for _, c := range []struct {
		name string
		want float64
	}{
		{"imagetrust_proxy_decisions_total{outcome=refused,reason=global-validity:revoked}", 1},
		{"imagetrust_proxy_decisions_total{outcome=allowed,reason=ok}", 1},
		{"imagetrust_proxy_decisions_total{outcome=refused,reason=body}", 1},
		{"imagetrust_proxy_request_duration_seconds{kind=gated}", 1},
		{"imagetrust_proxy_request_duration_seconds{kind=refused}", 2},
		{"imagetrust_proxy_request_duration_seconds{kind=passthrough}", 1},
	} {
		if got := metricValue(t, g, c.name); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if metricValue(t, g, "imagetrust_proxy_cache_lookups_total{result=miss}") < 2 {
		t.Error("cache misses not counted")
	}
}

// metricValue reads a counter value or a histogram's sample count from the
// gate's registry; name is family{label=value,...} with labels in order.
func metricValue(t *testing.T, g *gateEnv, name string) float64 {
	t.Helper()
	fams, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		for _, m := range fam.GetMetric() {
			var l []string
			for _, lp := range m.GetLabel() {
				l = append(l, lp.GetName()+"="+lp.GetValue())
			}
			if fam.GetName()+"{"+strings.Join(l, ",")+"}" != name {
				continue
			}
			return sampleValue(m)
		}
	}
	return 0
}

func sampleValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return 0
}
