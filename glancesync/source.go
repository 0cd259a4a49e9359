package glancesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/imagetrust/imagetrust/validator"
)

// Bundle is one descriptor and its detached signature, as a source lists it.
type Bundle struct {
	// Source names the source (its path or index URL) for logs.
	Source string
	// Location is where the descriptor was read (a file path or a URL); the
	// descriptor's uri is resolved against it.
	Location   string
	Descriptor []byte
	Signature  []byte
	// VOs are the only VOs the source may publish for.
	VOs []string

	opener imageOpener
}

// imageOpener opens image bytes named by a descriptor's uri.
type imageOpener interface {
	openImage(ctx context.Context, b *Bundle, uri string) (io.ReadCloser, string, error)
}

// OpenImage opens the image the descriptor's uri names, resolved against
// the bundle's location. It returns the resolved location for logs.
func (b *Bundle) OpenImage(ctx context.Context, uri string) (io.ReadCloser, string, error) {
	if b.opener == nil {
		return nil, "", fmt.Errorf("bundle %s: no image opener", b.Location)
	}
	return b.opener.openImage(ctx, b, uri)
}

// AllowsVO reports whether the bundle's source may publish for vo.
func (b *Bundle) AllowsVO(vo string) bool {
	for _, v := range b.VOs {
		if v == vo {
			return true
		}
	}
	return false
}

// ListingLimits bound what one listing of a source may make the sync read
// and hold: a source (a hostile index, a runaway directory) listing more
// fails as incomplete, so that nothing of its VOs is retired.
type ListingLimits struct {
	// Bundles is the most bundles (index entries, or *.json files of a
	// directory tree) one source may list (default DefaultMaxBundles).
	Bundles int
	// Bytes is the most bytes of index, descriptors and signatures one
	// listing may read (default DefaultMaxListingBytes).
	Bytes int64
	// Entries is the most files and directories of any kind one listing
	// of a directory tree may walk (default DefaultMaxEntries).
	Entries int
	// Time is the longest one listing may take (default
	// DefaultMaxListingTime): each request of an index source is bounded
	// on its own, but a source answering every one of its thousands of
	// documents slowly would otherwise hold the pass, and every other
	// source's VOs, for hours.
	Time time.Duration
}

// Defaults of ListingLimits.
const (
	DefaultMaxBundles      = 10000
	DefaultMaxListingBytes = 256 << 20
	DefaultMaxListingTime  = 30 * time.Minute
	DefaultMaxEntries      = 1000000
)

// ErrListingTooLarge marks a listing over its ListingLimits.
var ErrListingTooLarge = errors.New("listing over its limits: incomplete")

func (l ListingLimits) orDefaults() ListingLimits {
	if l.Bundles <= 0 {
		l.Bundles = DefaultMaxBundles
	}
	if l.Bytes <= 0 {
		l.Bytes = DefaultMaxListingBytes
	}
	if l.Entries <= 0 {
		l.Entries = DefaultMaxEntries
	}
	if l.Time <= 0 {
		l.Time = DefaultMaxListingTime
	}
	return l
}

// errListingTime is the cause of a listing's context ended by
// ListingLimits.Time.
var errListingTime = errors.New("listing took too long")

// withinTime runs list with a context that ends after lim.Time. A listing
// that took longer fails as over its limits, whatever list returned (a
// document cut off by the deadline may have been skipped as unreadable),
// unless ctx itself ended first (then list's own answer is returned).
func withinTime(ctx context.Context, name string, lim ListingLimits, list func(context.Context) ([]*Bundle, map[string]error, error)) ([]*Bundle, map[string]error, error) {
	lctx, cancel := context.WithTimeoutCause(ctx, lim.Time, errListingTime)
	defer cancel()
	bundles, skipped, err := list(lctx)
	if ctx.Err() == nil && errors.Is(context.Cause(lctx), errListingTime) {
		return nil, nil, fmt.Errorf("source %s: %w: not listed within %s", name, ErrListingTooLarge, lim.Time)
	}
	return bundles, skipped, err
}

// Source lists bundles.
type Source interface {
	// Name identifies the source in logs and metrics.
	Name() string
	// VOs are the VOs the source may publish for.
	VOs() []string
	// List returns every bundle it finds. A non-nil error means the listing
	// is incomplete (the sync then retires nothing of the source's VOs);
	// problems with single bundles are returned in skipped, by location.
	List(ctx context.Context) (bundles []*Bundle, skipped map[string]error, err error)
}

// resolveFileURI resolves a descriptor uri for a descriptor on a file system
// (validator.ImageLocation): a path, relative to the descriptor's directory
// or absolute, file:// or http(s)://.
func resolveFileURI(descPath, uri string) (local, remote string, err error) {
	local, remote, err = validator.ImageLocation(uri)
	if err != nil || remote != "" || filepath.IsAbs(local) {
		return local, remote, err
	}
	return filepath.Join(filepath.Dir(descPath), filepath.FromSlash(local)), "", nil
}

// regularOnly returns f if it is a regular file, and closes it otherwise.
func regularOnly(f *os.File, path string) (io.ReadCloser, error) {
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	_ = f.Fd() // back to blocking reads (O_NONBLOCK was only for the open)
	return f, nil
}
