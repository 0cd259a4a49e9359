package glancesync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/internal/config"
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
		o.Glance = secondAfterCreate{o.Glance}
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
		if strings.HasPrefix(outs[0].Detail, "transfer:") {
			// image data a limit refused: backed off, as a bad source's
			// bytes are; the next pass streams nothing
			checkLimitBackoff(t, e, o, p, limit)
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
		// past the back-off of a refusal of the image's data (2 minutes,
		// e.options' ResumeAfter): the first pass after it mirrors it
		o.Now = func() time.Time { return time.Now().Add(3 * time.Minute) }
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
// queued without data. The image here is 40 MiB against a 3 MiB cap: the
// sync still sees the 413 (not a connection reset: Glance answers while
// the body still comes), over loopback. The pass fails it at once naming
// image_size_cap (never a Keystone limit or the storage quota), the image
// is never active and its uuid unspent, and the refusal is backed off as
// a bad source's bytes are: a pass within the back-off reports it failed
// again without streaming it. Once the cap is raised (glance-api
// restarted with a larger one), the first pass after the back-off mirrors
// it (upload), or, the operator having removed the refusal record, the
// next pass (import).
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
		p := w.publish(dir, spec{vo: "atlas", tag: "cap-" + ingest, size: 40 << 20})
		o := e.options(t, w, map[string][]string{dir: {"atlas"}})
		o.Sync.Ingest, o.Sync.Retire = ingest, "keep"
		o.ImportTimeout = 30 * time.Minute
		o.Glance = secondAfterCreate{o.Glance}
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
		checkLimitBackoff(t, e, o, p, "image_size_cap")
	}
	c.RestartGlance(t, map[string]string{"image_size_cap": "1099511627776"})
	// upload: the back-off (2 minutes, e.options' ResumeAfter) has passed
	o := opts["upload"]
	o.ResumeAfter = -1
	o.Now = func() time.Time { return time.Now().Add(3 * time.Minute) }
	opts["upload"] = o
	// import: an operator forces the retry now, removing the record
	var ops []PatchOp
	for _, k := range []string{PropSyncRefusals, PropSyncRetryAfter, PropSyncRefused} {
		ops = append(ops, PatchOp{Name: k, Remove: true})
	}
	if err := e.glance.Patch(context.Background(), pubs["import"].id, ops); err != nil {
		t.Fatal(err)
	}
	o = opts["import"]
	o.ResumeAfter = -1
	opts["import"] = o
	for ingest, p := range pubs {
		r := run(t, opts[ingest])
		if outs := r.Find(p.id); r.Errors != 0 || !slices.ContainsFunc(outs, func(o Outcome) bool { return o.Action == ActionMirrored }) {
			t.Fatalf("%s after the cap was raised: %d errors, outcomes %+v; want mirrored", ingest, r.Errors, outs)
		}
		im := e.get(t, p.id)
		if im.Status != StatusActive {
			t.Fatalf("%s: image %s after the cap was raised", ingest, im.Status)
		}
		if hasRefusalRecord(im) {
			t.Fatalf("%s: the refusal record is left on the mirrored image: %v", ingest, im.Props)
		}
	}
}

// countData is the real Glance counting the requests that carry image
// data (stages and uploads).
// secondAfterCreate is Glance whose Create returns only once the second
// of the new image's updated_at has passed, so that Glance's own writes
// of the image while it takes and refuses (or breaks off) a stream move
// updated_at: the sign settled looks for before the sync records a
// refusal on the image (recordRefusal). Without it a stream refused
// within the second of the create (a reset after 512 KiB, on a quick
// machine) is by design remembered by the process only, and a test's
// check of the record on the image would hang on timing (it did once,
// in TestGlanceBreaksOffData under load).
type secondAfterCreate struct{ Glance }

