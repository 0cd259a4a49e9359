package proxy

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/contextualise"
	"github.com/imagetrust/imagetrust/internal/pki"
	"github.com/imagetrust/imagetrust/validator"
)

// userGuideNorm turns a refusal message into the form docs/user-guide.md
// quotes it in: ids, times, the test's VO and tag, and numbers as
// placeholders.
var userGuideNorm = []struct {
	re  *regexp.Regexp
	rep string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "ID"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "DATE"},
	{regexp.MustCompile(`atlas/worker`), "VO/TAG"},
	{regexp.MustCompile(`"worker"`), `"TAG"`},
	{regexp.MustCompile(`\(\d+ considered\)`), "(N considered)"},
	{regexp.MustCompile(`and \d+ older`), "and N older"},
	{regexp.MustCompile(`\b\d+ (characters|bytes)`), "N $1"},
	{regexp.MustCompile(`does not verify \([^)]*\)`), "does not verify (CHECK: REASON)"},
	{regexp.MustCompile(`catalogue properties [a-z_, ]+ differ`), "catalogue properties PROPERTIES differ"},
	{regexp.MustCompile(`\b[0-9a-f]{16}…`), "HASH…"},
}

func normaliseForGuide(msg string) string {
	for _, n := range userGuideNorm {
		msg = n.re.ReplaceAllString(msg, n.rep)
	}
	return msg
}

