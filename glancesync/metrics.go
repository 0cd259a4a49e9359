package glancesync

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagetrust/imagetrust/validator"
)

// refusedReasons are the sync's own labels of images_refused_total,
// besides validator.Reasons.
var refusedReasons = []string{ReasonVONotAllowed, ReasonDuplicateUUID, ReasonSquatted, ReasonIDDeleted,
	ReasonUUIDImmutable, ReasonUUIDSquatted, ReasonGlanceHash, ReasonStaleReclaimed, ReasonUnreadable, ReasonNotInListing}

// retiredActions are the labels of images_retired_total.
var retiredActions = []string{"hide", "delete", "deactivate", ActionAliasDelete}

// Metrics are the sync's Prometheus metrics.
type Metrics struct {
	Mirrored    prometheus.Counter
	Refused     *prometheus.CounterVec
	Bytes       prometheus.Counter
	Transfer    prometheus.Histogram
	Pass        prometheus.Histogram
	LastSuccess prometheus.Gauge
	Retired     *prometheus.CounterVec
	Errors      prometheus.Counter
	// FailingImages is how many images an operation failed on in the
	// last pass that ran to its end (Report.Failed).
	FailingImages prometheus.Gauge
	// Orphaned counts, per VO with no [vo] section, the mirror project's
	// catalogue images of that VO (set each pass; a VO without any is not
	// exported).
	Orphaned *prometheus.GaugeVec
	// Repaired counts catalogue records restored from verified bundles
	// (lost in whole or in part, or with signed properties edited).
	Repaired prometheus.Counter
	// EmptySources is how many sources listed no bundle in the last pass
	// that ran to its end (Report.EmptySources): an unmounted mount point
	// or an emptied index, which retires nothing and so does not make the
	// pass unsuccessful, but mirrors nothing new either.
	EmptySources prometheus.Gauge
	// VanishedVOs is how many VOs listed no bundle in the last pass that
	// ran to its end while their sources listed others, and have active
	// images in the mirror project (Report.Vanished): nothing of them is retired.
	VanishedVOs prometheus.Gauge
	// HungFS counts the operations on a directory source (a listing, an
	// image's open or read) that failed because its file system did not
	// answer within their bound, or because an earlier one on the source
	// had still not returned (ErrHungFS: a hung mount).
	HungFS prometheus.Counter
	// UnboundImages is how many active catalogue images of the mirror
	// project have a uuid not bound to their VO (no uuid_seed), as of the
	// last pass that ran to its end (Report.Unbound): at 0, turning on
	// trust.require_bound_uuids stops no image.
	UnboundImages prometheus.Gauge
	// SquattedImages is how many catalogue images of the mirror project
	// the sync deactivated as squats of another VO's bound uuid
	// (imagetrust_deactivated_by=sync-uuid-squat), as of the last pass
	// that ran to its end (Report.Squatted): each waits for the operator
	// to delete it.
	SquattedImages prometheus.Gauge
	// ListingFailedVOs is how many VOs with signed listings had no valid
	// listing in the last pass that ran to its end (Report.ListingFailed).
	ListingFailedVOs prometheus.Gauge
	// ListingFailure is, by VO with signed listings and by reason (one
	// of validator.ListingReasons), 1 when the VO had no valid listing
	// for that reason in the last pass that ran to its end, else 0
	// (Report.ListingFailed). Every reason of every such VO is exported
	// from the start (New).
	ListingFailure *prometheus.GaugeVec
	listingMu      sync.Mutex
	listingVOs     map[string]bool // the VOs of ListingFailure's series
	// DroppedProps counts, by VO, the free-form descriptor properties
	// the site's image_properties refuses that were not copied into a new
	// image or were removed from a mirrored one (one per property).
	DroppedProps *prometheus.CounterVec
	// WithheldImages is how many catalogue images their VO's signed
	// listing names and no source listed in the last pass that ran to its
	// end (Report.Withheld).
	WithheldImages prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		listingVOs: map[string]bool{},
		Mirrored: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "images_mirrored_total",
			Help: "Images that became active in Glance."}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "images_refused_total",
			Help: "Bundles refused, by reason (counted once per pass)."}, []string{"reason"}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "bytes_total",
			Help: "Image bytes streamed to Glance."}),
		Transfer: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "transfer_seconds",
			Help: "Duration of one image transfer (stage to active).", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		Pass: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "pass_seconds",
			Help: "Duration of one sync pass.", Buckets: prometheus.ExponentialBuckets(0.5, 2, 14)}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "last_success_timestamp_seconds",
			Help: "Unix time of the end of the last successful pass: one that ran to its end with every source listed (images that failed in it count in failing_images)."}),
		Retired: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "images_retired_total",
			Help: "Images retired, by action."}, []string{"action"}),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "errors_total",
			Help: "Operational errors (network, Glance) in sync passes."}),
		FailingImages: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "failing_images",
			Help: "Images (and tag aliases) on which an operation failed (Glance, a transfer) in the last pass that ran to its end; the next pass retries them."}),
		Orphaned: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "orphaned_images",
			Help: "Catalogue images of the mirror project whose VO has no [vo] section (never synced, retired or bootable), by VO, as of the last pass."}, []string{"vo"}),
		Repaired: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "records_repaired_total",
			Help: "Catalogue records (imagetrust_* properties) restored from the verified bundle after they were removed from an image or edited on it."}),
		EmptySources: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "empty_sources",
			Help: "Sources that listed no bundle in the last pass that ran to its end (an unmounted mount point, an emptied rsync target or index): nothing of their VOs is retired or mirrored anew while so."}),
		VanishedVOs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "vanished_vos",
			Help: "VOs with active images in the mirror project that no source listed a bundle for in the last pass that ran to its end, while their sources listed others (every bundle of the VO withdrawn, or its directory lost): nothing of them is retired or mirrored anew while so."}),
		UnboundImages: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "unbound_images",
			Help: "Active catalogue images of the mirror project whose uuid is not bound to their VO (their signed descriptor has no uuid_seed), as of the last pass that ran to its end: those trust.require_bound_uuids would stop booting."}),
		SquattedImages: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "squatted_images",
			Help: "Catalogue images of the mirror project the sync deactivated because they squat another VO's bound uuid (imagetrust_deactivated_by=sync-uuid-squat), still in Glance after the last pass that ran to its end: delete each; its owner publishes under a new bound uuid."}),
		HungFS: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "hung_fs_total",
			Help: "Operations on a directory source (a listing, an image's open or read) that failed because its file system did not answer within their bound, or because an earlier one on it has not returned yet (a hung mount)."}),
		ListingFailedVOs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "listing_failed_vos",
			Help: "VOs with listing = \"signed\" that had no valid signed listing in the last pass that ran to its end (missing, bad signature, expired, rolled back): nothing of them is retired or mirrored anew while so."}),
		ListingFailure: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "listing_failure",
			Help: "1 for the reason a VO with listing = \"signed\" had no valid signed listing in the last pass that ran to its end (else 0, for each VO and reason): nothing of it is retired or mirrored anew while so."}, []string{"vo", "reason"}),
		DroppedProps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "dropped_properties_total",
			Help: "Free-form descriptor properties refused by the site's image_properties, by VO: not copied into a new image, or removed from a mirrored one (one per property)."}, []string{"vo"}),
		WithheldImages: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "withheld_images",
			Help: "Active images that their VO's valid signed listing names and no source listed in the last pass that ran to its end (withheld by a source): kept, not retired."}),
	}
	// every label value exists at 0 from the start, so that an alert on
	// increase() sees the first refusal or retirement too
	for _, r := range append(slices.Clone(validator.Reasons), refusedReasons...) {
		m.Refused.WithLabelValues(r)
	}
	for _, a := range retiredActions {
		m.Retired.WithLabelValues(a)
	}
	if reg != nil {
		reg.MustRegister(m.Mirrored, m.Refused, m.Bytes, m.Transfer, m.Pass, m.LastSuccess, m.Retired, m.Errors, m.FailingImages, m.Orphaned, m.Repaired, m.EmptySources, m.VanishedVOs, m.HungFS, m.UnboundImages, m.SquattedImages, m.ListingFailedVOs, m.ListingFailure, m.WithheldImages, m.DroppedProps)
		// the goroutines left blocked in a hung file system's kernel call
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "imagetrust", Subsystem: "sync", Name: "stuck_fs_operations",
			Help: "Operations on directory sources abandoned on a hung file system that have not returned yet (goroutines blocked in the kernel); the source is not listed or read while it has one."},
			func() float64 { return float64(StuckOperations()) }))
	}
	return m
}
