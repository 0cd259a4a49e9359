package glancesync

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2/openstack"

	"github.com/imagetrust/imagetrust/crl"
)

// imageRequests records the requests made on one image (method and path),
// and calls after, when set, once a PATCH of it succeeded: a concurrent
// writer whose whole-image save lands after the sync's.
type imageRequests struct {
	rt    http.RoundTripper
	id    string
	mu    sync.Mutex
	log   []string
	after func()
}

func (c *imageRequests) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if !strings.HasSuffix(r.URL.Path, "/images/"+c.id) {
		return resp, err
	}
	c.mu.Lock()
	c.log = append(c.log, r.Method)
	after := c.after
	c.mu.Unlock()
	if r.Method == http.MethodPatch && err == nil && resp.StatusCode == http.StatusOK && after != nil {
		after()
	}
	return resp, err
}

func (c *imageRequests) take() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.Join(c.log, " ")
	c.log = nil
	return s
}

// recordedGlance is the sync's Glance, as the mirror, over rec.
func recordedGlance(t *testing.T, e *env, rec *imageRequests) Glance {
	t.Helper()
	pc := e.provider(t)
	pc.HTTPClient = http.Client{Transport: rec}
	_, eo := e.authOptions(t)
	sc, err := openstack.NewImageV2(pc, eo)
	if err != nil {
		t.Fatal(err)
	}
	return NewGlance(sc)
}

// TestPatchOneRequestVerified: Patch sends properties and base attributes
// in one PATCH (Glance saves the whole image on every PATCH: two requests
// are two chances to revert a concurrent writer, or be reverted), decides
// from its own read what to send (nothing when the image already has it),
// re-reads the image after writing, writes again when its change was
// reverted by a concurrent save, and fails naming what was lost when it
// keeps being reverted. Against the real Glance; the "concurrent writer" is
// the admin, writing after each of the sync's PATCHes the values an older
// read held. The old Patch sent GET, PATCH, PATCH, the attribute PATCH
// even when nothing changed, and never read back.
func TestPatchOneRequestVerified(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := uuid.NewString()
	if _, err := e.glance.Create(ctx, CreateSpec{ID: id, Name: "patch-" + id[:8], DiskFormat: "raw", ContainerFormat: "bare",
		Visibility: "private", Props: map[string]string{"imagetrust_t_old": "1", "imagetrust_t_gone": "x", "imagetrust_t_mark": "crl-hold"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.admin.Delete(context.Background(), id) })
	rec := &imageRequests{rt: http.DefaultTransport, id: id}
	g := recordedGlance(t, e, rec)
	ops := []PatchOp{
		{Name: "imagetrust_t_old", Value: "2"}, {Name: "imagetrust_t_new", Value: "n"},
		{Name: "imagetrust_t_gone", Remove: true}, {Name: "imagetrust_t_absent", Remove: true},
		{Name: "imagetrust_t_mark", Remove: true, IfValue: "crl-hold"},
		{Name: "os_hidden", Value: true}, {Name: "visibility", Value: "shared"},
	}
	check := func(t *testing.T) {
		t.Helper()
		im := e.get(t, id)
		for k, want := range map[string]string{"imagetrust_t_old": "2", "imagetrust_t_new": "n", "imagetrust_t_gone": "", "imagetrust_t_mark": ""} {
			if im.Props[k] != want {
				t.Errorf("%s = %q, want %q", k, im.Props[k], want)
			}
		}
		if !im.Hidden || im.Visibility != "shared" {
			t.Errorf("hidden %v visibility %s", im.Hidden, im.Visibility)
		}
	}
	// the concurrent writer: the image as it was before the sync's write
	older := []PatchOp{{Name: "imagetrust_t_old", Value: "1"}, {Name: "imagetrust_t_new", Remove: true},
		{Name: "imagetrust_t_gone", Value: "x"}, {Name: "imagetrust_t_mark", Value: "crl-hold"},
		{Name: "os_hidden", Value: false}, {Name: "visibility", Value: "private"}}
	revert := func(n int) func() {
		return func() {
			if n == 0 {
				return
			}
			n--
			if err := e.admin.Patch(ctx, id, older); err != nil {
				t.Errorf("revert: %v", err)
			}
		}
	}

	t.Run("ok one PATCH, read back", func(t *testing.T) {
		if err := g.Patch(ctx, id, ops); err != nil {
			t.Fatal(err)
		}
		if got := rec.take(); got != "GET PATCH GET" {
			t.Fatalf("requests %q, want GET PATCH GET", got)
		}
		check(t)
	})
	t.Run("ok nothing to change, no PATCH", func(t *testing.T) {
		if err := g.Patch(ctx, id, ops); err != nil {
			t.Fatal(err)
		}
		if got := rec.take(); got != "GET" {
			t.Fatalf("requests %q, want GET", got)
		}
	})
	t.Run("ok reverted once, written again", func(t *testing.T) {
		if err := e.admin.Patch(ctx, id, older); err != nil {
			t.Fatal(err)
		}
		rec.after = revert(1)
		defer func() { rec.after = nil }()
		if err := g.Patch(ctx, id, ops); err != nil {
			t.Fatal(err)
		}
		if got := rec.take(); got != "GET PATCH GET PATCH GET" {
			t.Fatalf("requests %q, want GET PATCH GET PATCH GET", got)
		}
		check(t)
	})
	t.Run("fail reverted every time, names what was lost", func(t *testing.T) {
		if err := e.admin.Patch(ctx, id, older); err != nil {
			t.Fatal(err)
		}
		rec.after = revert(100)
		defer func() { rec.after = nil }()
		err := g.Patch(ctx, id, ops)
		if err == nil {
			t.Fatal("no error")
		}
		for _, s := range []string{id, "os_hidden=true", "visibility=shared", "imagetrust_t_old set", "imagetrust_t_new set",
			"imagetrust_t_gone removed", "imagetrust_t_mark removed", "lost", fmt.Sprintf("after %d attempts", patchAttempts)} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q lacks %q", err, s)
			}
		}
		if strings.Contains(err.Error(), "imagetrust_t_absent") {
			t.Errorf("error %q names a key that was never there", err)
		}
		if got, want := strings.Count(rec.take(), "PATCH"), patchAttempts; got != want {
			t.Fatalf("%d PATCHes, want %d", got, want)
		}
	})
	t.Run("ok mark with another value kept", func(t *testing.T) {
		if err := e.admin.Patch(ctx, id, []PatchOp{{Name: "imagetrust_t_mark", Value: "operator"}}); err != nil {
			t.Fatal(err)
		}
		if err := g.Patch(ctx, id, []PatchOp{{Name: "imagetrust_t_mark", Remove: true, IfValue: "crl-hold"}}); err != nil {
			t.Fatal(err)
		}
		if got := rec.take(); got != "GET" {
			t.Fatalf("requests %q, want GET", got)
		}
		if v := e.get(t, id).Props["imagetrust_t_mark"]; v != "operator" {
			t.Fatalf("mark %q", v)
		}
	})
}

