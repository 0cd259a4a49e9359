package testutil

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreeAddr is a loopback address ("127.0.0.1:port") no one listens on now,
// for a daemon's listen setting in a test. The port is below the kernel's
// ephemeral range (ip_local_port_range) when there is room there: a port
// of that range, free when asked, may become the local port of any
// outgoing connection on the machine (a client of the test stack's
// Glance, say) before the daemon binds it, which then fails with
// "address already in use" (seen under go test ./... with other jobs
// running); a port below it only another FreeAddr picks, at random.
func FreeAddr(t testing.TB) string {
	t.Helper()
	if lo := ephemeralLow(); lo > minPort+1024 {
		for range 64 {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(minPort+rand.IntN(lo-minPort)))
			if l, err := net.Listen("tcp", addr); err == nil {
				l.Close()
				return addr
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// minPort is the lowest port FreeAddr picks at random: above the
// registered services' usual ports.
const minPort = 20000

// ephemeralLow is the first port of the kernel's ephemeral range, 0 when
// it cannot be read (not Linux).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}
