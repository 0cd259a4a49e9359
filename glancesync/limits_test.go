package glancesync

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// unlimited is what the limits tests set a Keystone limit back to.
const unlimited = 1000000

// TestKeystoneLimits: against a Glance with Keystone unified limits
// (use_keystone_limits, limits read from the stack's real Keystone), each
// of Glance's four limits hit by a pass. Each time the pass fails the
// image at once (no wait for ImportTimeout, which is 30 minutes here),
// names the limit in its detail (an operator must know what to raise),
// never calls it the property quota or another sync's upload, leaves the
// image never active and its uuid unspent (queued, or for a refused
// import staged), and the next pass after the mirror project's limit is
// raised completes the mirror. What Glance (Zed) does, measured:
//   - image_count_total: 413 to the create (the uuid is not taken);
//   - image_count_uploading: 413 to PUT /file or /stage once the project
//     has more images saving/uploading/importing (a staged, not yet
//     imported image counts) than the limit; the image is queued again;
//   - image_stage_total: 413 to PUT /stage once the project's staged data
//     is over the limit; queued again;
//   - image_size_total: 413 to PUT /file once the project's data is over
//     the limit (queued), or to POST /import (the image stays staged); or
//     the import is accepted and its task fails when the staged image
//     would take the project over the limit: Glance returns the image to
//     queued and keeps the staged file, so that a new stage gets 409 ("has
//     data on staging") for as long as the image lives, and so does a new
//     glance-direct import (409, not staged); PUT /file is taken. The pass
//     reads GET /v2/info/usage before an import and does not ask for one
//     the task would refuse (the image stays staged); one that gets
//     through anyway is uploaded by the next pass instead of staged.
func TestKeystoneLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack of its own")
	}
	c := ostest.StartPrivate(t, ostest.Options{GlanceLimits: map[string]int{}})
	e := newEnvOn(t, c)
	w := newWorld(t)
	const size = 2 << 20 // 2 MiB: Glance counts sizes in whole MiB

	// hold fills one of the mirror project's uploading slots (and 2 MiB
	// of its staging): an image staged and not imported, deleted at the
	// end of the subtest.
	hold := func(t *testing.T) {
		ctx := context.Background()
		id := uuid.NewString()
		if _, err := e.glance.Create(ctx, CreateSpec{ID: id, Name: "slot", DiskFormat: "raw", ContainerFormat: "bare", Hidden: true}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.glance.Delete(context.Background(), id) })
		if err := e.glance.Stage(ctx, id, bytes.NewReader(make([]byte, size))); err != nil {
			t.Fatal(err)
		}
	}
	// usedMiB is the mirror project's image data as Glance counts it.
	usedMiB := func(t *testing.T) int {
		ims, err := e.glance.List(context.Background(), e.project, nil)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, im := range ims {
			if im.Status == StatusActive {
				n += im.Size
			}
		}
		return int(n >> 20)
	}
	count := func(t *testing.T) int {
		ims, err := e.glance.List(context.Background(), e.project, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(ims)
	}
	// hit runs a pass over one new bundle with limit set to value and
	// checks the failure; then raises the limit, runs fix (when set), and
	// checks that the next pass mirrors the image.
	hit := func(t *testing.T, ingest, limit string, value func(t *testing.T) int, setup func(t *testing.T), status string, fix func(*testing.T, *published, Options), tweak ...func(*Options)) {
		dir := filepath.Join(t.TempDir(), "atlas")
		p := w.publish(dir, spec{vo: "atlas", tag: "limit-" + ingest + "-" + limit, size: size})
		o := e.options(t, w, map[string][]string{dir: {"atlas"}})
		o.Sync.Ingest, o.Sync.Retire = ingest, "keep"
		o.ImportTimeout = 30 * time.Minute // a pass that waited for it would outlive run's 5 minutes
		for _, f := range tweak {
			f(&o)
		}
		if setup != nil {
			setup(t)
		}
		c.SetGlanceLimit(t, limit, value(t))
		t.Cleanup(func() { c.SetGlanceLimit(t, limit, unlimited) })
		r := run(t, o)
		outs := r.Find(p.id)
		if r.Errors != 1 || len(outs) != 1 || outs[0].Action != ActionFailed || !strings.Contains(outs[0].Detail, "Keystone limit "+limit) {
			t.Fatalf("%d errors, outcomes %+v; want one failure naming the Keystone limit %s", r.Errors, outs, limit)
		}
		t.Logf("%s", outs[0].Detail)
		if strings.Contains(outs[0].Detail, "property") || strings.Contains(outs[0].Detail, "another sync") {
			t.Fatalf("misreported: %s", outs[0].Detail)
		}
		im, err := e.admin.Get(context.Background(), p.id)
		switch {
		case status == "" && !errors.Is(err, ErrNotFound):
			t.Fatalf("image %+v, %v; want none (the create refused)", im, err)
		case status != "" && (err != nil || im.Status != status):
			t.Fatalf("image %+v, %v; want %s (never active, its uuid kept)", im, err, status)
		}

		c.SetGlanceLimit(t, limit, unlimited)
		o.ResumeAfter = -1 // the queued image is this test's, not another sync's
		if fix != nil {
			fix(t, p, o)
		}
		r = run(t, o)
		if outs := r.Find(p.id); r.Errors != 0 || !slices.ContainsFunc(outs, func(o Outcome) bool { return o.Action == ActionMirrored }) {
			t.Fatalf("after the limit was raised: %d errors, outcomes %+v; want mirrored", r.Errors, outs)
		}
		if im := e.get(t, p.id); im.Status != StatusActive || im.Size != size {
			t.Fatalf("image %s of %d bytes after the limit was raised", im.Status, im.Size)
		}
	}
	for _, ingest := range []string{"upload", "import"} {
		t.Run(ingest+" image_count_total", func(t *testing.T) {
			hit(t, ingest, "image_count_total", count, nil, "", nil)
		})
		t.Run(ingest+" image_count_uploading", func(t *testing.T) {
			hit(t, ingest, "image_count_uploading", func(*testing.T) int { return 1 }, hold, StatusQueued, nil)
		})
		t.Run(ingest+" image_size_total", func(t *testing.T) {
			status := StatusQueued
			if ingest == "import" {
				status = StatusUploading // refused at POST /import: staged
			}
			// Glance's own 413 (to POST /import), not the pass's check
			// of GET /v2/info/usage ("checked before the import")
			hit(t, ingest, "image_size_total", func(t *testing.T) int {
				used := usedMiB(t)
				if used == 0 {
					t.Fatal("no image data in the mirror project yet: the subtests run in order")
				}
				return used - 1
			}, nil, status, nil, func(o *Options) { o.Glance = noUsage{o.Glance} })
		})
	}
	t.Run("import image_stage_total", func(t *testing.T) {
		hit(t, "import", "image_stage_total", func(*testing.T) int { return 1 }, hold, StatusQueued, nil)
	})
	t.Run("import image_size_total checked before the import", func(t *testing.T) {
		// the project is not over the limit yet, so Glance would accept
		// the import and its task refuse the image that takes the project
		// over it (and keep the staged file): the pass reads
		// GET /v2/info/usage first and does not ask, leaving the image
		// staged; the next pass imports it without downloading it again
		hit(t, "import", "image_size_total", func(t *testing.T) int { return usedMiB(t) + 1 }, nil, StatusUploading, nil)
	})
	t.Run("import image_size_total in the import task", func(t *testing.T) {
		// the same without the check (a Glance that shows no usage, or
		// another import that took the room between the check and
		// Glance's task): the import is accepted and its task refuses
		// the staged image; Glance returns the image to queued and keeps
		// the staged file, so every stage of it is refused (409). The
		// next pass after the raise mirrors it with no hand work, by an
		// upload in place of the stage, and its uuid kept.
		hit(t, "import", "image_size_total", func(t *testing.T) int { return usedMiB(t) + 1 }, nil, StatusQueued, func(t *testing.T, p *published, o Options) {
			if _, err := os.Stat(filepath.Join(c.StateDir, "glance", "staging", p.id)); err != nil {
				t.Fatalf("Glance kept no staged file of the refused import: %v", err)
			}
		}, func(o *Options) { o.Glance = noUsage{o.Glance} })
	})
}

