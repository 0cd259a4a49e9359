package glancesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoSignature marks a descriptor with no signature beside it: not a
// bundle (yet), and no reason to think the listing is incomplete.
var ErrNoSignature = errors.New("no .p7s beside the descriptor")

// DirSource is a directory tree as a VO publishes it on CVMFS or any shared
// file system: every NAME.json with NAME.json.p7s beside it is a bundle.
type DirSource struct {
	Root string
	// AllowedVOs are the VOs it may publish for.
	AllowedVOs []string
	// Fetcher opens images whose uri is http(s) (nil: such images fail).
	Fetcher *Fetcher
	// Limits bound one listing (zero fields: the defaults).
	Limits ListingLimits
	// AllowPrivate lets image downloads connect to loopback and private
	// addresses (refused by default: a directory has no host of its own
	// to compare with; see netguard.go).
	AllowPrivate bool

	// HungGrace is how long an operation on the tree is still waited for
	// once its bound has passed, before the file system is taken for
	// hung (zero: DefaultHungGrace; see hung.go).
	HungGrace time.Duration

	guardOnce sync.Once
	guarded   *Fetcher // Fetcher's settings with the source's address policy

	// fsHook, when set (tests), is called before each call into the file
	// system (op is "open", "readdir" or "read"; name the path): a hook
	// that blocks stands in for a kernel call that does not return.
	fsHook func(op, name string)
}

func (d *DirSource) hook(op, name string) {
	if d.fsHook != nil {
		d.fsHook(op, name)
	}
}

// Name implements Source.
func (d *DirSource) Name() string { return d.Root }

// VOs implements Source.
func (d *DirSource) VOs() []string { return d.AllowedVOs }

