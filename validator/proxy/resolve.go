package proxy

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// tagPart is the form of a VO or tag name (as in descriptors).
var tagPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// parseTagRef reads a reference that is not a UUID: "TAG" or "VO/TAG".
func parseTagRef(ref string) (vo, tag string, ok bool) {
	vo, tag, found := strings.Cut(ref, "/")
	if !found {
		vo, tag = "", ref
	} else if !tagPart.MatchString(vo) {
		return "", "", false
	}
	if !tagPart.MatchString(tag) {
		return "", "", false
	}
	return vo, tag, true
}

func toCatalog(img *Image) catalogImage {
	return catalogImage{ID: img.ID, Owner: img.Owner, Status: img.Status, Properties: img.Properties}
}

// resolve turns an image reference into the canonical id of an image that
// may boot, or a refusal. A UUID (any form Nova accepts) names one image,
// unless that image is a tag alias of the catalogue (imagetrust_alias=VO/TAG,
// owned by the mirror project), which names its tag. Anything else must be
// TAG or VO/TAG and names the newest bootable image of the tag.
func (p *Proxy) resolve(ctx context.Context, g *gateReq, ref, field string) (string, *Image, error) {
	id, isUUID := CanonicalUUID(ref)
	if !isUUID {
		vo, tag, ok := parseTagRef(ref)
		if !ok {
			p.o.Metrics.decision("refused", "bad-reference")
			p.audit(g, "boot decision", "field", field, "ref", truncate(ref, 80), "allowed", false, "reasons", []string{"bad-reference"})
			return "", nil, refuse(http.StatusBadRequest, "decision:bad-reference",
				"%s %q is neither an image UUID nor a tag (TAG or VO/TAG).", field, truncate(ref, 80))
		}
		return p.resolveTag(ctx, g, ref, field, vo, tag)
	}
	img, err := p.lookup.GetImage(ctx, id)
	if errors.Is(err, ErrNotFound) {
		if g.policy.AllowUnmanaged {
			// Nova asks Glance with the user's token, which may see images
			// the gate's credentials do not; the project may boot them.
			p.o.Metrics.decision("allowed", "unmanaged-allowed")
			p.audit(g, "boot decision", "field", field, "ref", truncate(ref, 80), "image", id, "allowed", true, "notes", []string{"unmanaged-allowed", "not-visible"})
			return id, nil, nil
		}
		p.o.Metrics.decision("refused", "not-found")
		p.audit(g, "boot decision", "field", field, "ref", truncate(ref, 80), "image", id, "allowed", false, "reasons", []string{"not-found"})
		return "", nil, refuse(http.StatusNotFound, "decision:not-found",
			"Image %s (%s) is not in the site's image catalogue. Boot a catalogue image by its UUID or tag.", id, field)
	}
	if err != nil {
		return "", nil, err
	}
	if alias := img.Properties[propAlias]; alias != "" && img.Owner == p.o.MirrorProject {
		vo, tag, ok := parseTagRef(alias)
		if !ok || vo == "" {
			p.o.Metrics.decision("refused", "bad-alias")
			p.audit(g, "boot decision", "field", field, "ref", truncate(ref, 80), "image", id, "allowed", false, "reasons", []string{"bad-alias"})
			return "", nil, refuse(http.StatusForbidden, "decision:bad-alias",
				"Image %s is a tag alias with a malformed tag; ask the site operators.", id)
		}
		return p.resolveTag(ctx, g, ref, field, vo, tag)
	}
	d := p.o.Decider.DecideBoot(toCatalog(img), g.policy, g.now)
	p.auditDecision(g, field, ref, d, 0)
	if !d.Allowed {
		return "", nil, refuse(http.StatusForbidden, "decision:"+firstReason(d.Reasons), "%s", d.Message)
	}
	cid, _ := CanonicalUUID(img.ID)
	if cid == "" {
		cid = id
	}
	if slices.Contains(d.Notes, decisionUnmanaged) {
		// not a catalogue image: its imagetrust_ properties are its
		// owner's word, so the hooks get no image (as for one the gate
		// cannot see), not a VO and tag that would pick a site context
		return cid, nil, nil
	}
	return cid, img, nil
}

