package glancesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/members"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// gcGlance implements Glance with a gophercloud image v2 service client.
type gcGlance struct{ sc *gophercloud.ServiceClient }

// NewGlance returns the Glance calls of the sync over a gophercloud image v2
// client (openstack.NewImageV2).
func NewGlance(sc *gophercloud.ServiceClient) Glance { return &gcGlance{sc: sc} }

// mapErr turns 404 and 409 into ErrNotFound and ErrConflict, keeping the
// original error in the chain.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
		return fmt.Errorf("%s: %w (%w)", op, ErrNotFound, err)
	case gophercloud.ResponseCodeIs(err, http.StatusConflict):
		return fmt.Errorf("%s: %w (%w)", op, ErrConflict, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func fromGC(im *images.Image) *Image {
	out := &Image{
		ID: im.ID, Name: im.Name, Status: string(im.Status), Owner: im.Owner,
		Visibility: string(im.Visibility), Hidden: im.Hidden, Size: im.SizeBytes,
		CreatedAt: im.CreatedAt, UpdatedAt: im.UpdatedAt, Props: map[string]string{},
	}
	for k, v := range im.Properties {
		if s, ok := v.(string); ok {
			out.Props[k] = s
		}
	}
	return out
}

func (g *gcGlance) Get(ctx context.Context, id string) (*Image, error) {
	im, err := images.Get(ctx, g.sc, id).Extract()
	if err != nil {
		return nil, mapErr("get image "+id, err)
	}
	return fromGC(im), nil
}

// listQuery is an images.ListOptsBuilder with exact-match property filters.
type listQuery struct{ q url.Values }

func (l listQuery) ToImageListQuery() (string, error) { return "?" + l.q.Encode(), nil }

func (g *gcGlance) List(ctx context.Context, owner string, filters map[string]string) ([]*Image, error) {
	var out []*Image
	for _, hidden := range []string{"false", "true"} {
		q := url.Values{}
		q.Set("owner", owner)
		q.Set("limit", "500")
		q.Set("os_hidden", hidden)
		q.Set("sort_key", "created_at")
		q.Set("sort_dir", "asc")
		for k, v := range filters {
			q.Set(k, v)
		}
		err := images.List(g.sc, listQuery{q}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
			is, err := images.ExtractImages(p)
			if err != nil {
				return false, err
			}
			for i := range is {
				out = append(out, fromGC(&is[i]))
			}
			return true, nil
		})
		if err != nil {
			return nil, mapErr("list images", err)
		}
	}
	return out, nil
}

func (g *gcGlance) Create(ctx context.Context, s CreateSpec) (*Image, error) {
	vis := images.ImageVisibility(s.Visibility)
	opts := images.CreateOpts{
		ID: s.ID, Name: s.Name, DiskFormat: s.DiskFormat, ContainerFormat: s.ContainerFormat,
		MinDisk: s.MinDisk, MinRAM: s.MinRAM, Properties: s.Props,
	}
	if s.Visibility != "" {
		opts.Visibility = &vis
	}
	if s.Hidden {
		h := true
		opts.Hidden = &h
	}
	im, err := images.Create(ctx, g.sc, opts).Extract()
	if err != nil {
		return nil, mapErr("create image "+s.ID, err)
	}
	return fromGC(im), nil
}

// oneShot refuses to be rewound, so that gophercloud's replay after a
// re-authentication fails instead of sending the rest of a consumed stream
// as if it were the whole image.
type oneShot struct{ io.Reader }

func (oneShot) Seek(int64, int) (int64, error) {
	return 0, errors.New("image stream cannot be replayed")
}

// WriteTo keeps the underlying reader's large copies, when it has them.
func (o oneShot) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := o.Reader.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, o.Reader)
}

func (g *gcGlance) putData(ctx context.Context, op, id, what string, r io.Reader) error {
	_, err := g.sc.Request(ctx, http.MethodPut, g.sc.ServiceURL("images", id, what), &gophercloud.RequestOpts{
		RawBody:     oneShot{r},
		MoreHeaders: map[string]string{"Content-Type": "application/octet-stream"},
		OkCodes:     []int{http.StatusNoContent},
	})
	return mapErr(op+" "+id, err)
}

func (g *gcGlance) Stage(ctx context.Context, id string, r io.Reader) error {
	return g.putData(ctx, "stage image", id, "stage", r)
}

func (g *gcGlance) Upload(ctx context.Context, id string, r io.Reader) error {
	return g.putData(ctx, "upload image", id, "file", r)
}

func (g *gcGlance) ImportGlanceDirect(ctx context.Context, id string) error {
	err := imageimport.Create(ctx, g.sc, id, imageimport.CreateOpts{Name: imageimport.GlanceDirectMethod}).ExtractErr()
	return mapErr("import image "+id, err)
}

func (g *gcGlance) ImportMethods(ctx context.Context) ([]string, error) {
	info, err := imageimport.Get(ctx, g.sc).Extract()
	if err != nil {
		return nil, mapErr("import info", err)
	}
	return info.ImportMethods.Value, nil
}

// patchPath escapes a property name as a JSON pointer segment.
func patchPath(name string) string {
	return "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(name)
}

func (g *gcGlance) Patch(ctx context.Context, id string, ops []PatchOp) error {
	if len(ops) == 0 {
		return nil
	}
	im, err := g.Get(ctx, id)
	if err != nil {
		return err
	}
	body := make([]map[string]any, 0, len(ops))
	for _, o := range ops {
		_, has := im.Props[o.Name]
		switch {
		case o.Remove && !has:
			continue
		case o.Remove:
			body = append(body, map[string]any{"op": "remove", "path": patchPath(o.Name)})
		case o.Name == "os_hidden" || o.Name == "visibility" || has:
			body = append(body, map[string]any{"op": "replace", "path": patchPath(o.Name), "value": o.Value})
		default:
			body = append(body, map[string]any{"op": "add", "path": patchPath(o.Name), "value": o.Value})
		}
	}
	if len(body) == 0 {
		return nil
	}
	_, err = g.sc.Request(ctx, http.MethodPatch, g.sc.ServiceURL("images", id), &gophercloud.RequestOpts{
		JSONBody:    body,
		MoreHeaders: map[string]string{"Content-Type": "application/openstack-images-v2.1-json-patch"},
		OkCodes:     []int{http.StatusOK},
	})
	return mapErr("patch image "+id, err)
}

func (g *gcGlance) Deactivate(ctx context.Context, id string) error {
	_, err := g.sc.Post(ctx, g.sc.ServiceURL("images", id, "actions", "deactivate"), nil, nil, &gophercloud.RequestOpts{OkCodes: []int{http.StatusNoContent}})
	return mapErr("deactivate image "+id, err)
}

func (g *gcGlance) Delete(ctx context.Context, id string) error {
	return mapErr("delete image "+id, images.Delete(ctx, g.sc, id).ExtractErr())
}

func (g *gcGlance) Members(ctx context.Context, id string) ([]string, error) {
	var out []string
	err := members.List(g.sc, id).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		ms, err := members.ExtractMembers(p)
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			out = append(out, m.MemberID)
		}
		return true, nil
	})
	if err != nil {
		return nil, mapErr("list members of "+id, err)
	}
	sort.Strings(out)
	return out, nil
}

func (g *gcGlance) AddMember(ctx context.Context, id, project string) error {
	_, err := members.Create(ctx, g.sc, id, project).Extract()
	return mapErr("add member "+project+" to "+id, err)
}
