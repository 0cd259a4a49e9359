package proxy

import (
	"context"
	"strings"
	"testing"
	"time"
)

// unfilteredLookup is the fixture's catalogue behind a Lookup that answers
// a tag query with every image it has: the gate must not rely on the Lookup
// (Glance's property filters) to keep TAG to its tag and VO/TAG within the VO.
type unfilteredLookup struct{ *memGlance }

func (l unfilteredLookup) ListTag(context.Context, string, string) ([]*Image, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Image, 0, len(l.images))
	for _, img := range l.images {
		out = append(out, img)
	}
	return out, nil
}

// TestResolveTagStaysInVO: TAG boots an image of that tag and VO/TAG one of
// that VO, or nothing, whatever other images the catalogue query returns;
// another VO's images of the same tag do not make VO/TAG ambiguous.
func TestResolveTagStaysInVO(t *testing.T) {
	const (
		idAtlasOnly = "cccccccc-0000-4000-8000-000000000001"
		idCmsOld    = "cccccccc-0000-4000-8000-000000000002"
		idAtlasNew  = "cccccccc-0000-4000-8000-000000000003"
	)
	f := catalogue(t)
	now := time.Now()
	f.add(imageSpec{id: idAtlasOnly, vo: "atlas", tag: "atlasonly"})
	f.add(imageSpec{id: idCmsOld, vo: "cms", tag: "both", created: now.Add(-72 * time.Hour)})
	f.add(imageSpec{id: idAtlasNew, vo: "atlas", tag: "both", created: now.Add(-24 * time.Hour)})
	nova := newRecordingNova(t)
	g := newGate(t, f, nova.srv.URL, func(o *Options) { o.Lookup = unfilteredLookup{f.glance} })
	for _, c := range []gateCase{
		{name: "fail VO/TAG where only another VO has the tag", path: "/v2.1/servers", body: serverBody("cms/atlasonly"), want: 404, fault: "itemNotFound", msg: "cms/atlasonly"},
		{name: "fail VO/TAG of another VO's revoked tag", path: "/v2.1/servers", body: serverBody("cms/el9"), want: 404, fault: "itemNotFound"},
		{name: "ok VO/TAG where only that VO has the tag", path: "/v2.1/servers", body: serverBody("atlas/atlasonly"), want: 202, check: imageRefIs(idAtlasOnly)},
		{name: "ok VO/TAG picks its VO's image, not another VO's newer one", path: "/v2.1/servers", body: serverBody("cms/both"), want: 202, check: imageRefIs(idCmsOld)},
		{name: "ok VO/TAG where VOs share a tag", path: "/v2.1/servers", body: serverBody("atlas/shared"), want: 202, check: imageRefIs(idSharedA)},
		{name: "ok bare tag of one VO among other tags", path: "/v2.1/servers", body: serverBody("atlasonly"), want: 202, check: imageRefIs(idAtlasOnly)},
		{name: "fail unknown bare tag among other tags", path: "/v2.1/servers", body: serverBody("nosuchtag"), want: 404, fault: "itemNotFound"},
		{name: "fail bare tag in two VOs", path: "/v2.1/servers", body: serverBody("both"), want: 409, fault: "conflictingRequest"},
	} {
		t.Run(c.name, func(t *testing.T) { runGateCase(t, g, nova, c) })
	}
}

// TestResolveAliasOnlyFromMirror: imagetrust_alias makes an image a tag
// alias only when the mirror project owns it. Anyone may set the property
// on their own image; such an image is judged as itself (refused: not a
// catalogue image; booted unchanged in an unmanaged project), never
// swapped for the tag's image nor refused as a malformed alias.
func TestResolveAliasOnlyFromMirror(t *testing.T) {
	const (
		unmanaged     = "feedfacefeedfacefeedfacefeedface"
		idUserAlias   = "dddddddd-0000-4000-8000-000000000001"
		idUserBad     = "dddddddd-0000-4000-8000-000000000002"
		idUnmanagedAl = "dddddddd-0000-4000-8000-000000000003"
	)
	f := catalogue(t)
	f.glance.put(&Image{ID: idUserAlias, Owner: userProject, Status: "active", Properties: map[string]string{"imagetrust_alias": "atlas/el9"}})
	f.glance.put(&Image{ID: idUserBad, Owner: userProject, Status: "active", Properties: map[string]string{"imagetrust_alias": "not a tag"}})
	f.glance.put(&Image{ID: idUnmanagedAl, Owner: unmanaged, Status: "active", Properties: map[string]string{"imagetrust_alias": "atlas/el9"}})
	nova := newRecordingNova(t)
	g := newGate(t, f, nova.srv.URL, func(o *Options) { o.UnmanagedProjects = []string{unmanaged} })
	for _, c := range []gateCase{
		{name: "fail user image with an alias property", path: "/v2.1/" + userProject + "/servers", body: serverBody(idUserAlias), want: 403, fault: "forbidden", msg: "catalogue"},
		{name: "fail user image with an alias property, upper-case id", path: "/v2.1/servers", body: serverBody(strings.ToUpper(idUserAlias)), want: 403, fault: "forbidden", msg: "catalogue"},
		{name: "fail user image with a malformed alias property is refused as not catalogue", path: "/v2.1/servers", body: serverBody(idUserBad), want: 403, fault: "forbidden", msg: "catalogue"},
		{name: "ok unmanaged project's image with an alias property boots as itself", path: "/v2.1/" + unmanaged + "/servers", body: serverBody(idUnmanagedAl), want: 202, check: imageRefIs(idUnmanagedAl)},
		{name: "ok unmanaged project's image with a malformed alias boots as itself", path: "/v2.1/" + unmanaged + "/servers", body: serverBody(idUserBad), want: 202, check: imageRefIs(idUserBad)},
		{name: "ok mirror alias still resolves", path: "/v2.1/servers", body: serverBody(idAlias), want: 202, check: imageRefIs(idNewer)},
	} {
		t.Run(c.name, func(t *testing.T) { runGateCase(t, g, nova, c) })
	}
}
