package glancesync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
}

// Name implements Source.
func (d *DirSource) Name() string { return d.Root }

// VOs implements Source.
func (d *DirSource) VOs() []string { return d.AllowedVOs }

// List implements Source. Unreadable subdirectories make the listing
// incomplete; a descriptor without signature is skipped.
func (d *DirSource) List(ctx context.Context) ([]*Bundle, map[string]error, error) {
	var out []*Bundle
	skipped := map[string]error{}
	var paths []string
	err := filepath.WalkDir(d.Root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("source %s: %w", d.Root, err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		desc, err := readLimited(p, MaxDescriptorSize)
		if err != nil {
			skipped[p] = err
			continue
		}
		sig, err := readLimited(p+".p7s", MaxSignatureSize)
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
		rc, err := d.Fetcher.OpenURL(ctx, remote)
		return rc, remote, err
	}
	rc, err := openLocal(local)
	return rc, local, err
}

// readLimited reads a whole small file, refusing one over limit.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w (limit %d)", path, ErrTooLarge, limit)
	}
	return b, nil
}
