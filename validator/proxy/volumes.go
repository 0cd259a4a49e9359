package proxy

import (
	"context"
	"errors"
	"net/http"
)

// Volumes tells which Glance image a Cinder volume or snapshot was made
// from (Cinder's volume_image_metadata.image_id). The command implements
// it by asking Cinder with the caller's own token (cmd/imagetrust
// proxy_volumes.go, proxy.volume_policy = "check-image"): the gate then sees
// the volume Nova will attach, as Nova sees it with that token, and needs no
// right to read other projects' volumes.
//
// Cinder lets a volume's project members set volume_image_metadata
// (policy volume_extension:volume_image_metadata:set, admin or project
// member by default in Zed), so the answer is only as trustworthy as that
// policy: a site that sets Options.Volumes must restrict it (and :remove)
// to admins, or a user can label a volume of any content with a catalogue
// image's id.
type Volumes interface {
	// VolumeImage returns the id of the image volumeID was created from,
	// "" when it was not created from an image, or ErrNotFound (also when
	// the caller, whose token is token, may not see it).
	VolumeImage(ctx context.Context, token, volumeID string) (string, error)
	// SnapshotImage does the same for a volume snapshot (the image of the
	// volume it was taken of).
	SnapshotImage(ctx context.Context, token, snapshotID string) (string, error)
}

// ErrVolumeNotReady is what Volumes return, wrapped, for a volume that the
// block storage service is still making (Cinder's status creating or
// downloading) and that names no image yet: Cinder records the image a
// volume is made from once it has copied it, so the gate cannot tell yet,
// and "not made from an image" would be wrong.
var ErrVolumeNotReady = errors.New("volume not ready")

// judgeVolume judges a volume or snapshot that may be the boot disk: with
// Options.Volumes, by the image it was made from, judged like an image
// reference (the request itself is left as it is); a volume made from no
// image, and every volume without Options.Volumes, by the volume policy.
// m[key] holds its id; snapshot says it names a volume snapshot.
func (p *Proxy) judgeVolume(ctx context.Context, g *gateReq, m map[string]any, key string, snapshot bool, where string, boot0 bool) error {
	refuseByPolicy := func(reason, why string) error {
		if p.o.VolumePolicy == VolumeAllow {
			return nil
		}
		p.o.Metrics.decision("refused", reason)
		p.audit(g, "boot decision", "field", where, "allowed", false, "reasons", []string{reason})
		return refuse(http.StatusForbidden, "decision:"+reason, "%s: %s Boot from a catalogue image (imageRef, or a block device with source_type image) instead.", where, why)
	}
	if p.o.Volumes == nil {
		return refuseByPolicy("volume-boot", "booting from a Cinder volume or snapshot is not allowed here, because the image gate cannot check which image the volume was made from.")
	}
	id, err := optString(m, key, where+"."+key)
	if err != nil {
		return err
	}
	if id == "" {
		return bodyErrorf("%s has no %s", where, key)
	}
	var imageID string
	vctx, cancel := context.WithTimeout(ctx, p.o.LookupTimeout)
	token := userToken(g.r.Header) // the token Nova will read (and the gate validated)
	if snapshot {
		imageID, err = p.o.Volumes.SnapshotImage(vctx, token, id)
	} else {
		imageID, err = p.o.Volumes.VolumeImage(vctx, token, id)
	}
	cancel()
	switch {
	case errors.Is(err, ErrNotFound):
		p.o.Metrics.decision("refused", "volume-not-found")
		p.audit(g, "boot decision", "field", where, "volume", truncate(id, 80), "allowed", false, "reasons", []string{"volume-not-found"})
		return refuse(http.StatusBadRequest, "decision:volume-not-found", "%s: volume or snapshot %s was not found in the block storage service (with your token).", where, truncate(id, 80))
	case errors.Is(err, ErrVolumeNotReady):
		p.o.Metrics.decision("refused", "volume-not-ready")
		p.audit(g, "boot decision", "field", where, "volume", truncate(id, 80), "allowed", false, "reasons", []string{"volume-not-ready"})
		return refuse(http.StatusBadRequest, "decision:volume-not-ready", "%s: volume %s is still being made; boot it once `openstack volume show` says it is available.", where, truncate(id, 80))
	case err != nil:
		p.o.Metrics.upstreamError(upstreamCinder)
		p.o.Metrics.decision("error", "volume-lookup")
		p.audit(g, "request failed", "reason", "volume-lookup", "volume", truncate(id, 80), "err", err)
		return refuse(http.StatusBadGateway, "decision:volume-lookup", "The image gate could not ask the block storage service about %s; try again later.", truncate(id, 80))
	case imageID == "":
		return refuseByPolicy("volume-without-image", "this volume or snapshot was not made from an image, so the image gate cannot judge what it boots.")
	}
	canon, ok := CanonicalUUID(imageID)
	if !ok {
		return refuseByPolicy("volume-without-image", "the image this volume was made from is not named by a UUID, so the image gate cannot judge it.")
	}
	field := where + " (image of " + map[bool]string{false: "volume ", true: "snapshot "}[snapshot] + truncate(id, 80) + ")"
	if imageID != canon {
		// Catalogue ids are canonical (lower case, hyphenated). Glance on a
		// case-sensitive database (sqlite, PostgreSQL) keeps a user's
		// image AA5B… apart from the catalogue's aa5b…, and the volume
		// holds the bytes of the image it names; on MySQL the two are one.
		// Glance is asked for the id as Cinder has it.
		twin, err := p.lookup.GetImage(ctx, imageID)
		switch {
		case err == nil && twin.ID == canon: // the catalogue's own
		case err == nil || errors.Is(err, ErrNotFound):
			if g.policy.AllowUnmanaged {
				p.o.Metrics.decision("allowed", "unmanaged-allowed")
				p.audit(g, "boot decision", "field", field, "image", truncate(imageID, 80), "allowed", true, "notes", []string{"unmanaged-allowed", "not-canonical"})
				return nil
			}
			p.o.Metrics.decision("refused", "not-in-catalogue")
			p.audit(g, "boot decision", "field", field, "image", truncate(imageID, 80), "allowed", false, "reasons", []string{"not-in-catalogue"})
			return refuse(http.StatusForbidden, "decision:not-in-catalogue",
				"%s: the volume was made from image %s, which is not the site's catalogue image %s (Glance tells the two apart by case). Boot a volume made from a catalogue image.", where, truncate(imageID, 80), canon)
		default:
			return err
		}
	}
	resolved, img, err := p.resolve(ctx, g, canon, field)
	if err != nil {
		return err
	}
	if resolved != canon {
		// an alias entry holds no data: no volume is made from one
		p.o.Metrics.decision("refused", "bad-alias")
		p.audit(g, "boot decision", "field", field, "image", canon, "allowed", false, "reasons", []string{"bad-alias"})
		return refuse(http.StatusForbidden, "decision:bad-alias", "%s: the volume names tag alias entry %s as its image; no volume is made from an alias.", where, canon)
	}
	if boot0 && !g.primarySet {
		g.primary, g.primarySet = img, true
	}
	return nil
}
