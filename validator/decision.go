package validator

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"time"
)

// CatalogImage is a Glance image as the boot decision sees it.
type CatalogImage struct {
	ID, Owner, Status string
	Properties        map[string]string
}

// BootPolicy is the site policy a boot is judged under.
type BootPolicy struct {
	// MirrorProject owns the catalogue; images of any other owner are not
	// catalogue images, whatever properties they carry (Nova snapshots copy
	// properties).
	MirrorProject string
	// AllowUnmanaged lets the requesting project boot images that are not in
	// the catalogue.
	AllowUnmanaged bool
}

// Decision reasons (in addition to the check reasons of Verify).
const (
	DecisionNotInCatalogue = "not-in-catalogue"
	DecisionNoRecord       = "no-record"
	DecisionRecordInvalid  = "record-signature"
	DecisionRecordTampered = "record-tampered"
	DecisionGlobalPrefix   = "global-validity:" // then revoked, hold, unknown, missing or other
	DecisionBlacklisted    = "local-validity:blacklist"
	DecisionLocalUnknown   = "local-validity:unknown"
	DecisionNotActive      = "not-active"
	DecisionExpired        = ReasonExpired
	DecisionNotYetValid    = ReasonNotYetValid
	DecisionUnmanaged      = "unmanaged-allowed"
	DecisionRunAnyway      = "expired-run-anyway"
	DecisionNoCandidates   = "no-image-for-tag"
)

// Decision is the verdict on booting one image.
type Decision struct {
	ImageID string
	Allowed bool
	// Reasons are the failed checks (empty when allowed).
	Reasons []string
	// Notes are facts worth auditing on an allowed boot (run-anyway, unmanaged).
	Notes []string
	// Message explains the decision to a user: which image, what failed, what to do.
	Message string
	// Created is the descriptor's created time (for tag ordering).
	Created time.Time
	// VO and Tag of the image, when it is a catalogue image.
	VO, Tag string
	// detail is Message without the advice (what DecideTag lists).
	detail string
}

// advice is what a user can do about a refusal for reasons.
func advice(reasons []string) string {
	if len(reasons) == 1 && reasons[0] == DecisionExpired {
		return "Ask your VO for a newer image, or the site operators to allow this one (run-anyway)."
	}
	for _, r := range reasons {
		if r == DecisionGlobalPrefix+GlobalUnknown || r == DecisionGlobalPrefix+"missing" || r == DecisionNotYetValid {
			return "Try again later, use another image of the tag, or ask the site operators."
		}
	}
	for _, r := range reasons {
		if r == DecisionRecordInvalid || r == DecisionRecordTampered || r == DecisionLocalUnknown {
			return "Use another image of the tag, or ask the site operators."
		}
	}
	return "Use another image of the tag, or ask your VO or the site operators."
}

// maxTagDetails bounds the candidates a refused tag's message lists: a tag
// may hold up to a thousand images, and the message is a user's to read.
const maxTagDetails = 3

// recordResult is the verdict on a stored record, and what DecideBoot
// needs of it (not the whole Result, with its certificates: the cache
// holds one per record).
type recordResult struct {
	err   string
	props map[string]string // derivedProperties, when err is ""
	// of the signed descriptor and the image certificate
	vo, tag, uuid           string
	created                 time.Time
	registeredAt, expiresAt time.Time
}

// recordKey identifies a record by its two stored properties, as stored
// (base64): the descriptor's length first, so that no other pair hashes
// the same bytes. A warm decision decodes nothing.
func recordKey(props map[string]string) string {
	ds, ss := props[PropDescriptor], props[PropSignature]
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(ds))))
	h.Write([]byte(ds))
	h.Write([]byte(ss))
	return string(h.Sum(nil))
}