// TestUserGuideRefusals: every refusal docs/user-guide.md quotes (its
// ```refusal block, and the fragments of its table's "you see" column) is
// one the gate writes, and every refusal a user meets in the cases below
// is quoted: the guide cannot drift from the code unnoticed.
func TestUserGuideRefusals(t *testing.T) {
	doc, err := os.ReadFile("../../docs/user-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```refusal\n")
	if !ok {
		t.Fatal("docs/user-guide.md has no ```refusal block")
	}
	block, _, _ = strings.Cut(block, "```")
	quoted := strings.Split(strings.TrimSuffix(block, "\n"), "\n")

	now := time.Now()
	past := func(d time.Duration) time.Time { return now.Add(-d) }
	id := func(n int) string {
		return "cccccccc-0000-4000-8000-" + strings.Repeat("0", 10) + string(rune('a'+n/16)) + string("0123456789abcdef"[n%16])
	}
	revokedProps := func(img *Image, reason, state string) {
		img.Status = "deactivated"
		img.Properties[validator.PropGlobalValidity] = state
		img.Properties[validator.PropRevocationReason] = reason
		img.Properties[validator.PropRevokedRole] = "image"
		img.Properties[validator.PropRevocationDate] = past(time.Hour).UTC().Format(time.RFC3339)
	}
	type ucase struct {
		name  string
		setup func(f *fixture) (*Options, string, string) // options to change, path, body
		want  int
	}
	create := func(ref string) (string, string) { return "/v2.1/servers", serverBody(ref) }
	cases := []ucase{
		{"expired", func(f *fixture) (*Options, string, string) {
			f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker", notBefore: past(400 * 24 * time.Hour), notAfter: past(24 * time.Hour)})
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"revoked", func(f *fixture) (*Options, string, string) {
			revokedProps(f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker"}), "keyCompromise", "revoked")
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"hold", func(f *fixture) (*Options, string, string) {
			revokedProps(f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker"}), "certificateHold", "hold")
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"unknown", func(f *fixture) (*Options, string, string) {
			f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker", global: "unknown"})
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"missing", func(f *fixture) (*Options, string, string) {
			delete(f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker"}).Properties, validator.PropGlobalValidity)
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"blacklisted", func(f *fixture) (*Options, string, string) {
			f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker", local: "blacklist"})
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"revoked by the site's CRL", func(f *fixture) (*Options, string, string) {
			img := f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker"})
			serial, _ := new(big.Int).SetString(img.Properties[validator.PropImageSerial], 16)
			crl := f.reg.CRL(pki.CRLTemplate{Number: 2, ThisUpdate: past(time.Hour), NextUpdate: now.Add(time.Hour),
				Entries: []pki.Revoked{{Serial: serial, Time: past(time.Hour), Reason: 1}}})
			tr := fixtureTrust(t, f, crl)
			p, b := create(id(1))
			return &Options{Decider: tr}, p, b
		}, 403},
		{"record does not verify", func(f *fixture) (*Options, string, string) {
			f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker"}).Properties[validator.PropSignature] = "AAAA"
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"record edited", func(f *fixture) (*Options, string, string) {
			f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker"}).Properties[validator.PropImageNotAfter] = "2099-01-01T00:00:00Z"
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"data in Glance not the signed image", func(f *fixture) (*Options, string, string) {
			img := f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker"})
			img.Properties["os_hash_algo"], img.Properties["os_hash_value"] = "sha512", strings.Repeat("ab", 64)
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"tag of a blacklisted and an expired image", func(f *fixture) (*Options, string, string) {
			f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker", created: past(48 * time.Hour), local: "blacklist"})
			f.add(imageSpec{id: id(2), vo: "atlas", tag: "worker", created: past(401 * 24 * time.Hour), notBefore: past(400 * 24 * time.Hour), notAfter: past(24 * time.Hour)})
			f.alias(id(9), "atlas", "worker")
			p, b := create(id(9)) // the alias, as the client sends --image worker
			return nil, p, b
		}, 403},
		{"tag of many blacklisted images", func(f *fixture) (*Options, string, string) {
			for i := range 5 {
				f.add(imageSpec{id: id(i + 1), vo: "atlas", tag: "worker", created: past(time.Duration(48+i) * time.Hour), local: "blacklist"})
			}
			p, b := create("atlas/worker")
			return nil, p, b
		}, 403},
		{"tag of two VOs", func(f *fixture) (*Options, string, string) {
			f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker"})
			f.add(imageSpec{id: id(2), vo: "cms", tag: "worker"})
			p, b := create("worker")
			return nil, p, b
		}, 409},
		{"no such tag", func(f *fixture) (*Options, string, string) {
			p, b := create("atlas/worker")
			return nil, p, b
		}, 404},
		{"own image the gate cannot see", func(f *fixture) (*Options, string, string) {
			p, b := create(id(1))
			return nil, p, b
		}, 404},
		{"another project's image", func(f *fixture) (*Options, string, string) {
			f.glance.put(&Image{ID: id(1), Owner: userProject, Status: "active", Properties: map[string]string{}})
			p, b := create(id(1))
			return nil, p, b
		}, 403},
		{"rescue without an image", func(f *fixture) (*Options, string, string) {
			return nil, "/v2.1/servers/" + id(5) + "/action", `{"rescue":null}`
		}, 400},
		{"boot volume", func(f *fixture) (*Options, string, string) {
			return nil, "/v2.1/servers", bdmBody(`{"boot_index":0,"uuid":"` + id(6) + `","source_type":"volume","destination_type":"volume"}`)
		}, 403},
		{"volume still being made", func(f *fixture) (*Options, string, string) {
			cinder := &standInCinder{volumes: map[string]string{volCreating: "creating"}}
			return &Options{Volumes: cinder}, "/v2.1/servers", bdmBody(`{"boot_index":0,"uuid":"` + volCreating + `","source_type":"volume","destination_type":"volume"}`)
		}, 400},
		{"user data too large", func(f *fixture) (*Options, string, string) {
			f.add(imageSpec{id: id(1), vo: "atlas", tag: "worker"})
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "all"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "all", "motd.sh"), []byte("#!/bin/sh\necho site\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			site, err := contextualise.LoadSite(dir)
			if err != nil {
				t.Fatal(err)
			}
			hook := func(b Boot, ud string, has bool) (string, bool, error) {
				out, err := site.Merge(ud, has, contextualise.Vars{ImageUUID: b.Image.ID, VO: "atlas", Tag: "worker"})
				return out, out != "", err
			}
			body := `{"server":{"name":"vm","flavorRef":"1","networks":"none","imageRef":"` + id(1) + `","user_data":"` + base64.StdEncoding.EncodeToString(make([]byte, 60000)) + `"}}`
			return &Options{UserData: hook, MaxBody: 1 << 20}, "/v2.1/servers", body
		}, 400},
		{"gate busy", func(f *fixture) (*Options, string, string) {
			// every slot taken (below) and a queue timeout that ends at once
			p, b := create(idGood)
			return &Options{MaxGated: 1, GatedQueueTimeout: time.Nanosecond}, p, b
		}, 503},
		{"gate busy for the project", func(f *fixture) (*Options, string, string) {
			// the project's share taken, the other slot another project's
			// (below)
			_, b := create(idGood)
			return &Options{MaxGated: 2, MaxGatedPerProject: 1, GatedQueueTimeout: time.Nanosecond}, "/v2.1/" + userProject + "/servers", b
		}, 503},
		{"gate busy validating tokens", func(f *fixture) (*Options, string, string) {
			// every validation place taken (below)
			p, b := create(idGood)
			return &Options{Identity: hostileIdentity{}, MaxGated: 1, GatedQueueTimeout: time.Nanosecond}, p, b
		}, 503},
	}

	var produced []string
	for _, c := range cases {
		f := newFixture(t)
		nova := newRecordingNova(t)
		over, path, body := c.setup(f)
		g := newGate(t, f, nova.srv.URL, func(o *Options) {
			if over == nil {
				return
			}
			if over.Decider != nil {
				o.Decider = over.Decider
			}
			if over.Volumes != nil {
				o.Volumes = over.Volumes
			}
			if over.UserData != nil {
				o.UserData, o.MaxBody = over.UserData, over.MaxBody
			}
			if over.MaxGated != 0 {
				o.MaxGated, o.GatedQueueTimeout, o.MaxGatedPerProject = over.MaxGated, over.GatedQueueTimeout, over.MaxGatedPerProject
			}
			if over.Identity != nil {
				o.Identity = over.Identity
			}
		})
		var hdr map[string]string
		switch {
		case over != nil && over.Identity != nil:
			ci := g.proxy.identity.(*cachedIdentity)
			for range ci.places.n {
				ci.places.acquire(context.Background(), "another-client")
			}
			hdr = map[string]string{"X-Auth-Token": "a-token-not-cached"}
		case over != nil && over.MaxGated != 0:
			// every slot taken: the project's share by the project, the
			// rest by another
			g.proxy.limit.mu.Lock()
			for i := range over.MaxGated {
				project := "another-project"
				if i < over.MaxGatedPerProject {
					project = userProject
				}
				g.proxy.limit.take(project, nil)
			}
			g.proxy.limit.mu.Unlock()
		}
		resp, b := do(t, http.MethodPost, g.srv.URL+path, "application/json", body, hdr)
		if resp.StatusCode != c.want {
			t.Fatalf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.want, b)
		}
		_, _, msg := fault(t, b)
		produced = append(produced, normaliseForGuide(msg))
	}
	for _, q := range quoted {
		if !slices.Contains(produced, q) {
			t.Errorf("docs/user-guide.md quotes a refusal the gate does not write:\n  %s", q)
		}
	}
	for i, p := range produced {
		if !slices.Contains(quoted, p) {
			t.Errorf("docs/user-guide.md does not quote the refusal of %q:\n  %s", cases[i].name, p)
		}
	}

	// the table's "you see" column quotes fragments of them
	seen := regexp.MustCompile(`^\| [^|]+ \| (.+?) \| [^|]+ \|$`)
	frag := regexp.MustCompile("`([^`]+)`")
	var frags []string
	for _, line := range strings.Split(string(doc), "\n") {
		if m := seen.FindStringSubmatch(line); m != nil && m[1] != "you see" && !strings.HasPrefix(m[1], "---") {
			for _, fm := range frag.FindAllStringSubmatch(m[1], -1) {
				frags = append(frags, fm[1])
			}
		}
	}
	if len(frags) < 8 {
		t.Fatalf("found %d fragments in the guide's table", len(frags))
	}
	sort.Strings(frags)
	for _, fr := range frags {
		if !slices.ContainsFunc(produced, func(p string) bool { return strings.Contains(p, fr) }) {
			t.Errorf("docs/user-guide.md's table quotes %q, which no refusal contains", fr)
		}
	}
}

// fixtureTrust is f's trust store with crls added.
func fixtureTrust(t *testing.T, f *fixture, crls ...[]byte) *validator.Trust {
	t.Helper()
	vos := map[string]*validator.VOPolicy{}
	for _, vo := range []string{"atlas", "cms"} {
		var both []validator.DN
		for _, c := range []*x509.Certificate{f.creator.Cert, f.approver.Cert} {
			d, err := validator.DNFromRaw(c.RawSubject)
			if err != nil {
				t.Fatal(err)
			}
			both = append(both, d)
		}
		vos[vo] = &validator.VOPolicy{Name: vo, Creators: both, Approvers: both}
	}
	tr, _, err := validator.NewTrust(validator.TrustOptions{
		People: []*x509.Certificate{f.people.Cert}, Registrar: []*x509.Certificate{f.reg.Cert}, VOs: vos, CRLs: crls,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