// noUsage is the real Glance except that it shows no Keystone limits
// (GET /v2/info/usage of a Glance before Yoga, or without
// use_keystone_limits): the pass imports without checking
// image_size_total first, as when another import takes the room between
// the check and Glance's task.
type noUsage struct{ Glance }

func (noUsage) Usage(context.Context) (map[string]LimitUsage, error) { return nil, nil }

// TestImageSizeCap: an image larger than Glance's image_size_cap is
// refused with 413 once Glance has read the cap's worth of it, by PUT
// /file and by PUT /stage alike, and Glance (Zed) returns the image to
// queued without data. The pass fails it at once naming image_size_cap
// (never a Keystone limit or the storage quota), the image is never
// active and its uuid unspent, and once the cap is raised (glance-api
// restarted with a larger one) the next pass mirrors it.
func TestImageSizeCap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack of its own")
	}
	const imageCap = 3 << 20
	c := ostest.StartPrivate(t, ostest.Options{GlanceImageSizeCap: imageCap})
	e := newEnvOn(t, c)
	w := newWorld(t)
	pubs := map[string]*published{}
	opts := map[string]Options{}
	for _, ingest := range []string{"upload", "import"} {
		dir := filepath.Join(t.TempDir(), "atlas")
		p := w.publish(dir, spec{vo: "atlas", tag: "cap-" + ingest, size: imageCap + 37<<20})
		o := e.options(t, w, map[string][]string{dir: {"atlas"}})
		o.Sync.Ingest, o.Sync.Retire = ingest, "keep"
		o.ImportTimeout = 30 * time.Minute
		pubs[ingest], opts[ingest] = p, o
		r := run(t, o)
		outs := r.Find(p.id)
		if r.Errors != 1 || len(outs) != 1 || outs[0].Action != ActionFailed || !strings.Contains(outs[0].Detail, "image_size_cap") ||
			strings.Contains(outs[0].Detail, "Keystone") || strings.Contains(outs[0].Detail, "user_storage_quota") {
			t.Fatalf("%s: %d errors, outcomes %+v; want one failure naming image_size_cap alone", ingest, r.Errors, outs)
		}
		t.Logf("%s: %s", ingest, outs[0].Detail)
		if im := e.get(t, p.id); im.Status != StatusQueued || im.Size != 0 {
			t.Fatalf("%s: image %s of %d bytes, want queued without data", ingest, im.Status, im.Size)
		}
	}
	c.RestartGlance(t, map[string]string{"image_size_cap": "1099511627776"})
	for ingest, p := range pubs {
		o := opts[ingest]
		o.ResumeAfter = -1
		r := run(t, o)
		if outs := r.Find(p.id); r.Errors != 0 || !slices.ContainsFunc(outs, func(o Outcome) bool { return o.Action == ActionMirrored }) {
			t.Fatalf("%s after the cap was raised: %d errors, outcomes %+v; want mirrored", ingest, r.Errors, outs)
		}
		if im := e.get(t, p.id); im.Status != StatusActive {
			t.Fatalf("%s: image %s after the cap was raised", ingest, im.Status)
		}
	}
}
