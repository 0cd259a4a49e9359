package glancesync

// Reasons a bundle is refused or an image is reported, besides the trust
// core's (validator.Reason*). They label the images_refused_total metric.
const (
	ReasonVONotAllowed   = "vo-not-allowed-for-source"
	ReasonDuplicateUUID  = "duplicate-uuid"
	ReasonSquatted       = "id-squatted"
	ReasonIDDeleted      = "id-deleted"
	ReasonUUIDImmutable  = "uuid-immutable"
	ReasonGlanceHash     = "glance-hash-mismatch"
	ReasonStaleReclaimed = "stale-reclaimed"
	ReasonKilled         = "glance-killed"
	ReasonUnreadable     = "bundle-unreadable"
	ReasonDeactivated    = "deactivated"
	// ReasonUUIDSquatted: a verified bundle whose uuid is bound to its VO
	// (uuid_seed) finds the mirror project's image of that uuid carrying
	// another VO's record without uuid_seed, mirrored in an earlier pass:
	// the image is deactivated as a squat and the bundle refused
	// (squat.go, stopSquat).
	ReasonUUIDSquatted = "uuid-squatted"
)

// Actions name what a pass did (or, with --dry-run, would do) to an image.
const (
	ActionCreate     = "create"
	ActionResume     = "resume"
	ActionUnchanged  = "unchanged"
	ActionUpdate     = "update"
	ActionMirrored   = "mirrored"
	ActionRefused    = "refused"
	ActionSkipped    = "skipped"
	ActionElsewhere  = "in-flight-elsewhere"
	ActionFailed     = "failed"
	ActionDeleted    = "deleted"
	ActionHide       = "retire-hide"
	ActionUnhide     = "unhide"
	ActionRetireDel  = "retire-delete"
	ActionDeactivate = "retire-deactivate-hide"
	ActionAlias      = "alias-create"
	// ActionAliasDelete: an alias of a tag that is no longer published
	// and has no current image, or any alias with sync.aliases false,
	// deleted (aliases.go).
	ActionAliasDelete = "alias-delete"
	// ActionRepair: a catalogue record removed from an image, or edited
	// on it, restored from the verified bundle (mirror.go, repairRecord).
	ActionRepair = "record-repair"
	// ActionProperties: free-form descriptor properties the site's
	// image_properties refuses removed from a mirrored image, and those it
	// allows that the image lacks written back (properties.go).
	ActionProperties = "properties"
)
