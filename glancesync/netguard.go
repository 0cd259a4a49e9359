package glancesync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imagetrust/imagetrust/internal/netguard"
)

// An index is not signed: whoever serves it (or answers for its server)
// names the URLs the sync fetches, from inside the site. The addresses a
// source's requests may connect to are therefore checked where the
// connection is made (net.Dialer.ControlContext: the address actually
// dialled, after DNS, so that a name that resolves differently the second
// time gains nothing):
//
//   - never: link-local (169.254.0.0/16, fe80::/10; the cloud metadata
//     service lives there), the other metadata addresses, unspecified
//     (0.0.0.0/8, ::), multicast, broadcast and reserved (240.0.0.0/4);
//     an IPv6 address embedding an IPv4 one (mapped, compatible, NAT64,
//     6to4, Teredo) as that one (netguard.Classify);
//   - loopback (127.0.0.0/8, ::1) and private (10.0.0.0/8, 172.16.0.0/12,
//     192.168.0.0/16, 100.64.0.0/10, 192.0.0.0/24, 198.18.0.0/15,
//     fc00::/7, fec0::/10) only for a
//     source whose own URL's host is on such an address (a site mirror on
//     its LAN; a source on a loopback address may reach private addresses
//     too, a source on a private address not loopback ones), or with
//     allow_private (IndexSource.AllowPrivate, DirSource.AllowPrivate);
//   - every other address.
//
// A request through an HTTP proxy (HTTPS_PROXY and friends) connects to
// the proxy, which is the operator's: that connection is allowed, and only
// a URL whose host is a literal address is checked (the proxy resolves
// names; its own rules must refuse the rest).

// ErrAddressRefused marks a connection a source may not make (see
// AddressRefusedError). It is not retried: the same URL is refused again.
var ErrAddressRefused = errors.New("address refused")

// AddressRefusedError is a connection refused by the address check.
type AddressRefusedError struct {
	Addr  netip.Addr
	Class string // "link-local", "loopback", "private", ...
	Why   string
}

func (e *AddressRefusedError) Error() string {
	return fmt.Sprintf("refused: address %s is %s (%s)", e.Addr, e.Class, e.Why)
}

// Is makes errors.Is(err, ErrAddressRefused) hold.
func (e *AddressRefusedError) Is(target error) bool { return target == ErrAddressRefused }

// addrClass orders addresses by how far a source may reach them
// (netguard.Class).
type addrClass = netguard.Class

const (
	classPublic    = netguard.Public
	classPrivate   = netguard.Private
	classLoopback  = netguard.Loopback
	classForbidden = netguard.Forbidden
)

// classify returns an address's class and its name for errors
// (netguard.Classify).
func classify(a netip.Addr) (addrClass, string) { return netguard.Classify(a) }

// addrPolicy is what addresses one source's connections may reach.
type addrPolicy struct {
	// allowPrivate allows loopback and private addresses
	allowPrivate bool
	// sourceHost is the host of the source's own URL ("" for a directory
	// source): loopback and private addresses are allowed when it is on
	// one (see reach)
	sourceHost string
	resolver   *net.Resolver
}

// reach is how far the source's own host lets it reach: classLoopback
// when one of its addresses is loopback (loopback and private allowed),
// classPrivate when one is private, else classPublic. A host name is
// resolved when it is needed (a connection to a loopback or private
// address), not remembered.
func (p *addrPolicy) reach(ctx context.Context) addrClass {
	if p.sourceHost == "" {
		return classPublic
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(p.sourceHost); err == nil {
		addrs = []netip.Addr{a}
	} else {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		r := p.resolver
		if r == nil {
			r = net.DefaultResolver
		}
		addrs, _ = r.LookupNetIP(lctx, "ip", p.sourceHost)
	}
	r := classPublic
	for _, a := range addrs {
		if c, _ := classify(a); c != classForbidden && c > r {
			r = c
		}
	}
	return r
}

// check returns nil when the source may connect to a, else an
// *AddressRefusedError.
func (p *addrPolicy) check(ctx context.Context, a netip.Addr) error {
	c, name := classify(a)
	switch {
	case c == classPublic:
		return nil
	case c == classForbidden:
		return &AddressRefusedError{Addr: a, Class: name, Why: "a source may not reach it"}
	case p == nil || p.allowPrivate:
		return nil
	case c <= p.reach(ctx):
		return nil
	}
	return &AddressRefusedError{Addr: a, Class: name, Why: "a source may reach it only when its own URL is on such an address, or with allow_private"}
}

// guardTransport makes tr's connections obey p (nil: only the addresses
// no source may reach are refused).
func guardTransport(tr *http.Transport, p *addrPolicy) {
	// the addresses of the proxies requests went through ("host:port" as
	// the transport dials them): connections to them are not checked
	var proxies sync.Map
	tr.Proxy = func(req *http.Request) (*url.URL, error) {
		pu, err := http.ProxyFromEnvironment(req)
		if err != nil || pu == nil {
			return pu, err
		}
		if a, err := netip.ParseAddr(strings.Trim(req.URL.Hostname(), "[]")); err == nil {
			if err := p.check(req.Context(), a); err != nil {
				return nil, err
			}
		}
		proxies.Store(proxyAddr(pu), true)
		return pu, nil
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	guarded := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
		ControlContext: func(ctx context.Context, network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("refused: %q is not an address and port", address)
			}
			return p.check(ctx, ap.Addr())
		}}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, ok := proxies.Load(addr); ok {
			return d.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
}

// proxyAddr is the "host:port" net/http dials for proxy u.
func proxyAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}
