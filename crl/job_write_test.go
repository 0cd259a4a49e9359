package crl

import (
	"context"
	"maps"
	"math/big"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/imagetrust/imagetrust/internal/pki"
)

// lossyCatalog is memCatalog with Glance's whole-image saves: a concurrent
// writer that read the image before the job's write saves it after, and
// the job's write is gone. losses is how many of the job's revocations
// (property patch, then deactivate) such a writer undoes; onGet and
// onReactivate run before Get and after Reactivate (an operator's write).
type lossyCatalog struct {
	*memCatalog
	losses       int
	lost         int
	before       *Image
	onGet        func(id string)
	onReactivate func(id string)
	gets         int
}

func (c *lossyCatalog) snapshot(id string) {
	if c.before == nil && c.losses > 0 {
		img, _ := c.memCatalog.Get(context.Background(), id)
		c.before = &img
	}
}

// undo is the concurrent writer's save of the image as it read it before
// the job's writes.
func (c *lossyCatalog) undo(id string) {
	if c.before == nil {
		return
	}
	c.mu.Lock()
	c.images[id].Status = c.before.Status
	c.images[id].Properties = maps.Clone(c.before.Properties)
	c.mu.Unlock()
	c.before = nil
	c.losses--
	c.lost++
}

func (c *lossyCatalog) SetProperties(ctx context.Context, id string, set map[string]string, remove []string) error {
	c.snapshot(id)
	return c.memCatalog.SetProperties(ctx, id, set, remove)
}

func (c *lossyCatalog) Deactivate(ctx context.Context, id string) error {
	c.snapshot(id)
	err := c.memCatalog.Deactivate(ctx, id)
	c.undo(id)
	return err
}

func (c *lossyCatalog) Reactivate(ctx context.Context, id string) error {
	err := c.memCatalog.Reactivate(ctx, id)
	if c.onReactivate != nil {
		c.onReactivate(id)
	}
	return err
}

func (c *lossyCatalog) Get(ctx context.Context, id string) (Image, error) {
	c.gets++
	if c.onGet != nil {
		c.onGet(id)
	}
	return c.memCatalog.Get(ctx, id)
}

// TestJobRevocationLostToConcurrentWrite: a concurrent Glance write undoes
// the job's revocation of img-1 (flag and deactivation). The job reads the
// image again, finds it active and valid, and writes again: after one or
// two losses the image ends revoked and deactivated; after three the run
// reports the lost write (exit 4 for --once, TransitRecheck for the
// daemon) and the metric counts it.
func TestJobRevocationLostToConcurrentWrite(t *testing.T) {
	for _, tc := range []struct {
		losses int
		held   bool
	}{{1, true}, {2, true}, {3, false}} {
		w := newWorld(t)
		cat := &lossyCatalog{memCatalog: w.cat, losses: tc.losses}
		j := w.job(t, t.TempDir(), t0, true)
		j.cat = cat
		w.serve(crlT(w.registrar, 1, pki.Revoked{Serial: big.NewInt(11), Time: t0, Reason: ReasonKeyCompromise}), 0, 0)
		rep, err := j.Run(context.Background(), false)
		if err != nil {
			t.Fatalf("%d losses: %v", tc.losses, err)
		}
		img := w.cat.get("img-1")
		revoked := img.Status == StatusDeactivated && img.Properties[PropGlobalValidity] == StateRevoked
		if cat.lost != tc.losses || revoked != tc.held {
			t.Fatalf("%d losses: lost %d, image %+v", tc.losses, cat.lost, img)
		}
		lostMetric := counterValue(j.metrics.lostWrites)
		if tc.held {
			if len(rep.LostWrites) != 0 || lostMetric != 0 || rep.Writes != 2*(tc.losses+1) {
				t.Fatalf("%d losses: report %+v, metric %v", tc.losses, rep, lostMetric)
			}
			continue
		}
		if len(rep.LostWrites) != 1 || lostMetric != 1 {
			t.Fatalf("lost for good: report %+v, metric %v", rep.LostWrites, lostMetric)
		}
		l := rep.LostWrites[0]
		if l.ImageID != "img-1" || l.To != StateRevoked || l.Attempts != MaxWriteAttempts ||
			!strings.Contains(l.Lost, PropGlobalValidity+"=revoked (found valid)") || !strings.Contains(l.Lost, "status deactivated (found active)") {
			t.Fatalf("lost write: %+v", l)
		}
		// the next run (TransitRecheck) writes it again, and it holds
		rep = run(t, j)
		if img := w.cat.get("img-1"); img.Status != StatusDeactivated || img.Properties[PropGlobalValidity] != StateRevoked || len(rep.LostWrites) != 0 {
			t.Fatalf("next run: %+v, %+v", img, rep.LostWrites)
		}
	}
}

