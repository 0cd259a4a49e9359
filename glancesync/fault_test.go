package glancesync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultProxy is a TCP proxy between the sync and Glance that spoils the
// first data requests (PUT /stage or PUT /file) it sees, one fault each:
// reset mid-stream ("reset"; "reset-late" see lateReset), a 503 without
// forwarding, a stall.
type faultProxy struct {
	ln      net.Listener
	target  string
	faults  []string
	next    atomic.Int64
	applied sync.Map
	// for "reset-late": the test, and Glance read directly (not through
	// the proxy); set by newLateResetProxy
	t     *testing.T
	ctx   context.Context
	watch Glance
}

// newLateResetProxy is newFaultProxy whose "reset-late" faults read the
// image's state from Glance through watch (see lateReset); the waits end
// with the test's context, a little before go test's -timeout.
func newLateResetProxy(t *testing.T, target string, watch Glance, faults ...string) *faultProxy {
	p := newFaultProxy(t, target, faults...)
	ctx, cancel := untilTestDeadline(t)
	t.Cleanup(cancel)
	p.t, p.ctx, p.watch = t, ctx, watch
	return p
}

func newFaultProxy(t testing.TB, target string, faults ...string) *faultProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, faults: faults}
	go p.serve()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *faultProxy) handle(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	go func() { _, _ = io.Copy(c, s); c.Close() }()
	buf := make([]byte, 64<<10)
	fault, sent, id := "", 0, ""
	for {
		n, err := c.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if fault == "" && bytes.HasPrefix(chunk, []byte("PUT ")) &&
				(bytes.Contains(chunk, []byte("/stage HTTP/1.1")) || bytes.Contains(chunk, []byte("/file HTTP/1.1"))) {
				if i := int(p.next.Add(1)) - 1; i < len(p.faults) {
					fault = p.faults[i]
					p.applied.Store(fault, true)
					id = requestImage(chunk)
				} else {
					fault = "none"
				}
				if fault == "503" {
					_, _ = c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
					c.Close()
					s.Close()
					return
				}
			}
			if fault == "stall" && sent > 256<<10 && sent-n <= 256<<10 {
				time.Sleep(2 * time.Second)
			}
			if _, werr := s.Write(chunk); werr != nil {
				break
			}
			if fault != "" {
				sent += n
			}
			if fault == "reset-late" && sent > 512<<10 {
				p.lateReset(id, c, s)
				return
			}
			if fault == "reset" && sent > 512<<10 {
				if tc, ok := s.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	s.Close()
}

// lateReset breaks a data request of image id off once Glance has taken
// it, and answers the sync only once Glance is done with it: it resets the
// connection to Glance once Glance shows the image busy (uploading,
// saving: its handler has read the request and is reading the body, which
// the proxy holds back), so that the reset reaches that handler, which
// returns the image to queued; and it resets the sync's connection only
// once Glance shows the image no longer busy. The sync then sees Glance's
// handling of the stream (settled) at its first look, whatever the load.
// Conditions on Glance's state, no sleep or deadline: a reset before
// glance-api read the request discards it unseen, and one Glance notices
// after settled stopped looking is not seen; either way the refusal is, by
// design, remembered by the process only.
func (p *faultProxy) lateReset(id string, c, s net.Conn) {
	if im := p.await(id, "busy with the stream", imageBusy); im != nil {
		// the write that returns the image to queued then moves its
		// updated_at (whole seconds) past its value before the stream
		// (the busy write's, or an earlier one's), the sign settled
		// looks for: it does not see the image busy, as the sync hears
		// of the reset only once Glance is done with it
		pastSecond(im.UpdatedAt)
	}
	resetConn(s)
	p.await(id, "done with the broken-off stream", func(im *Image) bool { return !imageBusy(im) })
	resetConn(c)
}

// await reads image id from Glance until cond holds of it, and returns it;
// nil when the test's context ends first (an error if its deadline passed;
// none once the test is over).
func (p *faultProxy) await(id, what string, cond func(*Image) bool) *Image {
	for {
		im, err := p.watch.Get(p.ctx, id)
		if err == nil && cond(im) {
			return im
		}
		select {
		case <-p.ctx.Done():
			if errors.Is(p.ctx.Err(), context.DeadlineExceeded) {
				p.t.Errorf("image %q: Glance never showed it %s (last read: %+v, %v)", id, what, im, err)
			}
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// resetConn closes conn with a reset (RST), not a FIN.
func resetConn(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}

// requestImage is the image id of a data request ("PUT
// .../images/ID/stage HTTP/1.1", or .../file) at the start of chunk.
func requestImage(chunk []byte) string {
	line, _, _ := bytes.Cut(chunk, []byte("\r\n"))
	_, rest, ok := bytes.Cut(line, []byte("/images/"))
	if !ok {
		return ""
	}
	id, _, _ := bytes.Cut(rest, []byte("/"))
	return string(id)
}

// TestFaultyLinkToGlance: resets, 5xx and stalls mid-stage (or mid-upload,
// with sync.ingest = "upload") end in a retry or a queued image, never in an
// active unverified one.
func TestFaultyLinkToGlance(t *testing.T) {
	for _, ingest := range []string{"import", "upload"} {
		t.Run("ok "+ingest, func(t *testing.T) { testFaultyLink(t, ingest) })
	}
}

func testFaultyLink(t *testing.T, ingest string) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	p := w.publish(filepath.Join(dir, "atlas"), spec{vo: "atlas", tag: "faulty-" + ingest, size: 4 << 20})
	u, err := url.Parse(e.sc.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFaultProxy(t, u.Host, "reset", "503", "reset", "stall")
	sc := *e.sc
	sc.Endpoint = "http://" + proxy.ln.Addr().String() + u.Path
	sc.ResourceBase = sc.Endpoint + "v2/"
	o := e.options(t, w, map[string][]string{filepath.Join(dir, "atlas"): {"atlas"}})
	o.Glance = NewGlance(&sc)
	o.Sync.Ingest = ingest
	o.ResumeAfter = -1 // one sync only: resume its own interrupted stage at once
	for pass := 1; pass <= 3; pass++ {
		r := run(t, o)
		im := e.get(t, p.id)
		t.Logf("pass %d: %s, %d errors", pass, im.Status, r.Errors)
		if im.Status == StatusActive {
			if im.Props["os_hash_value"] != im.Props["imagetrust_sha512"] || im.Size != int64(len(p.image)) {
				t.Fatalf("active image with unverified bytes")
			}
			break
		}
		if pass == 3 {
			t.Fatalf("not active after 3 passes: %s", im.Status)
		}
	}
	for _, f := range []string{"reset", "503", "stall"} {
		if _, ok := proxy.applied.Load(f); !ok {
			t.Errorf("fault %s never applied", f)
		}
	}
}

// TestTwoSyncsRacing: two passes at once on the same Glance converge on one
// catalogue without errors.
func TestTwoSyncsRacing(t *testing.T) {
	for _, ingest := range []string{"import", "upload"} {
		t.Run("ok "+ingest, func(t *testing.T) { testTwoSyncsRacing(t, ingest) })
	}
}

func testTwoSyncsRacing(t *testing.T, ingest string) {
	e := newEnv(t)
	w := newWorld(t)
	dir := t.TempDir()
	tag := "race" + ingest[:2]
	var ps []*published
	for i := 0; i < 4; i++ {
		ps = append(ps, w.publish(dir, spec{vo: "lhcb", tag: tag + string(rune('a'+i)), size: 1 << 20}))
	}
	o := e.options(t, w, map[string][]string{dir: {"lhcb"}})
	o.Sync.Parallel = 4
	o.Sync.Ingest = ingest
	var wg sync.WaitGroup
	reports := make([]*Report, 2)
	for i := range reports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := New(o)
			if err != nil {
				t.Error(err)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			reports[i], err = s.Run(ctx)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, r := range reports {
		if r != nil && r.Errors != 0 {
			t.Errorf("sync %d: %d errors: %+v", i, r.Errors, r.Outcomes)
		}
	}
	// A third pass finishes whatever the racers left to each other.
	if r := run(t, o); r.Errors != 0 {
		t.Errorf("settling pass: %+v", r.Outcomes)
	}
	for _, p := range ps {
		if im := e.get(t, p.id); im.Status != StatusActive {
			t.Errorf("%s: %s", p.id, im.Status)
		}
	}
	aliases, err := e.admin.List(context.Background(), e.project, map[string]string{"imagetrust_alias": "lhcb/" + tag + "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(aliases) != 2 {
		t.Errorf("%d alias images for lhcb/%sa, want 2", len(aliases), tag)
	}
}
