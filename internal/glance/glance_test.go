package glance

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// These tests run against the real Glance and Keystone of tests/openstack.

func TestMain(m *testing.M) { os.Exit(ostest.Main(m)) }

// env is what every integration test needs.
type env struct {
	cloud   *ostest.Cloud
	img     *gophercloud.ServiceClient
	project string // the mirror project's id
	ctx     context.Context
}

func setup(t *testing.T) *env {
	t.Helper()
	c := ostest.Start(t, ostest.Options{})
	img := c.ImageClient(t, ostest.CloudMirror)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return &env{cloud: c, img: img, project: projectID(t, img.ProviderClient), ctx: ctx}
}

func projectID(t *testing.T, pc *gophercloud.ProviderClient) string {
	t.Helper()
	res, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		t.Fatalf("auth result is %T", pc.GetAuthResult())
	}
	p, err := res.ExtractProject()
	if err != nil || p == nil {
		t.Fatalf("project of token: %v", err)
	}
	return p.ID
}

// create makes a raw/bare image with a fresh id and deletes it at the end.
func (e *env) create(t *testing.T, props map[string]string) *Image {
	t.Helper()
	id := uuid.NewString()
	im, err := Create(e.ctx, e.img, CreateOpts{ID: id, Name: "t-" + id[:8], DiskFormat: "raw",
		ContainerFormat: "bare", Properties: props}).Extract()
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := Delete(context.Background(), e.img, id).ExtractErr(); err != nil && !IsNotFound(err) {
			t.Errorf("delete %s: %v", id, err)
		}
	})
	return im
}

func (e *env) get(t *testing.T, id string) *Image {
	t.Helper()
	im, err := Get(e.ctx, e.img, id).Extract()
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return im
}

