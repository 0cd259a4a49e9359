package glancesync

import (
	"testing"
	"time"
)

// TestStageLostReported: an image found uploading without a size (a stage
// not completed) for longer than any transfer of its size may take is a
// stage Glance lost (glance-api stopped or killed mid-stage leaves the image
// so for ever, and nothing but a reclaim after stale_after, which spends the
// uuid, moves it). The pass reports it failed, an error, at once, instead
// of waiting silently until the reclaim. Within the bound it is a stage in
// progress, left to its sync. Against the real Glance: the stage is one the
// test holds open.
func TestStageLostReported(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(dir, spec{vo: "atlas", tag: "lost"})
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "keep"
	o.Sync.Ingest = "import"

	holdTransfer(t, e, o, p.id)

	t.Run("ok stage in progress, left to its sync", func(t *testing.T) {
		r := run(t, o) // transfer bound: the default transfer_slack, 10 minutes
		out := r.Find(p.id)
		if r.Errors != 0 || len(out) != 1 || out[0].Action != ActionElsewhere {
			t.Fatalf("errors %d, outcome %+v; want in-flight-elsewhere", r.Errors, out)
		}
	})
	t.Run("fail uploading for longer than a transfer may take", func(t *testing.T) {
		o := o
		o.Sync.TransferSlack.Duration = time.Second
		o.Sync.TransferMinRateKiB = 1 << 20 // the image's size adds no second
		time.Sleep(2 * time.Second)
		r := run(t, o)
		out := r.Find(p.id)
		if r.Errors == 0 || len(out) != 1 || out[0].Action != ActionFailed {
			t.Fatalf("errors %d, outcome %+v; want a failure", r.Errors, out)
		}
		if len(r.Failed) != 1 || r.Failed[0] != p.id {
			t.Fatalf("failed images %v; want the image", r.Failed)
		}
		if st := e.get(t, p.id).Status; st != StatusUploading {
			t.Fatalf("status %s: the image must be left as it is (reclaiming spends its uuid)", st)
		}
	})
}
