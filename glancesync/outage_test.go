package glancesync

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRetireDeleteNovaDownGraceAcrossRuns: the hold-back of an unreachable
// Nova (ServersDownGrace) is counted from the first failure across runs
// that share Options.ServersOutageFile, as `imagetrust sync --once` runs
// from cron do (each a new process: a new Syncer, no KeepServersOutage):
// the first run records when Nova began failing (0644) and leaves the
// image to retire active; a later run within the grace leaves it active
// too, keeping the recorded start; the first run past the grace,
// counted from the first run, deactivates and hides it. Nova back, the
// record is removed and the image deleted. A dry run reads and writes no
// record. Against the real Glance; Nova is a stand-in (downServers: a
// Nova that refuses connections). Before, each run started the count
// afresh: a Nova down for good held the image active for ever.
func TestRetireDeleteNovaDownGraceAcrossRuns(t *testing.T) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	old := w.publish(dir, spec{vo: "atlas", tag: "acrossruns", created: w.now.Add(-3 * time.Hour)})
	o := e.options(t, w, map[string][]string{dir: {"atlas"}})
	o.Sync.Retire = "keep"
	run(t, o)
	cur := w.publish(dir, spec{vo: "atlas", tag: "acrossruns", created: w.now.Add(-time.Hour)})

	state := filepath.Join(t.TempDir(), "sync.nova-down")
	var shift atomic.Int64
	o.Now = func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	o.Sync.Retire = "delete"
	o.Sync.NovaDownGrace.Duration = 10 * time.Minute
	o.Servers = downServers{&atomic.Int32{}}
	o.ServersOutageFile = state
	// one --once run: a new Syncer each time
	once := func(o Options) *Report {
		t.Helper()
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Run(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// a dry run first: no record
	dry := o
	dry.DryRun = true
	once(dry)
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("a dry run left a record of Nova's outage: %v", err)
	}

	start := time.Now()
	r := once(o)
	if im := e.get(t, old.id); im.Status != StatusActive || !heldBackOn(r, old.id) {
		t.Fatalf("first run, Nova down: %s, outcomes %+v; want active, left for the next pass", im.Status, r.Find(old.id))
	}
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatalf("no record of Nova's outage after a run that could not ask it: %v", err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("record of Nova's outage: mode %v, want 0644", fi.Mode().Perm())
	}
	recorded, err := readOutageFile(state)
	if err != nil || recorded.Before(start.Add(-time.Second)) || recorded.After(time.Now()) {
		t.Fatalf("recorded start %v (%v), want about %v", recorded, err, start)
	}

	// a run within the grace: left, the start kept
	shift.Store(int64(5 * time.Minute))
	r = once(o)
	if im := e.get(t, old.id); im.Status != StatusActive || !heldBackOn(r, old.id) {
		t.Fatalf("run within the grace: %s, outcomes %+v; want active", im.Status, r.Find(old.id))
	}
	if again, err := readOutageFile(state); err != nil || !again.Equal(recorded) {
		t.Fatalf("recorded start after a second failing run: %v (%v), want %v kept", again, err, recorded)
	}

	// a run past the grace counted from the first run: deactivated, hidden
	shift.Store(int64(11 * time.Minute))
	r = once(o)
	if im := e.get(t, old.id); im.Status != StatusDeactivated || !im.Hidden || heldBackOn(r, old.id) {
		t.Fatalf("run past the grace (counted from the first run): %s hidden %v, outcomes %+v; want deactivated and hidden",
			im.Status, im.Hidden, r.Find(old.id))
	}
	if im := e.get(t, cur.id); im.Status != StatusActive || im.Hidden {
		t.Errorf("the current image: %s hidden %v", im.Status, im.Hidden)
	}

	// Nova back: the record removed, the image deleted
	o.Servers = unusedServers{}
	once(o)
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("record of Nova's outage still there once it answers: %v", err)
	}
	if _, err := e.admin.Get(context.Background(), old.id); err == nil {
		t.Errorf("superseded image %s not deleted once Nova answers", old.id)
	}
}