// TestJobReactivationReadsAgain: the job lifts a hold (img-2) only if the
// image, read again just before the reactivation, still carries the
// crl-hold marker and no local flag; a flag an operator sets while the
// reactivation is under way makes the job deactivate the image again, with
// the marker, as if the listing had seen the flag.
func TestJobReactivationReadsAgain(t *testing.T) {
	for _, when := range []string{"before", "during"} {
		w := newWorld(t)
		cat := &lossyCatalog{memCatalog: w.cat}
		j := w.job(t, t.TempDir(), t0, true)
		j.cat = cat
		w.serve(crlT(w.registrar, 1, pki.Revoked{Serial: big.NewInt(12), Reason: ReasonCertificateHold}), 0, 0)
		run(t, j)
		if img := w.cat.get("img-2"); img.Status != StatusDeactivated || img.Properties[PropDeactivatedBy] != DeactivatedByHold {
			t.Fatalf("held: %+v", img)
		}
		blacklist := func(id string) {
			if id == "img-2" {
				w.cat.mu.Lock()
				w.cat.images[id].Properties[PropLocalValidity] = "blacklist"
				w.cat.mu.Unlock()
			}
		}
		if when == "before" {
			cat.onGet = blacklist
		} else {
			cat.onReactivate = blacklist
		}
		w.serve(crlT(w.registrar, 2), 0, 0)
		rep := run(t, j)
		img := w.cat.get("img-2")
		if img.Status != StatusDeactivated || img.Properties[PropLocalValidity] != "blacklist" || img.Properties[PropDeactivatedBy] != DeactivatedByHold {
			t.Fatalf("flag set %s the reactivation: %+v (changes %+v)", when, img, rep.Changes)
		}
		// the flag removed, the next run reactivates it
		cat.onGet, cat.onReactivate = nil, nil
		delete(w.cat.images["img-2"].Properties, PropLocalValidity)
		run(t, j)
		if img := w.cat.get("img-2"); img.Status != StatusActive || img.Properties[PropDeactivatedBy] != "" || img.Properties[PropGlobalValidity] != StateValid {
			t.Fatalf("flag set %s, then removed: %+v", when, img)
		}
	}
}

// TestJobLocalFlagGone: a local validity flag seen by one run and gone at
// the next is warned of (Report.LocalFlagsGone, the metric), also across
// processes through the cache directory; a dry run compares but does not
// remember; the job never writes the flag.
func TestJobLocalFlagGone(t *testing.T) {
	w := newWorld(t)
	cache := t.TempDir()
	w.serve(crlT(w.registrar, 1), 0, 0)
	w.cat.images["img-3"].Properties[PropLocalValidity] = "blacklist"
	j := w.job(t, cache, t0, true)
	if rep := run(t, j); len(rep.LocalFlagsGone) != 0 {
		t.Fatalf("first run: %+v", rep.LocalFlagsGone)
	}
	delete(w.cat.images["img-3"].Properties, PropLocalValidity)
	if rep, err := j.Run(context.Background(), true); err != nil || len(rep.LocalFlagsGone) != 1 {
		t.Fatalf("dry run: %v %+v", err, rep)
	}
	// a new process: the cache directory remembers
	j = w.job(t, cache, t0, true)
	rep := run(t, j)
	if len(rep.LocalFlagsGone) != 1 || rep.LocalFlagsGone[0] != (LocalFlagGone{ImageID: "img-3", Flag: "blacklist"}) ||
		counterValue(j.metrics.localGone) != 1 || !strings.Contains(strings.Join(rep.Warnings, "\n"), "local validity flag blacklist of image img-3 is gone since the last run") {
		t.Fatalf("flag gone: %+v, warnings %q", rep.LocalFlagsGone, rep.Warnings)
	}
	if rep := run(t, j); len(rep.LocalFlagsGone) != 0 || w.cat.get("img-3").Properties[PropLocalValidity] != "" {
		t.Fatalf("warned twice, or the flag written: %+v", rep.LocalFlagsGone)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
