package glancesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagetrust/imagetrust/internal/glance"
)

// gcGlance implements Glance over internal/glance with a gophercloud image
// v2 client.
type gcGlance struct{ sc *gophercloud.ServiceClient }

// NewGlance returns the Glance calls of the sync over a gophercloud image v2
// client (openstack.NewImageV2).
func NewGlance(sc *gophercloud.ServiceClient) Glance { return &gcGlance{sc: sc} }

// callTimeout bounds each Glance call that moves no image data (a read, a
// write of properties; a listing has listTimeout): the HTTP client bounds
// only the wait for an answer's head, and a front end that sends a head and
// then stalls would hold the pass for ever.
const callTimeout = 2 * time.Minute

// listTimeout bounds a whole listing, every page of it (500 images a page).
const listTimeout = 10 * time.Minute

func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}

// mapErr turns 404 and 409 into ErrNotFound and ErrConflict, keeping the
// original error in the chain.
func mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case glance.IsNotFound(err):
		return fmt.Errorf("%s: %w (%w)", op, ErrNotFound, err)
	case glance.IsConflict(err):
		return fmt.Errorf("%s: %w (%w)", op, ErrConflict, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// fromGlance converts an image; os_hash_algo and os_hash_value join Props.
func fromGlance(im *glance.Image) *Image {
	out := &Image{
		ID: im.ID, Name: im.Name, Status: string(im.Status), Owner: im.Owner,
		Visibility: string(im.Visibility), Hidden: im.Hidden, Size: im.Size,
		CreatedAt: im.CreatedAt, UpdatedAt: im.UpdatedAt, Props: make(map[string]string, len(im.Properties)+2),
	}
	for k, v := range im.Properties {
		out.Props[k] = v
	}
	if im.HashAlgo != "" {
		out.Props["os_hash_algo"] = im.HashAlgo
	}
	if im.HashValue != "" {
		out.Props["os_hash_value"] = im.HashValue
	}
	return out
}

func (g *gcGlance) Get(ctx context.Context, id string) (*Image, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	im, err := glance.Get(ctx, g.sc, id).Extract()
	if err != nil {
		return nil, mapErr("get image "+id, err)
	}
	return fromGlance(im), nil
}

// List lists hidden and visible images (glance.ListHiddenToo: an image
// hidden or unhidden meanwhile comes once, or is seen next pass).
func (g *gcGlance) List(ctx context.Context, owner string, filters map[string]string) ([]*Image, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	ims, err := glance.ListHiddenToo(ctx, g.sc, owner, filters, url.Values{"limit": {"500"}, "sort_key": {"created_at"}, "sort_dir": {"asc"}})
	if err != nil {
		return nil, mapErr("list images", err)
	}
	out := make([]*Image, 0, len(ims))
	for i := range ims {
		out = append(out, fromGlance(&ims[i]))
	}
	return out, nil
}

func (g *gcGlance) Create(ctx context.Context, s CreateSpec) (*Image, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	im, err := glance.Create(ctx, g.sc, glance.CreateOpts{
		ID: s.ID, Name: s.Name, DiskFormat: s.DiskFormat, ContainerFormat: s.ContainerFormat,
		Visibility: images.ImageVisibility(s.Visibility), Hidden: s.Hidden,
		MinDisk: s.MinDisk, MinRAM: s.MinRAM, Properties: s.Props,
	}).Extract()
	if err != nil {
		return nil, mapErr("create image "+s.ID, err)
	}
	return fromGlance(im), nil
}

// Stage and Upload send r chunked, as it comes; glance.Stage never replays a
// reader that cannot seek (the verifying stream cannot), so a 401 fails the
// attempt instead of sending the rest of the stream as if it were the image.
func (g *gcGlance) Stage(ctx context.Context, id string, r io.Reader) error {
	return mapErr("stage image "+id, glance.Stage(ctx, g.sc, id, r).ExtractErr())
}

func (g *gcGlance) Upload(ctx context.Context, id string, r io.Reader) error {
	return mapErr("upload image "+id, glance.Upload(ctx, g.sc, id, r).ExtractErr())
}

func (g *gcGlance) ImportGlanceDirect(ctx context.Context, id string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return mapErr("import image "+id, glance.ImportGlanceDirect(ctx, g.sc, id).ExtractErr())
}

func (g *gcGlance) ImportMethods(ctx context.Context) ([]string, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	m, err := glance.ImportMethods(ctx, g.sc).Extract()
	if err != nil {
		return nil, mapErr("import info", err)
	}
	return m, nil
}

// Patch sends the base attributes (os_hidden, visibility, name) with
// glance.PatchAttributes and string properties with glance.PatchProperties
// from a fresh read: one request each, when there is something of each kind.
func (g *gcGlance) Patch(ctx context.Context, id string, ops []PatchOp) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	var attrs glance.AttributeOpts
	set := map[string]string{}
	var remove []string
	for _, o := range ops {
		switch {
		case o.Name == "os_hidden":
			h, ok := o.Value.(bool)
			if !ok || o.Remove {
				return fmt.Errorf("patch image %s: os_hidden must be set to a bool", id)
			}
			attrs.Hidden = &h
		case o.Name == "visibility" || o.Name == "name":
			v, ok := o.Value.(string)
			if !ok || o.Remove {
				return fmt.Errorf("patch image %s: %s must be set to a string", id, o.Name)
			}
			if o.Name == "name" {
				attrs.Name = &v
			} else {
				attrs.Visibility = images.ImageVisibility(v)
			}
		case o.Remove:
			remove = append(remove, o.Name)
		default:
			v, ok := o.Value.(string)
			if !ok {
				return fmt.Errorf("patch image %s: property %s must be a string, not %T", id, o.Name, o.Value)
			}
			set[o.Name] = v
		}
	}
	if len(set) > 0 || len(remove) > 0 {
		im, err := glance.Get(ctx, g.sc, id).Extract()
		if err != nil {
			return mapErr("patch image "+id, err)
		}
		if err := glance.PatchProperties(ctx, g.sc, id, im.Properties, set, remove).Err; err != nil {
			return mapErr("patch image "+id, err)
		}
	}
	return mapErr("patch image "+id, glance.PatchAttributes(ctx, g.sc, id, attrs).Err)
}

