package glancesync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// backoffCase is one bundle, its image created in Glance as the sync
// creates it (queued, hidden, data-less), and passes of Syncers over it,
// each Syncer a process of its own unless a test reuses one.
type backoffCase struct {
	e   *env
	p   *published
	img string // the image file in the source
	o   Options
	// ahead moves the sync's clock past the real one, so that back-offs
	// are tested without waiting for them
	ahead time.Duration
}

const backoffResume = time.Minute

func newBackoffCase(t *testing.T, e *env, tag, ingest string, sp spec) *backoffCase {
	t.Helper()
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	sp.vo, sp.tag = "atlas", tag
	if sp.size == 0 {
		sp.size = 1 << 20
	}
	c := &backoffCase{e: e, p: w.publish(dir, sp)}
	c.img = filepath.Join(c.p.dir, c.p.name+".img")
	c.o = e.options(t, w, map[string][]string{dir: {"atlas"}})
	c.o.Sync.Ingest = ingest
	c.o.Sync.Retire = "keep"
	c.o.Sync.Aliases = new(bool)
	c.o.ResumeAfter = backoffResume
	c.o.Now = func() time.Time { return time.Now().Add(c.ahead) }
	return c
}

// create creates the image as a pass would, and waits until Glance's clock
// (its updated_at has whole seconds) is past the creation's second: a
// stream Glance then takes and refuses moves updated_at, the sign the sync
// needs before it records a refusal (recordRefusal). A pass finds the image
// not created by itself: the clock is moved past ResumeAfter.
func (c *backoffCase) create(t *testing.T) {
	t.Helper()
	s := c.syncer(t)
	bundles, _, err := c.o.Sources[0].List(t.Context())
	if err != nil || len(bundles) != 1 {
		t.Fatalf("listing: %v %d", err, len(bundles))
	}
	it := s.judge(bundles[0], time.Now())
	if it.refused != "" {
		t.Fatal(it.refused, it.detail)
	}
	im, err := c.e.glance.Create(t.Context(), s.createSpec(it))
	if err != nil {
		t.Fatal(err)
	}
	pastSecond(im.UpdatedAt)
	c.ahead = backoffResume + time.Second
}

// pastLastWrite waits until the clock is past the second of the image's
// last write (its updated_at, whole seconds), as create does: a pass that
// then downloads the image and has its bytes refused sees Glance's writes
// of the stream move updated_at, the sign recordRefusal needs. The record
// a pass writes is such a write: a next pass within its second (a quick
// machine) would leave the refusal in its process's memory only, by
// design (process 3 of TestRefusalBackoffAcrossProcesses failed so).
func (c *backoffCase) pastLastWrite(t *testing.T) {
	t.Helper()
	pastSecond(c.e.get(t, c.p.id).UpdatedAt)
}

// pastSecond returns once the clock (this host's, Glance's on the test
// stack) is past the whole second of at, a Glance updated_at.
func pastSecond(at time.Time) {
	for !time.Now().After(at.Add(time.Second)) {
		time.Sleep(50 * time.Millisecond)
	}
}

// tookStream is Glance whose Stage and Upload break a stream off (its
// reader fails: bytes that did not verify) only once Glance shows the
// image busy (uploading, saving): it has read the request and its handler
// is reading the body, so that the break-off reaches that handler, which
// returns the image to queued. And they return only once Glance shows the
// image no longer busy. The sync then finds the sign recordRefusal needs
// (settled) at its first look, whatever the load: without it a stream the
// sync breaks off before glance-api has read the request is discarded
// unseen, or read after settled stopped looking, and the refusal is, by
// design, remembered by the process only.
type tookStream struct {
	Glance
	t testing.TB
}

func (g tookStream) Stage(ctx context.Context, id string, r io.Reader) error {
	h := &holdBreak{g: g, ctx: ctx, id: id, r: r}
	return h.done(g.Glance.Stage(ctx, id, h))
}

func (g tookStream) Upload(ctx context.Context, id string, r io.Reader, store string) error {
	h := &holdBreak{g: g, ctx: ctx, id: id, r: r}
	return h.done(g.Glance.Upload(ctx, id, h, store))
}

