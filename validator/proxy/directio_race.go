//go:build linux && race

package proxy

import "syscall"

// The race detector orders socket I/O: syscall.Write releases, and a
// successful syscall.Read acquires, one variable of package syscall, so
// what a goroutine did before writing happens before what another does
// after reading, whichever connections they use. Raw system calls bypass
// that, so in race builds directConn calls those two functions to the same
// effect: a write to no file (it fails, after the release), and an empty
// read of /dev/null (it succeeds at once, and acquires).

var devNull = func() int {
	fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		panic("proxy: race build: open /dev/null: " + err.Error())
	}
	return fd
}()

func raceReleaseIO() { _, _ = syscall.Write(-1, nil) }
func raceAcquireIO() { _, _ = syscall.Read(devNull, nil) }
