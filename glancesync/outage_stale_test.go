package glancesync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServersOutageStaleRecord: a record of Nova's outage (in
// Options.ServersOutageFile, or in memory) whose last failure is older
// than the bound (the largest of 4 sync.interval, the grace and
// MinServersOutageStale) is an
// outage whose end was not recorded (its removal failed once Nova
// answered; the images to retire ran out before Nova answered): the next
// failure starts a new outage, within its grace. A record in the form
// written before (the start alone) is read, its last failure taken as its
// start, and written in the new form (start, last failure) at the next
// failure. An outage under way (a failure each pass) keeps its start,
// past the grace. No OpenStack needed (the record's logic; the runs
// against Glance are TestRetireDeleteNovaDownGraceAcrossRuns). Before, the
// start was all there was: a failure two days after a record left behind
// found the grace spent and deactivated and hid at once ("old format,
// stale" and "in memory" fail on the old code).
func TestServersOutageStaleRecord(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	setup := func(t *testing.T, content string) (*time.Time, Options) {
		clock := t0
		o := Options{Trust: newWorld(t).trust(), Glance: &memGlance{}, MirrorProject: "mirror", Now: func() time.Time { return clock }}
		o.Sync.Retire = "delete"
		o.ServersDownGrace = 24 * time.Hour
		o.ServersOutageFile = filepath.Join(t.TempDir(), "sync.nova-down")
		if content != "" {
			if err := os.WriteFile(o.ServersOutageFile, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return &clock, o
	}
	newSyncer := func(t *testing.T, o Options) *Syncer {
		t.Helper()
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

	t.Run("old format, stale", func(t *testing.T) {
		// the start alone, 30 hours ago: the old form, its end unrecorded
		clock, o := setup(t, rfc(t0.Add(-30*time.Hour))+"\n")
		s := newSyncer(t, o)
		s.serversFailed()
		if since, long := s.serversDownLong(); long || !since.Equal(*clock) {
			t.Errorf("failure after a stale record: outage since %v (grace spent: %v), want a new one since %v", since, long, *clock)
		}
		if r, err := readOutageRecord(o.ServersOutageFile); err != nil || !r.since.Equal(*clock) || !r.last.Equal(*clock) {
			t.Errorf("record %+v (%v), want start and last failure %v", r, err, *clock)
		}
	})
	t.Run("old format, fresh, upgraded", func(t *testing.T) {
		clock, o := setup(t, rfc(t0.Add(-time.Hour))+"\n")
		s := newSyncer(t, o)
		*clock = clock.Add(10 * time.Minute)
		s.serversFailed()
		if since, _ := s.serversDownLong(); !since.Equal(t0.Add(-time.Hour)) {
			t.Errorf("failure an hour after the recorded start: outage since %v, want %v kept", since, t0.Add(-time.Hour))
		}
		b, _ := os.ReadFile(o.ServersOutageFile)
		if want := rfc(t0.Add(-time.Hour)) + "\n" + rfc(*clock) + "\n"; string(b) != want {
			t.Errorf("record %q, want %q (start, last failure)", b, want)
		}
	})
	t.Run("new format, last failure stale", func(t *testing.T) {
		clock, o := setup(t, rfc(t0.Add(-50*time.Hour))+"\n"+rfc(t0.Add(-25*time.Hour))+"\n")
		s := newSyncer(t, o)
		if _, err := os.Stat(o.ServersOutageFile); !os.IsNotExist(err) {
			t.Errorf("a stale record left by New: %v", err)
		}
		s.serversFailed()
		if since, long := s.serversDownLong(); long || !since.Equal(*clock) {
			t.Errorf("failure 25h after the last recorded one (grace 24h): outage since %v (grace spent: %v), want a new one since %v", since, long, *clock)
		}
	})
	t.Run("new format, under way", func(t *testing.T) {
		_, o := setup(t, rfc(t0.Add(-30*time.Hour))+"\n"+rfc(t0.Add(-time.Hour))+"\n")
		s := newSyncer(t, o)
		s.serversFailed()
		if since, long := s.serversDownLong(); !long || !since.Equal(t0.Add(-30*time.Hour)) {
			t.Errorf("failure an hour after the last recorded one: outage since %v (grace spent: %v), want %v kept, past the grace", since, long, t0.Add(-30*time.Hour))
		}
	})
	t.Run("in memory", func(t *testing.T) {
		// a daemon: a failure, then no question for 10 hours (nothing to
		// retire), then a failure; grace 6h
		clock, o := setup(t, "")
		o.ServersDownGrace = 6 * time.Hour
		s := newSyncer(t, o)
		s.serversFailed()
		*clock = clock.Add(10 * time.Hour)
		s.serversFailed()
		if since, long := s.serversDownLong(); long || !since.Equal(*clock) {
			t.Errorf("failure 10h after the last one: outage since %v (grace spent: %v), want a new one since %v", since, long, *clock)
		}
	})
	t.Run("failures each pass keep the start", func(t *testing.T) {
		// passes 2h apart, sync.interval 2h (bound 8h): 30 hours of them
		clock, o := setup(t, "")
		o.Sync.Interval.Duration = 2 * time.Hour
		s := newSyncer(t, o)
		for range 16 {
			s.serversFailed()
			*clock = clock.Add(2 * time.Hour)
		}
		s.serversFailed()
		if since, long := s.serversDownLong(); !long || !since.Equal(t0) {
			t.Errorf("after 32h of failures 2h apart: outage since %v (grace spent: %v), want %v, past the grace", since, long, t0)
		}
	})
	t.Run("cron runs 6h apart keep the start", func(t *testing.T) {
		// sync --once from cron every 6 hours, sync.interval left at its
		// 15 minutes: each run reads the record the last one wrote
		clock, o := setup(t, "")
		o.Sync.Interval.Duration = 15 * time.Minute
		for range 5 {
			newSyncer(t, o).serversFailed()
			*clock = clock.Add(6 * time.Hour)
		}
		s := newSyncer(t, o)
		s.serversFailed()
		if since, long := s.serversDownLong(); !long || !since.Equal(t0) {
			t.Errorf("after 30h of cron runs 6h apart: outage since %v (grace spent: %v), want %v, past the grace", since, long, t0)
		}
	})
	t.Run("corrupt second line", func(t *testing.T) {
		_, o := setup(t, rfc(t0.Add(-time.Hour))+"\n"+rfc(t0.Add(-2*time.Hour))+"\n")
		if _, err := readOutageRecord(o.ServersOutageFile); err == nil || !strings.Contains(err.Error(), "before") {
			t.Errorf("last failure before the start: %v, want an error", err)
		}
	})
}
