package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// CheckNotWritableByOthers returns an error saying why any local user
// could change path (a file or a directory) or put another in its place:
// path itself is writable by every user, or its directory is without the
// sticky bit (which keeps users from renaming or removing entries they do
// not own). Symbolic links are followed: path's own directory is checked,
// and, path being a link, the directory of the file it leads to. The
// error does not name path (callers do); it names the directory when that
// is the cause.
func CheckNotWritableByOthers(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return unwrapPath(err)
	}
	if m := fi.Mode().Perm(); m&0o002 != 0 {
		return fmt.Errorf("writable by every user (mode %04o)", m)
	}
	// the directory of path itself (whoever may write it may put another
	// file or link in path's place, link or not) and, path being a link,
	// the directory of the file it leads to
	dirs := []string{filepath.Dir(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, dir := range dirs {
		di, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("its directory %s: %w", dir, unwrapPath(err))
		}
		if m := di.Mode(); m.Perm()&0o002 != 0 && m&os.ModeSticky == 0 {
			return fmt.Errorf("its directory %s is writable by every user (mode %04o)", dir, m.Perm())
		}
	}
	return nil
}
