package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Direct I/O on Linux. The fast server's client connections and the
// forwarder's upstream connections read and write through directConn: the
// same non-blocking socket, the same deadlines and the same wait in Go's
// network poller when the socket is not ready, but each read, write or
// writev is a raw system call (syscall.RawSyscall) rather than one that
// tells the Go scheduler it may block (syscall.Syscall). A read or write on
// a non-blocking socket never blocks, yet on a loopback or LAN connection a
// write can take tens of microseconds (the kernel delivers the segment to
// the receiver within the call). Told of a system call, the runtime's
// monitor thread (sysmon) hands the goroutine's processor to another thread
// when the call outlasts its 20 µs tick while goroutines wait, a futex
// wake-up and a context switch each time. Under pass-through load that is
// most of what the gate's goroutines cost beyond the system calls
// themselves (validator/proxy/doc.go has the measurements).
//
// What changes for the rest of the program: while a raw call runs, its
// thread keeps its processor, as it does for any code that runs for a few
// microseconds; a stop-the-world pause waits for the call to return, which
// a non-blocking socket call always does at once.

// maxRW caps one read or write, as internal/poll does.
const maxRW = 1 << 30

// directConn is a TCP connection whose reads and writes are raw system
// calls. Deadlines, Close and the addresses are the connection's own.
type directConn struct {
	net.Conn
	rc syscall.RawConn
}

// directIOEnabled is false only in the benchmarks' gate process that
// measures the gate without direct I/O.
var directIOEnabled = true

// directIO returns c reading and writing through raw system calls, or c
// itself when it is not a TCP connection.
func directIO(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !directIOEnabled {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &directConn{Conn: c, rc: rc}
}

// Read implements net.Conn as net.TCPConn's Read does: at least one byte,
// or io.EOF, or an error.
func (c *directConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	p = p[:min(len(p), maxRW)]
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait in the poller (honouring the deadline)
			}
			n, errno = int(r), e
			return true
		}
	})
	if err != nil {
		return 0, c.opError("read", err)
	}
	if errno != 0 {
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	}
	if n == 0 {
		return 0, io.EOF
	}
	raceAcquireIO()
	return n, nil
}

// Write implements net.Conn: all of p, or an error.
func (c *directConn) Write(p []byte) (int, error) {
	raceReleaseIO()
	done := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for done < len(p) {
			chunk := min(len(p)-done, maxRW)
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[done])), uintptr(chunk))
			switch e {
			case 0:
				done += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err != nil {
		return done, c.opError("write", err)
	}
	if errno != 0 {
		return done, c.opError("write", os.NewSyscallError("write", errno))
	}
	return done, nil
}

// writeTwo writes a then b, in one writev when the socket takes them.
func (c *directConn) writeTwo(a, b []byte) (int64, error) {
	total := len(a) + len(b)
	if total > maxRW {
		n, err := c.Write(a)
		if err != nil {
			return int64(n), err
		}
		m, err := c.Write(b)
		return int64(n + m), err
	}
	raceReleaseIO()
	var iov [2]syscall.Iovec
	done := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for done < total {
			n := 0
			if done < len(a) {
				iov[0].Base, iov[0].Len = &a[done], uint64(len(a)-done)
				n = 1
			}
			if len(b) > 0 {
				off := max(done-len(a), 0)
				iov[n].Base, iov[n].Len = &b[off], uint64(len(b)-off)
				n++
			}
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
			switch e {
			case 0:
				done += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err != nil {
		return int64(done), c.opError("writev", err)
	}
	if errno != 0 {
		return int64(done), c.opError("writev", os.NewSyscallError("writev", errno))
	}
	return int64(done), nil
}

// opError shapes err as net.TCPConn's Read and Write shape theirs (the
// raw connection's own errors, a deadline or a closed connection, come
// as a "raw-read" or "raw-write" net.OpError).
func (c *directConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
