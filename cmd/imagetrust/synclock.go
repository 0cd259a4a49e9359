package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errSyncLocked is the error of a sync that finds another holding the lock.
var errSyncLocked = errors.New("another sync holds the lock")

// lockSync takes the exclusive flock of sync.lock_file for as long as the
// returned file stays open (the process's life: the kernel releases it when
// the process ends, however it ends) and records this process's pid in it.
// A lock held by another sync is errSyncLocked, with the holder's pid when
// it recorded one; any other failure (a directory that does not exist or
// can't be written) is a configuration error of the caller's.
//
// The lock guards one host: a sync on another host, with its own file, is
// not seen (docs/glancesync.md, "Concurrent writers").
func lockSync(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	readOnly := false
	if errors.Is(err, os.ErrPermission) {
		// a file another user created (root's cron, the service user's
		// daemon): a read-only descriptor locks it as well
		var rerr error
		if f, rerr = os.Open(path); rerr == nil || !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
			readOnly = true
		}
		// else no such file, and its directory not writable by this
		// user: the permission error is the one to tell, not "no such file"
	}
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w%s", path, err, lockDirHint(path, err))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := ""
			if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					// a holder that could only read the file (another
					// user's) records nothing: the pid may be an earlier one's
					holder = fmt.Sprintf(" (last recorded pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is locked by another imagetrust sync%s on this host; run one sync per Glance", errSyncLocked, path, holder)
		}
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	if !readOnly {
		// readable by every user whatever the umask (a root cron run's 077
		// left a 0600 file the service user's daemon could not even open)
		_ = f.Chmod(0o644)
		// best effort: the pid names the holder in a second sync's error
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
	}
	return f, nil
}

// lockDirHint says what to do about a lock file that can't be made: its
// directory (/var/lib/imagetrust) is made by the systemd units
// (StateDirectory=imagetrust), not by the sync, so a first run outside
// them, from a shell or cron, finds none; or it belongs to another user.
func lockDirHint(path string, err error) string {
	dir := filepath.Dir(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Stat(dir); !errors.Is(serr, fs.ErrNotExist) {
			return ""
		}
		return fmt.Sprintf(" (directory %s does not exist: the systemd units make it, StateDirectory=imagetrust; "+
			"for a run outside them make it first: install -d -m 0750 -o imagetrust -g imagetrust %s)", dir, dir)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf(" (run the sync as the user that owns %s, the service user: sudo -u imagetrust imagetrust sync ...)", dir)
	}
	return ""
}

// staleTempAge is the age past which a temporary file of the record of
// Nova's outage (fsutil.WriteFileAtomic's) is left over from a killed
// sync, and removed at start: its write takes milliseconds.
const staleTempAge = time.Hour

// novaOutageFile is where a sync records Nova's outage, its start and last
// failure (glancesync.Options.ServersOutageFile), beside sync.lock_file:
// the lock's name with .nova-down for .lock
// (/var/lib/imagetrust/sync.nova-down by default). Only the lock's holder
// writes it.
func novaOutageFile(lock string) string {
	return strings.TrimSuffix(lock, ".lock") + ".nova-down"
}

// listingStateFile is where the highest signed listing serial accepted of
// each VO is kept (glancesync.Options.ListingStateFile), beside the lock
// as the Nova outage is: /var/lib/imagetrust/sync.listings for the
// default lock.
func listingStateFile(lock string) string {
	return strings.TrimSuffix(lock, ".lock") + ".listings"
}