// TestServersOutageFileEdges: what New makes of the record of Nova's
// outage (Options.ServersOutageFile) that is not a plain past time: none is
// no outage; a corrupt one, or one that can't be read, is logged and
// removed where it can be, and no outage is known (one under way counts
// from its next failure: never a start further back, which would cut the
// grace short); a start in the future (the clock set back) likewise;
// under another retire policy the record is removed; a dry run neither
// reads nor writes it. No OpenStack needed.
func TestServersOutageFileEdges(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	base := Options{Trust: newWorld(t).trust(), Glance: &memGlance{}, MirrorProject: "mirror", Now: func() time.Time { return now }}
	base.Sync.Retire = "delete"
	since := func(t *testing.T, o Options) time.Time {
		t.Helper()
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		return s.serversDownSince
	}
	write := func(t *testing.T, content string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "sync.nova-down")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("none", func(t *testing.T) {
		o := base
		o.ServersOutageFile = filepath.Join(t.TempDir(), "sync.nova-down")
		if got := since(t, o); !got.IsZero() {
			t.Errorf("no record: outage since %v, want none", got)
		}
	})
	t.Run("past", func(t *testing.T) {
		o := base
		want := now.Add(-25 * time.Hour)
		// the start, and a failure an hour ago: under way
		o.ServersOutageFile = write(t, want.Format(time.RFC3339Nano)+"\n"+now.Add(-time.Hour).Format(time.RFC3339Nano)+"\n")
		if got := since(t, o); !got.Equal(want) {
			t.Errorf("outage since %v, want %v", got, want)
		}
	})
	for name, content := range map[string]string{"corrupt": "yesterday\n", "empty": "", "huge": strings.Repeat("9", 4096)} {
		t.Run(name, func(t *testing.T) {
			o := base
			o.ServersOutageFile = write(t, content)
			if got := since(t, o); !got.IsZero() {
				t.Errorf("record %q: outage since %v, want none known", content, got)
			}
			if _, err := os.Stat(o.ServersOutageFile); !os.IsNotExist(err) {
				t.Errorf("record %q not removed: %v", content, err)
			}
		})
	}
	t.Run("unreadable", func(t *testing.T) {
		// a directory where the file should be (not empty): can't be
		// read, nor removed
		o := base
		o.ServersOutageFile = t.TempDir()
		if err := os.WriteFile(filepath.Join(o.ServersOutageFile, "x"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if got := since(t, o); !got.IsZero() {
			t.Errorf("unreadable record: outage since %v, want none known", got)
		}
	})
	t.Run("future", func(t *testing.T) {
		o := base
		o.ServersOutageFile = write(t, now.Add(48*time.Hour).Format(time.RFC3339Nano))
		if got := since(t, o); !got.IsZero() {
			t.Errorf("start in the future: outage since %v, want none known", got)
		}
		if _, err := os.Stat(o.ServersOutageFile); !os.IsNotExist(err) {
			t.Errorf("start in the future not removed: %v", err)
		}
	})
	t.Run("future later", func(t *testing.T) {
		// the clock set back while a daemon runs
		o := base
		clock := now
		o.Now = func() time.Time { return clock }
		o.ServersOutageFile = filepath.Join(t.TempDir(), "sync.nova-down")
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		s.serversFailed()
		clock = now.Add(-time.Hour)
		got, long := s.serversDownLong()
		if !got.Equal(clock) || long {
			t.Errorf("clock set back an hour: since %v long %v, want since now %v", got, long, clock)
		}
	})
	t.Run("other policy", func(t *testing.T) {
		o := base
		o.Sync.Retire = "hide"
		o.ServersOutageFile = write(t, now.Add(-time.Hour).Format(time.RFC3339Nano))
		if got := since(t, o); !got.IsZero() {
			t.Errorf("retire = hide: outage since %v, want none", got)
		}
		if _, err := os.Stat(o.ServersOutageFile); !os.IsNotExist(err) {
			t.Errorf("retire = hide: record kept: %v", err)
		}
	})
	t.Run("dry run", func(t *testing.T) {
		o := base
		o.DryRun = true
		o.ServersOutageFile = write(t, "corrupt")
		if got := since(t, o); !got.IsZero() {
			t.Errorf("dry run: outage since %v, want none read", got)
		}
		if b, _ := os.ReadFile(o.ServersOutageFile); string(b) != "corrupt" {
			t.Errorf("dry run rewrote the record: %q", b)
		}
	})
}

// TestServersOutageFileOtherUser: the record of Nova's outage one user's
// sync writes (root's cron run of `sync --once`) is read by the other's
// (the service user's daemon, and back): 0644 whatever the umask, as
// sync.lock_file is. A record the next sync can't read counts the outage
// from now: with root and the service user taking turns, the grace
// started again at each turn and a Nova down for good held the images to
// retire active for ever. Run as root, the other user (nobody) reads it
// with cat; otherwise the mode is checked. Before, the record was 0600.
func TestServersOutageFileOtherUser(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	// the test's own directories (t.TempDir makes them 0700) open to
	// the other user, as /var/lib/imagetrust is to its owner
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{Trust: newWorld(t).trust(), Glance: &memGlance{}, MirrorProject: "mirror", Now: func() time.Time { return now }}
	o.Sync.Retire = "delete"
	o.ServersOutageFile = filepath.Join(dir, "sync.nova-down")
	old := syscall.Umask(0o077) // a cron job's umask
	s, err := New(o)
	if err == nil {
		s.serversFailed()
	}
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(o.ServersOutageFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("record of Nova's outage: mode %v, want 0644 (read by the other user of the host's syncs)", fi.Mode().Perm())
	}
	if os.Getuid() != 0 {
		return
	}
	// every directory up to it traversable by nobody
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s not traversable by other users: mode checked only", d)
		}
	}
	cmd := exec.Command("cat", o.ServersOutageFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the record, as another user: %v: %s", err, out)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	if got, err := time.Parse(time.RFC3339Nano, first); err != nil || !got.Equal(now) {
		t.Errorf("the record, as another user: %q (%v), want %v", out, err, now)
	}
}