// crlAfterListing is the sync's Glance with the CRL job acting on one image
// between the pass's listing and its retirement: it deactivates the image
// for a certificateHold and marks it (imagetrust_deactivated_by=crl-hold)
// just before the sync deactivates it.
type crlAfterListing struct {
	Glance
	admin Glance
	id    string
	t     *testing.T
	done  bool
}

func (g *crlAfterListing) Deactivate(ctx context.Context, id string) error {
	if id == g.id && !g.done {
		g.done = true
		if err := g.admin.Patch(ctx, id, []PatchOp{{Name: crl.PropGlobalValidity, Value: crl.StateHold}, {Name: crl.PropDeactivatedBy, Value: crl.DeactivatedByHold}}); err != nil {
			g.t.Errorf("crl job: %v", err)
		}
		if err := g.admin.Deactivate(ctx, id); err != nil {
			g.t.Errorf("crl job: %v", err)
		}
	}
	return g.Glance.Deactivate(ctx, id)
}

// TestRetireHoldMarkedAfterListing: the CRL job deactivates an image for a
// hold and marks it after the pass listed the image (active, unmarked), and
// before the pass retires it under retire = delete while servers use it.
// The retired image must lose the mark (or the job reactivates it when the
// hold is lifted): the sync decides from Patch's own read, not from the
// listing. The old retire removed the mark only when the listing showed it.
// Against the real Glance.
func TestRetireHoldMarkedAfterListing(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(dir, spec{vo: "atlas", tag: "held-late"})
	w.publish(dir, spec{vo: "atlas", tag: "stays"})
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "delete"
	o.Servers = usedByServers{}
	run(t, o)
	removeBundle(t, p)
	o.Glance = &crlAfterListing{Glance: e.glance, admin: e.admin, id: p.id, t: t}
	if r := run(t, o); r.Errors != 0 {
		t.Fatalf("retiring pass: %+v", r.Outcomes)
	}
	if !o.Glance.(*crlAfterListing).done {
		t.Fatal("the image was not deactivated by the pass")
	}
	im := e.get(t, p.id)
	if im.Status != StatusDeactivated || !im.Hidden || im.Props[crl.PropDeactivatedBy] != "" {
		t.Fatalf("retired image held after the listing: %s hidden %v deactivated_by %q", im.Status, im.Hidden, im.Props[crl.PropDeactivatedBy])
	}
}
