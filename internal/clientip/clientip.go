// Package clientip finds the address of the client a proxy asks keygate
// about: the address of the connection the proxy accepted or, behind
// proxies the operator trusts, an entry of X-Forwarded-For counted from
// the right, as Envoy's xff_num_trusted_hops counts it. The rule is one
// pure function, Of; docs/client-ip.md says where each proxy puts its
// two inputs.
package clientip

import (
	"net/netip"
	"strings"
)

// MaxHops bounds the trusted hops: longer chains of proxies are not met.
const MaxHops = 16

// Of returns the client's address from peer, the address of the
// connection the proxy accepted, and xff, X-Forwarded-For as the proxy
// sends it with peer appended (Envoy with use_remote_address: true),
// given hops trusted proxies in front of the proxy:
//
//   - hops 0: peer. xff is not read: every entry in it may be the
//     client's own invention.
//   - hops N: the entry N places left of xff's last, which must be peer.
//     With Envoy's use_remote_address: true and xff_num_trusted_hops: N,
//     Envoy takes the same address: the Nth from the right of the
//     X-Forwarded-For it received, before it appended peer.
//
// ok is false, the address unknown, when peer or that entry is not an
// address, when xff has fewer than N+1 entries (a request that did not
// pass the trusted proxies: Envoy would fall back to peer, keygate
// refuses to guess), or when its last entry is not peer (the proxy did
// not append it: it is not configured as the rule needs).
func Of(peer, xff string, hops int) (addr netip.Addr, ok bool) {
	p, ok := Parse(peer)
	if !ok || hops == 0 {
		return p, ok
	}
	if hops < 0 || hops > MaxHops {
		return netip.Addr{}, false
	}
	appended, ok := Parse(last(xff))
	if !ok || appended != p {
		return netip.Addr{}, false
	}
	e, ok := nth(xff, hops)
	if !ok {
		return netip.Addr{}, false
	}
	return Parse(e)
}

// last is the last entry of the comma-separated list l.
func last(l string) string { return l[strings.LastIndexByte(l, ',')+1:] }

// nth returns the entry n places left of the last of the comma-separated
// list l, and whether l has that many.
func nth(l string, n int) (string, bool) {
	for ; n > 0; n-- {
		i := strings.LastIndexByte(l, ',')
		if i < 0 {
			return "", false
		}
		l = l[:i]
	}
	return last(l), true
}

// Parse reads one address as proxies write it: IPv4 or IPv6, with or
// without a port ("203.0.113.7:41000", "[2001:db8::1]:443"), brackets
// ("[2001:db8::1]") or a zone ("fe80::1%eth0"), between spaces or tabs.
// The port and the zone are dropped, and an IPv4-mapped IPv6 address
// ("::ffff:10.1.2.3") is its IPv4 address, so that it compares with IPv4
// prefixes. Anything else (a name, "unknown", "unix:", an obfuscated
// RFC 7239 node, leading zeros) is not an address.
func Parse(s string) (netip.Addr, bool) {
	s = strings.Trim(s, " \t")
	switch i := strings.LastIndexByte(s, ':'); {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 || (end+1 < len(s) && !port(s[end+1:])) {
			return netip.Addr{}, false
		}
		s = s[1:end]
	case i >= 0 && strings.IndexByte(s, ':') == i: // one colon: IPv4 and a port
		if !port(s[i:]) {
			return netip.Addr{}, false
		}
		s = s[:i]
	}
	if i := strings.IndexByte(s, '%'); i >= 0 {
		s = s[:i]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// port reports whether s is ":" and 1 to 5 digits.
func port(s string) bool {
	if len(s) < 2 || len(s) > 6 || s[0] != ':' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
