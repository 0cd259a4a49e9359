package glancesync

import (
	"errors"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/glance"
)

// TestStoreFullNamesStagingDirectory: Glance answers a stage into a full
// staging directory with the same 413 ("Image storage media is full") as
// an upload into a full store, and a pass's back-off reports the recorded
// refusal without knowing which it was. Seen on the test stack with a
// 100 MiB tmpfs over glance-api's staging directory and 400 MiB images:
// the detail said only "Glance's store is full", and the store the images
// go to had room. The detail names the staging directory's setting too.
func TestStoreFullNamesStagingDirectory(t *testing.T) {
	for _, err := range []error{
		&LimitError{Op: "stage image X", Step: "data", Limit: glance.LimitStoreFull, Err: errors.New("Image storage media is full")},
		&LimitError{Op: "upload image X", Step: "data", Limit: glance.LimitStoreFull, Err: errors.New("Image storage media is full")},
	} {
		got := err.Error()
		for _, want := range []string{"store is full", "[os_glance_staging_store] filesystem_store_datadir", "the store the image goes to", "make room"} {
			if !strings.Contains(got, want) {
				t.Errorf("%q does not say %q", got, want)
			}
		}
	}
	if d := limitDetail("data", glance.LimitStoreFull); !strings.Contains(d, "os_glance_staging_store") {
		t.Errorf("the back-off's detail %q does not name the staging directory", d)
	}
}
