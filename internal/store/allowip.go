package store

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// MaxAllowIPs bounds a key's allow_ips.
const MaxAllowIPs = 64

// AllowIP reads one entry of allow_ips: an IPv4 or IPv6 prefix
// ("10.0.0.0/8", "2001:db8::/32") or a bare address, one host
// ("203.0.113.7" is 203.0.113.7/32). Refused: a prefix with bits set past
// its length ("10.1.2.3/8": the network or the host?), a zone, and
// IPv4-mapped IPv6 ("::ffff:10.0.0.0/104"), which keygate compares as
// IPv4: the message names the form to write instead.
func AllowIP(s string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil && a.Zone() == "" {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	switch a := p.Addr(); {
	case err != nil || !p.IsValid():
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or prefix like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32", s)
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 %s; write it as IPv4%s", s, noun(p), mappedHint(p))
	case p != p.Masked():
		return netip.Prefix{}, fmt.Errorf("%q has bits set past /%d; write %s for the network or %s for one address", s, p.Bits(), p.Masked(), netip.PrefixFrom(a, a.BitLen()))
	}
	return p, nil
}

func noun(p netip.Prefix) string {
	if p.IsSingleIP() {
		return "address"
	}
	return "prefix"
}

// mappedHint names the IPv4 form of a mapped prefix, where it has one.
func mappedHint(p netip.Prefix) string {
	if p.Bits() < 96 {
		return ""
	}
	return " (" + netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked().String() + ")"
}

// ParseAllowIPs reads a comma-separated allowlist
// ("10.0.0.0/8, 2001:db8::/32, 203.0.113.7"): 1 to MaxAllowIPs entries,
// each as AllowIP reads it, returned in canonical form (a bare address
// with its /32 or /128), repeats dropped.
func ParseAllowIPs(s string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		p, err := AllowIP(e)
		if err != nil {
			return nil, err
		}
		if c := p.String(); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if len(out) == 0 || len(out) > MaxAllowIPs {
		return nil, fmt.Errorf("give 1 to %d IP addresses or prefixes", MaxAllowIPs)
	}
	return out, nil
}

// validateAllowIPs checks the key's allow_ips: present, it holds 1 to
// MaxAllowIPs entries (an empty list allowing nothing or everything is
// not a record keygate guesses at).
func (k *Key) validateAllowIPs() error {
	if k.AllowIPs == nil {
		return nil
	}
	if len(k.AllowIPs) == 0 || len(k.AllowIPs) > MaxAllowIPs {
		return fmt.Errorf("key %s: allow_ips: give 1 to %d IP addresses or prefixes, or leave it out", k.ID, MaxAllowIPs)
	}
	for _, e := range k.AllowIPs {
		if _, err := AllowIP(e); err != nil {
			return fmt.Errorf("key %s: allow_ips: %w", k.ID, err)
		}
	}
	return nil
}
