package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
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
// wake-up and a context switch each time. Under pass-through load that was
// about a tenth of the gate's CPU per request (validator/proxy/doc.go has
// the measurements).
//
// What changes for the rest of the program: while a raw call runs, its
// thread keeps its processor, as it does for any code that runs for a few
// microseconds; a stop-the-world pause waits for the call to return, which
// a non-blocking socket call always does at once.

// directConn is a TCP connection whose reads and writes are raw system
// calls. Deadlines, Close and the addresses are the connection's own. The
// functions it hands to the raw connection are bound once, with the state
// of a read or a write in the struct (under a mutex each, as net.Conn
// allows a read and a write at once), so that a read or a write allocates
// nothing.
type directConn struct {
	net.Conn
	rc syscall.RawConn

	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wmu     sync.Mutex
	wa, wb  []byte // what is left to write: wa, then wb
	wdone   int
	werrno  syscall.Errno
	iov     [2]syscall.Iovec
	writeFn func(fd uintptr) bool
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
	dc := &directConn{Conn: c, rc: rc}
	dc.readFn, dc.writeFn = dc.read, dc.write
	return dc
}

// Read implements net.Conn as net.TCPConn's Read does: at least one byte,
// or io.EOF, or an error.
func (c *directConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerrno = p, 0, 0 // (Linux caps a call at 2 GiB itself)
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
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

// read is the raw connection's read function: false to wait in the
// poller (honouring the deadline) until the socket is readable.
func (c *directConn) read(fd uintptr) bool {
	p := c.rbuf
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerrno = int(r), e
		return true
	}
}

// Write implements net.Conn: all of p, or an error.
func (c *directConn) Write(p []byte) (int, error) {
	n, err := c.writeTwo(p, nil)
	return int(n), err
}

// writeTwo writes a then b, in one writev when the socket takes them.
func (c *directConn) writeTwo(a, b []byte) (int64, error) {
	raceReleaseIO()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wa, c.wb, c.wdone, c.werrno = a, b, 0, 0
	err := c.rc.Write(c.writeFn)
	done, errno := c.wdone, c.werrno
	c.wa, c.wb, c.iov = nil, nil, [2]syscall.Iovec{}
	op := "write"
	if len(b) > 0 {
		op = "writev"
	}
	if err != nil {
		return int64(done), c.opError(op, err)
	}
	if errno != 0 {
		return int64(done), c.opError(op, os.NewSyscallError(op, errno))
	}
	return int64(done), nil
}

// write is the raw connection's write function: it writes what is left
// of wa and wb, and returns false to wait in the poller when the socket's
// buffer is full.
func (c *directConn) write(fd uintptr) bool {
	for len(c.wa)+len(c.wb) > 0 {
		if len(c.wa) == 0 {
			c.wa, c.wb = c.wb, nil
		}
		var r uintptr
		var e syscall.Errno
		if len(c.wb) == 0 {
			r, _, e = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wa[0])), uintptr(len(c.wa)))
		} else {
			c.iov[0].Base, c.iov[1].Base = &c.wa[0], &c.wb[0]
			c.iov[0].SetLen(len(c.wa))
			c.iov[1].SetLen(len(c.wb))
			r, _, e = syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.iov[0])), 2)
		}
		switch e {
		case 0:
			n := int(r)
			c.wdone += n
			if k := min(n, len(c.wa)); k > 0 {
				c.wa, n = c.wa[k:], n-k
			}
			c.wb = c.wb[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
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