func (g secondAfterCreate) Create(ctx context.Context, s CreateSpec) (*Image, error) {
	im, err := g.Glance.Create(ctx, s)
	if err == nil {
		for !time.Now().After(im.UpdatedAt.Add(time.Second)) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return im, err
}

type countData struct {
	Glance
	n *atomic.Int32
}

func (g countData) Stage(ctx context.Context, id string, r io.Reader) error {
	g.n.Add(1)
	return g.Glance.Stage(ctx, id, r)
}

func (g countData) Upload(ctx context.Context, id string, r io.Reader, store string) error {
	g.n.Add(1)
	return g.Glance.Upload(ctx, id, r, store)
}

// checkLimitBackoff checks the image of p after a pass whose data a
// Glance limit refused: the refusal is recorded on it (its reason the
// limit's name), and a pass within the back-off reports it failed,
// naming the limit and the back-off, without streaming it again.
func checkLimitBackoff(t *testing.T, e *env, o Options, p *published, limit string) {
	t.Helper()
	im := e.get(t, p.id)
	until, err := time.Parse(time.RFC3339, im.Props[PropSyncRetryAfter])
	if im.Props[PropSyncRefused] != limit || im.Props[PropSyncRefusals] != "1" || err != nil || !until.After(time.Now()) {
		t.Fatalf("refusal record %q %q %q; want %s, 1, a time ahead", im.Props[PropSyncRefused], im.Props[PropSyncRefusals], im.Props[PropSyncRetryAfter], limit)
	}
	var n atomic.Int32
	o.Glance = countData{o.Glance, &n}
	o.ResumeAfter = -1
	r := run(t, o)
	outs := r.Find(p.id)
	if r.Errors != 1 || len(outs) != 1 || outs[0].Action != ActionFailed || !strings.Contains(outs[0].Detail, "not streamed again before") || !strings.Contains(outs[0].Detail, limit) {
		t.Fatalf("a pass within the back-off: %d errors, outcomes %+v; want one failure naming the back-off and %s", r.Errors, outs, limit)
	}
	if n.Load() != 0 {
		t.Fatalf("a pass within the back-off streamed the image %d times", n.Load())
	}
}

// TestGlanceBreaksOffData: where every stage or upload of an image in a
// pass is broken off by Glance's side without an answer (here a proxy
// resetting the connection mid-body; in the field maybe image_size_cap's
// 413 lost in the reset), the pass fails it saying so and backs it off
// as a limit's refusal: a pass within the back-off streams nothing, and
// the first pass after it mirrors the image once Glance takes it. A
// single reset is retried within the pass (TestFaultyLinkToGlance).
func TestGlanceBreaksOffData(t *testing.T) {
	for _, ingest := range []string{"import", "upload"} {
		t.Run("ok "+ingest, func(t *testing.T) {
			e := newEnv(t)
			w := newWorld(t)
			dir := t.TempDir()
			p := w.publish(filepath.Join(dir, "atlas"), spec{vo: "atlas", tag: "broke-off-" + ingest, size: 4 << 20})
			u, err := url.Parse(e.sc.Endpoint)
			if err != nil {
				t.Fatal(err)
			}
			// reset-late: the reset comes once Glance shows the image
			// busy (it has read the request and begun on its body), so
			// that it returns the image to queued, a write the sync waits
			// to see before it records the refusal, and the sync hears of
			// it only once Glance shows the image queued again; a reset
			// that comes before Glance read the request discards it unseen
			// (then, by design, the process alone remembers the refusal,
			// and the record this test checks would hang on timing: it
			// failed so under load)
			proxy := newLateResetProxy(t, u.Host, e.admin, "reset-late", "reset-late", "reset-late")
			sc := *e.sc
			sc.Endpoint = "http://" + proxy.ln.Addr().String() + u.Path
			sc.ResourceBase = sc.Endpoint + "v2/"
			o := e.options(t, w, map[string][]string{filepath.Join(dir, "atlas"): {"atlas"}})
			o.Glance = secondAfterCreate{NewGlance(&sc)}
			o.Sync.Ingest, o.Sync.Retire = ingest, "keep"

			r := run(t, o)
			outs := r.Find(p.id)
			if r.Errors != 1 || len(outs) != 1 || outs[0].Action != ActionFailed || !strings.Contains(outs[0].Detail, "broke off each request") ||
				!strings.Contains(outs[0].Detail, "not streamed again for") {
				t.Fatalf("%d errors, outcomes %+v; want one failure saying Glance broke off the data, backed off", r.Errors, outs)
			}
			t.Logf("%s", outs[0].Detail)
			sent := proxy.next.Load()
			if sent < 2 {
				t.Fatalf("%d data requests in the pass, want 2 or more", sent)
			}
			checkLimitBackoff(t, e, o, p, glanceBrokeOff)
			if n := proxy.next.Load(); n != sent {
				t.Fatalf("%d data requests after a pass within the back-off, want still %d", n, sent)
			}

			o.Glance = e.glance // Glance takes the data now
			o.ResumeAfter = -1
			o.Now = func() time.Time { return time.Now().Add(3 * time.Minute) } // past the back-off
			r = run(t, o)
			if outs := r.Find(p.id); r.Errors != 0 || !slices.ContainsFunc(outs, func(o Outcome) bool { return o.Action == ActionMirrored }) {
				t.Fatalf("after the back-off: %d errors, outcomes %+v; want mirrored", r.Errors, outs)
			}
			if im := e.get(t, p.id); im.Status != StatusActive || hasRefusalRecord(im) {
				t.Fatalf("image %s, props %v; want active without the record", im.Status, im.Props)
			}
		})
	}
}

// TestImageMemberQuota: a VO shared with more projects than Glance's
// image_member_quota lets an image have: Glance refuses the member over
// it with 413 (the image is mirrored and shared with the others). The
// pass fails naming image_member_quota, in the log and the report, and
// once the quota is raised (glance-api restarted) the next pass adds the
// member.
func TestImageMemberQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack of its own")
	}
	c := ostest.StartPrivate(t, ostest.Options{})
	c.RestartGlance(t, map[string]string{"image_member_quota": "1"})
	e := newEnvOn(t, c)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	p := w.publish(dir, spec{vo: "atlas", tag: "members"})
	projects := []string{strings.ReplaceAll(uuid.NewString(), "-", ""), strings.ReplaceAll(uuid.NewString(), "-", "")}
	slices.Sort(projects)
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.VOs["atlas"] = config.VO{Visibility: "shared", Projects: projects}
	o.Sync.Retire = "keep"
	r := run(t, o)
	// the image and its aliases (shared alike) each fail their second
	// member
	var failed []Outcome
	for _, out := range r.Outcomes {
		if out.Action != ActionFailed {
			continue
		}
		if !strings.Contains(out.Detail, "add member "+projects[1]) || !strings.Contains(out.Detail, "image_member_quota") {
			t.Fatalf("failure %+v; want it naming image_member_quota", out)
		}
		failed = append(failed, out)
	}
	if r.Errors == 0 || r.Errors != len(failed) || !slices.ContainsFunc(failed, func(o Outcome) bool { return o.ID == p.id }) {
		t.Fatalf("%d errors, outcomes %+v; want a failure naming image_member_quota for the image (and each alias)", r.Errors, r.Outcomes)
	}
	t.Logf("%s", failed[0].Detail)
	if im := e.get(t, p.id); im.Status != StatusActive {
		t.Fatalf("image %s, want active (mirrored, shared with one project)", im.Status)
	}
	c.RestartGlance(t, map[string]string{"image_member_quota": "128"})
	if r := run(t, o); r.Errors != 0 {
		t.Fatalf("after the quota was raised: %d errors, %+v", r.Errors, r.Find(p.id))
	}
	got, err := e.glance.Members(context.Background(), p.id)
	slices.Sort(got)
	if err != nil || !slices.Equal(got, projects) {
		t.Fatalf("members %v (%v), want %v", got, err, projects)
	}
}
