package glancesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/validator"
)

// DeactivatedBySquat is the value of imagetrust_deactivated_by
// (crl.PropDeactivatedBy) on a catalogue image the sync deactivated because
// it squats another VO's bound uuid (stopSquat). The CRL job reactivates
// only images marked crl.DeactivatedByHold, so never this one; the sync's
// retiring removes only that mark too, and a pass leaves a deactivated
// image deactivated.
const DeactivatedBySquat = "sync-uuid-squat"

// ActionSquatDeactivate: a catalogue image that squats another VO's bound
// uuid deactivated and marked (stopSquat).
const ActionSquatDeactivate = "squat-deactivate"

// squatOf reports whether im, the catalogue image under the uuid of the
// valid bundle it, squats that uuid, and returns the VO of the record it
// carries: the bundle verified and its uuid is bound to its VO (uuid_seed:
// another VO would need a SHA-1 preimage to claim it), and the image is
// the mirror project's, has data (active or deactivated), and carries the
// record of this uuid of another VO, whose descriptor has no uuid_seed
// (docs/security-model.md, "One image id claimed by two VOs"). A record
// that does not decode, is of another uuid, or is itself bound is no
// proven squat (the gate refuses the first two already); neither is a
// record of the bundle's own VO.
func (s *Syncer) squatOf(im *Image, it *item) (squatter string, ok bool) {
	if it.refused != "" || it.result == nil || !it.result.Valid || it.desc == nil || !it.desc.Bound() {
		return "", false
	}
	if im.ID != it.desc.UUID || im.Owner != s.o.MirrorProject || im.Props[validator.PropAlias] != "" {
		return "", false
	}
	if im.Status != StatusActive && im.Status != StatusDeactivated {
		return "", false
	}
	desc, _, err := validator.RecordBundle(im.Props)
	if err != nil {
		return "", false
	}
	d, err := validator.ParseDescriptor(desc)
	if err != nil || d.UUID != im.ID || d.VO == it.desc.VO || d.UUIDSeed != "" {
		return "", false
	}
	return d.VO, true
}

// squatNew reports whether this Syncer has not reported the squat of image
// id before, and notes that it has.
func (s *Syncer) squatNew(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := !s.squatSeen[id]
	s.squatSeen[id] = true
	return first
}

