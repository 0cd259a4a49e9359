package glancesync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

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
// original error in the chain, its text capped (cappedErr).
func mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case glance.IsNotFound(err):
		return fmt.Errorf("%s: %w (%w)", op, ErrNotFound, capped(err))
	case glance.IsConflict(err):
		return fmt.Errorf("%s: %w (%w)", op, ErrConflict, capped(err))
	}
	return fmt.Errorf("%s: %w", op, capped(err))
}

// maxErrText is how much of a Glance error's text the sync keeps.
const maxErrText = 2048

// cappedErr is err with its text cut to maxErrText bytes: gophercloud's
// error for an unexpected status carries the whole answer body (a load
// balancer's HTML page; up to 64 KiB of a data call's), which would
// otherwise fill each outcome's detail, the report and every log line
// that names the failure. errors.Is and errors.As see err whole.
type cappedErr struct{ err error }

// capped is err, its text capped (cappedErr) when it carries an answer
// body longer than maxErrText.
func capped(err error) error {
	var ue gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &ue) && len(ue.Body) > maxErrText {
		return cappedErr{err}
	}
	return err
}

func (e cappedErr) Error() string { return capText(e.err.Error(), maxErrText) }

func (e cappedErr) Unwrap() error { return e.err }

// capText cuts s to at most n bytes, at a character boundary, saying how
// much was left out.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… (%d bytes more)", len(s)-cut)
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
		return nil, mapLimitErr("create image "+s.ID, "create", err)
	}
	return fromGlance(im), nil
}

// Stage and Upload send r chunked, as it comes; glance.Stage never replays a
// reader that cannot seek (the verifying stream cannot), so a 401 fails the
// attempt instead of sending the rest of the stream as if it were the image.
func (g *gcGlance) Stage(ctx context.Context, id string, r io.Reader) error {
	err := glance.Stage(ctx, g.sc, id, r).ExtractErr()
	if glance.IsStagedData(err) {
		return fmt.Errorf("stage image %s: %w (%w)", id, ErrStagedData, capped(err))
	}
	return mapLimitErr("stage image "+id, "data", err)
}

func (g *gcGlance) Upload(ctx context.Context, id string, r io.Reader, store string) error {
	return mapLimitErr("upload image "+id, "data", glance.UploadToStore(ctx, g.sc, id, r, store).ExtractErr())
}

// mapLimitErr is mapErr where Glance's 413 is one of its quotas or limits
// refusing step (create, data, import, member): a *LimitError naming it.
func mapLimitErr(op, step string, err error) error {
	if glance.IsOverQuota(err) {
		return &LimitError{Op: op, Step: step, Limit: glance.OverLimit(err), Err: err}
	}
	return mapErr(op, err)
}

func (g *gcGlance) ImportGlanceDirect(ctx context.Context, id string, stores []string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return mapLimitErr("import image "+id, "import", glance.ImportGlanceDirectToStores(ctx, g.sc, id, stores).ExtractErr())
}

func (g *gcGlance) ImportRefusal(ctx context.Context, id string) (string, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	tasks, err := glance.ImageTasks(ctx, g.sc, id)
	if glance.IsNotFound(err) {
		return "", nil // a Glance before Wallaby; or the image is gone
	}
	if err != nil {
		return "", mapErr("tasks of image "+id, err)
	}
	if len(tasks) == 0 {
		return "", nil
	}
	switch last := tasks[len(tasks)-1]; last.Status {
	case "failure":
		return cmp.Or(last.Message, "(no message)"), nil
	case "pending", "processing":
		return "", fmt.Errorf("tasks of image %s: %w", id, ErrTaskRunning)
	}
	return "", nil
}

func (g *gcGlance) Usage(ctx context.Context) (map[string]LimitUsage, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	u, err := glance.Usage(ctx, g.sc)
	if glance.IsNotFound(err) {
		return nil, nil // a Glance before Yoga: no unified limits to read
	}
	if err != nil {
		return nil, mapErr("usage", err)
	}
	out := make(map[string]LimitUsage, len(u))
	for k, v := range u {
		out[k] = LimitUsage{Limit: v.Limit, Usage: v.Usage}
	}
	return out, nil
}

func (g *gcGlance) Time(ctx context.Context) (time.Time, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	t, err := glance.ServerTime(ctx, g.sc)
	return t, mapErr("glance's clock", err)
}

func (g *gcGlance) Stores(ctx context.Context) ([]string, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	sts, err := glance.ListStores(ctx, g.sc).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil, ErrNoStores
	}
	if err != nil {
		return nil, mapErr("stores info", err)
	}
	ids := make([]string, 0, len(sts))
	for _, st := range sts {
		ids = append(ids, st.ID)
	}
	return ids, nil
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

// patchAttempts bounds the PATCH requests of one Patch: the first and the
// retries after a re-read found the sync's own change lost (or a 409).
const patchAttempts = 4

// patchBackoff is the pause before retry n (1, 2, 3): short, the race it
// works around lasts one Glance request.
func patchBackoff(n int) time.Duration { return time.Duration(n) * 150 * time.Millisecond }

// patchPlan is what Patch wants of an image, split as internal/glance sends it.
type patchPlan struct {
	attrs  glance.AttributeOpts // each set field is wanted
	set    map[string]string
	remove []string          // removed wherever present
	ifVal  map[string]string // removed only while it has this value
}

