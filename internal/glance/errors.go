package glance

import (
	"net/http"

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

// IsOverQuota reports whether err is a 413 answer from Glance to image
// data: the owner's storage quota (user_storage_quota, or Keystone's
// image_size_total limit) or image_size_cap would be exceeded.
func IsOverQuota(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusRequestEntityTooLarge)
}
