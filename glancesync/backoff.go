package glancesync

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/imagetrust/imagetrust/validator"
)

// The refused-bytes back-off, recorded on the queued image itself so that
// every process (a cron run of `sync --once`, a restarted daemon, another
// host's sync) sees it (docs/catalogue.md, docs/glancesync.md). Written by
// the sync only; an operator removes them to force a retry.
const (
	// PropSyncRefusals counts the refusals of the image's bytes in a row
	// (decimal).
	PropSyncRefusals = "imagetrust_sync_refusals"
	// PropSyncRetryAfter is when a pass may download the image again
	// (RFC 3339, UTC).
	PropSyncRetryAfter = "imagetrust_sync_retry_after"
	// PropSyncRefused is the reason of the last refusal (size-mismatch,
	// sha512-mismatch, image-unreadable).
	PropSyncRefused = "imagetrust_sync_refused"
)

// syncProps are the properties of the refusal record.
var syncProps = []string{PropSyncRefusals, PropSyncRetryAfter, PropSyncRefused}

// maxRecordedRefusals bounds the count read from an image (the back-off
// reaches its cap long before).
const maxRecordedRefusals = 1000

// refusalRecord is the back-off an image carries (readRefusal).
type refusalRecord struct {
	n      int
	reason string
	// until is when the image may be downloaded again; zero: now.
	until time.Time
}

// hasRefusalRecord reports whether im carries any property of the record.
func hasRefusalRecord(im *Image) bool {
	for _, k := range syncProps {
		if _, ok := im.Props[k]; ok {
			return true
		}
	}
	return false
}

// maxBackoff is the longest wait before an image whose bytes were refused
// is downloaded again.
func (s *Syncer) maxBackoff() time.Duration { return max(maxRefusedBackoff, s.o.ResumeAfter) }

// backoffFor is the wait after the n-th refusal in a row: ResumeAfter,
// doubled with each refusal after the first, up to maxBackoff.
func (s *Syncer) backoffFor(n int) time.Duration {
	w := s.o.ResumeAfter
	for i := 1; i < n && w < maxRefusedBackoff; i++ {
		w *= 2
	}
	if w > maxRefusedBackoff {
		w = s.maxBackoff()
	}
	return w
}

// readRefusal reads the refusal record of im, an image of the mirror
// project (the caller has checked the owner: the properties of anyone
// else's image are never read). Whatever the values, the wait ends at
// the latest maxBackoff after the image was last written (its updated_at:
// the sync's write of the record sets it), so that no value makes the sync
// wait for ever; a retry_after that does not parse is no wait at all. An
// unknown reason is reported as image-unreadable, so that a written value
// cannot become a metric label.
func (s *Syncer) readRefusal(im *Image) (refusalRecord, bool) {
	if !hasRefusalRecord(im) {
		return refusalRecord{}, false
	}
	r := refusalRecord{n: 1, reason: validator.ReasonImageUnreadable}
	if n, err := strconv.Atoi(im.Props[PropSyncRefusals]); err == nil && n > 0 {
		r.n = min(n, maxRecordedRefusals)
	}
	switch why := im.Props[PropSyncRefused]; why {
	case validator.ReasonSizeMismatch, validator.ReasonSHA512Mismatch, validator.ReasonImageUnreadable:
		r.reason = why
	}
	if t, err := time.Parse(time.RFC3339, im.Props[PropSyncRetryAfter]); err == nil {
		r.until = t
		if last := im.UpdatedAt.Add(s.maxBackoff()); !im.UpdatedAt.IsZero() && r.until.After(last) {
			r.until = last
		}
	}
	return r, true
}

// backedOff decides whether a queued image this pass did not create is
// within the back-off of a refusal of its bytes, and returns the outcome
// to report then (refused, with the refusal's reason). The record on the
// image holds it off until its retry_after; so does the process's memory
// of a refusal it could not record (the image may carry an older record,
// or none). A refusal the process did record, whose record is gone from
// the image, was removed since (an operator forcing a retry): forgotten.
func (s *Syncer) backedOff(it *item, im *Image, log *slog.Logger) (Outcome, bool) {
	now := s.o.Now()
	l, mem := s.leftSince(im.ID)
	rec, recorded := s.readRefusal(im)
	switch {
	case recorded && now.Before(rec.until):
		detail := fmt.Sprintf("bytes refused (%s) %d time(s) in a row, as recorded on the image (%s); left queued without data, not downloaded again before %s",
			rec.reason, rec.n, PropSyncRetryAfter, rec.until.UTC().Format(time.RFC3339))
		return s.outcome(it, ActionRefused, rec.reason, detail), true
	case mem && !l.recorded && now.Sub(l.at) < l.wait:
		// a refusal this process could not record (the image may carry
		// an older one)
		return s.outcome(it, ActionRefused, l.reason, l.why), true
	case mem && l.recorded && !recorded:
		log.Info("the refusal record was removed from the image: downloading it again")
		s.forgetLeft(im.ID)
	}
	return Outcome{}, false
}

// recordRefusal writes the refusal record on im (as settled read it), and
// tells whether it did. It is written only when Glance has visibly handled
// the broken-off stream (settled's handled) and the image is queued
// without data. Glance (Zed) saves the whole image, status included, on
// every write, and the stream's handler saves the image as it read it when
// it returns it to queued: a property write that Glance reads while the
// stream is still being handled would put the image back to saving (or
// uploading) for good, and one that lands before the handler's last save
// is lost. Without that sign (Glance took and refused the stream within
// the second of the image's last write: a small image) nothing is written
// and the refusal is remembered by this process only.
func (s *Syncer) recordRefusal(ctx context.Context, im *Image, handled bool, n int, until time.Time, reason string, log *slog.Logger) bool {
	if im.Status != StatusQueued || im.Size != 0 || !handled {
		log.Info("refusal not recorded on the image: Glance has shown no sign of having handled the broken-off stream; this process remembers it", "status", im.Status, "updated", im.UpdatedAt)
		return false
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	ops := []PatchOp{
		{Name: PropSyncRefusals, Value: strconv.Itoa(n)},
		{Name: PropSyncRetryAfter, Value: until.UTC().Format(time.RFC3339)},
		{Name: PropSyncRefused, Value: reason},
	}
	if err := s.o.Glance.Patch(cctx, im.ID, ops); err != nil {
		log.Warn("cannot record the refusal on the image; this process remembers it", "err", err)
		return false
	}
	return true
}

// clearRefusalOps are the patch operations removing the refusal record
// from an image that has its data (active or deactivated): a refusal
// recorded before its bytes were mirrored says nothing any more.
func clearRefusalOps(im *Image) []PatchOp {
	var ops []PatchOp
	for _, k := range syncProps {
		if _, ok := im.Props[k]; ok {
			ops = append(ops, PatchOp{Name: k, Remove: true})
		}
	}
	return ops
}
