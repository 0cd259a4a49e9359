package glancesync

import (
	"context"
	"errors"
	"io"
	"time"
)

// Glance image statuses the sync acts on.
const (
	StatusQueued      = "queued"
	StatusSaving      = "saving"
	StatusUploading   = "uploading"
	StatusImporting   = "importing"
	StatusActive      = "active"
	StatusDeactivated = "deactivated"
	StatusKilled      = "killed"
)

// ErrNotFound is returned by Glance.Get for an id Glance does not show
// (never created, or deleted: deleted ids are never reusable).
var ErrNotFound = errors.New("glance: image not found")

// ErrConflict is returned for a Glance 409: an id that already exists on
// create, or a status transition another request got first.
var ErrConflict = errors.New("glance: conflict")

// ErrOverQuota is returned (as a *LimitError) for Glance's 413: one of
// its quotas or limits refused a create, image data or an import.
var ErrOverQuota = errors.New("glance: over a quota or limit")

// ErrStagedData is returned by Stage for Glance's 409 to a stage of an
// image it holds staged data for (glance.IsStagedData): left by an import
// Glance refused in its task, not by another sync (whose stage Glance
// refuses with another 409, ErrConflict).
var ErrStagedData = errors.New("glance: the image has data on staging")

// ErrTaskRunning is returned by Glance.ImportRefusal while the image's
// latest task is still pending or processing: Glance (Zed) returns an
// image whose import its task refused to queued a moment before it marks
// the task failed.
var ErrTaskRunning = errors.New("glance: the image's import task is still running")

// ErrNoStores is returned by Glance.Stores for a Glance with one store
// (no enabled_backends): it has no store ids to name.
var ErrNoStores = errors.New("glance: no several stores (enabled_backends) configured")

// Image is what the sync needs to know of a Glance image.
type Image struct {
	ID         string
	Name       string
	Status     string
	Owner      string
	Visibility string
	Hidden     bool
	// Size is the stored (or staged) size; 0 when unknown.
	Size      int64
	CreatedAt time.Time
	UpdatedAt time.Time
	// Props are the extra properties (os_hash_algo, os_hash_value and every
	// imagetrust_* key among them); a rare non-string one is its JSON text.
	Props map[string]string
}

// CreateSpec is a new image: its chosen id and everything but its data.
type CreateSpec struct {
	ID              string
	Name            string
	DiskFormat      string
	ContainerFormat string
	MinDisk         int
	MinRAM          int
	Visibility      string
	Hidden          bool
	Props           map[string]string
}

// PatchOp is one change of a JSON-patch: set Name to Value (Remove: delete it).
// Name may be a base attribute (os_hidden with a bool; visibility or name
// with a string; never removed) or an extra property (a string). Patch
// decides what to send from its own read of the image, made just before it
// writes, not from the caller's (a listing may be hours old): an op the
// image already satisfies is not sent.
type PatchOp struct {
	Name   string
	Value  any
	Remove bool
	// IfValue, with Remove, removes the property only if it has this value
	// in that read (e.g. the CRL job's crl-hold marker, which the job may
	// have written after the caller's listing).
	IfValue string
}

// Glance is the subset of the Image API v2 the sync uses. NewGlance
// implements it over internal/glance; every method returns ErrNotFound or
// ErrConflict (wrapped) for a 404 or 409.
type Glance interface {
	// Get returns one image.
	Get(ctx context.Context, id string) (*Image, error)
	// List returns every image owned by owner whose extra properties match
	// filters exactly, hidden ones included, in every status.
	List(ctx context.Context, owner string, filters map[string]string) ([]*Image, error)
	// Create creates an image with its chosen id (no data).
	Create(ctx context.Context, spec CreateSpec) (*Image, error)
	// Stage streams data to PUT /v2/images/{id}/stage. r is read once; the
	// request is never replayed.
	Stage(ctx context.Context, id string, r io.Reader) error
	// ImportGlanceDirect starts the glance-direct import of staged data
	// into stores (none: Glance's default store), all of which must
	// succeed.
	ImportGlanceDirect(ctx context.Context, id string, stores []string) error
	// Upload streams data to PUT /v2/images/{id}/file (the image becomes
	// active when it returns), into store ("": Glance's default store).
	Upload(ctx context.Context, id string, r io.Reader, store string) error
	// ImportMethods lists the import methods the site enables.
	ImportMethods(ctx context.Context) ([]string, error)
	// Stores lists the ids of Glance's stores; ErrNoStores when it has
	// no several stores (no enabled_backends).
	Stores(ctx context.Context) ([]string, error)
	// Time reads Glance's clock, the one of created_at and updated_at.
	Time(ctx context.Context) (time.Time, error)
	// Patch applies changes; it sends nothing when ops is empty or the
	// image already satisfies them.
	Patch(ctx context.Context, id string, ops []PatchOp) error
	// Deactivate deactivates an active image.
	Deactivate(ctx context.Context, id string) error
	// Delete deletes an image (its id can never be used again).
	Delete(ctx context.Context, id string) error
	// ImportRefusal returns Glance's message if the image's latest task (an
	// import's) failed, "" otherwise (none, done; or a Glance without
	// GET /v2/images/{id}/tasks), and an error wrapping ErrTaskRunning
	// while that task is still pending or processing.
	ImportRefusal(ctx context.Context, id string) (string, error)
	// Usage reads the mirror project's Keystone unified limits of Glance
	// and its usage, by resource (GET /v2/info/usage); none (an empty
	// map) where Glance runs without use_keystone_limits or is older
	// than Yoga.
	Usage(ctx context.Context) (map[string]LimitUsage, error)
	// Members lists the projects an image is shared with.
	Members(ctx context.Context, id string) ([]string, error)
	// AddMember shares an image with a project.
	AddMember(ctx context.Context, id, project string) error
	// RemoveMember stops sharing an image with a project.
	RemoveMember(ctx context.Context, id, project string) error
}

// LimitUsage is a Keystone unified limit of Glance for the mirror project
// and the project's usage, in the limit's unit (whole MiB, rounded down,
// for image_size_total and image_stage_total).
type LimitUsage struct {
	Limit, Usage int64
}
