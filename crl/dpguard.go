package crl

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

	"github.com/hashicorp/go-retryablehttp"

	"github.com/imagetrust/imagetrust/internal/netguard"
)

// A CRL distribution point (crl.use_distribution_points) is a URL named
// in a CA certificate: the CA's operator, or whoever issued or altered a
// certificate in an IGTF directory, chooses it, not the site. Its fetch is
// therefore held to the address policy of the sync's index sources
// (internal/netguard, glancesync's netguard.go): it may connect only to
// public addresses, never to loopback, private, link-local (the cloud
// metadata service), metadata, unspecified, multicast or broadcast ones;
// checked where the connection is made (after DNS, and for each redirect).
// A site whose CA publishes its CRL on a private address lists that URL
// as a [[crl.source]] url: operator configuration, which is not checked.
// Through an HTTP proxy (HTTPS_PROXY and friends) the connection to the
// proxy is the operator's and allowed; only a URL whose host is a literal
// address is checked (the proxy resolves names).

// errDPAddress marks a distribution point's connection to an address it
// may not reach; it is not retried.
var errDPAddress = errors.New("address refused")

type dpAddressError struct {
	addr netip.Addr
	name string
}

func (e *dpAddressError) Error() string {
	return fmt.Sprintf("refused: address %s is %s (a CRL distribution point named in a certificate may reach only public addresses; to fetch it anyway, list the URL as a [[crl.source]] url)", e.addr, e.name)
}

func (e *dpAddressError) Is(target error) bool { return target == errDPAddress }

// checkDPAddr returns nil for a public address, else a *dpAddressError.
func checkDPAddr(a netip.Addr) error {
	if c, name := netguard.Classify(a); c != netguard.Public {
		return &dpAddressError{addr: a.WithZone("").Unmap(), name: name}
	}
	return nil
}

// guardDP makes hc's connections obey the distribution points' policy and
// not retry a refused address.
func guardDP(hc *retryablehttp.Client) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var proxies sync.Map
	tr.Proxy = func(req *http.Request) (*url.URL, error) {
		pu, err := http.ProxyFromEnvironment(req)
		if err != nil || pu == nil {
			return pu, err
		}
		if a, err := netip.ParseAddr(strings.Trim(req.URL.Hostname(), "[]")); err == nil {
			if err := checkDPAddr(a); err != nil {
				return nil, err
			}
		}
		port := pu.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[pu.Scheme]
		}
		proxies.Store(net.JoinHostPort(pu.Hostname(), port), true)
		return pu, nil
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	guarded := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
		ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("refused: %q is not an address and port", address)
			}
			return checkDPAddr(ap.Addr())
		}}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, ok := proxies.Load(addr); ok {
			return d.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
	hc.HTTPClient.Transport = tr
	hc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if errors.Is(err, errDPAddress) {
			return false, err
		}
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
}