func (g *gcGlance) Deactivate(ctx context.Context, id string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return mapErr("deactivate image "+id, glance.Deactivate(ctx, g.sc, id).ExtractErr())
}

// Delete deletes an image. Two deletes of one image at once (racing syncs
// removing a surplus alias) give the loser 400 ("status transition from
// deleted to deleted"), not 404: an error after which the image is gone is
// reported as ErrNotFound.
func (g *gcGlance) Delete(ctx context.Context, id string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	err := mapErr("delete image "+id, glance.Delete(ctx, g.sc, id).ExtractErr())
	if err != nil && !errors.Is(err, ErrNotFound) {
		if _, gerr := glance.Get(ctx, g.sc, id).Extract(); glance.IsNotFound(gerr) {
			return fmt.Errorf("delete image %s: deleted meanwhile: %w", id, ErrNotFound)
		}
	}
	return err
}

func (g *gcGlance) Members(ctx context.Context, id string) ([]string, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	ms, err := glance.ListMembers(ctx, g.sc, id)
	if err != nil {
		return nil, mapErr("list members of "+id, err)
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.MemberID)
	}
	sort.Strings(out)
	return out, nil
}

func (g *gcGlance) AddMember(ctx context.Context, id, project string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	_, err := glance.AddMember(ctx, g.sc, id, project).Extract()
	return mapErr("add member "+project+" to "+id, err)
}

func (g *gcGlance) RemoveMember(ctx context.Context, id, project string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	err := glance.RemoveMember(ctx, g.sc, id, project).ExtractErr()
	return mapErr("remove member "+project+" from "+id, err)
}
