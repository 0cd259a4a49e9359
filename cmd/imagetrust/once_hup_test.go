package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagetrust/imagetrust/internal/ostest"
)

// blockingServer answers every request 404, but holds the first one until
// release is called; got is closed when it arrived.
type blockingServer struct {
	*httptest.Server
	got, hold chan struct{}
	once      sync.Once
}

func newBlockingServer(t *testing.T) *blockingServer {
	b := &blockingServer{got: make(chan struct{}), hold: make(chan struct{})}
	first := sync.Once{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first.Do(func() {
			close(b.got)
			<-b.hold
		})
		http.NotFound(w, r)
	}))
	t.Cleanup(func() { b.release(); b.Close() })
	return b
}

func (b *blockingServer) release() { b.once.Do(func() { close(b.hold) }) }

// TestOnceRunsIgnoreSIGHUP: a SIGHUP (logrotate's postrotate, `systemctl
// reload` of the oneshot unit, a fetch-crl hook) sent to a `crl --once`,
// `crl --dry-run` or `sync --once` run of the built binary in the middle of
// its run (a CRL fetch, a source's index fetch, held by the test's server)
// does not kill it: it logs "reload ignored in --once" (or --dry-run) and finishes, with
// the exit status of its run (4: the CRL source answered 404; 1: the
// sync's source did). Before, `crl --once` caught no SIGHUP and was
// killed by it (signal: hangup); `sync --once` caught it but said nothing.
func TestOnceRunsIgnoreSIGHUP(t *testing.T) {
	c := ostest.Start(t, ostest.Options{})
	// the process's own mirror project: `crl --once` runs with the trust
	// store's CRL files when the source's fetch fails, and judges every
	// image of its project
	env := ownMirrorEnv(t, c)
	for _, tc := range []struct {
		name string
		cmd  string
		args []string
		toml func(url string) string
		code int
		said string
	}{
		{"crl --once", "crl", []string{"--once"}, func(u string) string { return fmt.Sprintf("\n[[crl.source]]\nurl = %q\n", u+"/ca.crl") }, exitRefused, "reload ignored in --once"},
		{"crl --dry-run", "crl", []string{"--dry-run"}, func(u string) string { return fmt.Sprintf("\n[[crl.source]]\nurl = %q\n", u+"/ca.crl") }, exitRefused, "reload ignored in --dry-run"},
		{"sync --once", "sync", []string{"--once"}, func(u string) string {
			return fmt.Sprintf("\n[[sync.source]]\nurl = %q\nvos = [\"demo\"]\n", u+"/index.json")
		}, exitInvalid, "reload ignored in --once"},
		{"sync --dry-run", "sync", []string{"--dry-run"}, func(u string) string {
			return fmt.Sprintf("\n[[sync.source]]\nurl = %q\nvos = [\"demo\"]\n", u+"/index.json")
		}, exitInvalid, "reload ignored in --dry-run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newBlockingServer(t)
			path, _ := daemonConfig(t)
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, append(text, tc.toml(srv.URL)...), 0o600); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, tc.name, env, append(append([]string{tc.cmd}, tc.args...), "--config", path)...)
			select {
			case <-srv.got:
			case <-d.done:
				t.Fatalf("exited %d before fetching from the test's server:\n%s", d.code, d.logs.String())
			case <-time.After(2 * time.Minute):
				t.Fatalf("no fetch from the test's server within two minutes:\n%s", d.logs.String())
			}
			// mid-run: the fetch is held until the SIGHUP is taken
			if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			d.waitLine(t, "level=WARN", tc.said)
			srv.release()
			select {
			case <-d.done:
			case <-time.After(2 * time.Minute):
				t.Fatalf("still runs two minutes after the fetch was let go:\n%s", d.logs.String())
			}
			if ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				t.Fatalf("killed by %v:\n%s", ws.Signal(), d.logs.String())
			}
			if d.code != tc.code {
				t.Errorf("exit %d, want %d:\n%s", d.code, tc.code, d.logs.String())
			}
		})
	}
}
