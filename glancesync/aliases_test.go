package glancesync

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// TestAliasesStayUniqueWhenIDSpent: when an alias's derived id is spent
// (an admin deleted the alias), racing syncs must not each make their own:
// `openstack server create --image TAG` would then fail with "more than one
// image". Against the real Glance: the derived id is deleted, a surplus
// alias (as two older syncs racing left) is added, two passes run at once,
// then one more; each alias name has exactly one image, under a derived id.
func TestAliasesStayUniqueWhenIDSpent(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "lhcb")
	tag := "alias-" + uuid.NewString()[:8]
	w.publish(dir, spec{vo: "lhcb", tag: tag})
	o := e.options(t, w, map[string][]string{dir: {"lhcb"}})
	o.Sync.Retire = "keep"
	alias := "lhcb/" + tag
	if r := run(t, o); r.Errors != 0 {
		t.Fatalf("first pass: %+v", r.Outcomes)
	}
	ctx := context.Background()
	// The operator deletes the bare-name alias: its derived id is spent.
	if err := e.admin.Delete(ctx, aliasID(e.project, alias, tag)); err != nil {
		t.Fatal(err)
	}
	// An older sync left a second alias VO/TAG under a random id.
	surplus, err := e.glance.Create(ctx, CreateSpec{ID: uuid.NewString(), Name: alias, Visibility: "shared", Props: map[string]string{validator.PropAlias: alias}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := New(o)
			if err != nil {
				t.Error(err)
				return
			}
			ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if r, err := s.Run(ctx); err != nil || r.Errors != 0 {
				t.Errorf("racing pass: %v, %+v", err, r.Outcomes)
			}
		}()
	}
	wg.Wait()
	if r := run(t, o); r.Errors != 0 {
		t.Fatalf("settling pass: %+v", r.Outcomes)
	}
	got, err := e.admin.List(ctx, e.project, map[string]string{validator.PropAlias: alias})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string][]string{}
	for _, im := range got {
		names[im.Name] = append(names[im.Name], im.ID)
	}
	if len(got) != 2 || len(names[tag]) != 1 || len(names[alias]) != 1 {
		t.Fatalf("alias images %v, want one named %s and one named %s", names, tag, alias)
	}
	if want := aliasIDs(e.project, alias, tag)[1]; names[tag][0] != want {
		t.Errorf("alias %s has id %s, want the first fallback %s", tag, names[tag][0], want)
	}
	if want := aliasID(e.project, alias, alias); names[alias][0] != want {
		t.Errorf("alias %s has id %s, want the derived %s (surplus %s)", alias, names[alias][0], want, surplus.ID)
	}
}

// unhideAfterFirstList unhides an image once the first image listing has
// been answered: another sync unhiding it while this one lists.
type unhideAfterFirstList struct {
	next http.RoundTripper
	once sync.Once
	do   func()
}

func (u *unhideAfterFirstList) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := u.next.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/v2/images") {
		u.once.Do(u.do)
	}
	return resp, err
}

// TestListedTwiceIsOneImage: Glance lists hidden and visible images apart,
// so an image unhidden between the two listings comes in both. The listing
// returns it once, and an alias listed twice is not a surplus of itself
// (dedupAliases deleted the very alias it kept). Against the real Glance.
func TestListedTwiceIsOneImage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alias := "atlas/twice-" + uuid.NewString()[:8]
	im, err := e.glance.Create(ctx, CreateSpec{ID: uuid.NewString(), Name: alias, Visibility: "shared", Hidden: true,
		Props: map[string]string{validator.PropAlias: alias}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.admin.Delete(context.Background(), im.ID) })
	pc := *e.sc.ProviderClient
	pc.HTTPClient = http.Client{Transport: &unhideAfterFirstList{next: http.DefaultTransport, do: func() {
		if err := e.admin.Patch(ctx, im.ID, []PatchOp{{Name: "os_hidden", Value: false}}); err != nil {
			t.Errorf("unhide: %v", err)
		}
	}}}
	sc := *e.sc
	sc.ProviderClient = &pc
	got, err := NewGlance(&sc).List(ctx, e.project, map[string]string{validator.PropAlias: alias})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != im.ID || got[0].Hidden {
		t.Fatalf("listed %d images (%+v), want the one, as last read (visible)", len(got), got)
	}
	// and the alias step, given it twice, deletes nothing
	s, err := New(Options{Glance: e.glance, MirrorProject: e.project, Logger: testLogger(t),
		Sync: config.Sync{Parallel: 1, Retire: "keep"}, Trust: newWorld(t).trust()})
	if err != nil {
		t.Fatal(err)
	}
	var rp reporter
	s.dedupAliases(ctx, []*Image{got[0], got[0]}, &rp)
	if _, err := e.admin.Get(ctx, im.ID); err != nil {
		t.Fatalf("the alias listed twice: %v", err)
	}
}