// stopSquat stops a catalogue image that squats the bound uuid of the
// valid bundle it (squatOf; squatter is the VO of the image's record): it
// marks the image imagetrust_deactivated_by=DeactivatedBySquat and
// deactivates it (the gate boots active images only), writing nothing when
// it is so already (planned only, with DryRun), and refuses the bundle
// (ReasonUUIDSquatted): Glance never frees an id, so the operator deletes
// the image and the owner publishes under a new bound uuid. It is logged
// at ERROR the first time the Syncer finds the image (once a process, or a
// daemon's reload), at INFO on later passes.
func (s *Syncer) stopSquat(ctx context.Context, it *item, im *Image, squatter string, log *slog.Logger, rp *reporter) {
	lvl := slog.LevelInfo
	if s.squatNew(im.ID) {
		lvl = slog.LevelError
	}
	log.Log(ctx, lvl, "catalogue image squats another VO's bound uuid", "squatter_vo", squatter, "owner_vo", it.desc.VO,
		"status", im.Status, "deactivated_by", im.Props[crl.PropDeactivatedBy])
	sq := Outcome{ID: im.ID, VO: squatter, Tag: im.Props[validator.PropTag], Reason: ReasonUUIDSquatted}
	why := fmt.Sprintf("carries VO %s's record without uuid_seed under VO %s's bound uuid (bundle at %s)", squatter, it.desc.VO, it.b.Location)
	marked := im.Props[crl.PropDeactivatedBy] == DeactivatedBySquat
	var done string
	switch {
	case marked && im.Status == StatusDeactivated:
		done = "deactivated by the sync already (" + crl.PropDeactivatedBy + "=" + DeactivatedBySquat + ")"
	case s.o.DryRun:
		done = "would be deactivated and marked " + crl.PropDeactivatedBy + "=" + DeactivatedBySquat
		sq.Action, sq.Detail = ActionSquatDeactivate, why+": would deactivate it and mark it "+crl.PropDeactivatedBy+"="+DeactivatedBySquat
		fmt.Fprintf(s.o.Plan, "%-10s %s %s/%s %s %s\n", sq.Action, sq.ID, sq.VO, sq.Tag, sq.Reason, sq.Detail)
		rp.add(sq)
	default:
		// the mark first, as the CRL job records a hold before it
		// deactivates: a deactivation whose mark failed would leave an
		// image the CRL job may reactivate (crl-hold) or nobody can tell
		// from an operator's; a mark whose deactivation failed is
		// deactivated by the next pass
		err := s.o.Glance.Patch(ctx, im.ID, []PatchOp{{Name: crl.PropDeactivatedBy, Value: DeactivatedBySquat}})
		if err == nil && im.Status == StatusActive {
			err = s.o.Glance.Deactivate(ctx, im.ID)
		}
		switch {
		case errors.Is(err, ErrNotFound):
			log.Warn("squatting image gone since the listing (deleted meanwhile): not deactivated")
			done = "gone since the listing (deleted)"
			sq.Action, sq.Detail = ActionSkipped, "gone since the listing: "+ActionSquatDeactivate+" not needed"
		case err != nil:
			log.Error("cannot deactivate the image squatting another VO's bound uuid; the next pass tries again", "squatter_vo", squatter, "err", err)
			s.m.Errors.Inc()
			rp.fail(im.ID)
			done = "not deactivated (" + err.Error() + "; the next pass tries again)"
			sq.Action, sq.Detail = ActionFailed, why+": deactivation failed: "+err.Error()
		case im.Status == StatusDeactivated:
			// deactivated by an operator or the CRL job (a hold, whose
			// mark this replaces: the job would reactivate it)
			done = "found deactivated, marked by the sync (" + crl.PropDeactivatedBy + "=" + DeactivatedBySquat + ")"
			sq.Action, sq.Detail = ActionSquatDeactivate, why+": found deactivated (was "+crl.PropDeactivatedBy+"="+im.Props[crl.PropDeactivatedBy]+"), marked "+crl.PropDeactivatedBy+"="+DeactivatedBySquat
		default:
			done = "deactivated by the sync (" + crl.PropDeactivatedBy + "=" + DeactivatedBySquat + ")"
			sq.Action, sq.Detail = ActionSquatDeactivate, why+": deactivated, "+crl.PropDeactivatedBy+"="+DeactivatedBySquat
			log.Warn("image squatting another VO's bound uuid deactivated", "squatter_vo", squatter)
		}
		rp.add(sq)
	}
	detail := fmt.Sprintf("the image in Glance under this bound uuid carries VO %s's record without uuid_seed: a squat, %s; Glance never frees an id: the operator deletes the squatting image, and VO %s publishes under a new bound uuid",
		squatter, done, it.desc.VO)
	s.m.Refused.WithLabelValues(ReasonUUIDSquatted).Inc()
	o := s.outcome(it, ActionRefused, ReasonUUIDSquatted, detail)
	if s.o.DryRun {
		fmt.Fprintf(s.o.Plan, "%-10s %s %s/%s %s %s\n", o.Action, o.ID, o.VO, o.Tag, o.Reason, o.Detail)
	}
	rp.add(o)
}

// countSquatted counts the mirror project's catalogue images the sync
// deactivated as squats (imagetrust_deactivated_by=DeactivatedBySquat), in
// any status: each waits for the operator to delete it.
func (s *Syncer) countSquatted(ours []*Image) int {
	n := 0
	for _, im := range ours {
		if im.Owner != "" && im.Owner != s.o.MirrorProject {
			continue
		}
		if im.Props[validator.PropAlias] == "" && im.Props[crl.PropDeactivatedBy] == DeactivatedBySquat {
			n++
		}
	}
	return n
}
