package glancesync

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/imagetrust/imagetrust/validator"
)

// TestDeadTagAliasesRemoved: the two alias images of a tag (TAG, VO/TAG)
// are deleted once no source publishes the tag for its VO and the tag has
// no current (active, unhidden) image, so that `openstack server create
// --image TAG` no longer resolves to an alias the proxy can only answer
// "no image has the tag" for. Never on a pass whose listing of the VO is
// incomplete, never while the tag's images stay current (retire = "keep"),
// never while a bundle of the tag is still listed (its new image not yet
// active: no flapping, no spent alias id), never for a VO without a [vo]
// section, and a dry run only plans it. Against the real Glance; each case
// has its own tag in VO cms.
func TestDeadTagAliasesRemoved(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	aliasesOf := func(t *testing.T, alias string) []*Image {
		t.Helper()
		ims, err := e.admin.List(ctx, e.project, map[string]string{validator.PropAlias: alias})
		if err != nil {
			t.Fatal(err)
		}
		return ims
	}
	for _, tc := range []struct {
		name   string
		retire string
		dry    bool
		// change runs after the first pass (the tag published, its image
		// active, its aliases made) and before the judged pass
		change func(t *testing.T, w *world, dir string, old *published, o *Options)
		want   int // alias images of the tag after the judged pass
	}{
		{name: "ok tag no longer published: aliases deleted", retire: "hide", want: 0,
			change: func(t *testing.T, w *world, dir string, old *published, o *Options) {
				removeBundle(t, old)
				w.publish(dir, spec{vo: "cms", tag: "other-" + uuid.NewString()[:8]})
			}},
		{name: "ok dry run plans the deletion and deletes nothing", retire: "hide", dry: true, want: 2,
			change: func(t *testing.T, w *world, dir string, old *published, o *Options) {
				removeBundle(t, old)
				w.publish(dir, spec{vo: "cms", tag: "other-" + uuid.NewString()[:8]})
			}},
		{name: "fail listing incomplete: an unparsable descriptor", retire: "hide", want: 2,
			change: func(t *testing.T, w *world, dir string, old *published, o *Options) {
				removeBundle(t, old)
				w.publish(dir, spec{vo: "cms", tag: "other-" + uuid.NewString()[:8]})
				for _, n := range []string{"half.json", "half.json.p7s"} {
					if err := os.WriteFile(filepath.Join(dir, n), []byte(`{"uuid": "`), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}},
		{name: "fail retire keep: the tag's image stays current", retire: "keep", want: 2,
			change: func(t *testing.T, w *world, dir string, old *published, o *Options) {
				removeBundle(t, old)
				w.publish(dir, spec{vo: "cms", tag: "other-" + uuid.NewString()[:8]})
			}},
		{name: "fail tag still published: its new image's bytes refused, the old one retired", retire: "hide", want: 2,
			change: func(t *testing.T, w *world, dir string, old *published, o *Options) {
				removeBundle(t, old)
				w.publish(dir, spec{vo: "cms", tag: old.tag, tamperImage: true})
			}},
		{name: "fail VO without a [vo] section", retire: "hide", want: 2,
			change: func(t *testing.T, w *world, dir string, old *published, o *Options) {
				removeBundle(t, old)
				other := filepath.Join(t.TempDir(), "atlas")
				w.publish(other, spec{vo: "atlas", tag: "other-" + uuid.NewString()[:8]})
				o.Sources = []Source{&DirSource{Root: other, AllowedVOs: []string{"atlas"}}}
				delete(o.VOs, "cms")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "cms")
			tag := "dead-" + uuid.NewString()[:8]
			alias := "cms/" + tag
			old := w.publish(dir, spec{vo: "cms", tag: tag})
			o := e.options(t, w, map[string][]string{dir: {"cms"}})
			o.Sync.Retire = tc.retire
			if r := run(t, o); r.Errors != 0 {
				t.Fatalf("first pass: %+v", r.Outcomes)
			}
			if n := len(aliasesOf(t, alias)); n != 2 {
				t.Fatalf("after the first pass: %d aliases of %s, want 2", n, alias)
			}
			tc.change(t, w, dir, old, &o)
			var plan bytes.Buffer
			o.DryRun, o.Plan = tc.dry, &plan
			o.Metrics = NewMetrics(nil)
			before := e.counter.reset()
			r := run(t, o)
			if r.Errors != 0 {
				t.Fatalf("judged pass: %d errors: %+v", r.Errors, r.Outcomes)
			}
			got := aliasesOf(t, alias)
			if len(got) != tc.want {
				t.Fatalf("after the judged pass: %d aliases of %s, want %d: %+v", len(got), alias, tc.want, r.Outcomes)
			}
			deleted := 0
			for _, oc := range r.Outcomes {
				if oc.Action == ActionAliasDelete && oc.VO == "cms" && oc.Tag == tag {
					deleted++
				}
			}
			wantDeleted := 2 - tc.want
			if tc.dry {
				wantDeleted = 2
				if n := e.counter.writes.Load() - before; n != 0 {
					t.Errorf("dry run: %d writes", n)
				}
				if c := strings.Count(plan.String(), ActionAliasDelete); c < 2 || !strings.Contains(plan.String(), alias) {
					t.Errorf("dry run plan lacks the alias deletions of %s:\n%s", alias, plan.String())
				}
			}
			if deleted != wantDeleted {
				t.Fatalf("%d alias-delete outcomes for %s, want %d: %+v", deleted, alias, wantDeleted, r.Outcomes)
			}
			if !tc.dry {
				if n := metricValue(t, o.Metrics.Retired.WithLabelValues(ActionAliasDelete)); n < float64(wantDeleted) {
					t.Errorf("images_retired_total{action=alias-delete} = %v, want at least %d", n, wantDeleted)
				}
			}
			if tc.want != 0 {
				return
			}
			// A pass more deletes nothing more; the tag published again gets
			// its aliases back, under the next derived ids (the first ones
			// are spent).
			o.Metrics = NewMetrics(nil)
			if r := run(t, o); r.Errors != 0 || r.Count(ActionAliasDelete) != 0 && len(aliasesOf(t, alias)) != 0 {
				t.Fatalf("pass after: %+v", r.Outcomes)
			}
			w.publish(dir, spec{vo: "cms", tag: tag})
			if r := run(t, o); r.Errors != 0 {
				t.Fatalf("republished: %+v", r.Outcomes)
			}
			back := aliasesOf(t, alias)
			if len(back) != 2 {
				t.Fatalf("republished tag: %d aliases, want 2", len(back))
			}
			for _, im := range back {
				if want := aliasIDs(e.project, alias, im.Name)[1]; im.ID != want {
					t.Errorf("alias %s back under %s, want the first fallback id %s", im.Name, im.ID, want)
				}
			}
		})
	}
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// TestDeletedAliasMembersForgotten: a Syncer forgets the members memo of
// every alias image it deletes, a surplus one (dedupAliases) as well as
// one of a gone tag (removeDeadAliases), in the pass that deletes it, not
// only when a later pass prunes ids no longer listed. A surplus alias has
// a memo when this process kept it earlier (racing syncs each made one
// under a random id, and the other one turned out older): that memo is put
// in here. Against the real Glance.
func TestDeletedAliasMembersForgotten(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "cms")
	tag := "memo-" + uuid.NewString()[:8]
	alias := "cms/" + tag
	old := w.publish(dir, spec{vo: "cms", tag: tag})
	o := e.options(t, w, map[string][]string{dir: {"cms"}})
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	pass := func(what string) *Report {
		t.Helper()
		r, err := s.Run(ctx)
		if err != nil || r.Errors != 0 {
			t.Fatalf("%s: %v %+v", what, err, r)
		}
		return r
	}
	memo := func(id string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.members[id]
		return ok
	}
	pass("first pass")
	kept, err := e.admin.List(ctx, e.project, map[string]string{validator.PropAlias: alias})
	if err != nil || len(kept) != 2 {
		t.Fatalf("aliases of %s: %d, %v", alias, len(kept), err)
	}
	for _, im := range kept {
		if !memo(im.ID) {
			t.Fatalf("no members memo for the alias %s (%s) after the first pass", im.Name, im.ID)
		}
	}
	surplus, err := e.glance.Create(ctx, CreateSpec{ID: uuid.NewString(), Name: tag, Visibility: "shared", Props: map[string]string{validator.PropAlias: alias}})
	if err != nil {
		t.Fatal(err)
	}
	s.rememberMembers(surplus.ID, nil, nil, time.Now())
	r := pass("surplus pass")
	if out := r.Find(surplus.ID); len(out) != 1 || out[0].Action != ActionDeleted {
		t.Fatalf("surplus alias %s: %+v", surplus.ID, out)
	}
	if memo(surplus.ID) {
		t.Errorf("the deleted surplus alias %s is still in the members memo", surplus.ID)
	}
	for _, im := range kept {
		if !memo(im.ID) {
			t.Errorf("the kept alias %s lost its members memo", im.ID)
		}
	}
	// the tag gone: both aliases deleted, both memos forgotten
	removeBundle(t, old)
	w.publish(dir, spec{vo: "cms", tag: "other-" + uuid.NewString()[:8]})
	// by id: the pass may delete other tags' aliases too (earlier tests'
	// tags in the mirror project), which a count would take for these
	r = pass("gone-tag pass")
	for _, im := range kept {
		if out := r.Find(im.ID); len(out) != 1 || out[0].Action != ActionAliasDelete {
			t.Fatalf("gone tag: alias %s (%s): %+v", im.Name, im.ID, out)
		}
	}
	for _, im := range kept {
		if memo(im.ID) {
			t.Errorf("the deleted alias %s is still in the members memo", im.ID)
		}
	}
}

// TestAliasesRemovedWhenDisabled: with sync.aliases = false the aliases
// are no longer kept up to date, so a pass deletes the mirror project's
// alias images (imagetrust_alias set), even of a tag still published with
// an active image: never on a pass whose listing of the VO is incomplete,
// never for a VO without a [vo] section, never another project's image
// however it is marked, never a catalogue image; a dry run only plans it.
// With aliases on again the tag gets them back under the next derived ids.
// Against the real Glance; each case has its own tag in VO cms.
func TestAliasesRemovedWhenDisabled(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	aliasesOf := func(t *testing.T, alias string) []*Image {
		t.Helper()
		ims, err := e.admin.List(ctx, e.project, map[string]string{validator.PropAlias: alias})
		if err != nil {
			t.Fatal(err)
		}
		return ims
	}
	for _, tc := range []struct {
		name string
		dry  bool
		// change runs after the first pass (aliases on: the tag's image
		// active, its aliases made) and before the judged pass
		change func(t *testing.T, w *world, dir string, o *Options)
		want   int // alias images of the tag after the judged pass
	}{
		{name: "ok aliases deleted, the tag still published", want: 0},
		{name: "ok dry run plans the deletion and deletes nothing", dry: true, want: 2},
		{name: "fail listing incomplete: an unparsable descriptor", want: 2,
			change: func(t *testing.T, w *world, dir string, o *Options) {
				for _, n := range []string{"half.json", "half.json.p7s"} {
					if err := os.WriteFile(filepath.Join(dir, n), []byte(`{"uuid": "`), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}},
		{name: "fail VO without a [vo] section", want: 2,
			change: func(t *testing.T, w *world, dir string, o *Options) {
				other := filepath.Join(t.TempDir(), "atlas")
				w.publish(other, spec{vo: "atlas", tag: "other-" + uuid.NewString()[:8]})
				o.Sources = []Source{&DirSource{Root: other, AllowedVOs: []string{"atlas"}}}
				delete(o.VOs, "cms")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "cms")
			tag := "off-" + uuid.NewString()[:8]
			alias := "cms/" + tag
			p := w.publish(dir, spec{vo: "cms", tag: tag})
			o := e.options(t, w, map[string][]string{dir: {"cms"}})
			if r := run(t, o); r.Errors != 0 {
				t.Fatalf("first pass: %+v", r.Outcomes)
			}
			made := aliasesOf(t, alias)
			if len(made) != 2 {
				t.Fatalf("after the first pass: %d aliases of %s, want 2", len(made), alias)
			}
			// another project's image marked as an alias of the tag
			demo := NewGlance(e.demo)
			foreign, err := demo.Create(ctx, CreateSpec{ID: uuid.NewString(), Name: tag, Visibility: "private", Props: map[string]string{validator.PropAlias: alias}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = demo.Delete(context.Background(), foreign.ID) })
			if tc.change != nil {
				tc.change(t, w, dir, &o)
			}
			o.Sync.Aliases = new(bool)
			var plan bytes.Buffer
			o.DryRun, o.Plan = tc.dry, &plan
			o.Metrics = NewMetrics(nil)
			before := e.counter.reset()
			r := run(t, o)
			if r.Errors != 0 {
				t.Fatalf("judged pass: %d errors: %+v", r.Errors, r.Outcomes)
			}
			if got := aliasesOf(t, alias); len(got) != tc.want {
				t.Fatalf("after the judged pass: %d aliases of %s, want %d: %+v", len(got), alias, tc.want, r.Outcomes)
			}
			if im := e.get(t, foreign.ID); im.Status != StatusQueued {
				t.Errorf("another project's alias-marked image: %s", im.Status)
			}
			if im := e.get(t, p.id); im.Status != StatusActive || im.Hidden {
				t.Errorf("the tag's image: %s, hidden %v", im.Status, im.Hidden)
			}
			deleted := 0
			for _, oc := range r.Outcomes {
				if oc.Action == ActionAliasDelete && oc.VO == "cms" && oc.Tag == tag {
					deleted++
					if !strings.Contains(oc.Detail, "sync.aliases is false") {
						t.Errorf("detail %q", oc.Detail)
					}
				}
				if oc.ID == foreign.ID || oc.ID == p.id && oc.Action != ActionUnchanged {
					t.Errorf("outcome %+v", oc)
				}
			}
			wantDeleted := 2 - tc.want
			if tc.dry {
				wantDeleted = 2
				if n := e.counter.writes.Load() - before; n != 0 {
					t.Errorf("dry run: %d writes:\n%s", n, e.counter.log)
				}
				for _, im := range made {
					if !strings.Contains(plan.String(), ActionAliasDelete+" "+im.ID) {
						t.Errorf("dry run plan lacks the deletion of %s:\n%s", im.ID, plan.String())
					}
				}
			}
			if deleted != wantDeleted {
				t.Fatalf("%d alias-delete outcomes for %s, want %d: %+v", deleted, alias, wantDeleted, r.Outcomes)
			}
			if !tc.dry {
				if n := metricValue(t, o.Metrics.Retired.WithLabelValues(ActionAliasDelete)); n < float64(wantDeleted) {
					t.Errorf("images_retired_total{action=alias-delete} = %v, want at least %d", n, wantDeleted)
				}
			}
			if tc.want != 0 {
				return
			}
			// a pass more writes nothing; aliases on again: back under
			// the next derived ids (the first ones are spent)
			before = e.counter.reset()
			if r := run(t, o); r.Errors != 0 || r.Count(ActionAliasDelete) != 0 {
				t.Fatalf("pass after: %+v", r.Outcomes)
			}
			if n := e.counter.writes.Load() - before; n != 0 {
				t.Errorf("pass after: %d writes:\n%s", n, e.counter.log)
			}
			o.Sync.Aliases = nil
			if r := run(t, o); r.Errors != 0 {
				t.Fatalf("aliases on again: %+v", r.Outcomes)
			}
			back := aliasesOf(t, alias)
			if len(back) != 2 {
				t.Fatalf("aliases on again: %d aliases, want 2", len(back))
			}
			for _, im := range back {
				if want := aliasIDs(e.project, alias, im.Name)[1]; im.ID != want {
					t.Errorf("alias %s back under %s, want the first fallback id %s", im.Name, im.ID, want)
				}
			}
		})
	}
}
