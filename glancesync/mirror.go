package glancesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/crl"
	"github.com/imagetrust/imagetrust/internal/glance"
	"github.com/imagetrust/imagetrust/internal/oserr"
	"github.com/imagetrust/imagetrust/validator"
)

// maxAttempts bounds the transfers of one image in one pass.
const maxAttempts = 3

// cleanupTimeout bounds the Glance calls made after the pass's context ended.
const cleanupTimeout = 30 * time.Second

func (s *Syncer) outcome(it *item, action, reason, detail string) Outcome {
	return Outcome{ID: it.desc.UUID, VO: it.desc.VO, Tag: it.desc.Tag, Location: it.b.Location, Action: action, Reason: reason, Detail: detail}
}

// imageName is the readable Glance name: title (or VO/tag), tag, created date.
func imageName(d *validator.Descriptor) string {
	title := d.Title
	if title == "" {
		title = d.VO + "/" + d.Tag
	}
	return fmt.Sprintf("%s (%s, %s)", title, d.Tag, d.CreatedTime.UTC().Format("2006-01-02"))
}

// createSpec is the new image of a verified bundle: hidden until active.
// Of the descriptor's free-form properties, only those the site's
// image_properties allows are copied (allowedProps).
func (s *Syncer) createSpec(it *item) CreateSpec {
	d := it.desc
	props, _ := s.allowedProps(d)
	if d.OSDistro != "" {
		props["os_distro"] = d.OSDistro
	}
	if d.OSVersion != "" {
		props["os_version"] = d.OSVersion
	}
	if d.Architecture != "" {
		props["architecture"] = d.Architecture
	}
	if d.Description != "" {
		props["description"] = d.Description
	}
	for k, v := range it.record {
		props[k] = v
	}
	delete(props, validator.PropLocalValidity)
	return CreateSpec{
		ID: d.UUID, Name: imageName(d), DiskFormat: d.DiskFormat, ContainerFormat: d.ContainerFormat,
		MinDisk: d.MinDisk, MinRAM: d.MinRAM, Visibility: s.o.VOs[d.VO].Visibility, Hidden: true, Props: props,
	}
}

// planOne prints what a pass would do with a valid bundle (--dry-run).
func (s *Syncer) planOne(it *item, im *Image, rp *reporter) {
	var o Outcome
	var rs recordState
	if im != nil {
		rs = s.compareRecord(im, it)
	}
	switch {
	case im == nil:
		o = s.outcome(it, ActionCreate, "", s.withDropped(it, "create "+imageName(it.desc)+" and stream its bytes"))
	case rs.other:
		if squatter, ok := s.squatOf(im, it); ok {
			s.stopSquat(context.Background(), it, im, squatter, s.log.With("image", im.ID, "vo", it.desc.VO, "tag", it.desc.Tag), rp)
			return
		}
		o = s.outcome(it, ActionRefused, ReasonUUIDImmutable, recordRefusal(im, it, rs, s.o.MirrorProject))
	case s.needsRepair(im, it, rs) && rs.repairable(im, it, s.o.MirrorProject) == "":
		detail := repairDetail(rs, false)
		detail += validityDetail(im, rs)
		o = s.outcome(it, rs.repairAction(), "", s.withDropped(it, detail))
	case s.needsRepair(im, it, rs):
		o = s.outcome(it, ActionRefused, ReasonUUIDImmutable, recordRefusal(im, it, rs, s.o.MirrorProject))
	case im.Status == StatusActive:
		o = s.outcome(it, ActionUnchanged, "", s.withDropped(it, ""))
	case im.Status == StatusQueued && im.Owner == s.o.MirrorProject:
		var refused bool
		if o, refused = s.backedOff(it, im, s.log); !refused {
			o = s.outcome(it, ActionResume, "", "image is "+im.Status)
		}
	default:
		o = s.outcome(it, ActionResume, "", "image is "+im.Status)
	}
	fmt.Fprintf(s.o.Plan, "%-10s %s %s/%s %s %s\n", o.Action, o.ID, o.VO, o.Tag, o.Reason, o.Detail)
	rp.add(o)
}

// checkActive is the whole work on an unchanged, active image: reads only.
func (s *Syncer) checkActive(ctx context.Context, it *item, im *Image, rp *reporter) {
	if err := s.crossCheck(it, im); err != nil {
		s.log.Error("image in Glance does not hash as its descriptor says: deactivating and deleting", "image", im.ID, "err", err)
		s.discard(ctx, im.ID, true)
		s.m.Refused.WithLabelValues(ReasonGlanceHash).Inc()
		rp.add(s.outcome(it, ActionDeleted, ReasonGlanceHash, err.Error()))
		return
	}
	if rs := s.compareRecord(im, it); !rs.intact() {
		s.fixRecord(ctx, it, im, rs, s.log.With("image", im.ID, "vo", it.desc.VO, "tag", it.desc.Tag), rp)
		return
	}
	rp.add(s.outcome(it, ActionUnchanged, "", s.withDropped(it, "")))
}