// verifyRecord re-verifies the stored CMS of a record, once per distinct
// record per Trust (the cache is dropped with the Trust on reload, and
// bounded: recordCache). The cached verdict excludes expiry, which
// DecideBoot judges at the given time.
func (t *Trust) verifyRecord(props map[string]string, now time.Time) *recordResult {
	key := recordKey(props)
	if rr, ok := t.records.get(key); ok {
		return rr
	}
	desc, sig, err := RecordBundle(props)
	if err != nil {
		return &recordResult{err: err.Error()}
	}
	r := t.Verify(Input{Descriptor: desc, Signature: sig, Now: now})
	rr := &recordResult{}
	for _, c := range r.Checks {
		if c.OK || c.Skipped && c.Name == CheckImage || c.Name == CheckExpiry {
			continue
		}
		rr.err = fmt.Sprintf("%s: %s", c.Name, c.Reason)
		break
	}
	if rr.err == "" {
		rr.props = derivedProperties(r)
		rr.vo, rr.tag, rr.uuid, rr.created = r.Descriptor.VO, r.Descriptor.Tag, r.Descriptor.UUID, r.Descriptor.CreatedTime
		rr.registeredAt, rr.expiresAt = r.RegisteredAt, r.ExpiresAt
	}
	t.records.put(key, rr)
	return rr
}

// tamperedProps returns the signed record properties (signedProps) whose
// values in props differ from derived, the properties the record's signed
// bytes give (derivedProperties), sorted; nil when none differs. It is what
// DecideBoot refuses as record-tampered, and what RecordTampered reports.
func tamperedProps(props, derived map[string]string) []string {
	var tampered []string
	for _, k := range signedProps {
		if props[k] != derived[k] {
			tampered = append(tampered, k)
		}
	}
	sort.Strings(tampered)
	return tampered
}

// bootProps are the image properties with which Nova boots something other
// than the image's own bytes: a kernel and ramdisk image, the image's block
// device mappings (which can name other images, snapshots or volumes) and
// a rescue image. A descriptor may not set them (reservedProperties), so on
// a catalogue image they are always unsigned: someone who could write the
// image's other properties added them, and the gate would never judge what
// they name.
var bootProps = []string{"kernel_id", "ramdisk_id", "block_device_mapping", "bdm_v2", "mappings", "base_image_ref"}

// UnsignedBootProps returns the bootProps props carries (not empty): the
// gate refuses such an image as record-tampered, and the sync does not
// restore a record on it.
func UnsignedBootProps(props map[string]string) []string {
	var out []string
	for _, k := range bootProps {
		if props[k] != "" {
			out = append(out, k)
		}
	}
	return out
}

// GlanceDataDiffers says why Glance's hash of an image's data
// (os_hash_algo, os_hash_value among props: Glance computes them as it
// stores the bytes, and Nova's image download checks the data against
// them) is not the signed sha512, or "" when it is, or when Glance does
// not hash with sha512 (the sync only warns of such a Glance) or holds no
// data. Bytes uploaded into a catalogue image by anyone but the sync (a
// queued image that carries its record, by a credential of the mirror
// project that Glance's legacy policy lets upload) are refused at once,
// not only when the sync's next pass finds and deletes the image.
func GlanceDataDiffers(props map[string]string, signedSHA512 string) string {
	if props["os_hash_algo"] != "sha512" {
		return ""
	}
	if v := props["os_hash_value"]; v != signedSHA512 {
		return fmt.Sprintf("Glance's sha512 of its data (os_hash_value %.16s…) is not the signed sha512 %.16s…", v, signedSHA512)
	}
	return ""
}

