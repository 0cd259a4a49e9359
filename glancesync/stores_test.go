package glancesync

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// glanceStores reads an image's "stores" attribute (the stores Glance put
// its data in) straight from the real Glance.
func (e *env) glanceStores(t *testing.T, id string) []string {
	t.Helper()
	var body map[string]any
	if _, err := e.sc.Get(context.Background(), e.sc.ServiceURL("images", id), &body, nil); err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	s, _ := body["stores"].(string)
	out := strings.Split(s, ",")
	slices.Sort(out)
	return out
}

// noStores is the real Glance, except that it says it has no several
// stores (the answer of a Glance without enabled_backends to
// GET /v2/info/stores; the test stack has two stores, fs and fs2).
type noStores struct{ Glance }

func (noStores) Stores(context.Context) ([]string, error) { return nil, ErrNoStores }

// TestSyncStores: sync.stores puts each image in the named Glance stores
// (the test stack's glance-api has enabled_backends fs, the default, and
// fs2), by import or by upload; a store Glance does not have, several
// stores where only an upload is possible, or stores named to a Glance
// with one store fail the pass before it writes anything, with an error
// that says what to change.
func TestSyncStores(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	have, err := e.glance.Stores(context.Background())
	if err != nil || !slices.Contains(have, "fs2") {
		t.Fatalf("the test stack's Glance has stores %v (%v), want fs and fs2: restart it with tests/openstack/start.sh", have, err)
	}
	for i, tc := range []struct {
		name    string
		ingest  string
		stores  []string
		wrap    func(Glance) Glance
		want    []string // the image's stores
		errWant string
	}{
		{name: "ok import into the second store", ingest: "import", stores: []string{"fs2"}, want: []string{"fs2"}},
		{name: "ok upload into the second store", ingest: "upload", stores: []string{"fs2"}, want: []string{"fs2"}},
		{name: "ok import into both stores", ingest: "auto", stores: []string{"fs2", "fs"}, want: []string{"fs", "fs2"}},
		{name: "ok no stores named: the default store", ingest: "import", want: []string{"fs"}},
		{name: "ok auto without glance-direct uploads into the one store", ingest: "auto", stores: []string{"fs2"}, wrap: func(g Glance) Glance { return noGlanceDirect{g} }, want: []string{"fs2"}},
		{name: "fail a store Glance does not have", ingest: "import", stores: []string{"fs2", "ceph"}, errWant: "sync.stores names ceph, which this Glance does not have (its stores: fs, fs2)"},
		{name: "fail two stores, and no glance-direct to import into both", ingest: "auto", stores: []string{"fs", "fs2"}, wrap: func(g Glance) Glance { return noGlanceDirect{g} },
			errWant: "sync.stores names 2 stores, but this Glance does not offer glance-direct"},
		{name: "fail stores named to a Glance with one store", ingest: "import", stores: []string{"fs"}, wrap: func(g Glance) Glance { return noStores{g} },
			errWant: "this Glance has a single store (no enabled_backends"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "atlas")
			p := w.publish(dir, spec{vo: "atlas", tag: "stores-" + string(rune('a'+i))})
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Ingest, o.Sync.Stores, o.Sync.Retire = tc.ingest, tc.stores, "keep"
			if tc.wrap != nil {
				o.Glance = tc.wrap(o.Glance)
			}
			if tc.errWant != "" {
				s, err := New(o)
				if err != nil {
					t.Fatal(err)
				}
				before := e.counter.writes.Load()
				if _, err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tc.errWant) {
					t.Fatalf("Run: err = %v, want %q", err, tc.errWant)
				}
				if n := e.counter.writes.Load() - before; n != 0 {
					t.Errorf("the refused pass made %d Glance writes", n)
				}
				// a dry run (sync --dry-run) says so too
				o.DryRun = true
				s, err = New(o)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tc.errWant) {
					t.Fatalf("dry run: err = %v, want %q", err, tc.errWant)
				}
				return
			}
			r := run(t, o)
			im := e.get(t, p.id)
			if im.Status != StatusActive || r.Errors != 0 {
				t.Fatalf("image %s, %d errors: %+v", im.Status, r.Errors, r.Find(p.id))
			}
			if got := e.glanceStores(t, p.id); !slices.Equal(got, tc.want) {
				t.Errorf("image in stores %v, want %v", got, tc.want)
			}
		})
	}
}
