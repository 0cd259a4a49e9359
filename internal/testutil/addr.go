package testutil

import (
	"net"
	"testing"
)

// FreeAddr is a loopback address ("127.0.0.1:port") no one listens on now,
// for a daemon's listen setting in a test.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