// waitStatus polls until the image has status want (bounded).
func (e *env) waitStatus(t *testing.T, id string, want images.ImageStatus) *Image {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		im := e.get(t, id)
		if im.Status == want {
			return im
		}
		if time.Now().After(deadline) {
			t.Fatalf("image %s is %s after 2 min, want %s", id, im.Status, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sha512Hex(b []byte) string {
	s := sha512.Sum512(b)
	return hex.EncodeToString(s[:])
}

func TestCreateGetChosenID(t *testing.T) {
	e := setup(t)
	im := e.create(t, map[string]string{"imagetrust_vo": "atlas", "imagetrust_tag": "el9"})
	got := e.get(t, im.ID)
	if got.Status != images.ImageStatusQueued || got.Owner != e.project || got.DiskFormat != "raw" {
		t.Fatalf("got %+v", got)
	}
	if got.Properties["imagetrust_vo"] != "atlas" || got.Properties["imagetrust_tag"] != "el9" {
		t.Fatalf("properties %v", got.Properties)
	}
	if _, err := Get(e.ctx, e.img, uuid.NewString()).Extract(); !IsNotFound(err) {
		t.Fatalf("get unknown id: %v, want 404", err)
	}
}

func TestCreateConflicts(t *testing.T) {
	e := setup(t)
	im := e.create(t, nil)
	err := Create(e.ctx, e.img, CreateOpts{ID: im.ID, Name: "again"}).Err
	if !IsConflict(err) {
		t.Fatalf("duplicate id: %v, want 409", err)
	}

	id := uuid.NewString()
	if err := Create(e.ctx, e.img, CreateOpts{ID: id, Name: "to delete"}).Err; err != nil {
		t.Fatal(err)
	}
	if err := Delete(e.ctx, e.img, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if err := Create(e.ctx, e.img, CreateOpts{ID: id, Name: "reborn"}).Err; !IsConflict(err) {
		t.Fatalf("re-create deleted id: %v, want 409", err)
	}
	if err := Create(e.ctx, e.img, CreateOpts{Name: "x", Properties: map[string]string{"status": "active"}}).Err; err == nil {
		t.Fatal("a base attribute as property was accepted")
	}
}

func TestListByProperties(t *testing.T) {
	e := setup(t)
	vo := "vo-" + uuid.NewString()[:8]
	a := e.create(t, map[string]string{"imagetrust_vo": vo, "imagetrust_tag": "a"})
	b := e.create(t, map[string]string{"imagetrust_vo": vo, "imagetrust_tag": "b"})
	e.create(t, map[string]string{"imagetrust_vo": "other", "imagetrust_tag": "a"})

	ids := func(ims []Image) []string {
		var s []string
		for _, im := range ims {
			s = append(s, im.ID)
		}
		slices.Sort(s)
		return s
	}
	tests := []struct {
		name  string
		props map[string]string
		extra url.Values
		want  []string
	}{
		{"ok by vo", map[string]string{"imagetrust_vo": vo}, nil, ids([]Image{*a, *b})},
		{"ok by vo and tag", map[string]string{"imagetrust_vo": vo, "imagetrust_tag": "b"}, nil, []string{b.ID}},
		{"ok paged", map[string]string{"imagetrust_vo": vo}, url.Values{"limit": {"1"}}, ids([]Image{*a, *b})},
		{"ok status filter", map[string]string{"imagetrust_vo": vo}, url.Values{"status": {"active"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ListByProperties(e.ctx, e.img, e.project, tt.props, tt.extra)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tt.want) {
				t.Fatalf("got %v, want %v", ids(got), tt.want)
			}
			for _, im := range got {
				if im.Properties["imagetrust_vo"] != vo {
					t.Fatalf("image %s lacks its properties: %v", im.ID, im.Properties)
				}
			}
		})
	}
}

func TestStageImportDeactivate(t *testing.T) {
	e := setup(t)
	methods, err := ImportMethods(e.ctx, e.img).Extract()
	if err != nil || !slices.Contains(methods, "glance-direct") {
		t.Fatalf("import methods %v, %v", methods, err)
	}

	data := bytes.Repeat([]byte("imagetrust "), 100_000)
	im := e.create(t, nil)
	// A plain io.Reader (no Seeker, no length): chunked encoding.
	if err := Stage(e.ctx, e.img, im.ID, io.MultiReader(bytes.NewReader(data))).ExtractErr(); err != nil {
		t.Fatalf("stage: %v", err)
	}
	if s := e.get(t, im.ID).Status; s != images.ImageStatusUploading {
		t.Fatalf("after stage: %s", s)
	}
	if err := ImportGlanceDirect(e.ctx, e.img, im.ID).ExtractErr(); err != nil {
		t.Fatalf("import: %v", err)
	}
	got := e.waitStatus(t, im.ID, images.ImageStatusActive)
	if got.HashAlgo != "sha512" || got.HashValue != sha512Hex(data) || got.Size != int64(len(data)) {
		t.Fatalf("hash %s:%s size %d, want sha512:%s %d", got.HashAlgo, got.HashValue, got.Size, sha512Hex(data), len(data))
	}

	if err := Deactivate(e.ctx, e.img, im.ID).ExtractErr(); err != nil {
		t.Fatalf("deactivate: %v", err)
	}
	if s := e.get(t, im.ID).Status; s != images.ImageStatusDeactivated {
		t.Fatalf("after deactivate: %s", s)
	}
	if err := Deactivate(e.ctx, e.img, im.ID).ExtractErr(); err != nil {
		t.Fatalf("deactivate twice: %v", err)
	}
	if err := Reactivate(e.ctx, e.img, im.ID).ExtractErr(); err != nil {
		t.Fatalf("reactivate: %v", err)
	}
	if s := e.get(t, im.ID).Status; s != images.ImageStatusActive {
		t.Fatalf("after reactivate: %s", s)
	}
	queued := e.create(t, nil)
	if err := Deactivate(e.ctx, e.img, queued.ID).ExtractErr(); !IsForbidden(err) {
		t.Fatalf("deactivate queued image: %v, want 403", err)
	}
}

func TestUploadSized(t *testing.T) {
	e := setup(t)
	data := bytes.Repeat([]byte{7}, 300_000)
	im := e.create(t, nil)
	if err := Upload(e.ctx, e.img, im.ID, Sized(io.MultiReader(bytes.NewReader(data)), int64(len(data)))).ExtractErr(); err != nil {
		t.Fatalf("upload: %v", err)
	}
	got := e.get(t, im.ID)
	if got.Status != images.ImageStatusActive || got.HashValue != sha512Hex(data) {
		t.Fatalf("after upload: %s %s", got.Status, got.HashValue)
	}
	// Uploading twice: Glance refuses (409), the error is gophercloud's.
	if err := Upload(e.ctx, e.img, im.ID, bytes.NewReader(data)).ExtractErr(); !IsConflict(err) {
		t.Fatalf("second upload: %v, want 409", err)
	}
	other := e.create(t, nil)
	short := Sized(bytes.NewReader(data[:10]), int64(len(data)))
	if err := Upload(e.ctx, e.img, other.ID, short).ExtractErr(); err == nil {
		t.Fatal("a body shorter than its declared size was accepted")
	}
}

func TestStageExpiredToken(t *testing.T) {
	e := setup(t)
	data := bytes.Repeat([]byte("x"), 10_000)

	// Not seekable: the 401 comes back, the token is renewed, nothing is
	// re-sent.
	im := e.create(t, nil)
	e.img.ProviderClient.SetToken("not-a-token")
	err := Stage(e.ctx, e.img, im.ID, io.MultiReader(bytes.NewReader(data))).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
		t.Fatalf("stage with a bad token: %v, want 401", err)
	}
	if s := e.get(t, im.ID).Status; s != images.ImageStatusQueued {
		t.Fatalf("after the 401: %s", s)
	}
	if err := Stage(e.ctx, e.img, im.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatalf("stage again: %v", err)
	}

	// Seekable: rewound and retried once.
	im2 := e.create(t, nil)
	e.img.ProviderClient.SetToken("not-a-token")
	if err := Stage(e.ctx, e.img, im2.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatalf("stage seekable with a bad token: %v", err)
	}
	if err := ImportGlanceDirect(e.ctx, e.img, im2.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if got := e.waitStatus(t, im2.ID, images.ImageStatusActive); got.HashValue != sha512Hex(data) {
		t.Fatalf("hash after retried stage: %s", got.HashValue)
	}
}

// countingTransport counts the requests a client sends.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func TestPatchProperties(t *testing.T) {
	e := setup(t)
	im := e.create(t, map[string]string{"imagetrust_a": "1", "imagetrust_b": "2"})

	ct := &countingTransport{next: http.DefaultTransport}
	e.img.ProviderClient.HTTPClient.Transport = ct

	r := PatchProperties(e.ctx, e.img, im.ID, im.Properties,
		map[string]string{"imagetrust_a": "1"}, []string{"imagetrust_missing"})
	if got, err := r.Extract(); err != nil || got != nil || r.Changed {
		t.Fatalf("no-op patch: %v %v %v", got, err, r.Changed)
	}
	if n := ct.n.Load(); n != 0 {
		t.Fatalf("no-op patch sent %d requests", n)
	}

	r = PatchProperties(e.ctx, e.img, im.ID, im.Properties,
		map[string]string{"imagetrust_a": "10", "imagetrust_c": "3"}, []string{"imagetrust_b"})
	got, err := r.Extract()
	if err != nil || !r.Changed {
		t.Fatalf("patch: %v", err)
	}
	if n := ct.n.Load(); n != 1 {
		t.Fatalf("patch sent %d requests, want 1", n)
	}
	want := map[string]string{"imagetrust_a": "10", "imagetrust_c": "3"}
	for k, v := range want {
		if got.Properties[k] != v {
			t.Fatalf("after patch %v, want %v", got.Properties, want)
		}
	}
	if _, ok := got.Properties["imagetrust_b"]; ok {
		t.Fatalf("imagetrust_b not removed: %v", got.Properties)
	}
	if reread := e.get(t, im.ID); reread.Properties["imagetrust_a"] != "10" {
		t.Fatalf("re-read %v", reread.Properties)
	}

	// A stale current state: "replace" or "remove" of a key that is gone
	// gives 409 (while "add" of a key that exists replaces it, in the
	// v2.1 patch dialect).
	stale := map[string]string{"imagetrust_b": "2"}
	err = PatchProperties(e.ctx, e.img, im.ID, stale, map[string]string{"imagetrust_b": "5"}, nil).Err
	if !IsConflict(err) {
		t.Fatalf("stale replace: %v, want 409", err)
	}
	err = PatchProperties(e.ctx, e.img, im.ID, stale, nil, []string{"imagetrust_b"}).Err
	if !IsConflict(err) {
		t.Fatalf("stale remove: %v, want 409", err)
	}
	r = PatchProperties(e.ctx, e.img, im.ID, map[string]string{}, map[string]string{"imagetrust_c": "4"}, nil)
	if got, err := r.Extract(); err != nil || got.Properties["imagetrust_c"] != "4" {
		t.Fatalf("add over an existing key: %v", err)
	}
}

func TestPatchAttributes(t *testing.T) {
	e := setup(t)
	im := e.create(t, map[string]string{"imagetrust_a": "1"})
	if im.Hidden || im.Visibility != images.ImageVisibilityShared {
		t.Fatalf("new image: hidden %v visibility %s", im.Hidden, im.Visibility)
	}

	ct := &countingTransport{next: http.DefaultTransport}
	e.img.ProviderClient.HTTPClient.Transport = ct
	r := PatchAttributes(e.ctx, e.img, im.ID, AttributeOpts{})
	if got, err := r.Extract(); err != nil || got != nil || r.Changed || ct.n.Load() != 0 {
		t.Fatalf("no-op patch: %v %v %v, %d requests", got, err, r.Changed, ct.n.Load())
	}

	yes, name := true, "renamed"
	got, err := PatchAttributes(e.ctx, e.img, im.ID, AttributeOpts{Name: &name, Visibility: images.ImageVisibilityPrivate, Hidden: &yes}).Extract()
	if err != nil {
		t.Fatalf("patch: %v", err)
	}
	if n := ct.n.Load(); n != 1 {
		t.Fatalf("patch sent %d requests, want 1", n)
	}
	reread := e.get(t, im.ID)
	for _, g := range []*Image{got, reread} {
		if !g.Hidden || g.Visibility != images.ImageVisibilityPrivate || g.Name != name || g.Properties["imagetrust_a"] != "1" {
			t.Fatalf("after patch: hidden %v visibility %s name %q properties %v", g.Hidden, g.Visibility, g.Name, g.Properties)
		}
	}
	// The same values again: replace of an existing attribute is no conflict.
	no := false
	if err := PatchAttributes(e.ctx, e.img, im.ID, AttributeOpts{Hidden: &yes}).Err; err != nil {
		t.Fatalf("same value again: %v", err)
	}
	if err := PatchAttributes(e.ctx, e.img, im.ID, AttributeOpts{Hidden: &no}).Err; err != nil || e.get(t, im.ID).Hidden {
		t.Fatalf("unhide: %v", err)
	}
	if err := PatchAttributes(e.ctx, e.img, im.ID, AttributeOpts{Visibility: "nonsense"}).Err; err == nil {
		t.Fatal("visibility nonsense accepted")
	}
}

func TestMembers(t *testing.T) {
	e := setup(t)
	demo := projectID(t, e.cloud.Provider(t, ostest.CloudDemo))
	id := uuid.NewString()
	if err := Create(e.ctx, e.img, CreateOpts{ID: id, Name: "shared", Visibility: images.ImageVisibilityShared}).Err; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Delete(context.Background(), e.img, id).ExtractErr() })
	if _, err := AddMember(e.ctx, e.img, id, demo).Extract(); err != nil {
		t.Fatalf("add member: %v", err)
	}
	ms, err := ListMembers(e.ctx, e.img, id)
	if err != nil || len(ms) != 1 || ms[0].MemberID != demo {
		t.Fatalf("members %v, %v", ms, err)
	}
	// The member sees the image by id.
	demoImg := e.cloud.ImageClient(t, ostest.CloudDemo)
	if _, err := Get(e.ctx, demoImg, id).Extract(); err != nil {
		t.Fatalf("member get: %v", err)
	}
	if err := RemoveMember(e.ctx, e.img, id, demo).ExtractErr(); err != nil {
		t.Fatalf("remove member: %v", err)
	}
	if _, err := Get(e.ctx, demoImg, id).Extract(); !IsNotFound(err) {
		t.Fatalf("former member get: %v, want 404", err)
	}
}

// deleteAfterFirstPage deletes an image once the first page of a listing
// has been answered, as a retirement or an operator may meanwhile.
type deleteAfterFirstPage struct {
	next http.RoundTripper
	once sync.Once
	del  func()
}

func (d *deleteAfterFirstPage) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.next.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/v2/images") && !r.URL.Query().Has("marker") {
		d.once.Do(d.del)
	}
	return resp, err
}