// recordGaps compares an image's catalogue record with the record of a
// verified bundle (validator.RecordProperties): the record properties the
// image lacks (unset or empty), and those it carries with another value,
// each sorted. imagetrust_global_validity is not compared: after the
// sync's creation it is the CRL job's (docs/catalogue.md).
func recordGaps(im *Image, it *item) (missing, differs []string) {
	for k, v := range it.record {
		if k == validator.PropGlobalValidity {
			continue
		}
		switch got := im.Props[k]; {
		case got == "":
			missing = append(missing, k)
		case got != v:
			differs = append(differs, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(differs)
	return missing, differs
}

// recordState is how an image's catalogue record compares with the record
// of the verified bundle of its uuid (compareRecord).
type recordState struct {
	// missing are the record properties the image lacks (unset or empty).
	missing []string
	// changed are the record properties it carries with another value
	// than the bundle's (when other is false: edited in Glance).
	changed []string
	// other: its imagetrust_descriptor or imagetrust_signature is there
	// and is not the bundle's: another record under the uuid.
	other bool
	// drop are the descriptor's free-form properties the site's
	// image_properties refuses that the image carries with the
	// descriptor's value, and restore those it allows that the image
	// lacks (propDrift; not compared with another record).
	drop, restore []string
}

// intact reports whether the image carries the bundle's whole record, and
// of its free-form properties exactly those the site's policy allows.
func (rs recordState) intact() bool {
	return rs.recordIntact() && len(rs.drop) == 0 && len(rs.restore) == 0
}

// recordIntact reports whether the image carries the bundle's whole
// record, whatever its free-form properties.
func (rs recordState) recordIntact() bool {
	return !rs.other && len(rs.missing) == 0 && len(rs.changed) == 0
}

// repairAction is the action of a repair of rs: a record repair, or with
// the record intact a repair of free-form properties only.
func (rs recordState) repairAction() string {
	if rs.recordIntact() {
		return ActionProperties
	}
	return ActionRepair
}

// repairable says why the bundle's record cannot be written on im, or ""
// when it can (repairRecord): it is not another record, the image is the
// mirror project's, it carries none of the properties with which Nova
// boots something else (validator.UnsignedBootProps), and Glance's data of
// it is the bundle's (dataIsBundle).
func (rs recordState) repairable(im *Image, it *item, mirror string) string {
	switch {
	case rs.other:
		return "it carries another record"
	case im.Owner != mirror:
		return "the image is not the mirror project's"
	case rs.recordIntact():
		// only free-form properties to remove or write back: the record
		// the proxy and the CRL job judge is the bundle's already
		return ""
	}
	if extra := validator.UnsignedBootProps(im.Props); len(extra) > 0 {
		return "it carries " + strings.Join(extra, ", ") + ", which no signed record sets"
	}
	return dataIsBundle(im, it.desc)
}

// compareRecord compares an image's catalogue record with the verified
// bundle's. Which signed properties were edited is decided by the
// validator's own comparison (validator.RecordTampered, what the proxy
// refuses as record-tampered), on the record as it would be with what is
// missing restored, so that an image the sync finds intact is one the
// proxy does not refuse as tampered; recordGaps adds the record's other
// properties (imagetrust_record_version) and finds another descriptor or
// signature.
func (s *Syncer) compareRecord(im *Image, it *item) recordState {
	missing, differs := recordGaps(im, it)
	rs := recordState{missing: missing, changed: differs,
		other: slices.Contains(differs, validator.PropDescriptor) || slices.Contains(differs, validator.PropSignature)}
	if rs.other {
		return rs
	}
	rs.drop, rs.restore = s.propDrift(im, it.desc)
	props := make(map[string]string, len(im.Props)+len(missing))
	for k, v := range im.Props {
		props[k] = v
	}
	for _, k := range missing {
		props[k] = it.record[k]
	}
	tampered, err := validator.RecordTampered(it.result, props)
	if err != nil {
		// judge made it.record from this very Result: not reached
		s.log.Error("cannot compare the image's record with the verified bundle's", "image", im.ID, "err", err)
	}
	for _, k := range tampered {
		if !slices.Contains(rs.changed, k) {
			rs.changed = append(rs.changed, k)
		}
	}
	slices.Sort(rs.changed)
	return rs
}

// needsRepair reports whether the record of im is for fixRecord: another
// record, a lost one (its descriptor or signature gone), or the bundle's
// record in part missing or edited on an image with data (active or
// deactivated). A queued (importing …) image carrying the bundle's
// descriptor and signature is still the sync's to fill: it gets its bytes,
// and its record is repaired once it is active.
func (s *Syncer) needsRepair(im *Image, it *item, rs recordState) bool {
	if rs.intact() {
		return false
	}
	return rs.other || !s.sameRecord(im, it) || im.Status == StatusActive || im.Status == StatusDeactivated
}

// repairDetail is the detail of a record-repair outcome.
func repairDetail(rs recordState, done bool) string {
	var parts []string
	verb := map[bool][2]string{false: {"rewrite", "restore"}, true: {"rewrote", "restored"}}[done]
	if len(rs.changed) > 0 {
		parts = append(parts, verb[0]+" "+strings.Join(rs.changed, ", ")+" (edited in Glance)")
	}
	if len(rs.missing) > 0 {
		parts = append(parts, verb[1]+" "+strings.Join(rs.missing, ", ")+" (unset)")
	}
	var out string
	if len(parts) > 0 {
		out = strings.Join(parts, " and ") + " from the verified bundle"
	}
	if p := propsDetail(rs, done); p != "" {
		if out != "" {
			out += "; "
		}
		out += p
	}
	return out
}

// propsDetail is the part of a repair's detail that concerns the
// descriptor's free-form properties ("" when none is written).
func propsDetail(rs recordState, done bool) string {
	verb := map[bool][2]string{false: {"remove", "write back"}, true: {"removed", "wrote back"}}[done]
	var parts []string
	if len(rs.drop) > 0 {
		parts = append(parts, verb[0]+" "+strings.Join(rs.drop, ", ")+" (refused by image_properties)")
	}
	if len(rs.restore) > 0 {
		parts = append(parts, verb[1]+" "+strings.Join(rs.restore, ", ")+" (allowed by image_properties, unset)")
	}
	return strings.Join(parts, " and ")
}

// dataIsBundle says why Glance's data of im cannot be taken for the signed
// image of d, or "" when it can: Glance's own sha512 (os_hash_algo and
// os_hash_value, which Glance computed as it stored the bytes) and size
// equal the descriptor's, on an image that holds its data.
func dataIsBundle(im *Image, d *validator.Descriptor) string {
	switch {
	case im.Status != StatusActive && im.Status != StatusDeactivated:
		return "the image is " + im.Status + ", without data to compare with the signed sha512"
	case im.Props["os_hash_algo"] != "sha512":
		return fmt.Sprintf("Glance hashes the image with %q, not sha512: its data cannot be compared with the signed sha512", im.Props["os_hash_algo"])
	case im.Props["os_hash_value"] != d.SHA512:
		return "Glance's os_hash_value differs from the signed sha512"
	case im.Size != d.Size:
		return fmt.Sprintf("Glance's size %d differs from the signed size %d", im.Size, d.Size)
	}
	return ""
}

// recordRefusal is the detail of a uuid-immutable refusal: another record,
// or the bundle's record lost or edited on an image where it cannot be
// restored (repairable says why).
func recordRefusal(im *Image, it *item, rs recordState, mirror string) string {
	if rs.other {
		return "the image in Glance carries another record under this uuid (" + strings.Join(rs.changed, ", ") + " differ from the bundle's); uuids are immutable: the publisher must register a new uuid"
	}
	why := rs.repairable(im, it, mirror)
	if len(rs.changed) == 0 {
		return "the image in Glance has lost its signed record (" + strings.Join(rs.missing, ", ") + " unset), and it is not restored: " + why
	}
	what := strings.Join(rs.changed, ", ") + " edited"
	if len(rs.missing) > 0 {
		what += "; " + strings.Join(rs.missing, ", ") + " unset"
	}
	return "the image in Glance carries the bundle's record, edited (" + what + "; the proxy refuses it as record-tampered), and it is not restored: " + why
}

// fixRecord restores the bundle's record on im (repairRecord) when it can
// (repairable), and otherwise refuses the bundle (refuseRecord).
func (s *Syncer) fixRecord(ctx context.Context, it *item, im *Image, rs recordState, log *slog.Logger, rp *reporter) {
	if rs.repairable(im, it, s.o.MirrorProject) == "" {
		s.repairRecord(ctx, it, im, log, rp)
		return
	}
	s.refuseRecord(it, im, rs, log, rp)
}

// repairRecord restores the catalogue record of an image of the mirror
// project that lost it, or part of it, or whose signed properties were
// edited (an operator's `openstack image unset` or `set --property`, a
// script gone wrong): without it the proxy refuses the image (no record,
// record-tampered), the CRL job skips an image without a record, and every
// pass would refuse the bundle. The record properties missing or edited
// are written with the verified bundle's values, and only when the image
// does not carry another descriptor or signature, and Glance's own sha512
// and size of the image's data equal the signed ones, all read again now:
// the record is then the bundle's record of these very bytes, derived from
// signed bytes only. imagetrust_local_validity, the site's, is never
// written here, and imagetrust_global_validity, the CRL job's, is never
// set: a repair only removes it, when it says valid and a property the CRL
// job's judgement reads (crl.JudgedProperties: imagetrust_record_version,
// imagetrust_chain, imagetrust_image_not_before, imagetrust_signature) is
// among those restored (dropValid). While one of those was lost or edited
// the CRL job skipped the image (no record) or judged what it then
// carried, not the signed record, so a valid flag from before says nothing
// of the restored record; kept, it would let the proxy boot the image
// until the CRL job's next run even if a certificate of its chains was
// revoked meanwhile. Without it the proxy refuses the image (global
// validity missing), as it refuses any image whose revocation state nobody
// has judged, until the CRL job judges the restored record at its next run
// and writes the flag. When only other properties were (imagetrust_vo,
// imagetrust_uri, imagetrust_image_not_after, imagetrust_descriptor …),
// the CRL job judged the very properties the repair leaves as they are,
// and its valid flag is kept: the image boots again at once. A revoked,
// hold or unknown flag is always kept: each refuses, and the CRL job's
// next run judges the image again.
func (s *Syncer) repairRecord(ctx context.Context, it *item, listed *Image, log *slog.Logger, rp *reporter) {
	im, err := s.o.Glance.Get(ctx, listed.ID)
	if err != nil {
		s.opFailed(log, it, "get", err, rp)
		return
	}
	rs := s.compareRecord(im, it)
	if rs.intact() {
		rp.add(s.outcome(it, ActionUnchanged, "", "record already restored"))
		return
	}
	if rs.repairable(im, it, s.o.MirrorProject) != "" {
		// changed since it was listed: refused as a lost or other record is
		s.refuseRecord(it, im, rs, log, rp)
		return
	}
	ops := make([]PatchOp, 0, len(rs.missing)+len(rs.changed)+len(rs.drop)+len(rs.restore))
	for _, k := range slices.Concat(rs.changed, rs.missing) {
		if k == validator.PropGlobalValidity || k == validator.PropLocalValidity {
			continue // never the sync's to write after creation
		}
		ops = append(ops, PatchOp{Name: k, Value: it.record[k]})
	}
	// in the same PATCH: a refused property goes only while it still has
	// the descriptor's value (another is an operator's)
	for _, k := range rs.drop {
		ops = append(ops, PatchOp{Name: k, Remove: true, IfValue: it.desc.Properties[k]})
	}
	for _, k := range rs.restore {
		ops = append(ops, PatchOp{Name: k, Value: it.desc.Properties[k]})
	}
	detail := repairDetail(rs, true)
	drop := dropValid(im, rs)
	if drop {
		// only while it says valid: the CRL job may write revoked meanwhile
		ops = append(ops, PatchOp{Name: validator.PropGlobalValidity, Remove: true, IfValue: validator.GlobalValid})
	}
	detail += validityDetail(im, rs)
	if s.apply(ctx, im.ID, ops, s.outcome(it, "", "", ""), rs.repairAction(), s.withDropped(it, detail), rp) {
		if len(rs.drop) > 0 {
			s.m.DroppedProps.WithLabelValues(it.desc.VO).Add(float64(len(rs.drop)))
			log.Warn("descriptor properties the site's image_properties refuses removed from the image (their values were the descriptor's)", "removed", rs.drop)
		}
		if len(rs.restore) > 0 {
			log.Info("descriptor properties the site's image_properties allows written back to the image", "written_back", rs.restore)
		}
		if rs.recordIntact() {
			return
		}
		s.m.Repaired.Inc()
		if len(rs.changed) > 0 {
			log.Warn("catalogue record properties edited in Glance rewritten from the verified bundle (the proxy refused the image as record-tampered); find who edits imagetrust_* properties", "changed", rs.changed, "restored", rs.missing,
				"global_validity", im.Props[validator.PropGlobalValidity], "global_validity_removed", drop)
		} else {
			log.Warn("catalogue record restored from the verified bundle: the image had lost it (removed by hand?); its global validity is the CRL job's to write", "restored", rs.missing,
				"global_validity", im.Props[validator.PropGlobalValidity], "global_validity_removed", drop)
		}
	}
}

// dropValid reports whether a repair of im, whose record compares with
// the bundle's as rs, removes its imagetrust_global_validity: only a valid
// flag, the one that lets the proxy boot the image, and only when a
// property the CRL job's judgement reads (crl.JudgedProperties) is missing
// or edited: the valid flag was then not given to the record the repair
// restores (repairRecord).
func dropValid(im *Image, rs recordState) bool {
	if im.Props[validator.PropGlobalValidity] != validator.GlobalValid {
		return false
	}
	for _, k := range slices.Concat(rs.missing, rs.changed) {
		if slices.Contains(crl.JudgedProperties, k) {
			return true
		}
	}
	return false
}

// droppedValid ends the detail of a repair that removes a valid flag, and
// keptValid that of one that keeps it.
const (
	droppedValid = "; " + validator.PropGlobalValidity + "=valid removed: a property the CRL job judges was restored, the CRL job judges the restored record at its next run, the proxy refuses the image until then"
	keptValid    = "; " + validator.PropGlobalValidity + "=valid kept: the CRL job judges none of these properties"
)

// validityDetail is what a repair of im does with a valid flag (dropValid).
func validityDetail(im *Image, rs recordState) string {
	switch {
	case im.Props[validator.PropGlobalValidity] != validator.GlobalValid, rs.recordIntact():
		return ""
	case dropValid(im, rs):
		return droppedValid
	}
	return keptValid
}

// refuseRecord reports a bundle whose image carries another record, or
// lost or edited its record and cannot have it restored (uuid-immutable).
func (s *Syncer) refuseRecord(it *item, im *Image, rs recordState, log *slog.Logger, rp *reporter) {
	detail := recordRefusal(im, it, rs, s.o.MirrorProject)
	switch {
	case rs.other:
		log.Error("uuids are immutable: the image in Glance carries another descriptor or signature; bundle refused", "status", im.Status, "differ", rs.changed)
	case len(rs.changed) > 0:
		log.Error("the image in Glance carries the bundle's record with signed properties edited, and it cannot be restored from the bundle; bundle refused (the proxy refuses the image as record-tampered)", "status", im.Status, "changed", rs.changed, "unset", rs.missing, "why", detail)
	default:
		log.Error("the image in Glance has lost its signed record and it cannot be restored from the bundle; bundle refused (the proxy refuses the image)", "status", im.Status, "unset", rs.missing, "why", detail)
	}
	s.m.Refused.WithLabelValues(ReasonUUIDImmutable).Inc()
	rp.add(s.outcome(it, ActionRefused, ReasonUUIDImmutable, detail))
}

// crossCheck compares Glance's own hash and size with the descriptor's.
func (s *Syncer) crossCheck(it *item, im *Image) error {
	algo, val := im.Props["os_hash_algo"], im.Props["os_hash_value"]
	if im.Size != 0 && im.Size != it.desc.Size {
		return fmt.Errorf("glance size %d, descriptor %d", im.Size, it.desc.Size)
	}
	if algo != "sha512" {
		s.log.Warn("glance does not hash with sha512: cannot cross-check", "image", im.ID, "os_hash_algo", algo)
		return nil
	}
	if val != it.desc.SHA512 {
		return fmt.Errorf("glance os_hash_value %.16s… differs from the descriptor's sha512", val)
	}
	return nil
}

// discard deactivates (if asked) and deletes an image, with a fresh context
// so that it runs even when the pass is being cancelled.
func (s *Syncer) discard(ctx context.Context, id string, deactivate bool) {
	s.markSpent(id, "deleted by this sync")
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if deactivate {
		if err := s.o.Glance.Deactivate(cctx, id); err != nil {
			s.log.Error("deactivate failed", "image", id, "err", err)
		}
	}
	if err := s.o.Glance.Delete(cctx, id); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("delete failed", "image", id, "err", err)
	}
}

// mirror brings one valid bundle to an active image, from whatever state a
// previous (possibly killed) run or a racing sync left it in.
func (s *Syncer) mirror(ctx context.Context, it *item, im *Image, mode ingest, rp *reporter) {
	log := s.log.With("image", it.desc.UUID, "vo", it.desc.VO, "tag", it.desc.Tag)
	if why, spent := s.spentWhy(it.desc.UUID); spent && im == nil {
		log.Error("the bundle's uuid is spent in Glance and can never be reused", "why", why)
		s.m.Refused.WithLabelValues(ReasonIDDeleted).Inc()
		detail := why + "; " + deletedDetail
		if why == unavailableDetail {
			detail = why
		}
		rp.add(s.outcome(it, ActionRefused, ReasonIDDeleted, detail))
		return
	}
	created := false
	if im == nil {
		got, err := s.o.Glance.Get(ctx, it.desc.UUID)
		switch {
		case errors.Is(err, ErrNotFound):
			got, created, err = s.create(ctx, it)
			if err != nil {
				if !errors.Is(err, errReported) {
					s.opFailed(log, it, "create", err, rp)
				} else {
					rp.add(s.outcome(it, ActionRefused, ReasonIDDeleted, unavailableDetail))
				}
				return
			}
			if created {
				log.Info("image created", "name", got.Name)
			} else {
				log.Info("image created by another sync meanwhile", "name", got.Name, "status", got.Status)
			}
		case err != nil:
			s.opFailed(log, it, "get", err, rp)
			return
		}
		im = got
	}
	if im.Owner != s.o.MirrorProject {
		log.Error("id squatting: an image with the bundle's uuid belongs to another project; it is left untouched", "owner", im.Owner, "status", im.Status)
		s.m.Refused.WithLabelValues(ReasonSquatted).Inc()
		rp.add(s.outcome(it, ActionRefused, ReasonSquatted, "owned by project "+im.Owner))
		return
	}
	if rs := s.compareRecord(im, it); s.needsRepair(im, it, rs) {
		if squatter, ok := s.squatOf(im, it); rs.other && ok {
			// another VO's unbound record under the bundle's bound uuid
			s.stopSquat(ctx, it, im, squatter, log, rp)
			return
		}
		// another record (refused), or the bundle's record lost or
		// edited on an image with data: restored, then nothing else to do
		s.fixRecord(ctx, it, im, rs, log, rp)
		return
	}
	start := s.o.Now()
	refreshed := false
	// the pass's stages and uploads, and those Glance broke off without an
	// answer
	transfers, brokenOff := 0, 0
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			rp.add(s.outcome(it, ActionSkipped, "", "cancelled while "+im.Status))
			return
		}
		var err error
		switch im.Status {
		case StatusActive:
			if err := s.crossCheck(it, im); err != nil {
				log.Error("imported image does not hash as its descriptor says: deactivating and deleting", "err", err)
				s.discard(ctx, im.ID, true)
				s.m.Refused.WithLabelValues(ReasonGlanceHash).Inc()
				rp.add(s.outcome(it, ActionDeleted, ReasonGlanceHash, err.Error()))
				return
			}
			s.forgetLeft(im.ID)
			s.m.Mirrored.Inc()
			s.m.Transfer.Observe(s.o.Now().Sub(start).Seconds())
			log.Info("image mirrored", "seconds", s.o.Now().Sub(start).Seconds())
			rp.add(s.outcome(it, ActionMirrored, "", s.withDropped(it, "")))
			return
		case StatusQueued:
			if !created && !refreshed {
				// as it is now, not as listed when the pass began (maybe
				// hours ago, behind other transfers): its refusal record,
				// and the updated_at that recordRefusal compares with
				got, gerr := s.o.Glance.Get(ctx, im.ID)
				if gerr != nil {
					s.opFailed(log, it, "get", gerr, rp)
					return
				}
				im, refreshed = got, true
				if im.Status != StatusQueued {
					continue
				}
			}
			if !created {
				if o, ok := s.backedOff(it, im, log); ok {
					if o.Action == ActionFailed {
						// a Glance limit's refusal: an error of the pass
						// until raised, not a refused bundle
						s.m.Errors.Inc()
						rp.fail(it.desc.UUID)
					}
					rp.add(o)
					return
				}
			}
			if !created && s.o.Now().Sub(im.UpdatedAt) < s.o.ResumeAfter {
				// Created or interrupted moments ago: another sync may be
				// about to stage it, and two concurrent stages of one image
				// can leave Glance with orphan staging data.
				log.Info("queued image is recent; leaving it to whoever created it", "updated", im.UpdatedAt)
				rp.add(s.outcome(it, ActionElsewhere, "", "queued since "+im.UpdatedAt.UTC().Format(time.RFC3339)))
				return
			}
			created = true // from here on this pass owns the transfer
			transfers++
			err = s.transfer(ctx, it, im, mode.stage, log)
			if errors.Is(err, ErrStagedData) {
				if len(s.o.Sync.Stores) > 1 {
					s.stagedData(ctx, it, im, err, log, rp)
					return
				}
				// Glance keeps the staged data of an import its task
				// refused and refuses every new stage: upload instead
				log.Warn("Glance keeps staged data of an import it refused and refuses a new stage; uploading the image instead (PUT /file, verified as it streams)", "err", err)
				if got, gerr := s.o.Glance.Get(ctx, im.ID); gerr == nil && got.Status == StatusQueued {
					im = got // as the refused stage left it: refusedStream compares its updated_at
				}
				if err = s.transfer(ctx, it, im, false, log); err != nil {
					err = fmt.Errorf("%s; the upload in its place: %w", stagedUploadDetail, err)
				}
			}
			var vf *validator.VerificationFailure
			if errors.As(err, &vf) {
				s.refusedStream(ctx, it, im, vf, err, log, rp)
				return
			}
			if errors.Is(err, ErrConflict) {
				log.Info("another sync is uploading this image; leaving it to it")
				rp.add(s.outcome(it, ActionElsewhere, "", "staging"))
				return
			}
		case StatusUploading:
			if im.Size == 0 && it.desc.Size != 0 {
				// A stage in progress (Glance sets the size when it ends), or
				// a broken one Glance has not noticed yet.
				if s.stale(im) {
					log.Error("stage stuck; reclaiming the image (deleted: its uuid is spent)", "since", im.UpdatedAt)
					s.discard(ctx, im.ID, false)
					s.m.Refused.WithLabelValues(ReasonStaleReclaimed).Inc()
					rp.add(s.outcome(it, ActionDeleted, ReasonStaleReclaimed, "stage stuck since "+im.UpdatedAt.UTC().Format(time.RFC3339)))
					return
				}
				if !created && s.stageLost(im, it.desc.Size) {
					// No sync's stream of this size lasts that long (the
					// transfer bound breaks it off, and Glance then
					// restores queued): Glance lost the stage, as a
					// glance-api stopped or killed mid-stage leaves it.
					log.Error("stage lost: the image is uploading for longer than any transfer of it may take (glance-api stopped mid-stage leaves it so); it is reclaimed (deleted, its uuid spent) once stale_after has passed, or delete it now and publish a new uuid", "since", im.UpdatedAt, "transfer_bound", s.transferLimit(it.desc.Size))
					s.m.Errors.Inc()
					rp.fail(it.desc.UUID)
					rp.add(s.outcome(it, ActionFailed, "", "stage lost: uploading since "+im.UpdatedAt.UTC().Format(time.RFC3339)))
					return
				}
				if attempt >= maxAttempts+2 {
					rp.add(s.outcome(it, ActionElsewhere, "", "stage in progress"))
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
				break
			}
			// Only a verified stream can complete a stage (see stream.go),
			// so staged data of the full size is the signed image.
			if im.Size != it.desc.Size {
				log.Error("staged data has the wrong size: image deleted, its uuid is spent", "staged", im.Size, "want", it.desc.Size)
				s.discard(ctx, im.ID, false)
				rp.add(s.outcome(it, ActionDeleted, validator.ReasonSizeMismatch, "staged data of the wrong size"))
				return
			}
			if !mode.canImport {
				// Staged while Glance offered glance-direct; it no longer
				// does: the data can't be imported, and deleting would
				// spend the uuid.
				log.Error("image staged and verified, but Glance no longer offers glance-direct: enable it again (enabled_import_methods) so that a pass imports it, or delete the image (which spends its uuid)")
				s.m.Errors.Inc()
				rp.fail(it.desc.UUID)
				rp.add(s.outcome(it, ActionFailed, "", "staged, not imported: Glance does not offer glance-direct"))
				return
			}
			err = s.importRoom(ctx, im.ID, im.Size)
			if err == nil {
				err = s.o.Glance.ImportGlanceDirect(ctx, im.ID, s.o.Sync.Stores)
			}
			if errors.Is(err, ErrConflict) {
				err = nil // someone else started the import: wait for it
			}
			if err == nil {
				err = s.waitImport(ctx, im.ID)
			}
		case StatusImporting, StatusSaving:
			if s.stale(im) {
				log.Error("image stuck; reclaiming it (deleted: its uuid is spent)", "status", im.Status, "since", im.UpdatedAt)
				s.discard(ctx, im.ID, false)
				s.m.Refused.WithLabelValues(ReasonStaleReclaimed).Inc()
				rp.add(s.outcome(it, ActionDeleted, ReasonStaleReclaimed, "stuck "+im.Status+" since "+im.UpdatedAt.UTC().Format(time.RFC3339)))
				return
			}
			if f := importFailure(im); f != "" {
				s.opFailed(log, it, "import", errors.New(f), rp)
				return
			}
			timeout := s.o.ImportTimeout
			if !created {
				// Found being written when the pass began: another sync's
				// write, or one Glance lost (glance-api killed mid-upload
				// leaves an image saving for ever). Waited for only
				// briefly: a lost one would hold every pass for
				// ImportTimeout, and end it as if all were well.
				timeout = min(timeout, busyWait)
			}
			err = s.waitImportFor(ctx, im.ID, timeout)
			if errors.Is(err, errStillBusy) {
				if since := s.o.Now().Sub(im.UpdatedAt); since > s.o.ImportTimeout {
					log.Error("image busy for longer than an import may take: Glance may have lost its write; it is reclaimed (deleted, its uuid spent) once stale_after has passed, or delete it now and publish a new uuid", "status", im.Status, "since", im.UpdatedAt)
					s.m.Errors.Inc()
					rp.fail(it.desc.UUID)
					rp.add(s.outcome(it, ActionFailed, "", "stuck "+im.Status+" since "+im.UpdatedAt.UTC().Format(time.RFC3339)))
					return
				}
				log.Info("image being written elsewhere; left to it", "status", im.Status, "since", im.UpdatedAt)
				rp.add(s.outcome(it, ActionElsewhere, "", im.Status))
				return
			}
			var ierr *importFailedError
			if errors.As(err, &ierr) || errors.Is(err, ErrOverQuota) {
				s.opFailed(log, it, "import", err, rp)
				return
			}
		case StatusKilled:
			log.Error("glance killed the image; deleting it (its uuid is spent)")
			s.discard(ctx, im.ID, false)
			rp.add(s.outcome(it, ActionDeleted, ReasonKilled, ""))
			return
		case StatusDeactivated:
			if im.Props[crl.PropDeactivatedBy] == DeactivatedBySquat {
				// its owner's bound bundle is no longer listed
				rp.add(s.outcome(it, ActionUnchanged, ReasonDeactivated, "deactivated by the sync as a squat of another VO's bound uuid ("+crl.PropDeactivatedBy+"="+DeactivatedBySquat+"); left alone: the operator deletes it"))
				return
			}
			rp.add(s.outcome(it, ActionUnchanged, ReasonDeactivated, "deactivated by an operator or the CRL job; left alone"))
			return
		default:
			rp.add(s.outcome(it, ActionSkipped, "", "status "+im.Status))
			return
		}
		if err != nil && ctx.Err() != nil {
			rp.add(s.outcome(it, ActionSkipped, "", "cancelled; Glance returns an interrupted stage to queued and the next pass resumes it"))
			return
		}
		if errors.Is(err, errGlanceBrokeOff) {
			brokenOff++
		}
		var ierr *importFailedError
		if err != nil && (attempt >= maxAttempts || errors.Is(err, ErrTransferTooSlow) || errors.Is(err, ErrTooManyResumes) ||
			errors.Is(err, ErrAddressRefused) || errors.Is(err, ErrOverQuota) || errors.Is(err, ErrHungFS) || errors.As(err, &ierr)) {
			// a source too slow, or cutting its connections too often, is
			// not tried again in this pass: it would hold the pass up; nor
			// is an image whose address no source may reach; nor
			// is what a Glance limit refused (trying again, or waiting
			// for the image, helps nothing: the error says what to
			// raise), nor an import Glance failed, nor an image whose
			// directory source's file system did not answer (a hung
			// mount: its goroutine is left behind, see hung.go)
			if errors.Is(err, ErrHungFS) {
				s.m.HungFS.Inc()
			}
			op := "transfer"
			var le *LimitError
			if ierr != nil || errors.As(err, &le) && (le.Step == "import" || le.Step == "import-check" || le.Step == "task") {
				op = "import"
			}
			reason := ""
			switch {
			case le != nil && le.Step == "data":
				reason = limitReason(le.Limit)
			case attempt >= maxAttempts && brokenOff >= 2 && brokenOff == transfers:
				// each stream of the pass (two or more; Glance may show
				// the image busy for an attempt) broken off by Glance's
				// side: as likely a limit's 413 lost in a reset as a
				// glitch
				reason = glanceBrokeOff
				err = fmt.Errorf("%s: %w", brokeOffDetail, err)
			}
			if reason != "" {
				if wait, ok := s.limitRefused(ctx, im, reason, log); ok {
					err = fmt.Errorf("not streamed again for %s (back-off): %w", wait, err)
				}
			}
			s.opFailed(log, it, op, err, rp)
			return
		}
		if err != nil {
			log.Warn("transfer attempt failed; retrying", "attempt", attempt, "err", err)
		}
		got, gerr := s.o.Glance.Get(ctx, im.ID)
		if gerr != nil {
			s.opFailed(log, it, "get", gerr, rp)
			return
		}
		im = got
	}
}

// refusedStream handles a stream whose bytes did not verify (short, long,
// or hashing wrong). The stream broke off before its last bytes, so Glance
// failed the stage or upload and returned the image to queued without data:
// the image is left so (never active, its uuid kept), and retried after a
// back-off, since one bad serving (a stale or hostile mirror, a cut
// connection, a file still being copied) must not spend the uuid for ever.
// Only when Glance nevertheless holds data for it (it accepted a stream the
// sync did not verify) is the image deleted.
func (s *Syncer) refusedStream(ctx context.Context, it *item, im *Image, vf *validator.VerificationFailure, err error, log *slog.Logger, rp *reporter) {
	reason := validator.ReasonImageUnreadable
	if len(vf.Reasons) > 0 {
		reason = vf.Reasons[0]
	}
	s.m.Refused.WithLabelValues(reason).Inc()
	got, held, handled := s.settled(ctx, im.ID, im.UpdatedAt)
	if held {
		log.Error("image bytes do not match the signed descriptor and Glance holds data for the image: image deleted, its uuid is spent", "reason", reason, "status", got.Status, "size", got.Size, "err", err)
		s.discard(ctx, im.ID, got.Status == StatusActive)
		rp.add(s.outcome(it, ActionRefused, reason, err.Error()+"; Glance held unverified data: image deleted"))
		return
	}
	prior := 0
	if rec, ok := s.readRefusal(im); ok {
		prior = rec.n
	}
	now := s.o.Now()
	n, wait, why := s.markLeft(im.ID, now, reason, err.Error(), prior)
	if s.recordRefusal(ctx, got, handled, n, now.Add(wait), reason, log) {
		s.markRecorded(im.ID)
	}
	if errors.Is(err, ErrImageShort) {
		log.Warn("image shorter than the signed descriptor (still being copied?): left queued, retried by a later pass", "err", err, "retry_after", wait)
	} else {
		log.Error("image bytes served do not match the signed descriptor: left queued without data, retried by a later pass", "reason", reason, "err", err, "retry_after", wait)
	}
	rp.add(s.outcome(it, ActionRefused, reason, why))
}

// limitRefused starts or extends the back-off of an image whose data a
// Glance limit refused (413 to its stage or upload: reason is the limit's
// name), or whose every stream of the pass Glance's side broke off
// without an answer (glanceBrokeOff: maybe such a 413 lost in a reset),
// so that later passes do not stream it again (image_size_cap reads the
// cap's worth first; a Keystone limit, a few socket buffers' worth) before
// the limit may have been raised: the back-off of refusedStream, the
// reason recorded on the image. Glance (Zed) returns the image to queued,
// data-less, before it answers 413, so then the record is written at
// once; a broken-off stream is waited for as refusedStream waits
// (settled). Only a queued, data-less image is backed off (user_storage_quota
// leaves it saving: stale_after deals with that); the record, when it
// cannot be written, is this process's memory.
func (s *Syncer) limitRefused(ctx context.Context, im *Image, reason string, log *slog.Logger) (time.Duration, bool) {
	var got *Image
	handled := true
	if reason == glanceBrokeOff {
		var held bool
		if got, held, handled = s.settled(ctx, im.ID, im.UpdatedAt); held {
			return 0, false
		}
	} else {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		var err error
		if got, err = s.o.Glance.Get(cctx, im.ID); err != nil {
			return 0, false
		}
	}
	if got.Status != StatusQueued || got.Size != 0 {
		return 0, false
	}
	prior := 0
	if rec, ok := s.readRefusal(im); ok {
		prior = rec.n
	}
	now := s.o.Now()
	n, wait, _ := s.markLeft(im.ID, now, reason, "", prior)
	if s.recordRefusal(ctx, got, handled, n, now.Add(wait), reason, log) {
		s.markRecorded(im.ID)
	}
	log.Warn("image data refused by a Glance limit, or broken off by Glance: not streamed again before the back-off has passed", "reason", reason, "retry_after", wait, "refusals", n)
	return wait, true
}

// settleTimeout bounds the wait for Glance to notice a broken-off stream.
const settleTimeout = 20 * time.Second

// unseenWait bounds the wait for a sign that Glance handled a broken-off
// stream (settled) once the image reads queued without one: the stream may
// have gone into socket buffers before Glance began to read it.
var unseenWait = 2 * time.Second

// settled waits (up to settleTimeout) for Glance to have handled a stream
// the sync broke off, and reports whether Glance holds data for the image
// (it is active, or has a size: staged or stored bytes), and whether
// Glance has visibly handled the stream: the image was seen busy (saving,
// uploading, importing) and then not, or its updated_at moved past before,
// its value when the stream began (Glance's handler saves the image when it
// takes the stream and when it returns the image to queued). A queued
// image without that sign is read again for up to unseenWait. An image
// Glance still shows busy, or that cannot be read, counts as holding none:
// it is not deleted on a guess; a later pass sees its state.
func (s *Syncer) settled(ctx context.Context, id string, before time.Time) (im *Image, held, handled bool) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	wait := firstImportPoll
	sawBusy := false
	start := time.Now()
	for {
		im, err := s.o.Glance.Get(cctx, id)
		if err != nil {
			s.log.Warn("cannot read the image after its stream was refused", "image", id, "err", err)
			return &Image{ID: id}, false, false
		}
		if im.Status == StatusActive || im.Size > 0 {
			return im, true, true
		}
		switch im.Status {
		case StatusSaving, StatusUploading, StatusImporting:
			sawBusy = true
		case StatusQueued:
			if sawBusy || im.UpdatedAt.After(before) {
				return im, false, true
			}
			if time.Since(start) >= unseenWait {
				return im, false, false
			}
		default:
			return im, false, false
		}
		select {
		case <-cctx.Done():
			s.log.Warn("glance has not yet noticed the refused stream; left to a later pass", "image", id, "status", im.Status)
			return im, false, false
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

const deletedDetail = "Glance has this id as deleted: a deleted image id can never be used again (only glance-manage db purge_images_table frees it); the publisher must register the image under a new uuid"

// unavailableDetail is said of an id Glance refuses to create (409) and
// does not show (404): with a mirror user that is not an admin, another
// project's private image looks exactly like a deleted id.
const unavailableDetail = "the id exists in Glance but is not visible to the mirror project (another project's private image: an admin sees its owner with `openstack image show ID`), or was deleted (a deleted id can never be used again); do not delete another project's image to free the id: that spends it for ever; the publisher must register the image under a new uuid"

var errReported = errors.New("reported")

// create creates the image of a bundle; a 409 means the id exists: another
// sync created it a moment ago (returned), or it was deleted or belongs to
// a project the mirror user cannot see (errReported).
func (s *Syncer) create(ctx context.Context, it *item) (*Image, bool, error) {
	im, err := s.o.Glance.Create(ctx, s.createSpec(it))
	if err == nil {
		if _, refused := s.allowedProps(it.desc); len(refused) > 0 {
			s.m.DroppedProps.WithLabelValues(it.desc.VO).Add(float64(len(refused)))
		}
		return im, true, nil
	}
	if !errors.Is(err, ErrConflict) {
		return nil, false, err
	}
	got, gerr := s.o.Glance.Get(ctx, it.desc.UUID)
	if errors.Is(gerr, ErrNotFound) {
		s.log.Error("the bundle's uuid exists in Glance but is not visible to the mirror project, or was deleted; it cannot be used", "image", it.desc.UUID, "vo", it.desc.VO, "tag", it.desc.Tag)
		s.markSpent(it.desc.UUID, unavailableDetail)
		s.m.Refused.WithLabelValues(ReasonIDDeleted).Inc()
		return nil, false, errReported
	}
	if gerr != nil {
		return nil, false, gerr
	}
	return got, false, nil
}

func (s *Syncer) opFailed(log *slog.Logger, it *item, op string, err error, rp *reporter) {
	err = oserr.Capped(err) // (gophercloud's errors hold Glance's whole answer)
	log.Error("glance operation failed; the next pass retries", "op", op, "err", err)
	s.m.Errors.Inc()
	rp.fail(it.desc.UUID)
	rp.add(s.outcome(it, ActionFailed, "", op+": "+err.Error()))
}

var errStillBusy = errors.New("glance is still importing")

// busyWait bounds how long a pass waits for an image it found being
// written (importing, saving) when it began: another sync's write, which
// usually ends within it, or a write Glance lost.
var busyWait = 2 * time.Minute

// importLock is the property by which Glance (Zed) marks the import task
// that holds an image; the task's last step removes it, after the image
// is already active.
const importLock = "os_glance_import_task"

// importFailedError is an import Glance gave up (importFailure).
type importFailedError struct{ msg string }

func (e *importFailedError) Error() string { return e.msg }

// importFailure says why Glance's import of an importing image failed, or
// "" while it has not: Glance (Zed) marks the stores it failed in
// os_glance_failed_import, removes them from os_glance_importing_to_stores,
// and leaves the image importing (a full store, say), so waiting for it to
// leave importing would wait for ever.
func importFailure(im *Image) string {
	failed := im.Props["os_glance_failed_import"]
	if im.Status != StatusImporting || failed == "" || im.Props["os_glance_importing_to_stores"] != "" {
		return ""
	}
	return "Glance's import into store(s) " + failed + " failed (glance-api's log says why: a full store, or the mirror project's storage quota, user_storage_quota, say); the image stays importing: delete it once the store or quota is fixed (its uuid is then spent) or wait for stale_after, which reclaims it"
}

// stagedData reports a queued image whose stage Glance refused because it
// holds staged data for it (ErrStagedData): what Glance (Zed) leaves of
// an import it refused in its task, for as long as the image lives. Not
// another sync's stage, which has the image uploading. Glance (Zed,
// measured) offers no way out through glance-direct: a new stage is
// refused (409), an import of the queued image too ("needs to be staged",
// 409), and there is no DELETE of a stage (405). It does take PUT /file,
// so with one store or none a pass uploads the image instead (mirror),
// verified as it streams like sync.ingest = "upload". Only with several
// sync.stores, which one upload cannot fill (and copy-image is an admin's
// by default), does it come here: the image is left so (deleting it would
// spend its uuid) and the operator removes the file.
func (s *Syncer) stagedData(ctx context.Context, it *item, im *Image, err error, log *slog.Logger, rp *reporter) {
	why := ""
	if msg, rerr := s.o.Glance.ImportRefusal(ctx, im.ID); rerr != nil {
		log.Warn("cannot read the image's tasks", "err", rerr)
	} else if le := taskRefusal(im.ID, msg); le != nil {
		why = " (" + le.Error() + ")"
	} else if msg != "" {
		why = " (its import task failed: " + msg + ")"
	}
	s.opFailed(log, it, "stage", fmt.Errorf("%s%s; %s: %w", stagedDataDetail, why, stagedDataFix, err), rp)
}

const (
	stagedDataDetail = "Glance holds staged data for this queued image and refuses every new stage of it (409 \"has data on staging\"): Glance (Zed) leaves an import it refused in its task so"
	stagedDataFix    = "with several sync.stores an upload cannot take its place: once the cause is fixed, delete the file named after the image id in glance-api's staging directory ([os_glance_staging_store] filesystem_store_datadir, on the glance-api host that staged it) and the next pass stages and imports the image again; or delete the image (its uuid is then spent)"
	// stagedUploadDetail prefixes the failure of the upload a pass makes
	// in place of a stage Glance refuses for staged data it keeps.
	stagedUploadDetail = "Glance holds staged data for this queued image (an import it refused in its task) and refuses every new stage of it, so the pass uploaded the image instead (PUT /file)"
)

// waitImport polls until the image leaves importing/saving/uploading.
// The first poll comes after firstImportPoll; each wait doubles up to
// Options.ImportPoll, so that a small image is seen active at once and a
// large one costs one GET per ImportPoll.
func (s *Syncer) waitImport(ctx context.Context, id string) error {
	return s.waitImportFor(ctx, id, s.o.ImportTimeout)
}

// waitImportFor is waitImport bounded by timeout; a failed import (Glance
// leaves the image importing, marked os_glance_failed_import) ends it at
// once with an *importFailedError.
func (s *Syncer) waitImportFor(ctx context.Context, id string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var settle time.Time // when a queued image's running task is given up on
	wait := min(firstImportPoll, s.o.ImportPoll)
	for {
		im, err := s.o.Glance.Get(ctx, id)
		if err != nil {
			return err
		}
		switch im.Status {
		case StatusImporting, StatusSaving, StatusUploading:
			if f := importFailure(im); f != "" {
				return &importFailedError{f}
			}
		case StatusQueued:
			// An import Glance refused in its task (Zed: a Keystone
			// limit) returns the image to queued; so does a broken-off
			// upload or stage (another sync's, whose image was found
			// busy). Only the task tells them apart, and Glance marks
			// its task failed a moment after it returns the image to
			// queued: while the task still runs, ask again (up to
			// taskSettle), or the pass took the refusal for a broken-off
			// upload and transferred the image again at once.
			msg, rerr := s.o.Glance.ImportRefusal(ctx, id)
			if errors.Is(rerr, ErrTaskRunning) {
				if settle.IsZero() {
					settle = time.Now().Add(taskSettle)
				}
				if time.Now().Before(settle) {
					break
				}
				s.log.Warn("the image is queued while its import task still runs; taking it for a broken-off upload", "image", id, "waited", taskSettle)
				return nil
			}
			if rerr != nil {
				s.log.Warn("cannot read the image's tasks", "image", id, "err", rerr)
				return nil
			}
			if le := taskRefusal(id, msg); le != nil {
				return le
			}
			if msg != "" {
				return &importFailedError{"Glance's import task failed and Glance returned the image to queued: " + msg}
			}
			return nil
		case StatusActive:
			if im.Props[importLock] == "" {
				return nil
			}
			// Active, but Glance's import task still holds the image:
			// its last steps save the whole image as they read it, and
			// a property written meanwhile (os_hidden=false) is lost.
			if time.Now().After(deadline) {
				return nil // active and verified; a later pass writes what is lost
			}
		default:
			return nil
		}
		if time.Now().After(deadline) {
			return errStillBusy
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, s.o.ImportPoll)
	}
}

// firstImportPoll is the first wait of waitImport.
const firstImportPoll = 100 * time.Millisecond

// taskSettle is how long waitImportFor asks again about the running task
// of an image Glance returned to queued, before it takes the image for
// one whose upload broke off.
const taskSettle = 30 * time.Second

// transfer reads the image once and streams it to Glance: staged, then
// imported with glance-direct when stage is set, uploaded in one PUT
// otherwise. Either way the bytes pass through a verifyingReader, so a stream
// whose size or sha512 is wrong never completes.
func (s *Syncer) transfer(ctx context.Context, it *item, im *Image, stage bool, log *slog.Logger) error {
	limit := s.transferLimit(it.desc.Size)
	tctx, cancel := context.WithTimeoutCause(ctx, limit, ErrTransferTooSlow)
	defer cancel()
	err := s.stream(tctx, it, im, stage, log)
	if errors.Is(err, ErrHungFS) && ctx.Err() == nil {
		// the source's file system did not answer within the bound: the
		// error says so, and names the source
		return err
	}
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(tctx), ErrTransferTooSlow) {
		rate := s.o.Sync.TransferMinRateKiB
		return fmt.Errorf("%w: %d bytes not streamed within %s (transfer_slack %s plus the size at transfer_min_rate_kib %d KiB/s): %v",
			ErrTransferTooSlow, it.desc.Size, limit, s.o.Sync.TransferSlack.Duration, rate, err)
	}
	if err != nil {
		return err
	}
	return s.waitImport(ctx, im.ID)
}

// ErrTransferTooSlow marks an image transfer that did not end within its
// bound (Syncer.transferLimit): the source served too slowly, or cut its
// connections too often. The stream is broken off (Glance keeps nothing of
// it) and a later pass tries again.
var ErrTransferTooSlow = errors.New("image transfer too slow")

// transferLimit is how long the transfer of an image of size bytes may take:
// sync.transfer_slack plus the size at sync.transfer_min_rate_kib.
func (s *Syncer) transferLimit(size int64) time.Duration {
	rate := int64(s.o.Sync.TransferMinRateKiB) << 10
	secs := size / rate
	if secs > int64(math.MaxInt64/time.Second)/2 {
		secs = int64(math.MaxInt64/time.Second) / 2
	}
	return s.o.Sync.TransferSlack.Duration + time.Duration(secs)*time.Second
}

// stream reads the image once and streams it to Glance: staged, then the
// glance-direct import started, when stage is set; uploaded in one PUT
// otherwise.
func (s *Syncer) stream(ctx context.Context, it *item, im *Image, stage bool, log *slog.Logger) error {
	src, where, err := it.b.OpenImage(ctx, it.desc.URI)
	if err != nil {
		return fmt.Errorf("open image: %w", err)
	}
	defer src.Close()
	vr := newVerifyingReader(src, it.desc.Size, it.desc.SHA512)
	vr.progress = func(n int) { s.m.Bytes.Add(float64(n)) }
	if !stage {
		return s.upload(ctx, im, vr, where, log)
	}
	log.Info("streaming image to glance", "from", where, "size", it.desc.Size)
	start := time.Now()
	if err := s.o.Glance.Stage(ctx, im.ID, vr); err != nil {
		return streamErr(ctx, vr.state(), err)
	}
	if !vr.verified() {
		// Glance answered before reading everything: never import that.
		return fmt.Errorf("stage ended after %d of %d bytes without verification", vr.state().n, it.desc.Size)
	}
	log.Info("image staged and verified; importing", "seconds", time.Since(start).Seconds())
	if err := s.importRoom(ctx, im.ID, it.desc.Size); err != nil {
		return err
	}
	if err := s.o.Glance.ImportGlanceDirect(ctx, im.ID, s.o.Sync.Stores); err != nil && !errors.Is(err, ErrConflict) {
		return err
	}
	return nil
}

// importRoom checks, before the glance-direct import of a staged image of
// size bytes, that the mirror project has room for it under its Keystone
// limit image_size_total as Glance's import task counts it: Glance (Zed)
// accepts the import while the project is not over the limit, then its
// task refuses an image that would take the project over it (usage plus
// the image, both in whole MiB rounded down, above the limit), returns
// the image to queued and keeps the staged file, so that the image can
// never be staged again (see stagedData). Refused here, the import is not
// asked for: the image stays staged and the next pass after the limit is
// raised imports it without downloading it again. The check narrows the
// window, it does not close it (another import of the project, such as
// one of this pass's sync.parallel ones, may take the room before
// Glance's task counts): stagedData recovers what gets through. A Glance
// that shows no such limit (no use_keystone_limits, before Yoga), or that
// cannot be asked, is not checked.
func (s *Syncer) importRoom(ctx context.Context, id string, size int64) error {
	u, err := s.o.Glance.Usage(ctx)
	if err != nil {
		s.log.Warn("cannot read the mirror project's Glance limits (GET /v2/info/usage); importing without checking image_size_total first", "image", id, "err", err)
		return nil
	}
	l, ok := u[glanceImageSizeTotal]
	if !ok || l.Limit < 0 {
		return nil
	}
	if mib := size >> 20; l.Usage+mib > l.Limit {
		return &LimitError{Op: "import image " + id, Step: "import-check", Limit: glanceImageSizeTotal,
			Err: fmt.Errorf("not asked for: GET /v2/info/usage says the mirror project holds %d MiB of its limit of %d MiB, and Glance's import task would refuse this image's %d MiB (and keep its staged data)", l.Usage, l.Limit, mib)}
	}
	return nil
}

// errGlanceBrokeOff marks a stage or upload that Glance's side broke off
// after the sync had sent part of the image, without an answer: a reset or
// closed connection. A 413 (image_size_cap, say) can come so: Glance
// answers while the body still comes and closes the connection, and the
// client may see the reset before the answer (Go's transport takes
// whichever it reads first; a peer's reset discards what the kernel had
// not yet delivered). Over loopback a 40 MiB image against a 3 MiB cap
// gets the 413 (TestImageSizeCap); across a network it may not.
var errGlanceBrokeOff = errors.New("Glance broke off the image data request without an answer")

// streamErr is the error of a stage or upload that failed with err, the
// stream being st: the verification failure or the source's read error
// when the stream broke so; else err, marked errGlanceBrokeOff when
// Glance gave no answer after the sync had sent part of the image.
func streamErr(ctx context.Context, st streamState, err error) error {
	switch {
	case st.failure != nil:
		return st.failure
	case st.readErr != nil:
		return st.readErr
	case ctx.Err() != nil || st.n == 0 || glance.Answered(err):
		return err
	}
	return fmt.Errorf("%w: %w", errGlanceBrokeOff, err)
}

// upload sends the image data in one PUT /file (sync.ingest = "upload", or
// "auto" on a Glance without glance-direct). The body goes chunked, as the
// verifyingReader yields it, and the verifyingReader holds back the last
// bytes until size and sha512 check out: on a mismatch the request breaks off
// without the terminating chunk, Glance fails the upload and returns the image
// to queued without data, and the caller leaves it so (refusedStream). The image becomes active only when
// Glance has the whole verified stream (docs/glancesync.md, "Ingest").
func (s *Syncer) upload(ctx context.Context, im *Image, vr *verifyingReader, where string, log *slog.Logger) error {
	log.Info("uploading image to glance", "from", where, "size", vr.size)
	start := time.Now()
	if err := s.o.Glance.Upload(ctx, im.ID, vr, uploadStore(s.o.Sync.Stores)); err != nil {
		return streamErr(ctx, vr.state(), err)
	}
	if !vr.verified() {
		// Glance answered 2xx before reading the whole stream (no Glance
		// checked does): whatever it holds is unverified, and the caller,
		// finding data in Glance, deletes the image.
		return validator.NewVerificationFailure(validator.ReasonSizeMismatch,
			fmt.Errorf("upload ended after %d of %d bytes without verification", vr.state().n, vr.size))
	}
	log.Info("image uploaded and verified", "seconds", time.Since(start).Seconds())
	return nil
}
