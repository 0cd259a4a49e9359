package glancesync

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/validator"
)

// otherHashGlance is the real Glance, except that it reports the hash
// algorithm algo (os_hash_algo; "" for a Glance from before multihash,
// with no os_hash_value either) instead of sha512, as a Glance configured
// with another hashing_algorithm does: the sync can then cross-check only
// the size.
type otherHashGlance struct {
	Glance
	algo string
}

func (g otherHashGlance) rewrite(im *Image) *Image {
	if im == nil {
		return nil
	}
	c := *im
	c.Props = map[string]string{}
	for k, v := range im.Props {
		c.Props[k] = v
	}
	delete(c.Props, "os_hash_algo")
	delete(c.Props, "os_hash_value")
	if g.algo != "" {
		c.Props["os_hash_algo"] = g.algo
		c.Props["os_hash_value"] = strings.Repeat("0", 64)
	}
	return &c
}

func (g otherHashGlance) Get(ctx context.Context, id string) (*Image, error) {
	im, err := g.Glance.Get(ctx, id)
	return g.rewrite(im), err
}

func (g otherHashGlance) List(ctx context.Context, owner string, filters map[string]string) ([]*Image, error) {
	ims, err := g.Glance.List(ctx, owner, filters)
	for i := range ims {
		ims[i] = g.rewrite(ims[i])
	}
	return ims, err
}

// earlyAnswerGlance is the real Glance, except that a stage or upload hands
// Glance only the first cut bytes of the sync's stream and ends it there
// (a Glance, or something between, that answers before reading the whole
// stream): Glance stores a complete-looking, shorter image.
type earlyAnswerGlance struct {
	Glance
	cut int64
}

func (g earlyAnswerGlance) Stage(ctx context.Context, id string, r io.Reader) error {
	return g.Glance.Stage(ctx, id, io.LimitReader(r, g.cut))
}

func (g earlyAnswerGlance) Upload(ctx context.Context, id string, r io.Reader, store string) error {
	return g.Glance.Upload(ctx, id, io.LimitReader(r, g.cut), store)
}

// keepsBrokenStageGlance is the real Glance, except that when the sync's
// stream breaks off, the bytes it sent are staged all the same (a Glance
// that keeps the data of a failed stage).
type keepsBrokenStageGlance struct{ Glance }

