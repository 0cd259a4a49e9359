package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func closeWrite(c net.Conn) {
	if dc, ok := c.(*directConn); ok {
		c = dc.Conn
	}
	_ = c.(*net.TCPConn).CloseWrite()
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

// TestDirectConnMatchesTCPConn runs the same exchanges over a directConn and
// a plain net.TCPConn and expects the same bytes, counts and kinds of
// error.
func TestDirectConnMatchesTCPConn(t *testing.T) {
	type outcome struct {
		n    int64
		data []byte
		err  string // the error's kind (see kind)
		op   string // the net.OpError's Op
	}
	kind := func(err error) string {
		switch {
		case err == nil:
			return ""
		case err == io.EOF:
			return "EOF"
		case errors.Is(err, os.ErrDeadlineExceeded):
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return "deadline without Timeout()"
			}
			return "deadline"
		case errors.Is(err, net.ErrClosed):
			return "closed"
		case errors.Is(err, syscall.ECONNRESET):
			return "reset"
		case errors.Is(err, syscall.EPIPE):
			return "pipe"
		}
		return "other: " + err.Error()
	}
	op := func(err error) string {
		var oe *net.OpError
		if errors.As(err, &oe) {
			return oe.Op
		}
		return ""
	}
	// readOnce is the outcome of one read of up to 10 bytes
	readOnce := func(c net.Conn) outcome {
		n, err := c.Read(make([]byte, 10))
		return outcome{n: int64(n), err: kind(err), op: op(err)}
	}
	big := randomBytes(8 << 20)
	tests := []struct {
		name string
		run  func(t *testing.T, c, s net.Conn) outcome
	}{
		{"ok read what the peer wrote", func(t *testing.T, c, s net.Conn) outcome {
			go s.Write([]byte("hello"))
			buf := make([]byte, 64)
			n, err := io.ReadAtLeast(c, buf, 5)
			return outcome{n: int64(n), data: buf[:n], err: kind(err)}
		}},
		{"ok a zero-length read", func(t *testing.T, c, s net.Conn) outcome {
			n, err := c.Read(nil)
			return outcome{n: int64(n), err: kind(err)}
		}},
		{"ok a large write to a slow reader (the socket fills: waits in the poller)", func(t *testing.T, c, s net.Conn) outcome {
			got := make(chan []byte, 1)
			go func() {
				var buf bytes.Buffer
				b := make([]byte, 64<<10)
				for {
					time.Sleep(50 * time.Microsecond)
					n, err := s.Read(b)
					buf.Write(b[:n])
					if err != nil {
						break
					}
				}
				got <- buf.Bytes()
			}()
			n, err := c.Write(big)
			closeWrite(c)
			data := <-got
			if !bytes.Equal(data, big) {
				t.Errorf("the peer read %d bytes, not the %d written", len(data), len(big))
			}
			return outcome{n: int64(n), err: kind(err)}
		}},
		{"ok two buffers larger than the socket's", func(t *testing.T, c, s net.Conn) outcome {
			a, b := big[:3<<20+17], big[3<<20+17:]
			got := make(chan []byte, 1)
			go func() { data, _ := io.ReadAll(s); got <- data }()
			var n int64
			var err error
			if tw, ok := c.(twoWriter); ok {
				n, err = tw.writeTwo(a, b)
			} else {
				v := net.Buffers{a, b}
				n, err = v.WriteTo(c)
			}
			closeWrite(c)
			if data := <-got; !bytes.Equal(data, big) {
				t.Errorf("the peer read %d bytes, not the %d written", len(data), len(big))
			}
			return outcome{n: n, err: kind(err)}
		}},
		{"ok two buffers, the first empty", func(t *testing.T, c, s net.Conn) outcome {
			got := make(chan []byte, 1)
			go func() { data, _ := io.ReadAll(s); got <- data }()
			var n int64
			var err error
			if tw, ok := c.(twoWriter); ok {
				n, err = tw.writeTwo(nil, []byte("body"))
			} else {
				v := net.Buffers{nil, []byte("body")}
				n, err = v.WriteTo(c)
			}
			closeWrite(c)
			return outcome{n: n, data: <-got, err: kind(err)}
		}},
		{"fail EOF when the peer closes", func(t *testing.T, c, s net.Conn) outcome {
			s.Close()
			return readOnce(c)
		}},
		{"fail a read past its deadline", func(t *testing.T, c, s net.Conn) outcome {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			return readOnce(c)
		}},
		{"fail a blocked read interrupted by a deadline set elsewhere", func(t *testing.T, c, s net.Conn) outcome {
			go func() { time.Sleep(20 * time.Millisecond); _ = c.SetReadDeadline(aLongTimeAgo) }()
			return readOnce(c)
		}},
		{"fail a write past its deadline", func(t *testing.T, c, s net.Conn) outcome {
			_ = c.SetWriteDeadline(aLongTimeAgo)
			n, err := c.Write([]byte("x"))
			return outcome{n: int64(n), err: kind(err), op: op(err)}
		}},
		{"fail a read on a closed connection", func(t *testing.T, c, s net.Conn) outcome {
			c.Close()
			return readOnce(c)
		}},
		{"fail a blocked read when the connection is closed", func(t *testing.T, c, s net.Conn) outcome {
			go func() { time.Sleep(20 * time.Millisecond); c.Close() }()
			return readOnce(c)
		}},
		{"fail a read when the peer resets", func(t *testing.T, c, s net.Conn) outcome {
			_ = s.(*net.TCPConn).SetLinger(0)
			s.Close()
			time.Sleep(20 * time.Millisecond)
			return readOnce(c)
		}},
		{"fail writes after the peer reset", func(t *testing.T, c, s net.Conn) outcome {
			_ = s.(*net.TCPConn).SetLinger(0)
			s.Close()
			time.Sleep(20 * time.Millisecond)
			var err error
			for range 3 {
				if _, err = c.Write([]byte("x")); err != nil {
					break
				}
			}
			return outcome{err: kind(err), op: op(err)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := tcpPair(t, false)
			want := tt.run(t, c, s)
			c, s = tcpPair(t, true)
			if _, ok := c.(*directConn); !ok {
				t.Fatalf("directIO gave a %T, want *directConn", c)
			}
			got := tt.run(t, c, s)
			if got.n != want.n || !bytes.Equal(got.data, want.data) || got.err != want.err || got.op != want.op {
				t.Errorf("directConn: n=%d data=%q err=%q op=%q; net.TCPConn: n=%d data=%q err=%q op=%q",
					got.n, got.data, got.err, got.op, want.n, want.data, want.err, want.op)
			}
		})
	}
}

// TestDirectIOLeavesOtherConns: only TCP connections read and write
// directly.
func TestDirectIOLeavesOtherConns(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c := directIO(a); c != a {
		t.Errorf("directIO(net.Pipe()) = %T, want the pipe itself", c)
	}
}
