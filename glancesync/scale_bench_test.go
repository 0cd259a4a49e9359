package glancesync

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/benchutil"
	"github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator"
)

// memGlance is an in-memory Glance for measuring the sync's own work: it
// answers at once and counts the calls of each kind. It implements only
// what a pass over already-mirrored bundles needs (creating alias images,
// members, patches); image data is refused.
//
// The project's rule is a real Glance in tests. This in-memory one is
// acceptable here only because BenchmarkSyncNothingToDo measures the sync's
// own CPU cost with Glance answering at once (and counts the requests a pass
// makes); it proves nothing about how a pass behaves against Glance, which
// the tests against the real stack do.
type memGlance struct {
	mu     sync.Mutex
	images map[string]*Image
	member map[string][]string
	calls  map[string]*atomic.Int64
}

func newMemGlance() *memGlance {
	g := &memGlance{images: map[string]*Image{}, member: map[string][]string{}, calls: map[string]*atomic.Int64{}}
	for _, k := range []string{"get", "list", "create", "patch", "members", "addmember", "removemember", "other"} {
		g.calls[k] = &atomic.Int64{}
	}
	return g
}

func (g *memGlance) count(k string) { g.calls[k].Add(1) }

func (g *memGlance) take() map[string]int64 {
	out := map[string]int64{}
	for k, v := range g.calls {
		out[k] = v.Swap(0)
	}
	return out
}

func clone(im *Image) *Image {
	c := *im
	c.Props = make(map[string]string, len(im.Props))
	for k, v := range im.Props {
		c.Props[k] = v
	}
	return &c
}

func (g *memGlance) Get(_ context.Context, id string) (*Image, error) {
	g.count("get")
	g.mu.Lock()
	defer g.mu.Unlock()
	if im := g.images[id]; im != nil {
		return clone(im), nil
	}
	return nil, ErrNotFound
}

func (g *memGlance) List(_ context.Context, owner string, _ map[string]string) ([]*Image, error) {
	g.count("list")
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Image, 0, len(g.images))
	for _, im := range g.images {
		if im.Owner == owner {
			out = append(out, clone(im))
		}
	}
	return out, nil
}

func (g *memGlance) Create(_ context.Context, s CreateSpec) (*Image, error) {
	g.count("create")
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.images[s.ID] != nil {
		return nil, ErrConflict
	}
	im := &Image{ID: s.ID, Name: s.Name, Status: StatusQueued, Owner: "mirror", Visibility: s.Visibility, Hidden: s.Hidden, Props: s.Props, CreatedAt: time.Now()}
	g.images[s.ID] = im
	return clone(im), nil
}

func (g *memGlance) Stage(context.Context, string, io.Reader) error {
	g.count("other")
	return fmt.Errorf("memGlance: no data")
}
func (g *memGlance) ImportGlanceDirect(context.Context, string, []string) error {
	g.count("other")
	return fmt.Errorf("memGlance: no data")
}
func (g *memGlance) Upload(context.Context, string, io.Reader, string) error {
	g.count("other")
	return fmt.Errorf("memGlance: no data")
}
func (g *memGlance) ImportMethods(context.Context) ([]string, error) {
	g.count("other")
	return []string{"glance-direct"}, nil
}
func (g *memGlance) Time(context.Context) (time.Time, error) {
	g.count("other")
	return time.Now(), nil
}
func (g *memGlance) Stores(context.Context) ([]string, error) {
	g.count("other")
	return nil, ErrNoStores
}

func (g *memGlance) Patch(_ context.Context, id string, ops []PatchOp) error {
	g.count("patch")
	g.mu.Lock()
	defer g.mu.Unlock()
	im := g.images[id]
	if im == nil {
		return ErrNotFound
	}
	for _, op := range ops {
		switch op.Name {
		case "os_hidden":
			im.Hidden = op.Value.(bool)
		case "visibility":
			im.Visibility = op.Value.(string)
		default:
			if op.Remove && op.IfValue != "" && im.Props[op.Name] != op.IfValue {
				continue
			}
			if op.Remove {
				delete(im.Props, op.Name)
			} else {
				im.Props[op.Name] = fmt.Sprint(op.Value)
			}
		}
	}
	return nil
}

func (g *memGlance) Deactivate(_ context.Context, id string) error {
	g.count("other")
	return nil
}
func (g *memGlance) Delete(_ context.Context, id string) error {
	g.count("other")
	return nil
}

func (g *memGlance) ImportRefusal(context.Context, string) (string, error) { return "", nil }

func (g *memGlance) Usage(context.Context) (map[string]LimitUsage, error) { return nil, nil }

func (g *memGlance) Members(_ context.Context, id string) ([]string, error) {
	g.count("members")
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.member[id]), nil
}