// List implements Source. Unreadable subdirectories make the listing
// incomplete; a descriptor without signature is skipped. Descriptors and
// signatures are read through the tree's os.Root: a symbolic link may point
// anywhere inside the tree, never out of it. A listing that takes longer
// than Limits.Time fails as over its limits; one whose file system does
// not answer (a call that has not returned by Limits.Time and HungGrace:
// a hung mount) is abandoned and fails with ErrHungFS, and the source is
// not listed again until that call returns (hung.go).
func (d *DirSource) List(ctx context.Context) ([]*Bundle, map[string]error, error) {
	lim := d.Limits.orDefaults()
	var (
		bundles []*Bundle
		skipped map[string]error
	)
	err := d.guard(ctx, "listing", lim.Time, func() error {
		var err error
		bundles, skipped, err = withinTime(ctx, d.Root, lim, func(ctx context.Context) ([]*Bundle, map[string]error, error) {
			return d.list(ctx, lim)
		})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return bundles, skipped, nil
}

func (d *DirSource) list(ctx context.Context, lim ListingLimits) ([]*Bundle, map[string]error, error) {
	d.hook("open", d.Root)
	root, err := os.OpenRoot(d.Root)
	if err != nil {
		return nil, nil, fmt.Errorf("source %s: %w", d.Root, err)
	}
	defer root.Close()
	var out []*Bundle
	skipped := map[string]error{}
	var rels []string
	var read int64
	err = walkTree(ctx, root, lim, d.hook, func(p string) error {
		if isListingFile(p) {
			return nil // a VO's signed listing (listing.go), not a bundle
		}
		if len(rels) >= lim.Bundles {
			return fmt.Errorf("%w: more than %d descriptors", ErrListingTooLarge, lim.Bundles)
		}
		rels = append(rels, p)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("source %s: %w", d.Root, err)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("source %s: %w", d.Root, err)
		}
		p := filepath.Join(d.Root, filepath.FromSlash(rel))
		if read > lim.Bytes {
			return nil, nil, fmt.Errorf("source %s: %w: more than %d bytes of descriptors and signatures", d.Root, ErrListingTooLarge, lim.Bytes)
		}
		desc, err := readLimited(root, rel, MaxDescriptorSize, d.hook)
		read += int64(len(desc))
		if err != nil {
			skipped[p] = err
			continue
		}
		sig, err := readLimited(root, rel+".p7s", MaxSignatureSize, d.hook)
		read += int64(len(sig))
		if errors.Is(err, fs.ErrNotExist) {
			skipped[p] = ErrNoSignature
			continue
		}
		if err != nil {
			skipped[p] = fmt.Errorf("signature: %w", err)
			continue
		}
		out = append(out, &Bundle{Source: d.Root, Location: p, Descriptor: desc, Signature: sig, VOs: d.AllowedVOs, opener: d})
	}
	if read > lim.Bytes {
		return nil, nil, fmt.Errorf("source %s: %w: more than %d bytes of descriptors and signatures", d.Root, ErrListingTooLarge, lim.Bytes)
	}
	return out, skipped, nil
}

func (d *DirSource) openImage(ctx context.Context, b *Bundle, uri string) (io.ReadCloser, string, error) {
	local, remote, err := resolveFileURI(b.Location, uri)
	if err != nil {
		return nil, "", err
	}
	if remote != "" {
		if d.Fetcher == nil {
			return nil, remote, fmt.Errorf("uri %s: no HTTP client", remote)
		}
		d.guardOnce.Do(func() { d.guarded = d.Fetcher.forSource("", d.AllowPrivate) })
		rc, err := d.guarded.OpenURL(ctx, remote)
		return rc, remote, err
	}
	// on the tree's file system: opened and read through guard, so that
	// a call it does not answer is abandoned when ctx (the transfer's
	// bound) ends
	var rc io.ReadCloser
	err = d.guard(ctx, "opening image "+local, 0, func() error {
		var oerr error
		rc, oerr = d.openInside(local)
		return oerr
	})
	if err != nil {
		return nil, local, err
	}
	return &guardedFile{d: d, ctx: ctx, f: hookedFile{rc, d, local}, path: local, readOp: "reading image " + local}, local, nil
}

// hookedFile calls the source's fsHook before each read.
type hookedFile struct {
	io.ReadCloser
	d    *DirSource
	name string
}

func (h hookedFile) Read(p []byte) (int, error) {
	h.d.hook("read", h.name)
	return h.ReadCloser.Read(p)
}

// ErrOutsideSource marks an image path (a relative uri with "..", a file://
// uri, or a symbolic link on the way) that leads out of the source's
// directory tree: a directory source serves only its own files, so a
// descriptor cannot make the sync read, and upload, any other file the
// sync's user can read.
var ErrOutsideSource = errors.New("outside the source directory")

// openInside opens the regular file at path, which must lie inside d.Root
// once symbolic links are followed.
func (d *DirSource) openInside(path string) (io.ReadCloser, error) {
	absRoot, err := filepath.Abs(d.Root)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if !inside(absRoot, abs) {
		return nil, fmt.Errorf("%s: %w %s", path, ErrOutsideSource, d.Root)
	}
	rel, _ := filepath.Rel(absRoot, abs)
	d.hook("open", path)
	root, err := os.OpenRoot(absRoot)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := openNoWait(root, rel)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Path = path // name the file, not its path inside the tree
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		// os.Root refuses a symbolic link out of the tree; say so plainly
		if real, rerr := filepath.EvalSymlinks(abs); rerr == nil {
			if realRoot, rerr := filepath.EvalSymlinks(absRoot); rerr == nil && !inside(realRoot, real) {
				return nil, fmt.Errorf("%s: %w %s (through a symbolic link to %s)", path, ErrOutsideSource, d.Root, real)
			}
		}
		return nil, err
	}
	return regularOnly(f, path)
}

// readDirBatch is how many entries of a directory walkTree reads at once.
const readDirBatch = 1024

// walkTree calls descriptor with the path (slash-separated, relative to
// root) of every regular *.json file of root's tree, not following
// symbolic links. It holds at most readDirBatch entries of a directory at
// once (fs.WalkDir reads a whole directory, and a directory of millions
// of files is the source's to make), and fails with ErrListingTooLarge
// past lim.Entries entries of any kind, so that a tree of millions of
// files or directories fails its listing instead of being walked for
// hours each pass. An unreadable directory fails the walk.
func walkTree(ctx context.Context, root *os.Root, lim ListingLimits, hook func(op, name string), descriptor func(string) error) error {
	dirs := []string{"."}
	entries := 0
	for len(dirs) > 0 {
		dir := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		f, err := root.Open(dir)
		if err != nil {
			return err
		}
		err = func() error {
			defer f.Close()
			for {
				if err := ctx.Err(); err != nil {
					return err
				}
				hook("readdir", dir)
				es, rerr := f.ReadDir(readDirBatch)
				for _, e := range es {
					if entries++; entries > lim.Entries {
						return fmt.Errorf("%w: more than %d files and directories", ErrListingTooLarge, lim.Entries)
					}
					p := path.Join(dir, e.Name())
					switch {
					case e.IsDir():
						dirs = append(dirs, p)
					case e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json"):
						if err := descriptor(p); err != nil {
							return err
						}
					}
				}
				if errors.Is(rerr, io.EOF) {
					return nil
				}
				if rerr != nil {
					return rerr
				}
			}
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// readLimited reads a whole small file of root, refusing one over limit.
func readLimited(root *os.Root, name string, limit int64, hook func(op, name string)) ([]byte, error) {
	hook("read", name)
	f, err := openNoWait(root, name)
	if err != nil {
		return nil, err
	}
	rc, err := regularOnly(f, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w (limit %d)", name, ErrTooLarge, limit)
	}
	return b, nil
}

// inside reports whether the absolute path p is dir or below it.
func inside(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// openNoWait opens name in root for reading without waiting: a FIFO (or a
// device) put where a file should be opens at once rather than blocking the
// pass until something writes to it, and is then refused as not a regular
// file.
func openNoWait(root *os.Root, name string) (*os.File, error) {
	return root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