func planPatch(id string, ops []PatchOp) (*patchPlan, error) {
	p := &patchPlan{set: map[string]string{}, ifVal: map[string]string{}}
	for _, o := range ops {
		switch {
		case o.Name == "os_hidden":
			h, ok := o.Value.(bool)
			if !ok || o.Remove {
				return nil, fmt.Errorf("patch image %s: os_hidden must be set to a bool", id)
			}
			p.attrs.Hidden = &h
		case o.Name == "visibility" || o.Name == "name":
			v, ok := o.Value.(string)
			if !ok || o.Remove {
				return nil, fmt.Errorf("patch image %s: %s must be set to a string", id, o.Name)
			}
			if o.Name == "name" {
				p.attrs.Name = &v
			} else {
				p.attrs.Visibility = images.ImageVisibility(v)
			}
		case o.Remove && o.IfValue != "":
			p.ifVal[o.Name] = o.IfValue
		case o.Remove:
			p.remove = append(p.remove, o.Name)
		default:
			v, ok := o.Value.(string)
			if !ok {
				return nil, fmt.Errorf("patch image %s: property %s must be a string, not %T", id, o.Name, o.Value)
			}
			p.set[o.Name] = v
		}
	}
	return p, nil
}

// against returns what im lacks of the plan: the attributes that differ,
// the properties to set and to remove, and their description ("" when im
// already satisfies the plan).
func (p *patchPlan) against(im *glance.Image) (attrs glance.AttributeOpts, set map[string]string, remove []string, missing string) {
	var what []string
	if p.attrs.Name != nil && im.Name != *p.attrs.Name {
		attrs.Name = p.attrs.Name
		what = append(what, "name="+*p.attrs.Name)
	}
	if p.attrs.Visibility != "" && im.Visibility != p.attrs.Visibility {
		attrs.Visibility = p.attrs.Visibility
		what = append(what, "visibility="+string(p.attrs.Visibility))
	}
	if p.attrs.Hidden != nil && im.Hidden != *p.attrs.Hidden {
		attrs.Hidden = p.attrs.Hidden
		what = append(what, fmt.Sprintf("os_hidden=%t", *p.attrs.Hidden))
	}
	set = map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(p.set)) {
		if v, ok := im.Properties[k]; !ok || v != p.set[k] {
			set[k] = p.set[k]
			what = append(what, k+" set")
		}
	}
	for _, k := range p.remove {
		if _, ok := im.Properties[k]; ok {
			remove = append(remove, k)
			what = append(what, k+" removed")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(p.ifVal)) {
		if im.Properties[k] == p.ifVal[k] {
			remove = append(remove, k)
			what = append(what, k+" removed")
		}
	}
	return attrs, set, remove, strings.Join(what, ", ")
}

// Patch applies ops with one PATCH request (glance.PatchImage: properties
// and base attributes together), computed from a fresh read of the image:
// an op the image already satisfies is not sent, and nothing is sent when
// all are. Glance keeps no per-key edits: every PATCH, deactivate and
// reactivate reads the whole image, applies its change and saves the whole
// image from that read, with no compare-and-swap (no ETag, If-Match
// ignored, the JSON-patch "test" op refused). A writer racing this one (the
// CRL job, an operator, another sync) can therefore revert the sync's
// change, or have its own reverted by it. Patch re-reads the image after
// its write and, when its own change is not there, writes again (at most
// patchAttempts requests, a short pause between them), then fails naming
// what was lost. It cannot see that it reverted someone else's change: the
// image it reads back carries no trace of a write it overwrote.
func (g *gcGlance) Patch(ctx context.Context, id string, ops []PatchOp) error {
	if len(ops) == 0 {
		return nil
	}
	p, err := planPatch(id, ops)
	if err != nil {
		return err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	var lastErr error
	for n := 0; ; n++ {
		im, err := glance.Get(ctx, g.sc, id).Extract()
		if err != nil {
			return mapErr("patch image "+id, err)
		}
		attrs, set, remove, missing := p.against(im)
		if missing == "" {
			return nil // done (or nothing to do)
		}
		if n == patchAttempts {
			if lastErr != nil {
				return mapErr(fmt.Sprintf("patch image %s: %s not applied after %d attempts", id, missing, n), lastErr)
			}
			return fmt.Errorf("patch image %s: %s lost to concurrent writes of the image after %d attempts (Glance saves whole images: another writer's save from an older read reverted it)", id, missing, n)
		}
		if n > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("patch image %s: %s: %w", id, missing, ctx.Err())
			case <-time.After(patchBackoff(n)):
			}
		}
		lastErr = glance.PatchImage(ctx, g.sc, id, im.Properties, set, remove, attrs).Err
		switch {
		case lastErr == nil:
		case glance.IsConflict(lastErr):
			// a key this read showed was removed meanwhile ("replace"
			// or "remove" of a missing key): read again
		default:
			return mapErr("patch image "+id, lastErr)
		}
	}
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
	return mapLimitErr("add member "+project+" to "+id, "member", err)
}

func (g *gcGlance) RemoveMember(ctx context.Context, id, project string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	err := glance.RemoveMember(ctx, g.sc, id, project).ExtractErr()
	return mapErr("remove member "+project+" from "+id, err)
}