func (g keepsBrokenStageGlance) Stage(ctx context.Context, id string, r io.Reader) error {
	var got bytes.Buffer
	_, err := io.Copy(&got, r)
	if err == nil {
		return g.Glance.Stage(ctx, id, &got)
	}
	if serr := g.Glance.Stage(ctx, id, &got); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// outcomesOf is the action and reason of each outcome of id.
func outcomesOf(r *Report, id string) string {
	var out []string
	for _, o := range r.Find(id) {
		out = append(out, o.Action+" "+o.Reason)
	}
	return strings.Join(out, "|")
}

// sentFor lists the writes the sync sent for id (the env's write log).
func sentFor(e *env, id string) string {
	e.counter.mu.Lock()
	defer e.counter.mu.Unlock()
	var out []string
	for _, l := range strings.Split(e.counter.log, "\n") {
		if strings.Contains(l, id) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestGlanceVerificationOfStoredBytes: what Glance holds for a bundle is
// checked against the descriptor whatever put it there. An active image
// carrying the bundle's record whose bytes are not the signed ones (someone
// with the mirror's credentials uploaded others) is deactivated and deleted
// by the next pass; data someone else staged is imported only at the
// descriptor's size and the image deleted when Glance then hashes it
// otherwise; with a Glance hashing with another algorithm the size alone
// is checked, and with one that reports no hash a good image is kept.
// Against the real Glance.
func TestGlanceVerificationOfStoredBytes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	random := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	for _, tc := range []struct {
		name string
		// put gives Glance bytes for the queued image of p (nil: the
		// sync mirrors the right bytes first)
		put     func(t *testing.T, p *published) error
		algo    *string // a Glance reporting this os_hash_algo
		want    string  // outcome of the last pass
		active  bool    // the image is active after the last pass
		imports bool    // the last pass may import
	}{
		{name: "fail active image with other bytes of the signed size",
			put: func(t *testing.T, p *published) error {
				return e.glance.Upload(ctx, p.id, bytes.NewReader(random(len(p.image))), "")
			},
			want: ActionDeleted + " " + ReasonGlanceHash},
		{name: "fail active image with other bytes of another size",
			put: func(t *testing.T, p *published) error {
				return e.glance.Upload(ctx, p.id, bytes.NewReader(random(len(p.image)+512)), "")
			},
			want: ActionDeleted + " " + ReasonGlanceHash},
		{name: "fail active image of another size, Glance hashing with sha256", algo: ptr("sha256"),
			put: func(t *testing.T, p *published) error {
				return e.glance.Upload(ctx, p.id, bytes.NewReader(random(len(p.image)-512)), "")
			},
			want: ActionDeleted + " " + ReasonGlanceHash},
		{name: "ok good image kept, Glance hashing with sha256", algo: ptr("sha256"),
			want: ActionUnchanged + " ", active: true},
		{name: "ok good image kept, Glance without multihash", algo: ptr(""),
			want: ActionUnchanged + " ", active: true},
		{name: "ok good image kept", want: ActionUnchanged + " ", active: true},
		{name: "fail data someone else staged, of the signed size", imports: true,
			put: func(t *testing.T, p *published) error {
				return e.glance.Stage(ctx, p.id, bytes.NewReader(random(len(p.image))))
			},
			want: ActionDeleted + " " + ReasonGlanceHash},
		{name: "fail data someone else staged, of another size",
			put: func(t *testing.T, p *published) error {
				return e.glance.Stage(ctx, p.id, bytes.NewReader(random(len(p.image)-1)))
			},
			want: ActionDeleted + " " + validator.ReasonSizeMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "atlas")
			p := w.publish(dir, spec{vo: "atlas", tag: "stored", size: 256 << 10, truncate: tc.put != nil})
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Retire = "keep"
			o.Sync.Aliases = new(bool)
			r := run(t, o)
			if tc.put == nil {
				if im := e.get(t, p.id); im.Status != StatusActive {
					t.Fatalf("first pass: %s: %s", im.Status, outcomesOf(r, p.id))
				}
			} else {
				if im := e.get(t, p.id); im.Status != StatusQueued || !strings.Contains(outcomesOf(r, p.id), validator.ReasonSizeMismatch) {
					t.Fatalf("first pass (short source): %s: %s", im.Status, outcomesOf(r, p.id))
				}
				if err := tc.put(t, p); err != nil {
					t.Fatal(err)
				}
			}
			if tc.algo != nil {
				o.Glance = otherHashGlance{Glance: e.glance, algo: *tc.algo}
			}
			e.counter.reset()
			r = run(t, o)
			if got := outcomesOf(r, p.id); got != tc.want {
				t.Fatalf("outcomes %q, want %q", got, tc.want)
			}
			if sent := sentFor(e, p.id); !tc.imports && strings.Contains(sent, "/import") {
				t.Errorf("import started:\n%s", sent)
			}
			im, err := e.admin.Get(ctx, p.id)
			switch {
			case tc.active && (err != nil || im.Status != StatusActive):
				t.Fatalf("good image: %v %+v", err, im)
			case !tc.active && !errors.Is(err, ErrNotFound):
				t.Fatalf("image with unverified bytes left in Glance: %v %+v", err, im)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestGlanceVerificationOfStreams: an image becomes active only from a
// stream the sync verified to its last byte. A Glance that answers a stage
// before the sync's stream ended has unverified data, which is never
// imported (deleted: it has the wrong size); one that answers an upload
// early and makes the image active has it deleted as refused bytes; one
// that keeps the data of a stage the sync broke off has the image
// deleted. Against the real Glance.
func TestGlanceVerificationOfStreams(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const size = 512 << 10
	for _, tc := range []struct {
		name   string
		ingest string
		glance func(Glance) Glance
		tamper bool
		size   int // default 512 KiB
		want   string
	}{
		{name: "fail stage answered early is never imported", ingest: "import",
			glance: func(g Glance) Glance { return earlyAnswerGlance{Glance: g, cut: size / 2} },
			want:   ActionDeleted + " " + validator.ReasonSizeMismatch},
		{name: "fail upload answered early is refused", ingest: "upload",
			glance: func(g Glance) Glance { return earlyAnswerGlance{Glance: g, cut: size / 2} },
			want:   ActionRefused + " " + validator.ReasonSizeMismatch},
		// (3 MiB: the stream hands on whole MiBs before it breaks off)
		{name: "fail staged data of a broken-off stream is deleted", ingest: "import", tamper: true, size: 3 << 20,
			glance: func(g Glance) Glance { return keepsBrokenStageGlance{g} },
			want:   ActionRefused + " " + validator.ReasonSHA512Mismatch},
		{name: "ok stage kept whole by a Glance that keeps broken stages", ingest: "import",
			glance: func(g Glance) Glance { return keepsBrokenStageGlance{g} },
			want:   ActionMirrored + " "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(t.TempDir(), "atlas")
			n := tc.size
			if n == 0 {
				n = size
			}
			p := w.publish(dir, spec{vo: "atlas", tag: "stream", size: n, tamperImage: tc.tamper})
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Ingest = tc.ingest
			o.Sync.Retire = "keep"
			o.Sync.Aliases = new(bool)
			o.Glance = tc.glance(e.glance)
			e.counter.reset()
			r := run(t, o)
			if got := outcomesOf(r, p.id); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("outcomes %q, want %q", got, tc.want)
			}
			im, err := e.admin.Get(ctx, p.id)
			if tc.want == ActionMirrored+" " {
				if err != nil || im.Status != StatusActive || im.Props["os_hash_value"] != im.Props[validator.PropSHA512] {
					t.Fatalf("good image: %v %+v", err, im)
				}
				return
			}
			if sent := sentFor(e, p.id); strings.Contains(sent, "/import") {
				t.Errorf("unverified data imported:\n%s", sent)
			}
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("image with unverified data left in Glance: %v %+v", err, im)
			}
		})
	}
}
