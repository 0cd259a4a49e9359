package netguard

import (
	"net/netip"
	"testing"
)

// TestClassifyAddresses: each address's class and the name errors give
// it, IPv4-mapped, zoned and NAT64 (64:ff9b::/96) forms judged as the
// address they reach.
func TestClassifyAddresses(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want Class
		name string
	}{
		{"169.254.169.254", Forbidden, "link-local"},
		{"169.254.1.1", Forbidden, "link-local"},
		{"fe80::1", Forbidden, "link-local"},
		{"fe80::1%eth0", Forbidden, "link-local"},
		{"::ffff:169.254.169.254", Forbidden, "link-local"},
		{"64:ff9b::a9fe:a9fe", Forbidden, "link-local"}, // NAT64 of 169.254.169.254
		{"fd00:ec2::254", Forbidden, "a cloud metadata address"},
		{"100.100.100.200", Forbidden, "a cloud metadata address"},
		{"168.63.129.16", Forbidden, "a cloud metadata address"},
		{"0.0.0.0", Forbidden, "unspecified"},
		{"0.1.2.3", Forbidden, "unspecified"},
		{"::", Forbidden, "unspecified"},
		{"224.0.0.1", Forbidden, "multicast"},
		{"ff02::1", Forbidden, "multicast"},
		{"255.255.255.255", Forbidden, "broadcast"},
		{"127.0.0.1", Loopback, "loopback"},
		{"127.9.9.9", Loopback, "loopback"},
		{"::1", Loopback, "loopback"},
		{"::ffff:127.0.0.1", Loopback, "loopback"},
		{"10.1.2.3", Private, "private"},
		{"172.16.0.1", Private, "private"},
		{"172.31.255.255", Private, "private"},
		{"192.168.1.1", Private, "private"},
		{"100.64.0.1", Private, "private"},
		{"fd12:3456::1", Private, "private"},
		{"172.32.0.1", Public, "public"},
		{"100.128.0.1", Public, "public"},
		{"192.0.2.10", Public, "public"},
		{"2001:db8::1", Public, "public"},
		{"188.184.21.108", Public, "public"},
		{"2002:a9fe:a9fe::1", Forbidden, "link-local"},                    // 6to4 of 169.254.169.254
		{"2002:7f00:1::", Loopback, "loopback"},                           // 6to4 of 127.0.0.1
		{"2002:0a00:0001::", Private, "private"},                          // 6to4 of 10.0.0.1
		{"2002:bcb8:156c::1", Public, "public"},                           // 6to4 of 188.184.21.108
		{"2001:0:4136:e378:8000:63bf:5601:5601", Forbidden, "link-local"}, // Teredo, client 169.254.169.254 (bits inverted)
		{"2001:0:4136:e378:8000:63bf:f5ff:fffe", Private, "private"},      // Teredo, client 10.0.0.1
		{"2001:0:4136:e378:8000:63bf:4347:ea93", Public, "public"},        // Teredo, client 188.184.21.108
		{"::a9fe:a9fe", Forbidden, "link-local"},                          // IPv4-compatible 169.254.169.254
		{"::7f00:1", Loopback, "loopback"},                                // IPv4-compatible 127.0.0.1
		{"::2", Forbidden, "unspecified"},                                 // IPv4-compatible 0.0.0.2
		{"64:ff9b:1::a9fe:a9fe", Forbidden, "link-local"},                 // local-use NAT64
		{"64:ff9b:1::bcb8:156c", Private, "private"},                      // local-use NAT64 of a public address: the site's translator
		{"240.0.0.1", Forbidden, "reserved"},
		{"254.1.2.3", Forbidden, "reserved"},
		{"198.18.0.1", Private, "private"},
		{"198.19.255.255", Private, "private"},
		{"192.0.0.170", Private, "private"},
	} {
		c, name := Classify(netip.MustParseAddr(tc.addr))
		if c != tc.want || name != tc.name {
			t.Errorf("%s: class %d %q, want %d %q", tc.addr, c, name, tc.want, tc.name)
		}
	}
}
