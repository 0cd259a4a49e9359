package glance

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// Image is a Glance v2 image: the base attributes imagetrust uses, typed,
// and every other attribute in Properties.
type Image struct {
	ID              string
	Name            string
	Status          images.ImageStatus
	Owner           string
	Visibility      images.ImageVisibility
	Hidden          bool // os_hidden
	Protected       bool
	HashAlgo        string // os_hash_algo, empty until the image has data
	HashValue       string // os_hash_value (hex), empty until the image has data
	Checksum        string // MD5, empty until the image has data
	Size            int64  // bytes, 0 until the image has data
	DiskFormat      string
	ContainerFormat string
	MinDisk         int
	MinRAM          int
	Tags            []string
	CreatedAt       time.Time
	UpdatedAt       time.Time

	// Properties holds every attribute not typed above, except the links
	// (self, file, schema) and Glance's own locations, direct_url and
	// stores. Custom properties are strings in Glance; the rare non-string
	// attribute (e.g. virtual_size) is kept as its JSON text.
	Properties map[string]string
}

// typedKeys are the attributes decoded into Image fields or dropped.
var typedKeys = map[string]bool{
	"id": true, "name": true, "status": true, "owner": true, "visibility": true,
	"os_hidden": true, "protected": true, "os_hash_algo": true, "os_hash_value": true,
	"checksum": true, "size": true, "disk_format": true, "container_format": true,
	"min_disk": true, "min_ram": true, "tags": true, "created_at": true, "updated_at": true,
	"self": true, "file": true, "schema": true, "locations": true, "direct_url": true,
	"stores": true,
}

// UnmarshalJSON decodes a Glance image document.
func (im *Image) UnmarshalJSON(b []byte) error {
	var base struct {
		ID              string                 `json:"id"`
		Name            *string                `json:"name"`
		Status          images.ImageStatus     `json:"status"`
		Owner           *string                `json:"owner"`
		Visibility      images.ImageVisibility `json:"visibility"`
		Hidden          bool                   `json:"os_hidden"`
		Protected       bool                   `json:"protected"`
		HashAlgo        *string                `json:"os_hash_algo"`
		HashValue       *string                `json:"os_hash_value"`
		Checksum        *string                `json:"checksum"`
		Size            *int64                 `json:"size"`
		DiskFormat      *string                `json:"disk_format"`
		ContainerFormat *string                `json:"container_format"`
		MinDisk         int                    `json:"min_disk"`
		MinRAM          int                    `json:"min_ram"`
		Tags            []string               `json:"tags"`
		CreatedAt       time.Time              `json:"created_at"`
		UpdatedAt       time.Time              `json:"updated_at"`
	}
	if err := json.Unmarshal(b, &base); err != nil {
		return fmt.Errorf("decoding image: %w", err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return fmt.Errorf("decoding image: %w", err)
	}
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	*im = Image{
		ID:              base.ID,
		Name:            deref(base.Name),
		Status:          base.Status,
		Owner:           deref(base.Owner),
		Visibility:      base.Visibility,
		Hidden:          base.Hidden,
		Protected:       base.Protected,
		HashAlgo:        deref(base.HashAlgo),
		HashValue:       deref(base.HashValue),
		Checksum:        deref(base.Checksum),
		DiskFormat:      deref(base.DiskFormat),
		ContainerFormat: deref(base.ContainerFormat),
		MinDisk:         base.MinDisk,
		MinRAM:          base.MinRAM,
		Tags:            base.Tags,
		CreatedAt:       base.CreatedAt,
		UpdatedAt:       base.UpdatedAt,
		Properties:      make(map[string]string),
	}
	if base.Size != nil {
		im.Size = *base.Size
	}
	for k, raw := range all {
		if typedKeys[k] {
			continue
		}
		if string(raw) == "null" {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			im.Properties[k] = s
			continue
		}
		im.Properties[k] = string(raw)
	}
	return nil
}

type commonResult struct {
	gophercloud.Result
}

// Extract interprets the result as an Image.
func (r commonResult) Extract() (*Image, error) {
	var s *Image
	err := r.ExtractInto(&s)
	return s, err
}

// GetResult is the result of Get. Call its Extract method.
type GetResult struct {
	commonResult
}

// CreateResult is the result of Create. Call its Extract method.
type CreateResult struct {
	commonResult
}

// PatchResult is the result of PatchProperties. Changed tells whether a
// request was made; Extract returns nil and no error when none was.
type PatchResult struct {
	commonResult
	// Changed is true when a PATCH was sent.
	Changed bool
}

// Extract returns the image as Glance returned it after the patch, or nil
// when nothing needed to change.
func (r PatchResult) Extract() (*Image, error) {
	if r.Err == nil && !r.Changed {
		return nil, nil
	}
	return r.commonResult.Extract()
}

// DeleteResult is the result of Delete. Call its ExtractErr method.
type DeleteResult struct {
	gophercloud.ErrResult
}

// ActionResult is the result of Deactivate and Reactivate. Call its
// ExtractErr method.
type ActionResult struct {
	gophercloud.ErrResult
}

// StageResult is the result of Stage. Call its ExtractErr method.
type StageResult struct {
	gophercloud.ErrResult
}

// UploadResult is the result of Upload. Call its ExtractErr method.
type UploadResult struct {
	gophercloud.ErrResult
}

// ImportResult is the result of ImportGlanceDirect. Call its ExtractErr
// method.
type ImportResult struct {
	gophercloud.ErrResult
}

// ImportMethodsResult is the result of ImportMethods. Call its Extract
// method.
type ImportMethodsResult struct {
	gophercloud.Result
}

// Extract returns the names of the import methods the Glance offers.
func (r ImportMethodsResult) Extract() ([]string, error) {
	var s struct {
		ImportMethods struct {
			Value []string `json:"value"`
		} `json:"import-methods"`
	}
	err := r.ExtractInto(&s)
	return s.ImportMethods.Value, err
}

// StoresResult is the result of ListStores. Call its Extract method.
type StoresResult struct {
	gophercloud.Result
}

// Store is one of a Glance's stores.
type Store struct {
	// ID is the store's enabled_backends name.
	ID string
	// Default: the store of glance_store's default_backend.
	Default bool
}

// Extract returns the stores. Glance (Zed) sends "default" as the string
// "true", and only on the default store; a JSON true is taken too.
func (r StoresResult) Extract() ([]Store, error) {
	var s struct {
		Stores []struct {
			ID      string `json:"id"`
			Default any    `json:"default"`
		} `json:"stores"`
	}
	if err := r.ExtractInto(&s); err != nil {
		return nil, err
	}
	out := make([]Store, 0, len(s.Stores))
	for _, st := range s.Stores {
		out = append(out, Store{ID: st.ID, Default: st.Default == true || st.Default == "true"})
	}
	return out, nil
}

// ExtractImages interprets a page of images.List (or of a listing made by
// ListByProperties) as Images.
func ExtractImages(p pagination.Page) ([]Image, error) {
	page, ok := p.(images.ImagePage)
	if !ok {
		return nil, fmt.Errorf("glance: unexpected page type %T", p)
	}
	var s struct {
		Images []Image `json:"images"`
	}
	err := page.ExtractInto(&s)
	return s.Images, err
}