// await reads the image until cond holds of it; false when ctx ends first.
func (g tookStream) await(ctx context.Context, id, what string, cond func(*Image) bool) bool {
	for {
		im, err := g.Glance.Get(context.WithoutCancel(ctx), id)
		if err == nil && cond(im) {
			return true
		}
		select {
		case <-ctx.Done():
			g.t.Errorf("image %s: Glance never showed it %s (last read: %+v, %v)", id, what, im, err)
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func imageBusy(im *Image) bool {
	return im.Status == StatusUploading || im.Status == StatusSaving || im.Status == StatusImporting
}

// holdBreak is the stream's reader of tookStream.
type holdBreak struct {
	g   tookStream
	ctx context.Context
	id  string
	r   io.Reader
	// broke: the reader failed (after Glance showed the image busy); set
	// in the HTTP transport's goroutine that writes the body
	broke atomic.Bool
}

func (h *holdBreak) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && !h.broke.Load() {
		h.g.await(h.ctx, h.id, "busy with the stream", imageBusy)
		h.broke.Store(true)
	}
	return n, err
}

// done waits, after a stream the reader broke off, for Glance to show the
// image no longer busy.
func (h *holdBreak) done(err error) error {
	if err != nil && h.broke.Load() {
		h.g.await(h.ctx, h.id, "done with the broken-off stream", func(im *Image) bool { return !imageBusy(im) })
	}
	return err
}

func (c *backoffCase) syncer(t *testing.T) *Syncer {
	t.Helper()
	s, err := New(c.o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pass runs one pass of s and returns the bundle's first outcome and
// whether the pass sent image data to Glance.
func (c *backoffCase) pass(t *testing.T, s *Syncer) (Outcome, bool) {
	t.Helper()
	c.e.counter.reset()
	r, err := s.Run(t.Context())
	if err != nil || r.Errors != 0 {
		t.Fatalf("pass: %v, %+v", err, r.Outcomes)
	}
	out := r.Find(c.p.id)
	if len(out) == 0 {
		t.Fatalf("no outcome for the image: %+v", r.Outcomes)
	}
	c.e.counter.mu.Lock()
	log := c.e.counter.log
	c.e.counter.mu.Unlock()
	return out[0], strings.Contains(log, c.p.id+"/stage") || strings.Contains(log, c.p.id+"/file")
}

// record is the refusal record on the image: refusals, retry_after,
// reason ("" when absent).
func (c *backoffCase) record(t *testing.T) (string, string, string) {
	t.Helper()
	im := c.e.get(t, c.p.id)
	return im.Props[PropSyncRefusals], im.Props[PropSyncRetryAfter], im.Props[PropSyncRefused]
}

func (c *backoffCase) setRecord(t *testing.T, n, until, reason string) {
	t.Helper()
	err := c.e.admin.Patch(t.Context(), c.p.id, []PatchOp{
		{Name: PropSyncRefusals, Value: n}, {Name: PropSyncRetryAfter, Value: until}, {Name: PropSyncRefused, Value: reason},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (c *backoffCase) fixImage(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(c.img, c.p.image, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRefusalBackoffAcrossProcesses: the back-off after a refusal of an
// image's bytes holds across processes (cron runs of `sync --once`, a
// restarted daemon). Against the real Glance, in both ingest modes, each
// pass by a new Syncer unless said otherwise: the refusal is recorded on
// the queued image; the next process reports it refused with the same
// reason and does not download it; once retry_after has passed, a process
// downloads it again and the count and wait grow; a dry run plans the
// refusal and writes nothing; an operator's removal of the record makes
// even the daemon that recorded it retry at once; a mirrored image loses
// the record.
func TestRefusalBackoffAcrossProcesses(t *testing.T) {
	e := newEnv(t)
	for _, ingest := range []string{"import", "upload"} {
		t.Run("ok "+ingest, func(t *testing.T) {
			c := newBackoffCase(t, e, "persist-"+ingest, ingest, spec{tamperImage: true})
			// the refused streams are broken off once Glance has taken
			// them: the refusals are then recorded (tookStream)
			c.o.Glance = tookStream{c.o.Glance, t}
			c.create(t)

			out, sent := c.pass(t, c.syncer(t))
			if out.Action != ActionRefused || out.Reason != "sha512-mismatch" || !sent {
				t.Fatalf("process 1: %+v, sent %v; want refused sha512-mismatch after a download", out, sent)
			}
			n, until, why := c.record(t)
			first, err := time.Parse(time.RFC3339, until)
			if n != "1" || why != "sha512-mismatch" || err != nil {
				t.Fatalf("process 1 recorded %q %q %q on the image", n, until, why)
			}
			if im := c.e.get(t, c.p.id); im.Status != StatusQueued || im.Size != 0 {
				t.Fatalf("the refused image is %s with size %d", im.Status, im.Size)
			}

			out, sent = c.pass(t, c.syncer(t))
			if out.Action != ActionRefused || out.Reason != "sha512-mismatch" || sent || !strings.Contains(out.Detail, "recorded on the image") {
				t.Fatalf("process 2, within the back-off: %+v, sent %v; want refused as recorded, no download", out, sent)
			}

			dry := c.o
			dry.DryRun = true
			var plan bytes.Buffer
			dry.Plan = &plan
			writes := c.e.counter.writes.Load()
			r := run(t, dry)
			if got := r.Find(c.p.id); len(got) != 1 || got[0].Action != ActionRefused || got[0].Reason != "sha512-mismatch" {
				t.Fatalf("dry run within the back-off: %+v", got)
			}
			if !strings.Contains(plan.String(), "refused    "+c.p.id) || c.e.counter.writes.Load() != writes {
				t.Fatalf("dry run: plan %q, %d writes", plan.String(), c.e.counter.writes.Load()-writes)
			}

			c.ahead += backoffResume
			c.pastLastWrite(t) // process 1's record
			daemon := c.syncer(t)
			at := c.o.Now()
			out, sent = c.pass(t, daemon)
			if out.Action != ActionRefused || !sent {
				t.Fatalf("process 3, after the back-off: %+v, sent %v; want a download, refused", out, sent)
			}
			n, until, _ = c.record(t)
			second, err := time.Parse(time.RFC3339, until)
			if n != "2" || err != nil || second.Before(at.Add(2*backoffResume-time.Second)) || !second.After(first) {
				t.Fatalf("process 3 at %s recorded %q %q (first retry_after %s); want 2 and a doubled wait", at, n, until, first)
			}

			// an operator forces a retry: the daemon that recorded the
			// refusal (and remembers it) downloads again at once
			c.fixImage(t)
			if err := c.e.admin.Patch(t.Context(), c.p.id, clearRefusalOps(c.e.get(t, c.p.id))); err != nil {
				t.Fatal(err)
			}
			out, sent = c.pass(t, daemon)
			if out.Action != ActionMirrored || !sent {
				t.Fatalf("after the record was removed: %+v, sent %v; want mirrored", out, sent)
			}
			if n, until, why := c.record(t); n != "" || until != "" || why != "" {
				t.Fatalf("mirrored image keeps the record %q %q %q", n, until, why)
			}
		})
	}
}

// TestRefusalRecordRetried: a pass after the recorded retry_after downloads
// the image again, and mirrors it when the right bytes are served; the
// mirrored image loses the record. Against the real Glance, the record
// written as the sync writes it.
func TestRefusalRecordRetried(t *testing.T) {
	e := newEnv(t)
	c := newBackoffCase(t, e, "retried", "upload", spec{})
	c.create(t)
	c.setRecord(t, "4", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "size-mismatch")
	out, sent := c.pass(t, c.syncer(t))
	if out.Action != ActionRefused || out.Reason != "size-mismatch" || sent {
		t.Fatalf("within retry_after: %+v, sent %v", out, sent)
	}
	c.ahead += time.Hour
	out, sent = c.pass(t, c.syncer(t))
	if out.Action != ActionMirrored || !sent {
		t.Fatalf("after retry_after: %+v, sent %v; want mirrored", out, sent)
	}
	if n, until, why := c.record(t); n != "" || until != "" || why != "" {
		t.Fatalf("mirrored image keeps the record %q %q %q", n, until, why)
	}
}

// TestRefusalRecordHostile: the values of the record cannot hold the sync
// off for ever nor choose its reports. Against the real Glance: a
// retry_after far in the future holds at most the longest back-off after
// the image was last written; one that does not parse is no wait; a
// reason the sync never writes is reported as image-unreadable (it would
// otherwise become a metric label); a count that does not parse counts as
// one refusal.
func TestRefusalRecordHostile(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, n, until, reason string
		ahead                  time.Duration // past the image's creation
		wantAction, wantReason string
	}{
		{"ok far future, within the longest back-off", "3", "9999-12-31T23:59:59Z", "sha512-mismatch", time.Hour, ActionRefused, "sha512-mismatch"},
		{"ok far future, capped", "3", "9999-12-31T23:59:59Z", "sha512-mismatch", maxRefusedBackoff + time.Minute, ActionMirrored, ""},
		{"ok huge count, capped", strconv.Itoa(1 << 30), "9999-12-31T23:59:59Z", "size-mismatch", maxRefusedBackoff + time.Minute, ActionMirrored, ""},
		{"ok unparsable retry_after, no wait", "2", "tomorrow", "sha512-mismatch", backoffResume + time.Second, ActionMirrored, ""},
		{"ok unknown reason", "x", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "<a href=x>", backoffResume + time.Second, ActionRefused, "image-unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newBackoffCase(t, e, "hostile", "upload", spec{})
			c.create(t)
			c.setRecord(t, tc.n, tc.until, tc.reason)
			c.ahead = tc.ahead
			out, sent := c.pass(t, c.syncer(t))
			if out.Action != tc.wantAction || out.Reason != tc.wantReason || sent != (tc.wantAction == ActionMirrored) {
				t.Fatalf("%+v, sent %v; want %s %s", out, sent, tc.wantAction, tc.wantReason)
			}
		})
	}
}

// TestRefusalRecordOfSquatterIgnored: an image of another project under
// the bundle's uuid is never read for a refusal record: it is reported
// squatted, as any other, not refused as its properties say, and left
// untouched. Against the real Glance (the test stack has no property
// protections, so the demo user may write imagetrust_ properties).
func TestRefusalRecordOfSquatterIgnored(t *testing.T) {
	e := newEnv(t)
	c := newBackoffCase(t, e, "squat-record", "upload", spec{})
	// the squatter copies the whole catalogue record (the descriptor and
	// signature are public) and adds a refusal record
	bundles, _, err := c.o.Sources[0].List(t.Context())
	if err != nil || len(bundles) != 1 {
		t.Fatalf("listing: %v %d", err, len(bundles))
	}
	props := c.syncer(t).createSpec(c.syncer(t).judge(bundles[0], time.Now())).Props
	props[PropSyncRefusals], props[PropSyncRetryAfter], props[PropSyncRefused] = "1", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "sha512-mismatch"
	_, err = images.Create(context.Background(), e.demo, images.CreateOpts{ID: c.p.id, Name: "mine", DiskFormat: "raw", ContainerFormat: "bare", Properties: props}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	for _, dry := range []bool{false, true} {
		o := c.o
		o.DryRun = dry
		r := run(t, o)
		out := r.Find(c.p.id)
		if len(out) != 1 || out[0].Reason == "sha512-mismatch" {
			t.Fatalf("dry run %v: outcome %+v: the squatter's record was trusted", dry, out)
		}
		if !dry && out[0].Reason != ReasonSquatted {
			t.Fatalf("outcome %+v, want %s", out, ReasonSquatted)
		}
	}
	if im := e.get(t, c.p.id); im.Name != "mine" || im.Status != StatusQueued || im.Props[PropSyncRefusals] != "1" {
		t.Fatalf("squatted image changed: %+v", im)
	}
}
