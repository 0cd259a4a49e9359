package validator

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxDescriptorSize bounds a descriptor; real ones are a few hundred bytes.
const MaxDescriptorSize = 64 << 10

// Descriptor is the signed description of one image (NAME.json).
type Descriptor struct {
	UUID string `json:"uuid"`
	// UUIDSeed, when set, binds UUID to VO: UUID must be BoundUUID(VO,
	// UUIDSeed) (uuidbind.go). 32 lower-case hex digits.
	UUIDSeed        string            `json:"uuid_seed,omitempty"`
	VO              string            `json:"vo"`
	Tag             string            `json:"tag"`
	URI             string            `json:"uri"`
	Size            int64             `json:"size"`
	SHA512          string            `json:"sha512"`
	DiskFormat      string            `json:"disk_format"`
	ContainerFormat string            `json:"container_format"`
	Created         string            `json:"created"`
	Title           string            `json:"title,omitempty"`
	Description     string            `json:"description,omitempty"`
	OSDistro        string            `json:"os_distro,omitempty"`
	OSVersion       string            `json:"os_version,omitempty"`
	Architecture    string            `json:"architecture,omitempty"`
	MinDisk         int               `json:"min_disk,omitempty"`
	MinRAM          int               `json:"min_ram,omitempty"`
	Properties      map[string]string `json:"properties,omitempty"`

	// CreatedTime is Created parsed.
	CreatedTime time.Time `json:"-"`
}

var (
	canonicalUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	nameRE        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	propKeyRE     = regexp.MustCompile(`^[A-Za-z0-9_:.-]{1,255}$`)
	sha512RE      = regexp.MustCompile(`^[0-9a-f]{128}$`)
)

// DiskFormats and ContainerFormats are Glance's accepted values.
var (
	DiskFormats      = []string{"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"}
	ContainerFormats = []string{"ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"}
)

// reservedProperties are Glance base properties and imagetrust's own, and
// the image-defined block device mappings Nova attaches at boot (which could
// name other images or volumes the gate never judges), and base_image_ref
// (Nova's rescue image for servers booted from the image): a descriptor's
// free-form properties may not set them.
var reservedProperties = map[string]bool{
	"id": true, "name": true, "status": true, "visibility": true, "protected": true, "os_hidden": true,
	"owner": true, "checksum": true, "size": true, "virtual_size": true, "created_at": true,
	"updated_at": true, "disk_format": true, "container_format": true, "min_ram": true, "min_disk": true,
	"tags": true, "location": true, "locations": true, "direct_url": true, "self": true, "file": true,
	"schema": true, "stores": true, "deleted": true, "deleted_at": true, "os_hash_algo": true,
	"os_hash_value": true, "os_distro": true, "os_version": true, "architecture": true,
	"description": true, "kernel_id": true, "ramdisk_id": true, "instance_uuid": true,
	"block_device_mapping": true, "bdm_v2": true, "mappings": true, "base_image_ref": true,
}

// descriptorKeys are the top-level keys of a descriptor, exactly as
// Descriptor's json tags spell them. encoding/json matches a key to a field
// case-insensitively (with Unicode folding: "\u017fize" is "size" to it),
// so a descriptor holding both "uri" and "URI" would be read by it with the
// later value and by jq, Python or a reviewer with the first: every key
// must be one of these, byte for byte.
var descriptorKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[Descriptor]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}()