// RecordTampered returns the signed record properties of props (an image's
// properties) whose values differ from those the verified bundle r gives,
// sorted, nil when none does: when props carry r's descriptor and
// signature, exactly the properties for which DecideBoot refuses the image
// as record-tampered. The unsigned properties (the validity flags, the
// revocation details) and imagetrust_record_version are not compared. r
// must be the Result of a fully verified bundle (RecordProperties' rule).
// The image sync uses it to decide, as the proxy does, whether a mirrored
// image's record was edited.
func RecordTampered(r *Result, props map[string]string) ([]string, error) {
	if r == nil || r.Descriptor == nil || r.Image == nil || r.Creator == nil || r.Approver == nil {
		return nil, fmt.Errorf("record: the bundle is not fully verified")
	}
	return tamperedProps(props, derivedProperties(r)), nil
}

// siteFaultMsg is d with detail as its message, followed by the advice to
// ask the site operators (the fault is the site's to mend).
func siteFaultMsg(d Decision, detail string) Decision {
	d.detail = detail
	d.Message = detail + " Ask the site operators."
	return d
}

// DecideBoot judges whether an image may boot now: it must be a catalogue
// image (owned by the mirror project) whose stored record re-verifies and
// matches its properties, globally valid, not blacklisted, active, and
// within its certificate's validity (or expired with run-anyway). A revoked
// image never boots, run-anyway or not.
func (t *Trust) DecideBoot(img CatalogImage, p BootPolicy, now time.Time) Decision {
	d := Decision{ImageID: img.ID}
	props := img.Properties
	if img.Owner == p.MirrorProject && props[PropRecordVersion] == "" {
		// The catalogue project's image without a record: not an image the
		// sync verified (one whose record was stripped by someone allowed
		// to write its properties, or uploaded there by hand), and never
		// an unmanaged image: it would bring a withdrawn, revoked or
		// blacklisted catalogue image back for the projects that may boot
		// their own images.
		d.Reasons = append(d.Reasons, DecisionNotInCatalogue)
		return siteFaultMsg(d, fmt.Sprintf("Image %s is in the site's catalogue project but carries no catalogue record (imagetrust_record_version), so it is not an image the site verified and may not boot.", img.ID))
	}
	if img.Owner != p.MirrorProject {
		if p.AllowUnmanaged {
			d.Allowed = true
			d.Notes = append(d.Notes, DecisionUnmanaged)
			d.Message = fmt.Sprintf("image %s is not in the site catalogue; your project may boot unmanaged images", img.ID)
			return d
		}
		d.Reasons = append(d.Reasons, DecisionNotInCatalogue)
		d.Message = fmt.Sprintf("image %s is not in the site's signed image catalogue (its owner is not the catalogue project), so it may not boot here. Boot a catalogue image by its uuid or tag; `openstack image list --property imagetrust_record_version=1` lists them.", img.ID)
		return d
	}
	rr := t.verifyRecord(props, now)
	// the site's to mend: the advice is to ask it (DecideTag lists the
	// detail, without the advice, and advises once)
	siteFault := func(detail string) Decision { return siteFaultMsg(d, detail) }
	if rr.err != "" {
		d.Reasons = append(d.Reasons, DecisionRecordInvalid)
		switch rr.err {
		case CheckRevocation + ": " + ReasonRevoked:
			// the trust store's CRLs revoke it (the CRL job has not
			// flagged it yet, or will not): the user's words for it
			d.detail = fmt.Sprintf("image %s may not boot: it was revoked.", img.ID)
			d.Message = d.detail + " " + advice([]string{DecisionGlobalPrefix + GlobalRevoked})
			return d
		case CheckDescriptor + ": " + ReasonUUIDNotBound:
			// mirrored before the site required bound uuids, or a seed
			// that does not give its uuid: its VO may not own that uuid
			return siteFault(fmt.Sprintf("image %s may not boot: its uuid is not bound to its VO (uuid-not-bound: the site requires bound uuids and its descriptor has no uuid_seed, or its uuid_seed does not give its uuid), so another VO may have published under it.", img.ID))
		case CheckRevocation + ": " + ReasonRevocationUnknown:
			d.detail = fmt.Sprintf("image %s may not boot: the site cannot tell whether it was revoked.", img.ID)
			d.Message = d.detail + " " + advice([]string{DecisionGlobalPrefix + GlobalUnknown})
			return d
		}
		return siteFault(fmt.Sprintf("image %s: its catalogue record does not verify (%s); it may not boot.", img.ID, rr.err))
	}
	d.VO, d.Tag, d.Created = rr.vo, rr.tag, rr.created
	if !strings.EqualFold(img.ID, rr.uuid) {
		d.Reasons = append(d.Reasons, DecisionRecordTampered)
		return siteFault(fmt.Sprintf("image %s carries the signed record of image %s; it may not boot.", img.ID, rr.uuid))
	}
	if tampered := tamperedProps(props, rr.props); len(tampered) > 0 {
		d.Reasons = append(d.Reasons, DecisionRecordTampered)
		return siteFault(fmt.Sprintf("image %s: catalogue properties %s differ from its signed record; it may not boot.", img.ID, strings.Join(tampered, ", ")))
	}
	if why := GlanceDataDiffers(props, rr.props[PropSHA512]); why != "" {
		d.Reasons = append(d.Reasons, DecisionRecordTampered)
		return siteFault(fmt.Sprintf("image %s: %s; it may not boot.", img.ID, why))
	}
	if extra := UnsignedBootProps(props); len(extra) > 0 {
		d.Reasons = append(d.Reasons, DecisionRecordTampered)
		return siteFault(fmt.Sprintf("image %s carries %s, which would change what boots and which no signed record sets; it may not boot.", img.ID, strings.Join(extra, ", ")))
	}
	var why []string
	global := props[PropGlobalValidity]
	local := props[PropLocalValidity]
	if global != GlobalValid {
		if global == "" {
			global = "missing"
		}
		state := global
		switch global {
		case GlobalRevoked, GlobalHold, GlobalUnknown, "missing":
		default:
			// a reason is a metrics label: its values stay a fixed set
			state = "other"
			global = quoteShort(global)
		}
		d.Reasons = append(d.Reasons, DecisionGlobalPrefix+state)
		// in a user's words: the users of the gate do not know the
		// property (imagetrust_global_validity) behind it
		var detail string
		switch state {
		case GlobalRevoked:
			detail = "it was revoked"
		case GlobalHold:
			detail = "its certificate is on hold"
		case GlobalUnknown:
			detail = "the site cannot tell whether it was revoked"
		case "missing":
			detail = "the site has not yet checked whether it was revoked"
		default:
			detail = "its revocation state is " + global
		}
		if r := props[PropRevocationReason]; r != "" {
			detail += fmt.Sprintf(" (%s, %s certificate, since %s)", r, props[PropRevokedRole], props[PropRevocationDate])
		}
		why = append(why, detail)
	}
	switch local {
	case "", LocalRunAnyway:
	case LocalBlacklist:
		d.Reasons = append(d.Reasons, DecisionBlacklisted)
		why = append(why, "the site blacklisted it")
	default:
		// an operator's typo (Blacklist, blacklisted, valid) must not
		// leave a blacklisted image bootable: what the gate cannot read
		// refuses
		d.Reasons = append(d.Reasons, DecisionLocalUnknown)
		shown := local
		if len(shown) > 40 {
			shown = shown[:40] + "…"
		}
		why = append(why, fmt.Sprintf("its local validity flag is %q, neither %s nor %s (the site must correct or unset it)", shown, LocalBlacklist, LocalRunAnyway))
	}
	if img.Status != "active" {
		d.Reasons = append(d.Reasons, DecisionNotActive)
		why = append(why, "its Glance status is "+img.Status)
	}
	switch {
	case now.Before(rr.registeredAt):
		d.Reasons = append(d.Reasons, DecisionNotYetValid)
		why = append(why, "its certificate is valid only from "+rr.registeredAt.UTC().Format(time.RFC3339))
	case now.After(rr.expiresAt):
		if local == LocalRunAnyway && global == GlobalValid {
			d.Notes = append(d.Notes, DecisionRunAnyway)
		} else {
			d.Reasons = append(d.Reasons, DecisionExpired)
			why = append(why, "it expired on "+rr.expiresAt.UTC().Format(time.RFC3339))
		}
	}
	if len(d.Reasons) > 0 {
		d.detail = fmt.Sprintf("image %s (%s/%s) may not boot: %s.", img.ID, d.VO, d.Tag, strings.Join(why, "; "))
		d.Message = d.detail + " " + advice(d.Reasons)
		return d
	}
	d.Allowed = true
	d.Message = fmt.Sprintf("image %s (%s/%s) may boot", img.ID, d.VO, d.Tag)
	return d
}

