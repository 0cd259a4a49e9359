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
	privateNets     = mustPrefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10")
	nat64Net        = netip.MustParsePrefix("64:ff9b::/96")
	broadcastAddr   = netip.MustParseAddr("255.255.255.255")
)

// Classify returns an address's class and its name for errors.
func Classify(a netip.Addr) (Class, string) {
	a = a.WithZone("").Unmap()
	if nat64Net.Contains(a) {
		// the well-known NAT64 prefix reaches the IPv4 address it embeds
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:16]))
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
