package glance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/members"
)

// jsonPatchType is the only media type Glance accepts for PATCH (415
// otherwise).
const jsonPatchType = "application/openstack-images-v2.1-json-patch"

// Get retrieves one image.
func Get(ctx context.Context, client *gophercloud.ServiceClient, id string) (r GetResult) {
	resp, err := client.Get(ctx, imageURL(client, id), &r.Body, nil)
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// CreateOpts are the attributes of a new image. ID, when set, becomes the
// image id (Glance answers 409 if it exists or ever existed).
type CreateOpts struct {
	ID              string
	Name            string
	DiskFormat      string
	ContainerFormat string
	Visibility      images.ImageVisibility // empty: Glance's default (shared)
	Hidden          bool                   // os_hidden
	MinDisk         int
	MinRAM          int
	Tags            []string
	// Properties are sent as top-level string attributes; a key that names
	// one of the attributes above is refused.
	Properties map[string]string
}

// ToImageCreateMap builds the request body.
func (opts CreateOpts) ToImageCreateMap() (map[string]any, error) {
	b := map[string]any{}
	if opts.ID != "" {
		b["id"] = opts.ID
	}
	if opts.Name != "" {
		b["name"] = opts.Name
	}
	if opts.DiskFormat != "" {
		b["disk_format"] = opts.DiskFormat
	}
	if opts.ContainerFormat != "" {
		b["container_format"] = opts.ContainerFormat
	}
	if opts.Visibility != "" {
		b["visibility"] = opts.Visibility
	}
	if opts.Hidden {
		b["os_hidden"] = true
	}
	if opts.MinDisk != 0 {
		b["min_disk"] = opts.MinDisk
	}
	if opts.MinRAM != 0 {
		b["min_ram"] = opts.MinRAM
	}
	if len(opts.Tags) > 0 {
		b["tags"] = opts.Tags
	}
	for k, v := range opts.Properties {
		if typedKeys[k] {
			return nil, fmt.Errorf("glance: property %q is an image attribute, not a property", k)
		}
		b[k] = v
	}
	return b, nil
}

// Create creates an image record (status queued, no data).
func Create(ctx context.Context, client *gophercloud.ServiceClient, opts CreateOpts) (r CreateResult) {
	b, err := opts.ToImageCreateMap()
	if err != nil {
		r.Err = err
		return
	}
	resp, err := client.Post(ctx, listURL(client), b, &r.Body, &gophercloud.RequestOpts{
		OkCodes: []int{201},
	})
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// Delete deletes an image. Its id can never be used again in this Glance.
func Delete(ctx context.Context, client *gophercloud.ServiceClient, id string) (r DeleteResult) {
	resp, err := client.Delete(ctx, imageURL(client, id), &gophercloud.RequestOpts{
		OkCodes: []int{204},
	})
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// Deactivate makes an active image's data unavailable to non-admins.
// Deactivating a deactivated image is a no-op; for an image in any other
// status Glance 25.1.0 answers 403 (IsForbidden).
func Deactivate(ctx context.Context, client *gophercloud.ServiceClient, id string) (r ActionResult) {
	return action(ctx, client, id, "deactivate")
}

// Reactivate makes a deactivated image active again.
func Reactivate(ctx context.Context, client *gophercloud.ServiceClient, id string) (r ActionResult) {
	return action(ctx, client, id, "reactivate")
}

func action(ctx context.Context, client *gophercloud.ServiceClient, id, name string) (r ActionResult) {
	resp, err := client.Post(ctx, actionURL(client, id, name), nil, nil, &gophercloud.RequestOpts{
		OkCodes: []int{204},
	})
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// ImportGlanceDirect asks Glance to import the staged data of an image
// (status uploading) with the glance-direct method. Glance answers 202 and
// imports asynchronously: poll Get until the status is active (or the image
// leaves importing otherwise).
func ImportGlanceDirect(ctx context.Context, client *gophercloud.ServiceClient, id string) (r ImportResult) {
	return ImportGlanceDirectToStores(ctx, client, id, nil)
}

// ImportGlanceDirectToStores is ImportGlanceDirect into the named stores of
// a Glance with several (enabled_backends ids; none: its default_backend),
// with all_stores_must_succeed, so that the image becomes active only once
// it is in every one. Glance refuses a store it does not have with 409,
// which is also its answer to an import already under way: check the
// stores first (ListStores).
func ImportGlanceDirectToStores(ctx context.Context, client *gophercloud.ServiceClient, id string, stores []string) (r ImportResult) {
	b := map[string]any{"method": map[string]any{"name": "glance-direct"}}
	if len(stores) > 0 {
		b["stores"] = stores
		b["all_stores_must_succeed"] = true
	}
	resp, err := client.Post(ctx, importURL(client, id), b, nil, &gophercloud.RequestOpts{
		OkCodes: []int{202},
	})
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// Task is one of the tasks Glance ran on an image (an import's
// api_image_import task): its status (pending, processing, success,
// failure) and, once it failed, Glance's message saying why.
type Task struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	Message   string `json:"message"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

// ImageTasks lists the tasks of an image (GET /v2/images/{id}/tasks, Image
// API 2.12, Wallaby and later; whoever may read the image may read them),
// oldest first. An import Glance refuses in its task (Zed: the staged
// image would take the project over its Keystone limit image_size_total)
// returns the image to queued: only the task says why.
func ImageTasks(ctx context.Context, client *gophercloud.ServiceClient, id string) ([]Task, error) {
	var body struct {
		Tasks []Task `json:"tasks"`
	}
	resp, err := client.Get(ctx, client.ServiceURL("images", id, "tasks"), &body, nil)
	if _, _, err = gophercloud.ParseResponse(resp, err); err != nil {
		return nil, err
	}
	slices.SortStableFunc(body.Tasks, func(a, b Task) int { return strings.Compare(a.CreatedAt, b.CreatedAt) })
	return body.Tasks, nil
}

// LimitUsage is one of Glance's Keystone unified limits of a project as
// GET /v2/info/usage shows it: the limit and the project's usage, in the
// limit's unit (MiB for image_size_total and image_stage_total, Glance's
// byte counts divided by 1 MiB and rounded down; images otherwise).
type LimitUsage struct {
	Limit int64 `json:"limit"`
	Usage int64 `json:"usage"`
}

// Usage reads the Keystone unified limits of the caller's project and its
// usage (GET /v2/info/usage, Image API 2.14, Yoga and later), by resource
// (image_size_total, image_stage_total, image_count_total,
// image_count_uploading). A Glance without use_keystone_limits answers
// with none (an empty map); one before Yoga answers 404.
func Usage(ctx context.Context, client *gophercloud.ServiceClient) (map[string]LimitUsage, error) {
	var body struct {
		Usage map[string]LimitUsage `json:"usage"`
	}
	resp, err := client.Get(ctx, client.ServiceURL("info", "usage"), &body, nil)
	if _, _, err = gophercloud.ParseResponse(resp, err); err != nil {
		return nil, err
	}
	return body.Usage, nil
}

// ImportMethods retrieves the import methods the Glance offers
// (GET /v2/info/import).
func ImportMethods(ctx context.Context, client *gophercloud.ServiceClient) (r ImportMethodsResult) {
	resp, err := client.Get(ctx, client.ServiceURL("info", "import"), &r.Body, nil)
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// ListStores retrieves the stores of a Glance with several
// (GET /v2/info/stores; enabled_backends). A Glance without them answers
// 404 (gophercloud.ResponseCodeIs(err, http.StatusNotFound)).
func ListStores(ctx context.Context, client *gophercloud.ServiceClient) (r StoresResult) {
	resp, err := client.Get(ctx, client.ServiceURL("info", "stores"), &r.Body, nil)
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// ServerTime reads Glance's clock: the Date of its answer to
// GET /v2/info/import (one second's resolution). Glance stamps created_at
// and updated_at with that clock, so an image's age is measured with it.
func ServerTime(ctx context.Context, client *gophercloud.ServiceClient) (time.Time, error) {
	resp, err := client.Get(ctx, client.ServiceURL("info", "import"), nil, nil)
	if err != nil {
		return time.Time{}, err
	}
	d := resp.Header.Get("Date")
	if d == "" {
		return time.Time{}, errors.New("glance: no Date in the answer")
	}
	t, err := http.ParseTime(d)
	if err != nil {
		return time.Time{}, fmt.Errorf("glance: Date %q: %w", d, err)
	}
	return t, nil
}

// listQuery is an images.ListOptsBuilder made of raw query parameters.
type listQuery url.Values

// ToImageListQuery returns the query string, "?" included.
func (q listQuery) ToImageListQuery() (string, error) {
	if len(q) == 0 {
		return "", nil
	}
	return "?" + url.Values(q).Encode(), nil
}

// ListByProperties lists, following every page, the images of owner (all
// visible images when empty) whose properties equal props, with the extra
// query parameters (e.g. status=active, limit, sort) added as given.
func ListByProperties(ctx context.Context, client *gophercloud.ServiceClient, owner string, props map[string]string, extra url.Values) ([]Image, error) {
	q := url.Values{}
	for k, vs := range extra {
		q[k] = slices.Clone(vs)
	}
	if owner != "" {
		q.Set("owner", owner)
	}
	for k, v := range props {
		if q.Has(k) {
			return nil, fmt.Errorf("glance: list filter %q given twice", k)
		}
		q.Set(k, v)
	}
	for attempt := 0; ; attempt++ {
		pages, err := images.List(client, listQuery(q)).AllPages(ctx)
		if err != nil {
			// Glance looks the marker image up again for each page, and
			// for a user who is not an admin a deleted image is no image:
			// the listing meets 400 when the last image of a page is
			// deleted meanwhile (a retirement, an operator). It starts over.
			var ue gophercloud.ErrUnexpectedResponseCode
			if attempt < 2 && errors.As(err, &ue) && ue.Actual == http.StatusBadRequest && strings.Contains(ue.URL, "marker=") {
				continue
			}
			return nil, err
		}
		return ExtractImages(pages)
	}
}

// ListHiddenToo is ListByProperties for hidden and visible images alike.
// Glance has no filter for both (no os_hidden means os_hidden=false), so it
// lists the hidden images, then the visible ones: an image hidden or
// unhidden between the two listings comes in both, or in neither. One that
// comes in both is returned once, as last read; one that comes in neither
// is missed this time. Hidden ones come first, so that the usual change
// while someone lists (the sync unhiding an image it just mirrored) gives
// the former. extra must not hold os_hidden.
func ListHiddenToo(ctx context.Context, client *gophercloud.ServiceClient, owner string, props map[string]string, extra url.Values) ([]Image, error) {
	if extra.Has("os_hidden") {
		return nil, errors.New("glance: ListHiddenToo lists both; os_hidden given")
	}
	var out []Image
	at := map[string]int{}
	for _, hidden := range []string{"true", "false"} {
		q := maps.Clone(extra)
		if q == nil {
			q = url.Values{}
		}
		q.Set("os_hidden", hidden)
		ims, err := ListByProperties(ctx, client, owner, props, q)
		if err != nil {
			return nil, err
		}
		for _, im := range ims {
			if j, dup := at[im.ID]; dup {
				out[j] = im
				continue
			}
			at[im.ID] = len(out)
			out = append(out, im)
		}
	}
	return out, nil
}

// PatchProperties changes an image's string properties from current (the
// properties as last read, e.g. Image.Properties) so that every key of set
// has its value and no key of remove exists. It sends one JSON patch
// (application/openstack-images-v2.1-json-patch, applied atomically) with
// "add" for keys absent from current, "replace" for keys whose value
// differs and "remove" for keys of remove present in current. Glance answers
// 409 to "replace" or "remove" of a key that does not exist, so a current
// that lacks a key the image gained shows up as IsConflict: re-read and
// retry. That is the only staleness Glance reports: it has no
// compare-and-swap (no ETag, the "test" op refused, If-Match ignored) and
// saves the whole image as the request read it, so a PATCH (or a
// deactivate, reactivate) of another client that runs at the same time can
// silently undo this one, or be undone by it. A writer that must not lose
// its change reads the image again afterwards. (In this v2.1 dialect
// "add" of an existing key replaces its value; only the v2.0 dialect answers
// 409 to it, as tested against Glance 25.1.0.) When nothing changes no
// request is made and Changed is false.
func PatchProperties(ctx context.Context, client *gophercloud.ServiceClient, id string, current, set map[string]string, remove []string) (r PatchResult) {
	ops, err := propertyPatch(current, set, remove)
	if err != nil {
		r.Err = err
		return
	}
	if len(ops) == 0 {
		return
	}
	return patch(ctx, client, id, ops)
}

// patch sends one JSON patch (Glance's v2.1 dialect) of the image.
func patch(ctx context.Context, client *gophercloud.ServiceClient, id string, ops []map[string]any) (r PatchResult) {
	r.Changed = true
	resp, err := client.Patch(ctx, imageURL(client, id), ops, &r.Body, &gophercloud.RequestOpts{
		MoreHeaders: map[string]string{"Content-Type": jsonPatchType},
		OkCodes:     []int{200},
	})
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	return
}

// AttributeOpts are base attributes to change with PatchAttributes; a nil or
// empty field is left as it is.
type AttributeOpts struct {
	// Name is the new name.
	Name *string
	// Visibility is the new visibility (public, community, shared, private).
	Visibility images.ImageVisibility
	// Hidden sets os_hidden.
	Hidden *bool
}

// PatchAttributes changes base attributes of an image (those PatchProperties
// refuses) with one JSON patch of "replace" operations; base attributes
// always exist, so a replace never conflicts. It does not compare with the
// image's current values: every attribute set in opts is sent. When opts sets
// nothing no request is made and Changed is false.
func PatchAttributes(ctx context.Context, client *gophercloud.ServiceClient, id string, opts AttributeOpts) (r PatchResult) {
	ops := attributePatch(opts)
	if len(ops) == 0 {
		return
	}
	return patch(ctx, client, id, ops)
}

// PatchImage is PatchProperties and PatchAttributes in one JSON patch: the
// property operations computed from current (as PatchProperties does), then
// the attribute operations of attrs (as PatchAttributes does). Glance reads
// the whole image, applies a patch and saves the whole image from that read,
// whatever the patch touches: one request is one save, where the two
// functions above, called in turn, are two (two chances to revert a
// concurrent writer's change, or to have one's own reverted). When nothing
// changes no request is made and Changed is false.
func PatchImage(ctx context.Context, client *gophercloud.ServiceClient, id string, current, set map[string]string, remove []string, attrs AttributeOpts) (r PatchResult) {
	ops, err := propertyPatch(current, set, remove)
	if err != nil {
		r.Err = err
		return
	}
	ops = append(ops, attributePatch(attrs)...)
	if len(ops) == 0 {
		return
	}
	return patch(ctx, client, id, ops)
}

// attributePatch computes the operations of PatchAttributes, in a fixed order.
func attributePatch(opts AttributeOpts) []map[string]any {
	var ops []map[string]any
	if opts.Name != nil {
		ops = append(ops, map[string]any{"op": "replace", "path": "/name", "value": *opts.Name})
	}
	if opts.Visibility != "" {
		ops = append(ops, map[string]any{"op": "replace", "path": "/visibility", "value": opts.Visibility})
	}
	if opts.Hidden != nil {
		ops = append(ops, map[string]any{"op": "replace", "path": "/os_hidden", "value": *opts.Hidden})
	}
	return ops
}

// propertyPatch computes the JSON patch operations, in key order.
func propertyPatch(current, set map[string]string, remove []string) ([]map[string]any, error) {
	var ops []map[string]any
	check := func(k string) error {
		switch {
		case k == "":
			return errors.New("glance: empty property name")
		case strings.TrimSpace(k) != k:
			return fmt.Errorf("glance: property name %q has surrounding spaces (Glance strips them)", k)
		case typedKeys[k]:
			return fmt.Errorf("glance: %q is an image attribute, not a property", k)
		}
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if err := check(k); err != nil {
			return nil, err
		}
		v := set[k]
		cur, ok := current[k]
		switch {
		case !ok:
			ops = append(ops, map[string]any{"op": "add", "path": pointer(k), "value": v})
		case cur != v:
			ops = append(ops, map[string]any{"op": "replace", "path": pointer(k), "value": v})
		}
	}
	seen := map[string]bool{}
	for _, k := range slices.Sorted(slices.Values(remove)) {
		if err := check(k); err != nil {
			return nil, err
		}
		if _, both := set[k]; both {
			return nil, fmt.Errorf("glance: property %q both set and removed", k)
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, ok := current[k]; ok {
			ops = append(ops, map[string]any{"op": "remove", "path": pointer(k)})
		}
	}
	return ops, nil
}

// pointer is the JSON pointer of a top-level attribute.
func pointer(k string) string {
	return "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// AddMember shares a private or shared image with a project. The member
// still has to accept it for the image to appear in its listings (it can use
// it by id at once).
func AddMember(ctx context.Context, client *gophercloud.ServiceClient, id, project string) members.CreateResult {
	return members.Create(ctx, client, id, project)
}

// ListMembers returns the projects an image is shared with.
func ListMembers(ctx context.Context, client *gophercloud.ServiceClient, id string) ([]members.Member, error) {
	pages, err := members.List(client, id).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return members.ExtractMembers(pages)
}

// RemoveMember stops sharing an image with a project.
func RemoveMember(ctx context.Context, client *gophercloud.ServiceClient, id, project string) members.DeleteResult {
	return members.Delete(ctx, client, id, project)
}