// DecideTag chooses, among the images of one tag, the newest by the signed
// created time that may boot. When none may, the returned decision is a
// refusal whose message gives each candidate's reasons, and every
// candidate's decision is returned too, newest first; when one may, the
// decisions made until it was found (it, and newer candidates refused).
//
// Candidates are decided newest first by their imagetrust_created
// property, a second at a time, and the search stops at the first second
// that holds a bootable image: the property is unsigned, but an image may
// boot only when it equals the signed created time (to the second, as the
// record writes it), so an image whose property was moved is refused
// wherever it is taken up, and the first bootable image found is the
// newest. A tag of many images costs one decision, not one each (a cold
// record cache, after a reload, verifies one record, not all of them).
func (t *Trust) DecideTag(cands []CatalogImage, p BootPolicy, now time.Time) (Decision, []Decision) {
	// only catalogue images are tag candidates
	p.AllowUnmanaged = false
	type cand struct {
		img     *CatalogImage
		created time.Time // of the property; zero when absent or unreadable
	}
	order := make([]cand, len(cands))
	for i := range cands {
		c := cand{img: &cands[i]}
		if ct, err := time.Parse(recordTimeFormat, cands[i].Properties[PropCreated]); err == nil {
			c.created = ct.Truncate(time.Second)
		}
		order[i] = c
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i].created.After(order[j].created) })
	byNewest := func(ds []Decision) {
		sort.SliceStable(ds, func(i, j int) bool {
			if !ds[i].Created.Equal(ds[j].Created) {
				return ds[i].Created.After(ds[j].Created)
			}
			return ds[i].ImageID > ds[j].ImageID
		})
	}
	all := make([]Decision, 0, len(cands))
	for i := 0; i < len(order); {
		// one second of property times at a time: within it, the signed
		// times (which may hold fractions) and ids decide
		j := i
		for j < len(order) && order[j].created.Equal(order[i].created) {
			j++
		}
		group := len(all)
		for _, c := range order[i:j] {
			all = append(all, t.DecideBoot(*c.img, p, now))
		}
		byNewest(all[group:])
		for _, d := range all[group:] {
			if d.Allowed {
				return d, all
			}
		}
		i = j
	}
	byNewest(all)
	out := Decision{Reasons: []string{DecisionNoCandidates}}
	if len(all) == 0 {
		out.Message = "no catalogue image has this tag"
		return out, all
	}
	var parts []string
	seen := map[string]bool{}
	for i, d := range all {
		msg := d.detail
		if msg == "" {
			msg = d.Message
		}
		if i < maxTagDetails {
			parts = append(parts, msg)
		}
		for _, r := range d.Reasons {
			if !seen[r] {
				seen[r] = true
				out.Reasons = append(out.Reasons, r)
			}
		}
	}
	if n := len(all) - maxTagDetails; n > 0 {
		parts = append(parts, fmt.Sprintf("and %d older images, refused too.", n))
	}
	out.Message = fmt.Sprintf("no image of this tag may boot (%d considered): %s %s", len(all), strings.Join(parts, " | "), advice(out.Reasons[1:]))
	return out, all
}