func (g *memGlance) AddMember(_ context.Context, id, project string) error {
	g.count("addmember")
	g.mu.Lock()
	defer g.mu.Unlock()
	g.member[id] = append(g.member[id], project)
	return nil
}

func (g *memGlance) RemoveMember(_ context.Context, id, project string) error {
	g.count("removemember")
	g.mu.Lock()
	defer g.mu.Unlock()
	g.member[id] = slices.DeleteFunc(g.member[id], func(p string) bool { return p == project })
	return nil
}

// BenchmarkSyncNothingToDo: one op is a sync pass over n bundles of a
// directory source whose images are all in Glance already (active, same
// record, members and aliases in place): the pass has nothing to write.
// Glance is in memory and answers at once, so the time is the sync's own.
// Baseline, measured in the same run: listing the source and Glance alone
// (DirSource.List + Glance.List), the least a pass must do. The images are
// spread over n/100 tags of one VO, shared with 3 projects.
//
//	x-listing          pass time / listing time
//	verify-ms          validator.Trust.Verify of every bundle, alone
//	list-ms            the baseline
//	glance-calls/op    Glance requests a pass makes (members GETs among them)
//	members-calls/op   GET /v2/images/{id}/members a pass makes
//
// The sizes are kept small so that one run takes under about a minute on a
// shared machine:
//
//	go test -run '^$' -bench SyncNothingToDo -benchtime 1x ./glancesync
func BenchmarkSyncNothingToDo(b *testing.B) {
	for _, n := range []int{300, 1000} {
		b.Run(fmt.Sprintf("bundles=%d", n), func(b *testing.B) {
			w := newWorld(b)
			dir := b.TempDir()
			for i := range n {
				w.publish(filepath.Join(dir, fmt.Sprintf("t%03d", i%max(1, n/100))), spec{
					tag: fmt.Sprintf("tag%03d", i%max(1, n/100)), created: w.now.Add(-time.Duration(i+60) * time.Minute),
					uri: "https://images.example/x.img", external: &imageRef{size: 1 << 30, sha512: fmt.Sprintf("%0128x", i)},
				})
			}
			g := newMemGlance()
			src := &DirSource{Root: dir, AllowedVOs: []string{"atlas"}}
			o := Options{
				Sync:  config.Sync{Parallel: 2, Retire: "hide"},
				VOs:   map[string]config.VO{"atlas": {Visibility: "shared", Projects: []string{"p1", "p2", "p3"}}},
				Trust: w.trust(), Glance: g, MirrorProject: "mirror", Sources: []Source{src},
			}
			s, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			// Glance as a finished earlier pass left it
			bundles, _, err := src.List(context.Background())
			if err != nil || len(bundles) != n {
				b.Fatalf("listed %d: %v", len(bundles), err)
			}
			for _, bu := range bundles {
				it := s.judge(bu, time.Now())
				if it.refused != "" {
					b.Fatalf("refused: %s %s", it.refused, it.detail)
				}
				props := it.record
				props["os_hash_algo"], props["os_hash_value"] = "sha512", it.desc.SHA512
				g.images[it.desc.UUID] = &Image{ID: it.desc.UUID, Name: imageName(it.desc), Status: StatusActive, Owner: "mirror",
					Visibility: "shared", Size: it.desc.Size, Props: props}
				g.member[it.desc.UUID] = []string{"p1", "p2", "p3"}
			}
			// a first pass makes the aliases (and, the tags' older images
			// being superseded, hides them)
			if _, err := s.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			g.take()
			list := benchutil.BestOf(3, func() {
				if _, _, err := src.List(context.Background()); err != nil {
					b.Fatal(err)
				}
				if _, err := g.List(context.Background(), "mirror", nil); err != nil {
					b.Fatal(err)
				}
			})
			verify := benchutil.BestOf(1, func() {
				for _, bu := range bundles {
					w.trust().Verify(validator.Input{Descriptor: bu.Descriptor, Signature: bu.Signature, Now: time.Now()})
				}
			})
			g.take()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				rep, err := s.Run(context.Background())
				if err != nil || rep.Errors != 0 {
					b.Fatalf("%v, %d errors", err, rep.Errors)
				}
				if u := rep.Count(ActionUnchanged); u != n {
					b.Fatalf("%d unchanged of %d: %+v", u, n, rep.Outcomes[:min(5, len(rep.Outcomes))])
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			calls := g.take()
			var all int64
			for _, v := range calls {
				all += v
			}
			b.ReportMetric(float64(per)/float64(list), "x-listing")
			b.ReportMetric(float64(list.Microseconds())/1e3, "list-ms")
			b.ReportMetric(float64(verify.Microseconds())/1e3, "verify-ms")
			b.ReportMetric(float64(all)/float64(b.N), "glance-calls/op")
			b.ReportMetric(float64(calls["members"])/float64(b.N), "members-calls/op")
		})
	}
}
