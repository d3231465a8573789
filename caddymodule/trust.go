package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// trustPolicy decides whose inbound trace context is believed.
type trustPolicy struct {
	all, none bool
	prefixes  []netip.Prefix
}

// parseTrust reads the trust option: all (the default), none, or CIDRs and
// addresses.
func parseTrust(list []string) (trustPolicy, error) {
	if len(list) == 0 {
		return trustPolicy{all: true}, nil
	}
	if len(list) == 1 && (list[0] == "all" || list[0] == "none") {
		return trustPolicy{all: list[0] == "all", none: list[0] == "none"}, nil
	}
	var tp trustPolicy
	for _, s := range list {
		if s == "all" || s == "none" {
			return trustPolicy{}, fmt.Errorf("propagation trust: %s cannot be combined with addresses", s)
		}
		if s == "private_ranges" {
			tp.prefixes = append(tp.prefixes, privateRanges...)
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return trustPolicy{}, fmt.Errorf("propagation trust: %q is not all, none, private_ranges, a CIDR or an IP address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		tp.prefixes = append(tp.prefixes, p.Masked())
	}
	return tp, nil
}

// privateRanges are the loopback, private and link-local ranges, as Caddy's
// private_ranges shorthand has them.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("fe80::/10"),
}

// trusted reports whether the request's client may set our trace context.
// The client is Caddy's client_ip (which honours the server's
// trusted_proxies), else the connection's address.
func (tp *trustPolicy) trusted(r *http.Request) bool {
	if tp.all {
		return true
	}
	if tp.none {
		return false
	}
	ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if !ok || ip == "" {
		ip, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range tp.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
