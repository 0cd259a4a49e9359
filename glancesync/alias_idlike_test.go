package glancesync

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/validator"
)

// TestAliasIDLikeTag: a tag that reads as an image id gets the VO/TAG
// alias only, and a bare alias an older sync made for it is deleted. The
// client resolves `--image X` as an id first and by name only when it sees
// no image of that id: a VO publishing another VO's image ids as tags would
// otherwise answer, with its own image, a boot by an id the user cannot see
// (not shared with the project) or that the site retired or deleted.
// Against the real Glance.
func TestAliasIDLikeTag(t *testing.T) {
	for _, tag := range []string{"123e4567-e89b-42d3-a456-426614174000", "123E4567-E89B-42D3-A456-426614174000", "123e4567e89b42d3a456426614174000"} {
		if !idLikeTag(tag) {
			t.Errorf("idLikeTag(%q) = false", tag)
		}
	}
	for _, tag := range []string{"worker", "el9", "123e4567-e89b-42d3-a456", "123e4567-e89b-42d3-a456-426614174000x"} {
		if idLikeTag(tag) {
			t.Errorf("idLikeTag(%q) = true", tag)
		}
	}

	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "cms")
	tag := uuid.NewString() // another VO's image id, say
	stale := strings.ToUpper(uuid.NewString())
	w.publish(dir, spec{vo: "cms", tag: tag})
	w.publish(dir, spec{vo: "cms", tag: stale})
	o := e.options(t, w, map[string][]string{dir: {"cms"}})
	o.Sync.Retire = "keep"
	ctx := context.Background()
	// a bare alias an older sync made for the second tag
	old, err := e.glance.Create(ctx, CreateSpec{ID: aliasID(e.project, "cms/"+stale, stale), Name: stale, Visibility: "shared", Props: map[string]string{validator.PropAlias: "cms/" + stale}})
	if err != nil {
		t.Fatal(err)
	}
	for pass := 1; pass <= 2; pass++ {
		if r := run(t, o); r.Errors != 0 {
			t.Fatalf("pass %d: %+v", pass, r.Outcomes)
		}
		for _, tg := range []string{tag, stale} {
			alias := "cms/" + tg
			got, err := e.admin.List(ctx, e.project, map[string]string{validator.PropAlias: alias})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, im := range got {
				names = append(names, im.Name)
			}
			if len(got) != 1 || got[0].Name != alias {
				t.Fatalf("pass %d: alias images of %s named %v, want only %s", pass, alias, names, alias)
			}
		}
	}
	if _, err := e.admin.Get(ctx, old.ID); err == nil {
		t.Errorf("the old bare alias %s of an id-like tag is still there", old.ID)
	}
}