// ParseDescriptor decodes and checks a descriptor. It refuses invalid UTF-8,
// duplicate keys at any depth, top-level keys that are not exactly one of
// the descriptor's fields (unknown, or another case or Unicode folding of
// one), trailing data and every malformed value, naming the field.
func ParseDescriptor(b []byte) (*Descriptor, error) {
	if len(b) == 0 {
		return nil, errors.New("descriptor is empty")
	}
	if len(b) > MaxDescriptorSize {
		return nil, fmt.Errorf("descriptor is %d bytes, more than the %d allowed", len(b), MaxDescriptorSize)
	}
	if !utf8.Valid(b) {
		return nil, errors.New("descriptor is not valid UTF-8")
	}
	top, err := checkDuplicateKeys(b)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d Descriptor
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("descriptor: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("descriptor: trailing data after the JSON object")
	}
	if top["uuid_seed"] && d.UUIDSeed == "" {
		// not the same as no seed: a tool that wrote the key meant a seed
		return nil, fmt.Errorf("descriptor field uuid_seed is empty: must be %d lower-case hex digits, or left out", UUIDSeedLen)
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	return &d, nil
}

// ErrTitleControl: the title holds a C0 or C1 control character (a
// terminal escape, a line break), which would forge lines where it is shown.
var ErrTitleControl = errors.New("descriptor field title: control characters (C0, DEL, C1) are not allowed")

// textControl reports a control character other than a line feed or a tab.
func textControl(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }

func (d *Descriptor) check() error {
	if strings.ContainsFunc(d.Title, unicode.IsControl) {
		return ErrTitleControl // the title itself is never echoed
	}
	// the other free text becomes Glance properties that `openstack image
	// show` prints: one-line fields take no control character, the
	// description and property values a line break or tab at most (the
	// values are never echoed)
	for _, f := range []struct{ name, v string }{{"os_distro", d.OSDistro}, {"os_version", d.OSVersion}, {"architecture", d.Architecture}} {
		if strings.ContainsFunc(f.v, unicode.IsControl) {
			return fmt.Errorf("descriptor field %s: control characters (C0, DEL, C1) are not allowed", f.name)
		}
	}
	if strings.ContainsFunc(d.Description, textControl) {
		return errors.New("descriptor field description: control characters other than line feed and tab are not allowed")
	}
	if !canonicalUUID.MatchString(d.UUID) {
		return fmt.Errorf("descriptor field uuid %s: not an RFC 4122 UUID in canonical lower-case hyphenated form", quoteShort(d.UUID))
	}
	if d.UUIDSeed != "" && !uuidSeedRE.MatchString(d.UUIDSeed) {
		return fmt.Errorf("descriptor field uuid_seed %s: must be %d lower-case hex digits", quoteShort(d.UUIDSeed), UUIDSeedLen)
	}
	if !nameRE.MatchString(d.VO) {
		return fmt.Errorf("descriptor field vo %s: must match %s", quoteShort(d.VO), nameRE)
	}
	if !nameRE.MatchString(d.Tag) {
		return fmt.Errorf("descriptor field tag %s: must match %s", quoteShort(d.Tag), nameRE)
	}
	if d.URI == "" {
		return errors.New("descriptor field uri is missing")
	}
	u, err := url.Parse(d.URI)
	if err != nil {
		// url.Error repeats the uri whole, user information included
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("descriptor field uri does not parse: %w", err)
	}
	if u.User != nil {
		// never echoed: the catalogue record (imagetrust_uri) and the
		// site's logs would carry them
		return errors.New("descriptor field uri: user information (user:password@ or a token) is not allowed: the uri is public in every site's catalogue record")
	}
	// url.Parse refuses C0 controls and DEL, not C1 ones (a CSI, U+009B,
	// is a terminal escape): the uri becomes imagetrust_uri in Glance
	if strings.ContainsFunc(d.URI, unicode.IsControl) {
		return fmt.Errorf("descriptor field uri %s: control characters (C0, DEL, C1) are not allowed", quoteShort(d.URI))
	}
	// nor written percent-encoded in the path: %0A or %C2%9B would become
	// a line break or a terminal escape in the local file name a site opens
	// and logs (a query or fragment is never decoded into a file name)
	if strings.ContainsFunc(u.Path, unicode.IsControl) {
		return fmt.Errorf("descriptor field uri %s: percent-encoded control characters (C0, DEL, C1) in the path are not allowed", quoteShort(d.URI))
	}
	switch u.Scheme {
	case "", "file", "https", "http":
	default:
		return fmt.Errorf("descriptor field uri %s: scheme %s not supported (relative path, file:// or https://)", quoteShort(d.URI), quoteShort(u.Scheme))
	}
	if d.Size <= 0 {
		return fmt.Errorf("descriptor field size %d: must be positive", d.Size)
	}
	if !sha512RE.MatchString(d.SHA512) {
		return errors.New("descriptor field sha512: must be 128 lower-case hex digits")
	}
	if !oneOf(d.DiskFormat, DiskFormats) {
		return fmt.Errorf("descriptor field disk_format %s: not one of Glance's %s", quoteShort(d.DiskFormat), strings.Join(DiskFormats, ", "))
	}
	if !oneOf(d.ContainerFormat, ContainerFormats) {
		return fmt.Errorf("descriptor field container_format %s: not one of Glance's %s", quoteShort(d.ContainerFormat), strings.Join(ContainerFormats, ", "))
	}
	t, err := time.Parse(time.RFC3339, d.Created)
	if err != nil {
		return fmt.Errorf("descriptor field created %s: not RFC 3339", quoteShort(d.Created))
	}
	d.CreatedTime = t
	if d.MinDisk < 0 || d.MinRAM < 0 {
		return errors.New("descriptor fields min_disk and min_ram must not be negative")
	}
	if len(d.Properties) > MaxProperties {
		return fmt.Errorf("descriptor properties: %d, more than the %d allowed (Glance's image_property_quota must leave room for the catalogue record and the CRL job's flags)", len(d.Properties), MaxProperties)
	}
	for k, v := range d.Properties {
		if !propKeyRE.MatchString(k) {
			return fmt.Errorf("descriptor property %s: key must match %s", quoteShort(k), propKeyRE)
		}
		if reservedProperties[k] || strings.HasPrefix(k, "imagetrust_") || strings.HasPrefix(k, "os_glance") {
			return fmt.Errorf("descriptor property %s: reserved name", quoteShort(k))
		}
		if len(v) > 65535 {
			return fmt.Errorf("descriptor property %s: value longer than 65535 bytes", quoteShort(k))
		}
		if strings.ContainsFunc(v, textControl) {
			return fmt.Errorf("descriptor property %s: control characters other than line feed and tab are not allowed in its value", quoteShort(k))
		}
	}
	return nil
}

// MaxProperties is how many free-form properties a descriptor may carry.
// Glance counts every image property against image_property_quota (128 by
// default, and in etc/glance): the catalogue record (about 20), Glance's
// own os_* ones, the VO's and the CRL job's flags (revocation details,
// written when a revocation arrives) must still fit, or the job's write is
// refused (413) for that image.
const MaxProperties = 64

// SHA512Bytes returns the decoded sha512.
func (d *Descriptor) SHA512Bytes() []byte {
	b, _ := hex.DecodeString(d.SHA512)
	return b
}

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

// jsonFrame is one open object or array while walking JSON tokens.
type jsonFrame struct {
	keys   map[string]bool
	isObj  bool
	expKey bool
}

// checkDuplicateKeys walks the JSON tokens and refuses an object that holds
// the same key twice, at any depth, and a top-level key that is not exactly
// one of descriptorKeys. It returns the top-level keys.
func checkDuplicateKeys(b []byte) (map[string]bool, error) {
	return checkKeys(b, "descriptor", descriptorKeys)
}

// checkKeys is checkDuplicateKeys for a document of another kind (what,
// for errors) whose top-level keys are keys. It returns the top-level keys.
func checkKeys(b []byte, what string, keys map[string]bool) (map[string]bool, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []*jsonFrame
	var outer map[string]bool // the keys of the outermost object
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].isObj {
			stack[n-1].expKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return outer, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if n := len(stack); n > 0 && stack[n-1].isObj && stack[n-1].expKey {
			top := stack[n-1]
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			k, _ := tok.(string)
			if top.keys[k] {
				return nil, fmt.Errorf("%s: duplicate key %s", what, quoteShort(k))
			}
			if n == 1 && !keys[k] {
				return nil, fmt.Errorf("%s: unknown field %s (fields are spelt exactly, in lower case)", what, quoteShort(k))
			}
			top.keys[k] = true
			top.expKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &jsonFrame{keys: map[string]bool{}, isObj: true, expKey: true})
			if outer == nil && len(stack) == 1 {
				outer = stack[0].keys
			}
		case json.Delim('['):
			stack = append(stack, &jsonFrame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
		if len(stack) > 64 {
			return nil, fmt.Errorf("%s: nested too deeply", what)
		}
	}
}

// ImageLocation reads a descriptor's uri, an RFC 3986 URI reference, for a
// descriptor on a file system, the one way every tool does: a path
// (relative to the descriptor, or absolute) or a file:// URI gives the
// percent-decoded local path; http(s) gives the remote URL. (A descriptor
// an HTTPS index serves has its relative uri resolved against the
// descriptor's URL instead.) A local path with a query or a fragment is refused rather
// than cut short ('#' and '?' in a file name are written %23 and %3F, as
// `imagetrust describe` does), and so is any other scheme.
func ImageLocation(uri string) (local, remote string, err error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", "", fmt.Errorf("uri: %w", err)
	}
	switch u.Scheme {
	case "https", "http":
		return "", u.String(), nil
	case "", "file":
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(uri, "#") {
			return "", "", fmt.Errorf("uri %s: a file path with a query or fragment (write '?' as %%3F and '#' as %%23)", quoteShort(uri))
		}
		if u.Host != "" && (u.Scheme == "" || u.Host != "localhost") {
			return "", "", fmt.Errorf("uri %s: a path with a host", quoteShort(uri))
		}
		if u.Opaque != "" || u.Path == "" {
			return "", "", fmt.Errorf("uri %s: no path", quoteShort(uri))
		}
		if u.Scheme == "file" && !strings.HasPrefix(u.Path, "/") {
			return "", "", fmt.Errorf("uri %s: file URI with a relative path", quoteShort(uri))
		}
		return u.Path, "", nil
	}
	return "", "", fmt.Errorf("uri %s: scheme %s not supported (relative path, file:// or https://)", quoteShort(uri), quoteShort(u.Scheme))
}

// ValidName reports whether s may be a VO or tag name in a descriptor.
func ValidName(s string) bool { return nameRE.MatchString(s) }
