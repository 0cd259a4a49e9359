package glancesync

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/imagetrust/imagetrust/internal/glance"
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
	// sha512-mismatch, image-unreadable; or the name of the Glance limit
	// that refused the image data: limitReason).
	PropSyncRefused = "imagetrust_sync_refused"
)

// limitReasons are the refusal reasons of image data a Glance limit
// refused (413 to a stage or upload): the limit's name, or glanceLimit
// for a 413 that names none. The same back-off holds such an image off,
// so that a pass does not stream it again (up to the limit: image_size_cap
// reads the cap's worth before it refuses) until the limit may have been
// raised; it is reported failed meanwhile, not refused: the bundle is
// fine, the operator has something to raise.
var limitReasons = []string{
	glanceImageCountUploading, glanceImageSizeTotal, glanceImageStageTotal, glanceImageCountTotal,
	glance.LimitSizeCap, glance.LimitStorageQuota, glance.LimitStoreFull, glanceLimit, glanceBrokeOff,
}

// glanceBrokeOff is the reason recorded for image data whose every
// request in a pass Glance broke off without an answer (errGlanceBrokeOff):
// maybe a limit's 413 the client did not get.
const glanceBrokeOff = "glance-broke-off"

// brokeOffDetail is said of such image data.
const brokeOffDetail = "Glance broke off each request carrying the image data without an answer (a 413 of image_size_cap or a Keystone limit lost in a connection reset, or glance-api or a front end failing: glance-api's log says which)"

// glanceLimit is the reason recorded for image data refused with a 413
// that names no limit.
const glanceLimit = "glance-limit"

// limitReason is the refusal reason of image data the limit (LimitError's
// Limit) refused.
func limitReason(limit string) string {
	if limit != glanceBrokeOff && slices.Contains(limitReasons, limit) {
		return limit
	}
	return glanceLimit
}

// isLimitReason reports whether a refusal reason is a Glance limit's.
func isLimitReason(reason string) bool { return slices.Contains(limitReasons, reason) }

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
	switch why := im.Props[PropSyncRefused]; {
	case why == validator.ReasonSizeMismatch, why == validator.ReasonSHA512Mismatch, why == validator.ReasonImageUnreadable, isLimitReason(why):
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
	case recorded && now.Before(rec.until) && isLimitReason(rec.reason):
		return s.outcome(it, ActionFailed, "", limitBackoffDetail(rec.reason, rec.n, rec.until, "as recorded on the image ("+PropSyncRetryAfter+")")), true
	case recorded && now.Before(rec.until):
		detail := fmt.Sprintf("bytes refused (%s) %d time(s) in a row, as recorded on the image (%s); left queued without data, not downloaded again before %s",
			rec.reason, rec.n, PropSyncRetryAfter, rec.until.UTC().Format(time.RFC3339))
		return s.outcome(it, ActionRefused, rec.reason, detail), true
	case mem && !l.recorded && now.Sub(l.at) < l.wait && isLimitReason(l.reason):
		return s.outcome(it, ActionFailed, "", limitBackoffDetail(l.reason, l.n, l.at.Add(l.wait), "remembered by this process (it could not record it on the image)")), true
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

// limitBackoffDetail is said of an image whose data a Glance limit
// refused, while its back-off holds it off (how: where it is recorded).
func limitBackoffDetail(reason string, n int, until time.Time, how string) string {
	limit := reason
	if reason == glanceLimit {
		limit = "" // limitDetail's "names none"
	}
	if reason == glanceBrokeOff {
		return fmt.Sprintf("transfer: not streamed again before %s: %s, in every attempt of %d pass(es) in a row (%s), %s; once fixed, wait for that time or remove the record to retry at the next pass (docs/glancesync.md, \"Glance quotas and limits\")",
			until.UTC().Format(time.RFC3339), brokeOffDetail, n, glanceBrokeOff, how)
	}
	return fmt.Sprintf("transfer: not streamed again before %s: Glance's limit refused the image data %d time(s) in a row, %s (%s); raise the limit, then wait for that time or remove the record to retry at the next pass (docs/glancesync.md, \"Glance quotas and limits\")",
		until.UTC().Format(time.RFC3339), n, how, limitDetail("data", limit))
}