// TestListByPropertiesMarkerDeleted: Glance looks the marker up again for
// each page, and to a user who is not an admin a deleted image is no image
// (400): a listing whose page ended with an image deleted meanwhile starts
// over instead of failing the pass. As the demo user (the mirror user of
// the tests is an admin, who sees deleted rows).
func TestListByPropertiesMarkerDeleted(t *testing.T) {
	e := setup(t)
	demo := e.cloud.ImageClient(t, ostest.CloudDemo)
	demoProject := projectID(t, demo.ProviderClient)
	vo := "vo-" + uuid.NewString()[:8]
	var ids []string
	for i := range 3 {
		id := uuid.NewString()
		if _, err := Create(e.ctx, demo, CreateOpts{ID: id, Name: fmt.Sprintf("m-%d", i), DiskFormat: "raw", ContainerFormat: "bare",
			Properties: map[string]string{"imagetrust_vo": vo}}).Extract(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = Delete(context.Background(), demo, id).ExtractErr() })
		ids = append(ids, id)
		time.Sleep(1100 * time.Millisecond) // distinct created_at (seconds)
	}
	tr := &deleteAfterFirstPage{next: demo.ProviderClient.HTTPClient.Transport, del: func() {
		if err := Delete(context.Background(), e.img, ids[0]).ExtractErr(); err != nil {
			t.Errorf("delete: %v", err)
		}
	}}
	if tr.next == nil {
		tr.next = http.DefaultTransport
	}
	demo.ProviderClient.HTTPClient.Transport = tr
	got, err := ListByProperties(e.ctx, demo, demoProject, map[string]string{"imagetrust_vo": vo},
		url.Values{"limit": {"1"}, "sort_key": {"created_at"}, "sort_dir": {"asc"}})
	if err != nil {
		t.Fatalf("listing with the first page's image deleted: %v", err)
	}
	var gotIDs []string
	for _, im := range got {
		gotIDs = append(gotIDs, im.ID)
	}
	if !slices.Equal(gotIDs, ids[1:]) {
		t.Fatalf("listed %v, want %v", gotIDs, ids[1:])
	}
}

// TestListHiddenToo: hidden and visible images alike, each once; a filter
// on os_hidden is refused (the function sets it). Against the real Glance.
func TestListHiddenToo(t *testing.T) {
	e := setup(t)
	vo := "vo-" + uuid.NewString()[:8]
	visible := e.create(t, map[string]string{"imagetrust_vo": vo})
	hidden := e.create(t, map[string]string{"imagetrust_vo": vo})
	hide := true
	if err := PatchAttributes(e.ctx, e.img, hidden.ID, AttributeOpts{Hidden: &hide}).Err; err != nil {
		t.Fatal(err)
	}
	got, err := ListHiddenToo(e.ctx, e.img, e.project, map[string]string{"imagetrust_vo": vo}, url.Values{"limit": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, im := range got {
		ids = append(ids, im.ID)
	}
	slices.Sort(ids)
	want := []string{visible.ID, hidden.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("listed %v, want %v", ids, want)
	}
	if _, err := ListHiddenToo(e.ctx, e.img, e.project, nil, url.Values{"os_hidden": {"true"}}); err == nil {
		t.Fatal("fail os_hidden given: accepted")
	}
}
