package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator/proxy"
)

// openVolumePolicy turns proxy.volume_policy into the gate's options:
// "refuse" and "allow" as they are, without Cinder; "check-image" asks
// Cinder (Options.Volumes) and refuses volumes made from no image. As the
// proxy cannot see Cinder's policy, check-image logs once at start-up what
// it relies on.
func openVolumePolicy(ctx context.Context, policy, cloudName string, getenv func(string) string, log *slog.Logger) (string, proxy.Volumes, error) {
	if policy != itconfig.VolumeCheckImage {
		return policy, nil, nil
	}
	vols, err := newCinderVolumes(ctx, cloudName, getenv)
	if err != nil {
		return "", nil, err
	}
	log.Warn("boot volumes are judged by the image Cinder says they were made from (volume_image_metadata.image_id); "+
		"this is only safe if Cinder lets nobody but admins set or remove a volume's image metadata "+
		"(policies volume_extension:volume_image_metadata:set and :remove, see etc/cinder/policy.yaml), "+
		"and it judges where a volume came from, not what was written to it since",
		"volume_policy", policy, "block_storage", vols.sc.Endpoint)
	return proxy.VolumeRefuse, vols, nil
}

// cinderTimeout bounds one question to Cinder (a boot waits for it).
const cinderTimeout = 30 * time.Second

// cinderVolumes implements proxy.Volumes (proxy.volume_policy =
// "check-image"): Cinder's block-storage v3 API, found through the catalog
// and asked with the proxy's own service credentials, tells which image a
// volume was made from (volume_image_metadata.image_id). Seeing other
// projects' volumes needs a role Cinder's policy lets read every project's
// volumes (admin by default). Answers are not cached: one GET per boot
// volume (two per snapshot), and a relabelled volume is judged afresh.
type cinderVolumes struct {
	sc *gophercloud.ServiceClient
}

// newCinderVolumes authenticates as cloudName (the proxy's service
// credentials) and finds the block-storage (volumev3) service in the catalog.
func newCinderVolumes(ctx context.Context, cloudName string, getenv func(string) string) (*cinderVolumes, error) {
	pc, eo, _, err := openProvider(ctx, cloudName, getenv)
	if err != nil {
		return nil, err
	}
	sc, err := openstack.NewBlockStorageV3(pc, eo)
	if err != nil {
		return nil, fmt.Errorf("block-storage (Cinder v3) service in the catalog: %w", err)
	}
	return &cinderVolumes{sc: sc}, nil
}

// cinderID reports whether id may be put in a Cinder URL as it is: a UUID
// of hex digits and hyphens (Cinder's ids are UUIDs; Nova's schema allows
// no other UUID form in a block device's uuid). Anything else, "..", "/"
// or "?" in particular, is never asked about.
func cinderID(id string) bool {
	if _, ok := proxy.CanonicalUUID(id); !ok {
		return false
	}
	for _, c := range id {
		if c != '-' && (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// VolumeImage implements proxy.Volumes.
func (c *cinderVolumes) VolumeImage(ctx context.Context, volumeID string) (string, error) {
	if !cinderID(volumeID) {
		return "", fmt.Errorf("volume %q is not a UUID: %w", volumeID, proxy.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, cinderTimeout)
	defer cancel()
	v, err := volumes.Get(ctx, c.sc, volumeID).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return "", fmt.Errorf("volume %s: %w", volumeID, proxy.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("cinder: volume %s: %w", volumeID, err)
	}
	return v.VolumeImageMetadata["image_id"], nil
}

// SnapshotImage implements proxy.Volumes: the image of the volume the
// snapshot was taken of (Cinder keeps a volume while it has snapshots).
func (c *cinderVolumes) SnapshotImage(ctx context.Context, snapshotID string) (string, error) {
	if !cinderID(snapshotID) {
		return "", fmt.Errorf("snapshot %q is not a UUID: %w", snapshotID, proxy.ErrNotFound)
	}
	sctx, cancel := context.WithTimeout(ctx, cinderTimeout)
	defer cancel()
	s, err := snapshots.Get(sctx, c.sc, snapshotID).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return "", fmt.Errorf("snapshot %s: %w", snapshotID, proxy.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("cinder: snapshot %s: %w", snapshotID, err)
	}
	if s.VolumeID == "" {
		return "", fmt.Errorf("cinder: snapshot %s names no volume", snapshotID)
	}
	img, err := c.VolumeImage(ctx, s.VolumeID)
	if err != nil {
		return "", fmt.Errorf("snapshot %s: %w", snapshotID, err)
	}
	return img, nil
}
