package glancesync

import (
	"errors"

	"github.com/imagetrust/imagetrust/internal/glance"
)

// LimitError is Glance's 413 (or an import task Glance failed for a
// limit): one of its quotas or limits refused a step of the mirror. Its
// text names the limit, says what Glance left of the image and what to
// raise: the operator's message (docs/glancesync.md, "Glance quotas and
// limits"). errors.Is(err, ErrOverQuota) holds.
type LimitError struct {
	// Op is the request, such as "upload image ID".
	Op string
	// Step is what Glance refused: "create", "data" (a stage or upload),
	// "import" (POST /import), "task" (the import's task) or "member"
	// (adding a member: image_member_quota); or
	// "import-check": what the pass did not ask for, as Glance's import
	// task would refuse it (Syncer.importRoom).
	Step string
	// Limit names the limit (glance.OverLimit): a Keystone unified limit
	// by its resource name, or one of glance.Limit*; "" when Glance's
	// answer names none.
	Limit string
	// Err is Glance's answer.
	Err error
}

func (e *LimitError) Error() string {
	return limitDetail(e.Step, e.Limit) + ": " + e.Op + ": " + capped(e.Err).Error()
}

// Is makes every LimitError an ErrOverQuota.
func (e *LimitError) Is(target error) bool { return target == ErrOverQuota }

func (e *LimitError) Unwrap() error { return e.Err }

// keystoneLimits explains Keystone's unified limits of Glance
// (glance/quota/keystone.py), by resource.
var keystoneLimits = map[string]string{
	glanceImageCountTotal:     "the images the mirror project may own, in any status",
	glanceImageCountUploading: "the images the mirror project may have being uploaded, staged or imported at once; an image staged and not yet imported counts",
	glanceImageSizeTotal:      "the MiB of image data the mirror project may hold; Glance refuses data only once the project is over it, so an upload may take it over",
	glanceImageStageTotal:     "the MiB of staged data the mirror project may hold; Glance refuses a stage only once the project is over it",
}

const (
	glanceImageCountTotal     = "image_count_total"
	glanceImageCountUploading = "image_count_uploading"
	glanceImageSizeTotal      = "image_size_total"
	glanceImageStageTotal     = "image_stage_total"
)

// limitDetail says which limit refused which step, what Glance (Zed,
// measured) left of the image, and what to raise.
func limitDetail(step, limit string) string {
	what := map[string]string{
		"create":       "Glance refused to create the image with 413",
		"data":         "Glance refused the image data with 413",
		"import":       "Glance refused the import with 413",
		"import-check": "the pass did not ask for the import: Glance's import task would refuse it",
		"task":         "Glance accepted the import, then its task refused it",
		"member":       "Glance refused to add a member with 413",
	}[step]
	left := map[string]string{
		"create":       "the image was not created, its uuid is unspent: the next pass creates it",
		"data":         "Glance returned the image to queued without data: a pass streams it again once its back-off has passed (--resume-after, doubled with each refusal in a row up to 6 hours; recorded on the image as imagetrust_sync_retry_after, whose removal retries it sooner)",
		"import":       "the image stays staged (uploading): the next pass imports it without downloading it again",
		"import-check": "the image stays staged (uploading): the next pass imports it without downloading it again",
		"task":         "Glance returned the image to queued but keeps its staged data, and so refuses every new stage of it: the next pass uploads the image instead (PUT /file, verified as it streams; with several sync.stores the staging file must be removed by hand: see docs/glancesync.md, \"Glance quotas and limits\")",
	}[step]
	if why, ok := keystoneLimits[limit]; ok {
		if (step == "task" || step == "import-check") && limit == glanceImageSizeTotal {
			why = "the MiB of image data the mirror project may hold; the import task refuses an image that would take the project over it"
		}
		raise := "raise it for the mirror project (openstack limit create --project MIRROR --service glance --resource-limit N " + limit + ", or openstack limit set --resource-limit N on its limit)"
		switch limit {
		case glanceImageCountUploading:
			raise += " above sync.parallel, or lower sync.parallel"
		case glanceImageStageTotal:
			raise += " to at least sync.parallel times the largest image, or lower sync.parallel"
		case glanceImageCountTotal:
			raise += ", or retire images (retire = \"delete\")"
		}
		return what + ": the mirror project is at its Keystone limit " + limit + " (" + why + "); " + raise + "; " + left
	}
	switch limit {
	case glance.LimitStorageQuota:
		if step == "data" {
			return what + ": the mirror project's storage quota (glance-api.conf user_storage_quota) is too small for it; raise it. Glance (Zed) leaves the image saving without data: it is reclaimed (deleted, its uuid spent) after stale_after, or delete it now"
		}
		return what + ": the mirror project's storage quota (glance-api.conf user_storage_quota) is too small for it; raise it"
	case glance.LimitSizeCap:
		return what + ": the image is larger than Glance's image_size_cap (glance-api.conf, the largest image Glance takes, in bytes); raise it; " + left + ", and is refused until then"
	case glance.LimitStoreFull:
		// a stage writes to glance-api's staging directory, not to the
		// store the image goes to: both answer "storage media is full"
		return what + ": Glance's store is full: for a stage (sync.ingest import or auto) its staging directory ([os_glance_staging_store] filesystem_store_datadir on the glance-api host that staged it), else the store the image goes to; make room in it; " + left
	case glance.LimitMemberQuota:
		return what + ": Glance's image_member_quota (glance-api.conf, the projects one image may be shared with) is smaller than the VO's projects; raise it to at least the most projects of a VO ([vo.NAME] projects), or share with fewer; the image is not shared with the project meanwhile, and each pass tries again"
	case glance.LimitPropertyQuota, glance.LimitTagQuota, glance.LimitLocationQuota:
		return what + ": Glance's " + limit + " (glance-api.conf) is too small for the image; raise it"
	}
	// a 413 that names no limit Glance (Zed) has: a front end's, or a
	// Glance that words its own otherwise
	return what + ": a quota or limit (Glance's answer names none; glance-api's log says which: user_storage_quota, image_size_cap, a Keystone limit of service glance); raise it; " + left
}

// taskRefusal is the *LimitError of an import whose task Glance failed
// with message, or nil when message names no limit.
func taskRefusal(id, message string) error {
	limit := glance.OverLimitText(message)
	if limit == "" {
		return nil
	}
	return &LimitError{Op: "import task of image " + id, Step: "task", Limit: limit, Err: errors.New("Glance's message: " + message)}
}