// resolveTag picks the newest bootable catalogue image of a tag. A bare TAG
// must belong to one VO only; where VOs share a tag the user writes VO/TAG.
func (p *Proxy) resolveTag(ctx context.Context, g *gateReq, ref, field, vo, tag string) (string, *Image, error) {
	imgs, err := p.lookup.ListTag(ctx, vo, tag)
	if err != nil {
		return "", nil, err
	}
	var cands []catalogImage
	byID := map[string]*Image{}
	vos := map[string]bool{}
	for _, img := range imgs {
		// alias entries and images outside the mirror project are never candidates
		if img.Owner != p.o.MirrorProject || img.Properties[propAlias] != "" || img.Properties[propTag] != tag {
			continue
		}
		if vo != "" && img.Properties[propVO] != vo {
			continue
		}
		vos[img.Properties[propVO]] = true
		cands = append(cands, toCatalog(img))
		byID[img.ID] = img
	}
	name := tag
	if vo != "" {
		name = vo + "/" + tag
	}
	if len(cands) == 0 {
		p.o.Metrics.decision("refused", "no-image-for-tag")
		p.audit(g, "boot decision", "field", field, "ref", truncate(ref, 80), "tag", name, "allowed", false, "reasons", []string{"no-image-for-tag"})
		return "", nil, refuse(http.StatusNotFound, "decision:no-image-for-tag",
			"No image of the site's catalogue has the tag %q (%s). Check the tag, or name it as VO/TAG.", name, field)
	}
	if len(vos) > 1 {
		names := make([]string, 0, len(vos))
		for v := range vos {
			names = append(names, v)
		}
		sort.Strings(names)
		p.o.Metrics.decision("refused", "ambiguous-tag")
		p.audit(g, "boot decision", "field", field, "ref", truncate(ref, 80), "tag", name, "allowed", false, "reasons", []string{"ambiguous-tag"})
		return "", nil, refuse(http.StatusConflict, "decision:ambiguous-tag",
			"The tag %q exists in several VOs (%s); name it as VO/TAG, e.g. %s/%s.", tag, strings.Join(names, ", "), names[0], tag)
	}
	pol := g.policy
	pol.AllowUnmanaged = false
	d, _ := p.o.Decider.DecideTag(cands, pol, g.now)
	p.auditDecision(g, field, ref, d, len(cands))
	if !d.Allowed {
		return "", nil, refuse(http.StatusForbidden, "decision:"+firstReason(d.Reasons), "Tag %s: %s", name, d.Message)
	}
	img := byID[d.ImageID]
	if img == nil {
		return "", nil, errors.New("proxy: decider chose an image that was not a candidate")
	}
	cid, ok := CanonicalUUID(img.ID)
	if !ok {
		return "", nil, errors.New("proxy: catalogue image id is not a UUID")
	}
	return cid, img, nil
}

func firstReason(r []string) string {
	if len(r) == 0 {
		return "refused"
	}
	return r[0]
}

// auditDecision writes the audit line and counts the metric of one decision.
func (p *Proxy) auditDecision(g *gateReq, field, ref string, d decision, candidates int) {
	outcome, reason := "allowed", "ok"
	if !d.Allowed {
		outcome, reason = "refused", firstReason(d.Reasons)
	} else if len(d.Notes) > 0 {
		reason = d.Notes[0]
	}
	p.o.Metrics.decision(outcome, reason)
	kv := []any{"field", field, "ref", truncate(ref, 80), "image", d.ImageID, "allowed", d.Allowed}
	if d.VO != "" || d.Tag != "" {
		kv = append(kv, "vo", d.VO, "tag", d.Tag)
	}
	if candidates > 0 {
		kv = append(kv, "candidates", candidates)
	}
	if len(d.Reasons) > 0 {
		kv = append(kv, "reasons", d.Reasons)
	}
	if len(d.Notes) > 0 {
		kv = append(kv, "notes", d.Notes)
	}
	p.audit(g, "boot decision", kv...)
}