// TestServersOutageFileUnknownStartNotSpent: a record of Nova's outage
// whose start can't be known (corrupt, in the future) read by a run that
// then does not see Nova fail (nothing to retire, or Nova answers) leaves
// no start behind: a later run, two days on, whose first question to Nova
// fails holds the images back for the grace, counted from that failure.
// Before, New rewrote such a record with its own start time, which no
// failure was seen at; the later run's first failure (a blip) found the
// grace spent and deactivated and hid the images at once.
func TestServersOutageFileUnknownStartNotSpent(t *testing.T) {
	for name, content := range map[string]string{
		"corrupt": "garbage\n",
		"future":  time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339Nano),
	} {
		t.Run(name, func(t *testing.T) {
			clock := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
			o := Options{Trust: newWorld(t).trust(), Glance: &memGlance{}, MirrorProject: "mirror", Now: func() time.Time { return clock }}
			o.Sync.Retire = "delete"
			o.ServersDownGrace = 24 * time.Hour
			o.ServersOutageFile = filepath.Join(t.TempDir(), "sync.nova-down")
			if err := os.WriteFile(o.ServersOutageFile, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			// a run that does not see Nova fail
			if _, err := New(o); err != nil {
				t.Fatal(err)
			}
			// two days on, a run whose first question fails
			clock = clock.Add(48 * time.Hour)
			s, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			s.serversFailed()
			if since, long := s.serversDownLong(); long || !since.Equal(clock) {
				t.Errorf("first failure two days after a record of unknown start: outage since %v (grace spent: %v), want since %v, within the grace", since, long, clock)
			}
		})
	}
}

// TestKeepServersOutageAcrossPolicyChange: a daemon reloaded from
// retire = delete (Nova failing since T0) to keep, and later back to
// delete, does not carry T0 over the keep period, in which Nova was not
// asked: the first failure two days on counts from then, within the
// grace, and is recorded in the file (New removed it under keep). Before,
// KeepServersOutage carried T0 through: the first failure found the grace
// spent (deactivated and hid at once) and, the start already known, did
// not record it, so a restart counted afresh. In memory.
func TestKeepServersOutageAcrossPolicyChange(t *testing.T) {
	clock := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	o := Options{Trust: newWorld(t).trust(), Glance: &memGlance{}, MirrorProject: "mirror", Now: func() time.Time { return clock }}
	o.ServersDownGrace = 24 * time.Hour
	o.ServersOutageFile = filepath.Join(t.TempDir(), "sync.nova-down")
	build := func(retire string, prev *Syncer) *Syncer {
		t.Helper()
		o := o
		o.Sync.Retire = retire
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		s.KeepServersOutage(prev)
		return s
	}
	a := build("delete", nil)
	a.serversFailed()
	b := build("keep", a)
	clock = clock.Add(48 * time.Hour)
	c := build("delete", b)
	c.serversFailed()
	if since, long := c.serversDownLong(); long || !since.Equal(clock) {
		t.Errorf("first failure after delete, keep, delete: outage since %v (grace spent: %v), want since %v, within the grace", since, long, clock)
	}
	if got, err := readOutageFile(o.ServersOutageFile); err != nil || !got.Equal(clock) {
		t.Errorf("recorded start %v (%v), want %v", got, err, clock)
	}
	// delete to delete: carried (a reload does not restart the grace)
	d := build("delete", c)
	clock = clock.Add(time.Hour)
	if since, _ := d.serversDownLong(); !since.Equal(clock.Add(-time.Hour)) {
		t.Errorf("reload under delete: outage since %v, want %v carried", since, clock.Add(-time.Hour))
	}
}
