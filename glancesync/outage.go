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

// outageFileMax bounds what is read of Options.ServersOutageFile: two
// RFC 3339 times and their newlines.
const outageFileMax = 256

// outageRecord is what Options.ServersOutageFile holds: since when Servers
// have failed to be asked, of the failures in a row (the outage's start),
// and when they last failed to be. The file is the start on its first
// line and the last failure on its second; a file of the start alone
// (written before the last failure was kept) is read with the last
// failure at the start (the oldest it can be: such a record is taken for
// a stale one sooner, never for a fresh one), and written in the new form
// at the next failure.
type outageRecord struct {
	since, last time.Time
}

// readOutageRecord reads the record of Servers' outage a sync run before
// this one wrote in path (writeOutageFile). A file that does not exist is
// no outage (zero). A file that can't be read, or whose content is not one
// or two times (the second not before the first), is an error: the caller
// counts the outage from now (it never cuts the grace short on a guess).
func readOutageRecord(path string) (outageRecord, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return outageRecord{}, nil
	}
	if err != nil {
		return outageRecord{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, outageFileMax+1))
	if err != nil {
		return outageRecord{}, err
	}
	if len(b) > outageFileMax {
		return outageRecord{}, fmt.Errorf("%s: longer than %d bytes: not a time", path, outageFileMax)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 2 {
		return outageRecord{}, fmt.Errorf("%s: %d lines, want the outage's start and its last failure", path, len(lines))
	}
	var ts []time.Time
	for _, l := range lines {
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(l))
		if err != nil {
			return outageRecord{}, fmt.Errorf("%s: %w", path, err)
		}
		ts = append(ts, t)
	}
	r := outageRecord{since: ts[0], last: ts[0]}
	if len(ts) == 2 {
		if ts[1].Before(ts[0]) {
			return outageRecord{}, fmt.Errorf("%s: last failure %s before the outage's start %s", path, lines[1], lines[0])
		}
		r.last = ts[1]
	}
	return r, nil
}

// readOutageFile is readOutageRecord's start of the outage.
func readOutageFile(path string) (time.Time, error) {
	r, err := readOutageRecord(path)
	return r.since, err
}

// writeOutageFile records r in path, atomically (fsutil.WriteFileAtomic:
// a sync killed meanwhile leaves the old content or the new, never a torn
// one) and readable by every user (0644), as sync.lock_file is: a root
// cron run and the service user's daemon take turns, and a record one of
// them can't read counts the outage afresh (it holds times, no secret).
func writeOutageFile(path string, r outageRecord) error {
	return fsutil.WriteFileAtomic(path, []byte(r.since.UTC().Format(time.RFC3339Nano)+"\n"+r.last.UTC().Format(time.RFC3339Nano)+"\n"), 0o644)
}

// MinServersOutageStale is the least of how long after Servers last
// failed to be asked a recorded outage is taken to be over
// (Syncer.outageStale).
const MinServersOutageStale = 4 * time.Hour

// outageStale is how long after Servers last failed to be asked a
// recorded outage (in memory or in Options.ServersOutageFile) is taken to
// be over, though Servers were not heard to answer: the next failure
// starts a new outage, with a whole grace. Servers are asked at every
// pass while there are images to retire, and those Nova could not be
// asked about stay to retire, so an outage under way sees a failure each
// pass (each sync --once run); a record with none for longer is one whose
// end was not recorded (its removal failed once Nova answered, or the
// images to retire ran out before it answered), and counting a failure
// days later from its start would deactivate and hide at once. The
// largest of 4 sync.interval, the grace (ServersDownGrace) and
// MinServersOutageStale: sync --once runs from cron, whose period the
// daemon's sync.interval need not know, share the record as long as they
// come at least once a grace (were they each to start a new outage, a Nova
// down for good would hold retired images active for ever).
func (s *Syncer) outageStale() time.Duration {
	return max(4*s.o.Sync.Interval.Duration, s.o.ServersDownGrace, MinServersOutageStale)
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
// and serversLastFailure (New) under retire = delete (removed under
// another policy). A file that can't be read or holds no time, a start or
// last failure in the future (a clock set back since), or a last failure
// older than outageStale (the outage's end was not recorded), is logged
// and removed, and no outage is known: one under way is counted from its
// next failure, which is in this run if Nova is asked in it (as good as
// from now). Not rewritten with now: a run that does not ask Nova
// (nothing to retire) or whose Nova answers first would leave a start no
// failure was seen at, and a later run's first failure (a blip, days on)
// would find the grace spent and deactivate at once.
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
	r, err := readOutageRecord(path)
	now := s.o.Now().Round(0)
	switch {
	case err != nil:
		s.log.Error("cannot read when Nova began failing to answer: removed; an outage is counted from Nova's next failure",
			"file", path, "err", err)
	case r.since.IsZero():
		return
	case r.last.After(now):
		s.log.Warn("the recorded start of Nova's outage is in the future (this host's clock was set back): removed; an outage is counted from Nova's next failure",
			"file", path, "recorded", r.since.UTC().Format(time.RFC3339), "last_failure", r.last.UTC().Format(time.RFC3339))
	case now.Sub(r.last) > s.outageStale():
		s.log.Info("the recorded outage of Nova saw no failure for longer than the bound: taken as over (its end was not recorded); an outage is counted from Nova's next failure",
			"file", path, "recorded", r.since.UTC().Format(time.RFC3339), "last_failure", r.last.UTC().Format(time.RFC3339), "bound", s.outageStale())
	default:
		s.serversDownSince, s.serversLastFailure = r.since, r.last
		return
	}
	s.clearServersOutage()
}

// saveServersOutage records r in Options.ServersOutageFile, if any; a
// failure is logged (the outage is still counted in the process).
func (s *Syncer) saveServersOutage(r outageRecord) {
	if s.o.ServersOutageFile == "" {
		return
	}
	if err := writeOutageFile(s.o.ServersOutageFile, r); err != nil {
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
