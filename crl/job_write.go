package crl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/internal/fsutil"
)

// Glance keeps no per-key edits: every PATCH, deactivate and reactivate
// reads the whole image, applies its change and saves the whole image as
// it read it (Glance Zed: glance/db save with purge_props; deactivate and
// reactivate save the same snapshot), and it offers no compare-and-swap
// (no ETag, JSON-patch "test" refused, If-Match ignored). A write that
// runs at the same time as another one of the same image (the sync
// unhiding it, an operator setting imagetrust_local_validity) can undo
// it: the job's flag, or its deactivation, is lost, or the other writer's
// change is. The job cannot prevent that; it checks afterwards
// (checkWrites) and writes again.

// DefaultWriteSettle is the JobConfig.WriteSettle of `imagetrust crl`: a
// concurrent Glance write that read the image before the job's write
// saves it within a request's time (tens of milliseconds on an idle
// Glance); one that takes longer than this can still undo the job's write
// after the check, and the next run finds it so.
const DefaultWriteSettle = time.Second

// MaxWriteAttempts is how often the job writes one change (planned again
// from the image as read each time) before it reports it as lost.
const MaxWriteAttempts = 3

// LostWrite is a change that did not hold (Report.LostWrites).
type LostWrite struct {
	ImageID string `json:"image_id"`
	// To is the state the job meant the image to have.
	To string `json:"to"`
	// Lost says what was missing when the image was last read, such as
	// "imagetrust_global_validity=revoked (found valid), status deactivated
	// (found active)".
	Lost     string `json:"lost"`
	Attempts int    `json:"attempts"`
}

// LocalFlagGone is an imagetrust_local_validity flag that was there at
// the last run and is not now (Report.LocalFlagsGone).
type LocalFlagGone struct {
	ImageID string `json:"image_id"`
	Flag    string `json:"flag"`
}

// pendingWrite is one change to write: the image as last read, the
// decision (the inputs of Plan) and the change planned from both.
type pendingWrite struct {
	img Image
	d   desired
	ch  *Change
}

// write applies the changes of a run and checks that they held
// (checkWrites), writing a change that did not hold again, planned from
// the image as read then with the same decision, up to MaxWriteAttempts
// times; what still did not hold is a Report.LostWrites. Failed writes are
// returned (and in rep.Errors), to be tried again by the next run.
//
// A reactivation is planned again from the image read just before it
// (Plan reactivates only an image that still carries
// imagetrust_deactivated_by=crl-hold and no imagetrust_local_validity), so
// that a flag an operator set since the listing is heeded; a flag that
// appears while the reactivation is under way is handled by checkWrites.
func (j *Job) write(ctx context.Context, todo []pendingWrite, rep *Report) []error {
	var errs []error
	fail := func(err error) {
		rep.Errors = append(rep.Errors, err.Error())
		rep.FailedWrites++
		errs = append(errs, err)
	}
	for attempt := 1; len(todo) > 0; attempt++ {
		var written []pendingWrite
		for _, p := range todo {
			if p.ch.Reactivate {
				fresh, err := j.cat.Get(ctx, p.img.ID)
				if errors.Is(err, ErrImageGone) {
					continue
				}
				if err != nil {
					fail(fmt.Errorf("image %s: reading it before reactivating: %w", p.img.ID, err))
					continue
				}
				ch := Plan(fresh, p.d.state, p.d.rev, p.d.why)
				if ch == nil || !ch.Reactivate {
					j.log.Info("reactivation called off: the image changed since it was listed", "image", p.img.ID,
						"status", fresh.Status, "local_validity", fresh.Properties[PropLocalValidity],
						"deactivated_by", fresh.Properties[PropDeactivatedBy])
				}
				if ch == nil {
					continue
				}
				p.img, p.ch = fresh, ch
			}
			n, err := j.apply(ctx, p.ch)
			rep.Writes += n
			if err != nil {
				fail(err)
				continue
			}
			written = append(written, p)
		}
		todo = j.checkWrites(ctx, written, attempt, rep, fail)
	}
	return errs
}

