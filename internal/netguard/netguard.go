// Package netguard classifies the addresses a request fetching
// untrusted-named URLs may connect to: the sync's sources (an index names
// the URLs fetched, glancesync) and the CRL distribution points named in
// certificates (crl). The checks are made where the connection is made
// (net.Dialer.ControlContext: the address actually dialled, after DNS).
package netguard

import "net/netip"

// Class orders addresses by how far a request may reach them.
type Class int

const (
	// Public addresses: every request may reach them.
	Public Class = iota
	// Private: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10,
	// fc00::/7, fec0::/10.
	Private
	// Loopback: 127.0.0.0/8, ::1.
	Loopback
	// Forbidden: link-local (169.254.0.0/16, fe80::/10; the cloud
	// metadata service lives there), the other metadata addresses,
	// unspecified (0.0.0.0/8, ::), multicast and broadcast: no request
	// reaches them.
	Forbidden
)

func mustPrefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

var (
	// metadataAddrs are cloud metadata and host-agent services outside
	// link-local: AWS's IPv6 one, Alibaba's (in CGNAT space), Azure's
	// wire server; 169.254.169.254 (OpenStack, AWS, GCP, Azure, OCI) is
	// link-local anyway.
	metadataAddrs = []netip.Addr{
		netip.MustParseAddr("fd00:ec2::254"),
		netip.MustParseAddr("100.100.100.200"),
		netip.MustParseAddr("168.63.129.16"),
	}
	unspecifiedNets = mustPrefixes("0.0.0.0/8", "::/128")
	privateNets     = mustPrefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10",
		// not globally reachable (IANA's special-purpose registries):
		// IETF protocol assignments, benchmarking
		"192.0.0.0/24", "198.18.0.0/15")
	nat64Net      = netip.MustParsePrefix("64:ff9b::/96")
	nat64LocalNet = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFourNet  = netip.MustParsePrefix("2002::/16")
	teredoNet     = netip.MustParsePrefix("2001::/32")
	v4CompatNet   = netip.MustParsePrefix("::/96")
	// reservedNet is 240.0.0.0/4 ("reserved for future use": no host
	// there is reached on purpose)
	reservedNet   = netip.MustParsePrefix("240.0.0.0/4")
	broadcastAddr = netip.MustParseAddr("255.255.255.255")
)

// Classify returns an address's class and its name for errors. An IPv6
// address that embeds an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64
// 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32 by its client address)
// is judged as the IPv4 address it reaches (the tunnel, translator or
// relay delivers to it), at least as private under the local-use NAT64
// prefix 64:ff9b:1::/48 (a site's own translator).
func Classify(a netip.Addr) (Class, string) {
	a = a.WithZone("").Unmap()
	if v4, local, ok := embeddedIPv4(a); ok {
		c, name := Classify(v4)
		if local && c < Private {
			return Private, "private"
		}
		return c, name
	}
	for _, m := range metadataAddrs {
		if a == m {
			return Forbidden, "a cloud metadata address"
		}
	}
	for _, p := range unspecifiedNets {
		if p.Contains(a) {
			return Forbidden, "unspecified"
		}
	}
	switch {
	case a.IsLinkLocalUnicast():
		return Forbidden, "link-local"
	case a.IsMulticast():
		return Forbidden, "multicast"
	case a == broadcastAddr:
		return Forbidden, "broadcast"
	case reservedNet.Contains(a):
		return Forbidden, "reserved"
	case a.IsLoopback():
		return Loopback, "loopback"
	}
	for _, p := range privateNets {
		if p.Contains(a) {
			return Private, "private"
		}
	}
	return Public, "public"
}

// embeddedIPv4 returns the IPv4 address an IPv6 address a delivers to, if
// it embeds one, and whether that is through the local-use NAT64 prefix.
// The IPv4-compatible form (::a.b.c.d) excludes :: and ::1, which are
// IPv6's own unspecified and loopback addresses.
func embeddedIPv4(a netip.Addr) (v4 netip.Addr, local, ok bool) {
	if !a.Is6() {
		return netip.Addr{}, false, false
	}
	b := a.As16()
	last := netip.AddrFrom4([4]byte(b[12:16]))
	switch {
	case nat64Net.Contains(a):
		return last, false, true
	case nat64LocalNet.Contains(a):
		return last, true, true
	case sixToFourNet.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), false, true
	case teredoNet.Contains(a):
		// the client's address, each bit inverted (RFC 4380 4)
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), false, true
	case v4CompatNet.Contains(a) && last.Compare(netip.AddrFrom4([4]byte{0, 0, 0, 1})) > 0:
		return last, false, true
	}
	return netip.Addr{}, false, false
}
