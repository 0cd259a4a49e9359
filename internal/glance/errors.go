package glance

import (
	"bytes"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
)

// IsNotFound reports whether err is a 404 answer from Glance.
func IsNotFound(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusNotFound)
}

// IsConflict reports whether err is a 409 answer from Glance: an image id
// that exists or existed (deleted ids cannot be reused), a property "add" on
// an existing key or "replace"/"remove" of a missing one, or an image in the
// wrong state.
func IsConflict(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusConflict)
}

// IsForbidden reports whether err is a 403 answer from Glance (policy,
// property protections, reserved or read-only attributes).
func IsForbidden(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusForbidden)
}

// IsOverQuota reports whether err is a 413 answer from Glance: to image
// data, the owner's storage quota (user_storage_quota, or Keystone's
// image_size_total, image_stage_total or image_count_uploading limits) or
// image_size_cap; to a create, image_count_total or image_property_quota;
// OverLimit says which.
func IsOverQuota(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusRequestEntityTooLarge)
}

// The limits OverLimit names besides Keystone's unified ones, which it
// names by their resource: image_size_total, image_stage_total,
// image_count_total, image_count_uploading.
const (
	LimitStorageQuota  = "user_storage_quota"   // glance-api.conf, the project's image data
	LimitSizeCap       = "image_size_cap"       // glance-api.conf, one image's size
	LimitStoreFull     = "store full"           // the store has no room left
	LimitPropertyQuota = "image_property_quota" // glance-api.conf, properties per image
	LimitTagQuota      = "image_tag_quota"
	LimitMemberQuota   = "image_member_quota"
	LimitLocationQuota = "image_location_quota"
)

// unifiedLimit is oslo.limit's ProjectOverLimit text, which Glance puts in
// the body of its 413 (and in the message of an import task it failed):
// "Project P is over a limit for [Resource image_count_total is over limit
// of 3 due to current usage 3 and delta 1]".
var unifiedLimit = regexp.MustCompile(`Resource (image_[a-z_]+) is over limit of`)

// glanceLimitTexts are Glance's (Zed) own 413 explanations, each with the
// limit it means.
var glanceLimitTexts = []struct{ text, limit string }{
	{"exceeds the storage quota", LimitStorageQuota},           // image_data: StorageQuotaFull
	{"will exceed the limit", LimitStorageQuota},               // StorageQuotaFull's own text
	{"The incoming image is too large", LimitSizeCap},          // image_data: ImageSizeLimitExceeded
	{"The provided image is too large", LimitSizeCap},          // ImageSizeLimitExceeded's own text
	{"storage media is full", LimitStoreFull},                  // image_data: StorageFull
	{"number of allowed image properties", LimitPropertyQuota}, // ImagePropertyLimitExceeded
	{"number of allowed image tags", LimitTagQuota},
	{"number of allowed image members", LimitMemberQuota},
	{"number of allowed image locations", LimitLocationQuota},
}

// OverLimitText names the Glance limit a 413 explanation (or a failed
// import task's message) says was hit: a Keystone unified limit by its
// resource name, or one of the Limit constants; "" when it names none.
func OverLimitText(s string) string {
	if m := unifiedLimit.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	for _, l := range glanceLimitTexts {
		if strings.Contains(s, l.text) {
			return l.limit
		}
	}
	return ""
}

// OverLimit names the limit of a 413 answer from Glance (OverLimitText of
// its body); "" for any other error, and for a 413 whose body names none
// (a front end's, say).
func OverLimit(err error) string {
	var ce gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ce) || ce.Actual != http.StatusRequestEntityTooLarge {
		return ""
	}
	return OverLimitText(string(ce.Body))
}

// IsStagedData reports whether err is Glance's 409 to a stage of an image
// it already holds staged data for ("The image ID has data on staging"):
// Zed keeps the staged file of an image whose import task it failed for
// a Keystone limit (image_size_total) while returning the image to
// queued, and then refuses every new stage of it for as long as the image
// lives. (The 409 of a stage of an image already uploading says otherwise.)
func IsStagedData(err error) bool {
	var ce gophercloud.ErrUnexpectedResponseCode
	return errors.As(err, &ce) && ce.Actual == http.StatusConflict && bytes.Contains(ce.Body, []byte("has data on staging"))
}

// Answered reports whether err is an answer from Glance (an HTTP status
// it did not expect), rather than a request that got none: a connection
// reset or closed mid-request, say.
func Answered(err error) bool {
	var ce gophercloud.ErrUnexpectedResponseCode
	return errors.As(err, &ce)
}
