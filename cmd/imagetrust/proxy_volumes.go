package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	itconfig "github.com/imagetrust/imagetrust/internal/config"
	"github.com/imagetrust/imagetrust/validator/proxy"
)

// openVolumePolicy turns proxy.volume_policy into the gate's options:
// "refuse" and "allow" as they are, without Cinder; "check-image" asks
// Cinder (Options.Volumes) and refuses volumes made from no image. As the
// proxy cannot see Cinder's policy, check-image logs once at start-up what
// it relies on.
func openVolumePolicy(policy string, pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts, log *slog.Logger) (string, proxy.Volumes, error) {
	if policy != itconfig.VolumeCheckImage {
		return policy, nil, nil
	}
	vols, err := cinderVolumesOn(pc, eo)
	if err != nil {
		return "", nil, err
	}
	log.Warn("boot volumes are judged by the image Cinder says they were made from (volume_image_metadata.image_id); "+
		"this is only safe if Cinder lets nobody but admins set or remove a volume's image metadata "+
		"(policies volume_extension:volume_image_metadata:set and :remove, see etc/cinder/policy.yaml), "+
		"and it judges where a volume came from, not what was written to it since",
		"volume_policy", policy, "block_storage", vols.endpoint)
	return proxy.VolumeRefuse, vols, nil
}

// cinderTimeout bounds one question to Cinder (a boot waits for it).
const cinderTimeout = 30 * time.Second

// cinderVolumes implements proxy.Volumes (proxy.volume_policy =
// "check-image"): Cinder's block-storage v3 API tells which image a volume
// was made from (volume_image_metadata.image_id). The endpoint comes from
// the catalog of the proxy's own credentials; every question is asked with
// the caller's token, so Cinder answers about the volume Nova will attach,
// as Nova sees it with the same token, and the proxy needs no right to read
// other projects' volumes. The endpoint is used without a project id in its
// path (Cinder takes such URLs since Yoga, API 3.67), so one endpoint serves
// every caller's project. Answers are not cached: one GET per boot volume
// (two per snapshot), and a relabelled volume is judged afresh.
type cinderVolumes struct {
	pc       *gophercloud.ProviderClient // the proxy's: HTTP client, user agent
	endpoint string                      // .../v3/, no project id
}

// cinderVolumesOn finds the block-storage (volumev3) service in pc's
// catalog (the proxy's login).
func cinderVolumesOn(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts) (*cinderVolumes, error) {
	sc, err := newBlockStorageClient(pc, eo)
	if err != nil {
		return nil, err
	}
	project := ""
	if cr, ok := pc.GetAuthResult().(tokens.CreateResult); ok {
		if p, err := cr.ExtractProject(); err == nil && p != nil {
			project = p.ID
		}
	}
	return &cinderVolumes{pc: pc, endpoint: projectlessEndpoint(sc.Endpoint, project)}, nil
}

// projectlessEndpoint drops the trailing project id that Keystone rendered
// into a block-storage endpoint (".../v3/%(project_id)s"): the proxy's own
// project, not the caller's.
func projectlessEndpoint(endpoint, project string) string {
	e := strings.TrimSuffix(endpoint, "/")
	if project != "" {
		e = strings.TrimSuffix(e, "/"+project)
	}
	return e + "/"
}

// client is a service client on the Cinder endpoint that sends the
// caller's token and never re-authenticates.
func (c *cinderVolumes) client(token string) *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{HTTPClient: c.pc.HTTPClient, UserAgent: c.pc.UserAgent}
	pc.SetToken(token)
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: c.endpoint, Type: "block-storage"}
}

// notVisible reports whether Cinder's answer means the caller cannot see
// the volume: missing, another project's, or a token Cinder refuses.
func notVisible(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusNotFound) ||
		gophercloud.ResponseCodeIs(err, http.StatusForbidden) ||
		gophercloud.ResponseCodeIs(err, http.StatusUnauthorized)
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

// ask fetches the Cinder object kind ("volume", "snapshot") with id, with
// the caller's token and a bounded wait: get does the GET. An id that is no
// UUID, a missing token, and an object the caller can't see are
// proxy.ErrNotFound.
func (c *cinderVolumes) ask(ctx context.Context, token, kind, id string, get func(context.Context, *gophercloud.ServiceClient) error) error {
	if !cinderID(id) {
		return fmt.Errorf("%s %q is not a UUID: %w", kind, id, proxy.ErrNotFound)
	}
	if token == "" {
		return fmt.Errorf("%s %s: no token to ask Cinder with: %w", kind, id, proxy.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, cinderTimeout)
	defer cancel()
	err := get(ctx, c.client(token))
	if notVisible(err) {
		return fmt.Errorf("%s %s: %w", kind, id, proxy.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("cinder: %s %s: %w", kind, id, err)
	}
	return nil
}

// VolumeImage implements proxy.Volumes.
func (c *cinderVolumes) VolumeImage(ctx context.Context, token, volumeID string) (string, error) {
	var v *volumes.Volume
	err := c.ask(ctx, token, "volume", volumeID, func(ctx context.Context, sc *gophercloud.ServiceClient) (err error) {
		v, err = volumes.Get(ctx, sc, volumeID).Extract()
		return err
	})
	if err != nil {
		return "", err
	}
	img := v.VolumeImageMetadata["image_id"]
	if img == "" && (v.Status == "creating" || v.Status == "downloading") {
		// Cinder records the image once it has copied it into the volume
		return "", fmt.Errorf("volume %s is %s: %w", volumeID, v.Status, proxy.ErrVolumeNotReady)
	}
	return img, nil
}

// SnapshotImage implements proxy.Volumes: the image of the volume the
// snapshot was taken of (Cinder keeps a volume while it has snapshots).
func (c *cinderVolumes) SnapshotImage(ctx context.Context, token, snapshotID string) (string, error) {
	var sn *snapshots.Snapshot
	err := c.ask(ctx, token, "snapshot", snapshotID, func(ctx context.Context, sc *gophercloud.ServiceClient) (err error) {
		sn, err = snapshots.Get(ctx, sc, snapshotID).Extract()
		return err
	})
	if err != nil {
		return "", err
	}
	if sn.VolumeID == "" {
		return "", fmt.Errorf("cinder: snapshot %s names no volume", snapshotID)
	}
	img, err := c.VolumeImage(ctx, token, sn.VolumeID)
	if err != nil {
		return "", fmt.Errorf("snapshot %s: %w", snapshotID, err)
	}
	return img, nil
}
