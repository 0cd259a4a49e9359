package glance

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
)

// TestOverLimit: the 413 bodies Debian's Glance Zed (25.1.0) sends each
// name their limit: as measured against tests/openstack with Keystone
// unified limits and an image_size_cap (glancesync's TestKeystoneLimits,
// TestImageSizeCap), and as its source words the storage quota's, a full
// store's and the property quota's.
func TestOverLimit(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"message": "The request returned a 413 Request Entity Too Large. This generally means that rate limiting or a quota threshold was breached.\n\nThe response body:\nProject 0e55 is over a limit for [Resource image_count_total is over limit of 3 due to current usage 3 and delta 1]<br /><br />\n\n\n", "code": "413 Request Entity Too Large", "title": "Request Entity Too Large"}`, "image_count_total"},
		{`{"message": "The request returned a 413 Request Entity Too Large. This generally means that rate limiting or a quota threshold was breached.\n\nThe response body:\nProject 0e55 is over a limit for [Resource image_count_uploading is over limit of 1 due to current usage 2 and delta 0]<br /><br />\n\n\n"}`, "image_count_uploading"},
		{`{"message": "...Project 0e55 is over a limit for [Resource image_size_total is over limit of 1 due to current usage 2 and delta 0]"}`, "image_size_total"},
		{`{"message": "...Project 0e55 is over a limit for [Resource image_stage_total is over limit of 1 due to current usage 2 and delta 0]"}`, "image_stage_total"},
		{`{"message": "The incoming image is too large: The provided image is too large.<br /><br />\n\n\n", "code": "413 Request Entity Too Large"}`, LimitSizeCap},
		{`{"message": "Image exceeds the storage quota: The size of the data 2097152 will exceed the limit. 1000000 bytes remaining."}`, LimitStorageQuota},
		{`{"message": "The limit has been exceeded on the number of allowed image properties. Attempted: 129, Maximum: 128"}`, LimitPropertyQuota},
		{`{"message": "Image storage media is full: There is not enough disk space on the image storage media."}`, LimitStoreFull},
		{`<html><body><h1>413 Request Entity Too Large</h1>nginx</body></html>`, ""},
	} {
		err := fmt.Errorf("upload: %w", gophercloud.ErrUnexpectedResponseCode{Actual: http.StatusRequestEntityTooLarge, Body: []byte(tc.body)})
		if got := OverLimit(err); got != tc.want {
			t.Errorf("OverLimit(%.60s…) = %q, want %q", tc.body, got, tc.want)
		}
		if !IsOverQuota(err) {
			t.Errorf("IsOverQuota(%.60s…) = false", tc.body)
		}
	}
	other := gophercloud.ErrUnexpectedResponseCode{Actual: http.StatusConflict, Body: []byte(`{"message": "The image 0e55 has data on staging<br /><br />\n\n\n", "code": "409 Conflict"}`)}
	if OverLimit(other) != "" || OverLimit(errors.New("image_size_total")) != "" {
		t.Error("OverLimit names a limit for an error that is no 413")
	}
	if !IsStagedData(fmt.Errorf("stage: %w", other)) {
		t.Error("IsStagedData: false for Glance's 409 \"has data on staging\"")
	}
	if IsStagedData(gophercloud.ErrUnexpectedResponseCode{Actual: http.StatusConflict, Body: []byte(`{"message": "Image status transition from uploading to uploading is not allowed"}`)}) {
		t.Error("IsStagedData: true for another 409")
	}
}
