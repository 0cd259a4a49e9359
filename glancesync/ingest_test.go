package glancesync

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/validator"
)

// TestUploadIngestNeverActivatesUnverified runs a pass with
// sync.ingest = "upload" against the real Glance: good bundles become active
// through one PUT /file each; bundles whose bytes are wrong (a byte flipped
// in the middle, so the mismatch shows only at the end of the stream; one
// byte short; one byte long; a descriptor naming another sha512) are
// uploaded up to the held-back last bytes, the request breaks off, and
// Glance must never show them active, not even for a moment: a watcher polls
// their status all through the pass. They end queued without data.
func TestUploadIngestNeverActivatesUnverified(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	good := []*published{
		w.publish(dir, spec{vo: "atlas", tag: "upload-a"}),
		w.publish(dir, spec{vo: "atlas", tag: "upload-b", size: 5 << 20}),
	}
	hostile := map[string]*published{
		"fail tampered image":  w.publish(dir, spec{vo: "atlas", tag: "upload-x", size: 5 << 20, tamperImage: true}),
		"fail truncated image": w.publish(dir, spec{vo: "atlas", tag: "upload-x", truncate: true}),
		"fail padded image":    w.publish(dir, spec{vo: "atlas", tag: "upload-x", pad: true}),
		"fail wrong sha":       w.publish(dir, spec{vo: "atlas", tag: "upload-x", wrongSHA: true}),
	}
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Ingest = "upload"
	o.Sync.Retire = "keep"
	o.ImportPoll = 50 * time.Millisecond

	// The watcher: every hostile id, as often as Glance answers.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]map[string]bool{} // name -> statuses seen
	for name, p := range hostile {
		seen[name] = map[string]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				im, err := e.admin.Get(ctx, p.id)
				if err == nil {
					mu.Lock()
					seen[name][im.Status] = true
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	e.counter.reset()
	r := run(t, o)
	stop()
	wg.Wait()

	if r.Errors != 0 {
		t.Fatalf("pass: %d errors: %+v", r.Errors, r.Outcomes)
	}
	e.counter.mu.Lock()
	log := e.counter.log
	e.counter.mu.Unlock()
	for _, p := range good {
		im := e.get(t, p.id)
		if im.Status != StatusActive || im.Size != int64(len(p.image)) || im.Props["os_hash_value"] != im.Props[validator.PropSHA512] {
			t.Errorf("ok good bundle %s: status %s size %d hash %.16s", p.id, im.Status, im.Size, im.Props["os_hash_value"])
		}
		if !strings.Contains(log, "PUT /v2/images/"+p.id+"/file -> 204") || strings.Contains(log, p.id+"/stage") {
			t.Errorf("ok good bundle %s: not uploaded with one PUT /file:\n%s", p.id, log)
		}
	}
	for name, p := range hostile {
		if seen[name][StatusActive] {
			t.Errorf("%s: Glance showed the image active during the pass (statuses seen: %v)", name, seen[name])
		}
		im, err := e.admin.Get(context.Background(), p.id)
		switch {
		case err == nil && im.Status == StatusQueued && im.Size == 0:
			// the broken-off upload left no data: left queued for a
			// later pass, its uuid kept
		case err != nil:
			t.Errorf("%s: %v", name, err)
		default:
			t.Errorf("%s: image left behind, status %s", name, im.Status)
		}
		var reason string
		for _, out := range r.Find(p.id) {
			if out.Action == ActionRefused {
				reason = out.Reason
			}
		}
		if reason == "" {
			t.Errorf("%s: not reported as refused: %+v", name, r.Find(p.id))
		}
		// Nor is any of its data left in Glance's file store or staging
		// area (tests/openstack/start.sh's layout).
		for _, d := range []string{"images", "staging"} {
			left, _ := filepath.Glob(filepath.Join(e.cloud.StateDir, "glance", d, p.id+"*"))
			if len(left) != 0 {
				t.Errorf("%s: data left in Glance's store: %v", name, left)
			}
		}
	}
	// The flipped byte is found only at the end: that bundle's upload was
	// sent (up to the held-back bytes) and broken off, and Glance saw it.
	tampered := hostile["fail tampered image"]
	if !strings.Contains(log, "PUT /v2/images/"+tampered.id+"/file -> 0") {
		t.Errorf("the tampered image's upload was not broken off mid-request:\n%s", log)
	}
	if !seen["fail tampered image"][StatusSaving] {
		t.Logf("note: the watcher never caught the tampered image saving (statuses %v)", seen["fail tampered image"])
	}
}

// noGlanceDirect is the real Glance, except that it says it offers no
// glance-direct (the only stand-in here: it changes the answer of
// GET /v2/info/import and nothing else). The no-glance-direct Glance of the
// end-to-end story (tests/e2e) is a real one.
type noGlanceDirect struct{ Glance }

func (noGlanceDirect) ImportMethods(context.Context) ([]string, error) {
	return []string{"web-download"}, nil
}

// TestIngestModeChoice checks which ingest each setting picks, and that
// sync.ingest = "import" on a Glance without glance-direct fails the pass
// with an error that says what to change, writing nothing.
func TestIngestModeChoice(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	w.publish(dir, spec{vo: "atlas", tag: "ingest-choice"})
	for _, tc := range []struct {
		name    string
		ingest  string
		noDir   bool
		want    ingest
		errWant string
	}{
		{name: "ok auto with glance-direct", ingest: "auto", want: ingest{stage: true, canImport: true}},
		{name: "ok empty is auto", ingest: "", want: ingest{stage: true, canImport: true}},
		{name: "ok import", ingest: "import", want: ingest{stage: true, canImport: true}},
		{name: "ok upload", ingest: "upload", want: ingest{stage: false, canImport: true}},
		{name: "ok auto without glance-direct", ingest: "auto", noDir: true, want: ingest{}},
		{name: "ok upload without glance-direct", ingest: "upload", noDir: true, want: ingest{}},
		{name: "fail import without glance-direct", ingest: "import", noDir: true, errWant: `sync.ingest = "import", but this Glance does not offer glance-direct`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := e.options(t, w, map[string][]string{dir: {"atlas"}})
			o.Sync.Ingest = tc.ingest
			if tc.noDir {
				o.Glance = noGlanceDirect{o.Glance}
			}
			s, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.ingestMode(context.Background())
			if tc.errWant != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errWant) {
					t.Fatalf("err = %v, want %q", err, tc.errWant)
				}
				before := e.counter.reset()
				if _, err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tc.errWant) {
					t.Fatalf("Run: err = %v, want %q", err, tc.errWant)
				}
				if n := e.counter.writes.Load() - before; n != 0 {
					t.Errorf("the refused pass made %d Glance writes", n)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ingestMode = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// failImport is the real Glance except that starting an import fails (a
// fault injected on the sync's side, like the fault proxy's).
type failImport struct{ Glance }

func (failImport) ImportGlanceDirect(context.Context, string, []string) error {
	return errors.New("injected: import refused")
}

// TestStagedImageWithoutGlanceDirect: an image a pass staged and verified
// but could not import is left alone and reported, never deleted (which
// would spend its uuid), while Glance offers no glance-direct, and a pass
// on a Glance that offers it again imports it.
func TestStagedImageWithoutGlanceDirect(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "atlas")
	p := w.publish(dir, spec{vo: "atlas", tag: "staged-left"})
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "keep"
	real := o.Glance

	o.Glance = failImport{real}
	r := run(t, o)
	if im := e.get(t, p.id); im.Status != StatusUploading || im.Size != int64(len(p.image)) {
		t.Fatalf("after the failed import: %s, size %d (%+v)", im.Status, im.Size, r.Find(p.id))
	}

	o.Glance = noGlanceDirect{real}
	r = run(t, o)
	var detail string
	for _, out := range r.Find(p.id) {
		if out.Action == ActionFailed {
			detail = out.Detail
		}
	}
	if !strings.Contains(detail, "staged, not imported") || r.Errors == 0 {
		t.Errorf("fail staged image without glance-direct: %d errors, %+v", r.Errors, r.Find(p.id))
	}
	if im := e.get(t, p.id); im.Status != StatusUploading {
		t.Fatalf("the staged image was touched: %s", im.Status)
	}

	o.Glance = real
	r = run(t, o)
	if im := e.get(t, p.id); im.Status != StatusActive || im.Props["os_hash_value"] != im.Props[validator.PropSHA512] || r.Errors != 0 {
		t.Fatalf("ok staged image imported later: %s, %d errors, %+v", im.Status, r.Errors, r.Find(p.id))
	}
}
