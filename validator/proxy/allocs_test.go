package proxy

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// maxFastAllocs is what a pass-through request served by the fast server
// may allocate in the whole process: the request head's one string
// (parseFastHead), whose substrings the request's fields are.
// (testing.AllocsPerRun truncates its average, so an allocation now and
// then elsewhere in the process, a second's Date, say, does not count.)
const maxFastAllocs = 1

// TestFastPassThroughAllocs guards the fast path's allocations per
// request (validator/proxy/doc.go has what they cost): a raw client and a
// raw upstream that allocate nothing per request, so that what
// testing.AllocsPerRun counts is the gate's.
func TestFastPassThroughAllocs(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector's instrumentation allocates")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n" +
		"Date: Thu, 26 Nov 2026 03:00:00 GMT\r\nX-Openstack-Request-Id: req-0\r\n\r\n{}")
	ln := listenLoopback(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 16<<10)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			for {
				i := bytes.Index(buf[:n], crlfcrlf)
				if i < 0 {
					break
				}
				if _, err := c.Write(answer); err != nil {
					return
				}
				n = copy(buf, buf[i+4:n])
			}
		}
	})
	pair := newFastPair(t, catalogue(t), "http://"+ln.Addr().String(), nil)
	c, err := net.Dial("tcp", pair.fast)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /v2.1/flavors HTTP/1.1\r\nHost: nova.example\r\nUser-Agent: a\r\nAccept: application/json\r\nX-Auth-Token: t\r\n\r\n")
	got := make([]byte, 4<<10)
	want := 0 // the answer's length, as the first round trip finds it
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n := 0
		for want == 0 || n < want {
			m, err := c.Read(got[n:])
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			n += m
			if want == 0 && bytes.Contains(got[:n], []byte("\r\n\r\n{}")) {
				want = n
			}
		}
		if !bytes.HasPrefix(got[:n], []byte("HTTP/1.1 200 OK\r\n")) {
			t.Fatalf("answer: %q", got[:n])
		}
	}
	for range 100 {
		roundTrip() // warm: the pool's connection, buffers
	}
	if a := testing.AllocsPerRun(2000, roundTrip); a > maxFastAllocs {
		t.Errorf("a pass-through request allocates %.2f times in the process, want at most %d", a, maxFastAllocs)
	} else {
		t.Logf("allocations per pass-through request: %.2f", a)
	}
}
