package glancesync

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// membersGets counts the GET /v2/images/{id}/members requests that go
// through it, by image id.
type membersGets struct {
	rt  http.RoundTripper
	mu  sync.Mutex
	ids map[string]int
}

func (c *membersGets) RoundTrip(r *http.Request) (*http.Response, error) {
	if id, ok := strings.CutPrefix(r.URL.Path, "/v2/images/"); ok && r.Method == http.MethodGet {
		if id, ok := strings.CutSuffix(id, "/members"); ok {
			c.mu.Lock()
			c.ids[id]++
			c.mu.Unlock()
		}
	}
	return c.rt.RoundTrip(r)
}

// take returns how many listings of the images ids were made since the
// last take, and how many of any image.
func (c *membersGets) take(ids []string) (n, all int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		n += c.ids[id]
	}
	for _, k := range c.ids {
		all += k
	}
	c.ids = map[string]int{}
	return n, all
}

// TestMembersRememberedAndRechecked: once a pass has read and set a shared
// image's members, the passes that follow (one Syncer) do not read them
// again; a member removed out of band is restored once MembersRecheck has
// passed, and a change of the VO's project list is applied at once.
// Against the real Glance.
func TestMembersRememberedAndRechecked(t *testing.T) {
	e := newEnv(t)
	gets := &membersGets{rt: e.counter.rt, ids: map[string]int{}}
	e.counter.rt = gets
	w := newWorld(t)
	atlas := filepath.Join(t.TempDir(), "atlas")
	// tags of this test alone: the mirror project holds other tests' images
	// and aliases
	var ours []string
	var p *published
	for _, tag := range []string{"members-" + uuid.NewString()[:8], "members-" + uuid.NewString()[:8]} {
		p = w.publish(atlas, spec{vo: "atlas", tag: tag})
		ours = append(ours, p.id, aliasID(e.project, "atlas/"+tag, tag), aliasID(e.project, "atlas/"+tag, "atlas/"+tag))
	}
	demo := projectID(t, e.demo.ProviderClient)
	o := e.options(t, w, map[string][]string{atlas: {"atlas"}})
	o.VOs["atlas"] = config.VO{Visibility: "shared", Projects: []string{demo}}
	// a short re-check interval, and a clock the test moves past it (a
	// pass over the other tests' images left in the mirror project may
	// itself take longer than a short interval)
	const recheck = time.Minute
	o.MembersRecheck = recheck
	var skew atomic.Int64
	o.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	pass := func(what string) *Report {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		r, err := s.Run(ctx)
		if err != nil || r.Errors != 0 {
			t.Fatalf("%s: %v, %d errors: %+v", what, err, r.Errors, r.Outcomes)
		}
		return r
	}
	members := func(id string) []string {
		t.Helper()
		got, err := e.glance.Members(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	pass("first pass")
	// two images and their four aliases, each shared with demo
	if n, _ := gets.take(ours); n != 6 {
		t.Fatalf("first pass: %d members listings, want 6 (2 images, 4 aliases)", n)
	}
	if got := members(p.id); !slices.Equal(got, []string{demo}) {
		t.Fatalf("members %v, want [%s]", got, demo)
	}
	gets.take(nil)

	w0 := e.counter.reset()
	pass("steady pass")
	// none at all: the other tests' images in the mirror project are
	// remembered too
	if _, n := gets.take(ours); n != 0 {
		t.Fatalf("steady pass: %d members listings, want none", n)
	}
	if n := e.counter.reset() - w0; n != 0 {
		t.Fatalf("steady pass: %d writes, want none:\n%s", n, e.counter.log)
	}

	// an operator removes the member: remembered, the sync does not see it
	// until the re-check interval has passed
	if err := e.glance.RemoveMember(context.Background(), p.id, demo); err != nil {
		t.Fatal(err)
	}
	gets.take(nil)
	pass("pass within the re-check interval")
	if _, n := gets.take(ours); n != 0 {
		t.Fatalf("pass within the re-check interval: %d members listings, want none", n)
	}
	if got := members(p.id); len(got) != 0 {
		t.Fatalf("members %v restored before the re-check interval", got)
	}
	skew.Store(int64(recheck))
	gets.take(nil)
	r := pass("pass after the re-check interval")
	if n, _ := gets.take(ours); n != 6 {
		t.Fatalf("pass after the re-check interval: %d members listings, want 6", n)
	}
	if got := members(p.id); !slices.Equal(got, []string{demo}) {
		t.Fatalf("after the re-check interval: members %v, want [%s]", got, demo)
	}
	if !slices.ContainsFunc(r.Find(p.id), func(o Outcome) bool { return o.Action == ActionUpdate && o.Detail == "member "+demo }) {
		t.Fatalf("no outcome for the restored member: %+v", r.Find(p.id))
	}
	gets.take(nil)
	pass("steady pass after the repair")
	if _, n := gets.take(ours); n != 0 {
		t.Fatalf("steady pass after the repair: %d members listings, want none", n)
	}

	// the VO's project list changes: read and applied at once (the Syncer
	// shares the map; a reload would make a new Syncer, which remembers
	// nothing)
	o.VOs["atlas"] = config.VO{Visibility: "shared"}
	pass("pass after the project list changed")
	if n, _ := gets.take(ours); n != 6 {
		t.Fatalf("pass after the project list changed: %d members listings, want 6", n)
	}
	if got := members(p.id); len(got) != 0 {
		t.Fatalf("members %v after the project left the configuration", got)
	}
}

// TestMembersOfPrivateImages: Glance keeps no members for an image that is
// not shared and answers 403 to their listing. An image of a shared VO
// found private (made so out of band, or before its VO became shared) is
// not listed: deactivated, it is left as it is, pass after pass, with no
// error; active, it is made shared and then given the VO's projects in
// the same pass. Against the real Glance.
func TestMembersOfPrivateImages(t *testing.T) {
	e := newEnv(t)
	gets := &membersGets{rt: e.counter.rt, ids: map[string]int{}}
	e.counter.rt = gets
	w := newWorld(t)
	atlas := filepath.Join(t.TempDir(), "atlas")
	tag := "private-" + uuid.NewString()[:8]
	act := w.publish(atlas, spec{vo: "atlas", tag: tag})
	deact := w.publish(atlas, spec{vo: "atlas", tag: tag, created: time.Now().Add(-time.Hour)})
	demo := projectID(t, e.demo.ProviderClient)
	o := e.options(t, w, map[string][]string{atlas: {"atlas"}})
	o.VOs["atlas"] = config.VO{Visibility: "shared", Projects: []string{demo}}
	o.Sync.Retire = "keep"
	pass := func(what string) {
		t.Helper()
		if r := run(t, o); r.Errors != 0 { // a new Syncer: nothing remembered
			t.Fatalf("%s: %d errors: %+v", what, r.Errors, r.Outcomes)
		}
	}
	pass("first pass")
	ctx := context.Background()
	for _, id := range []string{act.id, deact.id} {
		if err := e.glance.Patch(ctx, id, []PatchOp{{Name: "visibility", Value: "private"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.admin.Deactivate(ctx, deact.id); err != nil {
		t.Fatal(err)
	}
	gets.take(nil)
	pass("pass over the private images")
	if n, _ := gets.take([]string{deact.id}); n != 0 {
		t.Errorf("the deactivated private image's members listed %d times (Glance answers 403)", n)
	}
	if im := e.get(t, deact.id); im.Visibility != "private" || im.Status != StatusDeactivated {
		t.Errorf("deactivated image: %s %s, want it left private and deactivated", im.Visibility, im.Status)
	}
	if im := e.get(t, act.id); im.Visibility != "shared" {
		t.Errorf("active image: %s, want shared", im.Visibility)
	}
	got, err := e.glance.Members(ctx, act.id)
	if err != nil || !slices.Equal(got, []string{demo}) {
		t.Errorf("active image made shared: members %v (%v), want [%s] in the same pass", got, err, demo)
	}
	pass("second pass")
}

// failPatches is a Glance whose Patch of one image fails.
type failPatches struct {
	Glance
	id string
}

func (g failPatches) Patch(ctx context.Context, id string, ops []PatchOp) error {
	if id == g.id {
		return errors.New("injected: patch refused")
	}
	return g.Glance.Patch(ctx, id, ops)
}

// TestMembersFollowTheBundlesVO: the members of a mirrored image are its
// valid bundle's VO's projects, whatever its imagetrust_vo property says:
// someone who can write the mirror project's images moved it to another VO,
// and the repair of its record failed this pass. Against the real Glance.
func TestMembersFollowTheBundlesVO(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	atlas := filepath.Join(t.TempDir(), "atlas")
	p := w.publish(atlas, spec{vo: "atlas", tag: "vo-" + uuid.NewString()[:8]})
	demo := projectID(t, e.demo.ProviderClient)
	other := strings.ReplaceAll(uuid.NewString(), "-", "") // a project of cms only
	o := e.options(t, w, map[string][]string{atlas: {"atlas"}})
	o.VOs["atlas"] = config.VO{Visibility: "shared", Projects: []string{demo}}
	o.VOs["cms"] = config.VO{Visibility: "shared", Projects: []string{other}}
	if r := run(t, o); r.Errors != 0 {
		t.Fatalf("first pass: %d errors: %+v", r.Errors, r.Outcomes)
	}
	ctx := context.Background()
	if err := e.glance.Patch(ctx, p.id, []PatchOp{{Name: validator.PropVO, Value: "cms"}}); err != nil {
		t.Fatal(err)
	}
	broken := o
	broken.Glance = failPatches{Glance: o.Glance, id: p.id}
	run(t, broken) // the repair fails
	if got, err := e.glance.Members(ctx, p.id); err != nil || !slices.Equal(got, []string{demo}) {
		t.Errorf("members %v (%v), want atlas's [%s]: the bundle's VO, not the edited property's", got, err, demo)
	}
	if r := run(t, o); r.Errors != 0 {
		t.Fatalf("repairing pass: %d errors: %+v", r.Errors, r.Outcomes)
	}
	if im := e.get(t, p.id); im.Props[validator.PropVO] != "atlas" {
		t.Errorf("imagetrust_vo %q after the repair, want atlas", im.Props[validator.PropVO])
	}
}