// checkWrites reads again, after JobConfig.WriteSettle, the images just
// written and returns the changes that did not hold, planned again from
// the image as read, to be written again (none after MaxWriteAttempts:
// those are reported, Report.LostWrites). A change holds when Plan, from
// the image as read with the same decision, has nothing to do: the
// properties written have their values, those removed are absent and the
// status is the intended one.
//
// An image that the job reactivated and that carries
// imagetrust_local_validity now (an operator set it while the job
// reactivated it) is deactivated again with imagetrust_deactivated_by=
// crl-hold, as it would have stayed had the listing seen the flag: the job
// never leaves an image it reactivated active under an operator's flag
// it can see, and once the flag is removed the next run reactivates it.
func (j *Job) checkWrites(ctx context.Context, written []pendingWrite, attempt int, rep *Report, fail func(error)) []pendingWrite {
	if len(written) == 0 {
		return nil
	}
	if d := j.cfg.WriteSettle; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	var again []pendingWrite
	for _, p := range written {
		fresh, err := j.cat.Get(ctx, p.img.ID)
		if errors.Is(err, ErrImageGone) {
			continue
		}
		if err != nil {
			fail(fmt.Errorf("image %s: reading it again to check the write held: %w", p.img.ID, err))
			continue
		}
		if flag := p.img.Properties[PropLocalValidity]; flag != "" && fresh.Properties[PropLocalValidity] == "" {
			j.log.Warn("local validity flag gone since the image was listed: if no operator removed it, a concurrent Glance write lost it; set it again",
				"image", p.img.ID, "flag", flag)
		}
		if p.ch.Reactivate && fresh.Status == StatusActive && fresh.Properties[PropLocalValidity] != "" {
			undo := &Change{ImageID: p.img.ID, From: p.ch.To, To: p.ch.To, Why: "an operator set imagetrust_local_validity while the job reactivated the image",
				Set: map[string]string{PropDeactivatedBy: DeactivatedByHold}, Deactivate: true}
			j.log.Warn("imagetrust_local_validity set while the image was reactivated: deactivating it again", "image", p.img.ID,
				"local_validity", fresh.Properties[PropLocalValidity])
			n, err := j.apply(ctx, undo)
			rep.Writes += n
			if err != nil {
				fail(err)
			}
			rep.Changes = append(rep.Changes, *undo)
			continue
		}
		next := Plan(fresh, p.d.state, p.d.rev, p.d.why)
		if next == nil {
			continue
		}
		lost := lostParts(p.ch, fresh)
		if attempt >= MaxWriteAttempts {
			rep.LostWrites = append(rep.LostWrites, LostWrite{ImageID: p.img.ID, To: p.ch.To, Lost: lost, Attempts: attempt})
			j.metrics.lostWrite()
			j.log.Error("write lost to concurrent Glance writes: the image does not have what the job wrote; the next run writes it again",
				"image", p.img.ID, "to", p.ch.To, "lost", lost, "attempts", attempt)
			continue
		}
		j.log.Warn("write lost to a concurrent Glance write: writing it again", "image", p.img.ID, "to", p.ch.To, "lost", lost, "attempt", attempt)
		again = append(again, pendingWrite{img: fresh, d: p.d, ch: next})
	}
	return again
}

// lostParts says what of ch img does not have.
func lostParts(ch *Change, img Image) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(ch.Set)) {
		if got, ok := img.Properties[k]; !ok || got != ch.Set[k] {
			found := "absent"
			if ok {
				found = "found " + got
			}
			out = append(out, k+"="+ch.Set[k]+" ("+found+")")
		}
	}
	for _, k := range ch.Remove {
		if v, ok := img.Properties[k]; ok {
			out = append(out, "removal of "+k+" (found "+v+")")
		}
	}
	if ch.Deactivate && img.Status != StatusDeactivated {
		out = append(out, "status deactivated (found "+img.Status+")")
	}
	if ch.Reactivate && img.Status != StatusActive {
		out = append(out, "status active (found "+img.Status+")")
	}
	if len(out) == 0 {
		return "the image changed meanwhile (status " + img.Status + ")"
	}
	return strings.Join(out, ", ")
}

// localFlagsFile is the cache directory's record of the local validity
// flags the last run saw.
const localFlagsFile = "local-validity.json"

// localFlags compares the imagetrust_local_validity flags of the listed
// images with those the last run saw (remembered by the Job, and in the
// cache directory for the next process) and warns of each that is gone
// from an image still listed: an operator may have removed it, or a
// concurrent Glance write (Glance saves whole images) lost it. The job
// never writes the flag. An image not listed this run (deleted, or hidden
// or unhidden between the two listings of glance.ListHiddenToo) is
// forgotten. A dry run compares and remembers nothing.
func (j *Job) localFlags(imgs []Image, rep *Report, dryRun bool) {
	if j.local == nil {
		j.local = map[string]string{}
		if j.cfg.CacheDir != "" {
			if b, err := os.ReadFile(filepath.Join(j.cfg.CacheDir, localFlagsFile)); err == nil {
				_ = json.Unmarshal(b, &j.local) // a damaged file only costs the warnings of one run
			}
		}
	}
	now := map[string]string{}
	for _, img := range imgs {
		if v := img.Properties[PropLocalValidity]; v != "" {
			now[img.ID] = v
		}
	}
	for _, img := range imgs {
		was, ok := j.local[img.ID]
		if !ok || now[img.ID] != "" {
			continue
		}
		rep.LocalFlagsGone = append(rep.LocalFlagsGone, LocalFlagGone{ImageID: img.ID, Flag: was})
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("local validity flag %s of image %s is gone since the last run: if no operator removed it, a concurrent Glance write lost it; set it again", was, img.ID))
		j.metrics.localFlagGone()
		j.log.Warn("local validity flag gone since the last run: if no operator removed it, a concurrent Glance write lost it; set it again",
			"image", img.ID, "flag", was)
	}
	if dryRun {
		return
	}
	changed := !maps.Equal(now, j.local)
	j.local = now
	if changed && j.cfg.CacheDir != "" {
		b, _ := json.MarshalIndent(now, "", "  ")
		err := os.MkdirAll(j.cfg.CacheDir, 0o700)
		if err == nil {
			err = fsutil.WriteFileAtomic(filepath.Join(j.cfg.CacheDir, localFlagsFile), b, 0o600)
		}
		if err != nil {
			// memory only: the daemon still compares; the next --once
			// run may miss a flag lost meanwhile
			j.log.Warn("crl cache: recording the local validity flags failed", "err", err)
		}
	}
}
