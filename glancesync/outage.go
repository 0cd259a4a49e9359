package glancesync

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/imagetrust/imagetrust/internal/fsutil"
)

// outageFileMax bounds what is read of Options.ServersOutageFile: one
// RFC 3339 time and a newline.
const outageFileMax = 256

// readOutageFile reads since when Servers have failed to be asked, as a
// sync run before this one recorded it in path (writeOutageFile). A file
// that does not exist is no outage (zero). A file that can't be read, or
// whose content is no time, is an error: the caller counts the outage from
// now (it never cuts the grace short on a guess).
func readOutageFile(path string) (time.Time, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, outageFileMax+1))
	if err != nil {
		return time.Time{}, err
	}
	if len(b) > outageFileMax {
		return time.Time{}, fmt.Errorf("%s: longer than %d bytes: not a time", path, outageFileMax)
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// writeOutageFile records since in path, atomically (fsutil.WriteFileAtomic:
// a sync killed meanwhile leaves the old content or the new, never a torn
// one) and readable by every user (0644), as sync.lock_file is: a root
// cron run and the service user's daemon take turns, and a record one of
// them can't read counts the outage afresh (it holds a time, no secret).
func writeOutageFile(path string, since time.Time) error {
	return fsutil.WriteFileAtomic(path, []byte(since.UTC().Format(time.RFC3339Nano)+"\n"), 0o644)
}

// removeOutageFile removes path: the outage it recorded is over. No such
// file is no error.
func removeOutageFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// loadServersOutage reads Options.ServersOutageFile into serversDownSince
// (New) under retire = delete (removed under another policy). A file that
// can't be read or holds no time, or a start in the future (a clock set
// back since), is logged and removed, and no outage is known: one under
// way is counted from its next failure, which is in this run if Nova is
// asked in it (as good as from now). Not rewritten with now: a run that
// does not ask Nova (nothing to retire) or whose Nova answers first would
// leave a start no failure was seen at, and a later run's first failure
// (a blip, days on) would find the grace spent and deactivate at once.
func (s *Syncer) loadServersOutage() {
	path := s.o.ServersOutageFile
	if path == "" {
		return
	}
	if s.o.Sync.Retire != "delete" {
		// Nova is asked under delete only: an outage recorded then
		// (the policy changed since) would shorten a later one's grace
		s.clearServersOutage()
		return
	}
	since, err := readOutageFile(path)
	now := s.o.Now().Round(0)
	switch {
	case err != nil:
		s.log.Error("cannot read when Nova began failing to answer: removed; an outage is counted from Nova's next failure",
			"file", path, "err", err)
	case since.After(now):
		s.log.Warn("the recorded start of Nova's outage is in the future (this host's clock was set back): removed; an outage is counted from Nova's next failure",
			"file", path, "recorded", since.UTC().Format(time.RFC3339))
	default:
		s.serversDownSince = since
		return
	}
	s.clearServersOutage()
}

// saveServersOutage records since in Options.ServersOutageFile, if any;
// a failure is logged (the outage is still counted in the process).
func (s *Syncer) saveServersOutage(since time.Time) {
	if s.o.ServersOutageFile == "" {
		return
	}
	if err := writeOutageFile(s.o.ServersOutageFile, since); err != nil {
		s.log.Error("cannot record when Nova began failing to answer: a later sync run counts its outage afresh", "file", s.o.ServersOutageFile, "err", err)
	}
}

// clearServersOutage removes Options.ServersOutageFile, if any: Nova
// answered.
func (s *Syncer) clearServersOutage() {
	if s.o.ServersOutageFile == "" {
		return
	}
	if err := removeOutageFile(s.o.ServersOutageFile); err != nil {
		s.log.Error("cannot remove the record of Nova's outage (Nova answers again): a later sync run may count from its start", "file", s.o.ServersOutageFile, "err", err)
	}
}