// loserOfDeleteRace answers a DELETE the way Glance answers the loser of
// two deletes of one image at once (400, "status transition from deleted to
// deleted"), after the image was indeed deleted.
type loserOfDeleteRace struct{ next http.RoundTripper }

func (l loserOfDeleteRace) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodDelete {
		return resp, err
	}
	resp.Body.Close()
	body := `{"message": "Image status transition from deleted to deleted is not allowed", "code": "400 Bad Request", "title": "Bad Request"}`
	return &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

// TestDeleteRaceLoserIsNotFound: racing syncs may delete one image at once
// (a surplus alias, a retired image), and Glance then answers the loser 400,
// not 404. Delete reports an image that is gone after an error as
// ErrNotFound, which its callers take as done (the pass failed before).
// Against the real Glance, the loser's answer written by the transport.
func TestDeleteRaceLoserIsNotFound(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	im, err := e.glance.Create(ctx, CreateSpec{ID: uuid.NewString(), Name: "race-" + uuid.NewString()[:8]})
	if err != nil {
		t.Fatal(err)
	}
	pc := *e.sc.ProviderClient
	pc.HTTPClient = http.Client{Transport: loserOfDeleteRace{next: http.DefaultTransport}}
	sc := *e.sc
	sc.ProviderClient = &pc
	if err := NewGlance(&sc).Delete(ctx, im.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete answered 400 after the image went: %v, want ErrNotFound", err)
	}
	// an image still there after an error is an error
	im2, err := e.glance.Create(ctx, CreateSpec{ID: uuid.NewString(), Name: "race-" + uuid.NewString()[:8]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.admin.Delete(context.Background(), im2.ID) })
	pc.HTTPClient = http.Client{Transport: refuseDeletes{}}
	if err := NewGlance(&sc).Delete(ctx, im2.ID); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("delete refused, image still there: %v, want an error other than ErrNotFound", err)
	}
}

// refuseDeletes answers every DELETE 400 without sending it, and passes the rest.
type refuseDeletes struct{}

func (refuseDeletes) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodDelete {
		return http.DefaultTransport.RoundTrip(r)
	}
	return &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{"message": "no"}`)), Request: r}, nil
}

// TestAliasIDsSquatted: alias ids are derived from public values (the
// mirror project id is every catalogue image's owner), so any user can
// create images under all of them before a tag is published. The sync then
// makes the alias under a random id, the pass has no error, and the next
// pass makes nothing more. Against the real Glance, the squatter being the
// demo project.
func TestAliasIDsSquatted(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "lhcb")
	tag := "squat-" + uuid.NewString()[:8]
	alias := "lhcb/" + tag
	ctx := context.Background()
	var squatted []string
	for _, name := range []string{tag, alias} {
		for _, id := range aliasIDs(e.project, alias, name) {
			if _, err := images.Create(ctx, e.demo, images.CreateOpts{ID: id, Name: "squat"}).Extract(); err != nil {
				t.Fatal(err)
			}
			squatted = append(squatted, id)
		}
	}
	w.publish(dir, spec{vo: "lhcb", tag: tag})
	o := e.options(t, w, map[string][]string{dir: {"lhcb"}})
	o.Sync.Retire = "keep" // other tests' lhcb images are not this one's to retire
	for pass := 1; pass <= 2; pass++ {
		r := run(t, o)
		if r.Errors != 0 {
			t.Fatalf("pass %d: %d errors: %+v", pass, r.Errors, r.Outcomes)
		}
		made := 0
		for _, oc := range r.Outcomes {
			if oc.Action == ActionAlias {
				made++
			}
		}
		if want := map[int]int{1: 2, 2: 0}[pass]; made != want {
			t.Fatalf("pass %d made %d aliases, want %d: %+v", pass, made, want, r.Outcomes)
		}
	}
	got, err := e.admin.List(ctx, e.project, map[string]string{validator.PropAlias: alias})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, im := range got {
		names[im.Name]++
		if slices.Contains(squatted, im.ID) {
			t.Errorf("alias %s under the squatted id %s", im.Name, im.ID)
		}
	}
	if len(got) != 2 || names[tag] != 1 || names[alias] != 1 {
		t.Fatalf("alias images %v, want one named %s and one named %s", names, tag, alias)
	}
}
