// Package fsutil holds the file-system helpers imagetrust needs to leave
// nothing half-written.
package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteFileAtomic writes data to path so that readers see either the old file
// or the whole new one: a temporary file in the same directory, fsync,
// rename, then fsync of the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		// Name the directory, not the temporary file the user never asked
		// for: a missing or unwritable directory is what to fix.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("write %s: directory %s: %w", path, dir, pe.Err)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// tempPrefix is the name prefix of WriteFileAtomic's temporary files for
// path; os.CreateTemp puts digits after it.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// RemoveStaleTemps removes the temporary files WriteFileAtomic left for
// path (a process killed between their creation and their rename): in
// path's directory, regular files named exactly as it names them (a dot,
// path's name, ".tmp-", then digits only) last modified more than
// olderThan before now. Nothing else is touched: another name, a
// directory, a symbolic link, or a newer file (a write under way by a
// process the caller does not exclude). It returns the paths removed, and
// the errors met (joined; no such directory is none).
func RemoveStaleTemps(path string, olderThan time.Duration, now time.Time) ([]string, error) {
	dir := filepath.Dir(path)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	prefix := tempPrefix(path)
	var removed []string
	var errs []error
	for _, ent := range ents {
		name := ent.Name()
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok || rest == "" || strings.Trim(rest, "0123456789") != "" || !ent.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if !fi.Mode().IsRegular() || now.Sub(fi.ModTime()) <= olderThan {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}
