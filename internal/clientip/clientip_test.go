package clientip_test

import (
	"net/netip"
	"testing"

	"github.com/keygate/keygate/internal/clientip"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		name, peer, xff string
		hops            int
		want            string // "" for unknown
	}{
		// hops 0: the peer, whatever X-Forwarded-For says.
		{"no XFF", "203.0.113.7", "", 0, "203.0.113.7"},
		{"spoofed XFF ignored", "203.0.113.7", "10.0.0.1, 203.0.113.7", 0, "203.0.113.7"},
		{"spoofed XFF alone ignored", "203.0.113.7", "10.0.0.1", 0, "203.0.113.7"},
		{"peer with a port", "203.0.113.7:41000", "", 0, "203.0.113.7"},
		{"IPv6 peer", "2001:db8::7", "", 0, "2001:db8::7"},
		{"IPv6 peer in brackets with a port", "[2001:db8::7]:443", "", 0, "2001:db8::7"},
		{"IPv4-mapped peer", "::ffff:10.1.2.3", "", 0, "10.1.2.3"},
		{"IPv6 peer with a zone", "fe80::1%eth0", "", 0, "fe80::1"},
		{"no peer", "", "203.0.113.7", 0, ""},
		{"peer not an address", "unix:/run/envoy.sock", "", 0, ""},
		{"peer a name", "localhost", "", 0, ""},

		// One trusted hop: a load balancer appended the client, Envoy
		// appended the load balancer (the peer).
		{"one hop", "10.0.0.5", "198.51.100.9, 10.0.0.5", 1, "198.51.100.9"},
		{"one hop, client's own entries left of it", "10.0.0.5", "1.1.1.1, 6.6.6.6, 198.51.100.9, 10.0.0.5", 1, "198.51.100.9"},
		{"one hop, no spaces", "10.0.0.5", "198.51.100.9,10.0.0.5", 1, "198.51.100.9"},
		{"one hop, tabs", "10.0.0.5", "198.51.100.9\t,\t10.0.0.5", 1, "198.51.100.9"},
		{"one hop, entry with a port", "10.0.0.5", "198.51.100.9:5000, 10.0.0.5", 1, "198.51.100.9"},
		{"one hop, IPv6 entry", "10.0.0.5", "2001:db8::9, 10.0.0.5", 1, "2001:db8::9"},
		{"one hop, bracketed IPv6 entry with a port", "10.0.0.5", "[2001:db8::9]:5000, 10.0.0.5", 1, "2001:db8::9"},
		{"one hop, IPv4-mapped entry", "10.0.0.5", "::ffff:198.51.100.9, 10.0.0.5", 1, "198.51.100.9"},
		{"one hop, IPv4-mapped peer and entry", "::ffff:10.0.0.5", "198.51.100.9, ::ffff:10.0.0.5", 1, "198.51.100.9"},
		{"one hop, peer appended mapped", "10.0.0.5", "198.51.100.9, ::ffff:10.0.0.5", 1, "198.51.100.9"},
		{"one hop, IPv6 peer", "2001:db8::5", "198.51.100.9, 2001:db8::5", 1, "198.51.100.9"},
		{"one hop, no XFF", "10.0.0.5", "", 1, ""},
		{"one hop, only the peer", "10.0.0.5", "10.0.0.5", 1, ""},
		{"one hop, peer not appended", "10.0.0.5", "6.6.6.6, 198.51.100.9", 1, ""},
		{"one hop, peer not appended, client put its own address last", "10.0.0.5", "6.6.6.6, 198.51.100.9, 10.0.0.6", 1, ""},
		{"one hop, malformed entry", "10.0.0.5", "not-an-ip, 10.0.0.5", 1, ""},
		{"one hop, empty entry", "10.0.0.5", " , 10.0.0.5", 1, ""},
		{"one hop, unknown", "10.0.0.5", "unknown, 10.0.0.5", 1, ""},
		{"one hop, two addresses in one entry", "10.0.0.5", "198.51.100.9 6.6.6.6, 10.0.0.5", 1, ""},
		{"one hop, leading zeros", "10.0.0.5", "198.051.100.9, 10.0.0.5", 1, ""},
		{"one hop, bad port", "10.0.0.5", "198.51.100.9:http, 10.0.0.5", 1, ""},
		{"one hop, unclosed bracket", "10.0.0.5", "[2001:db8::9, 10.0.0.5", 1, ""},
		{"one hop, malformed peer", "", "198.51.100.9, 10.0.0.5", 1, ""},

		// Two trusted hops.
		{"two hops", "10.0.0.5", "6.6.6.6, 198.51.100.9, 10.0.0.4, 10.0.0.5", 2, "198.51.100.9"},
		{"two hops, exactly three entries", "10.0.0.5", "198.51.100.9, 10.0.0.4, 10.0.0.5", 2, "198.51.100.9"},
		{"two hops, one entry short", "10.0.0.5", "10.0.0.4, 10.0.0.5", 2, ""},
		{"two hops, malformed entry", "10.0.0.5", "6.6.6.6, bad, 10.0.0.4, 10.0.0.5", 2, ""},
		{"two hops, the malformed entry is the client's", "10.0.0.5", "bad, 198.51.100.9, 10.0.0.4, 10.0.0.5", 2, "198.51.100.9"},

		{"negative hops", "10.0.0.5", "198.51.100.9, 10.0.0.5", -1, ""},
		{"too many hops", "10.0.0.5", "198.51.100.9, 10.0.0.5", clientip.MaxHops + 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := clientip.Of(tc.peer, tc.xff, tc.hops)
			switch {
			case tc.want == "" && ok:
				t.Fatalf("Of(%q, %q, %d) = %v, want unknown", tc.peer, tc.xff, tc.hops, got)
			case tc.want != "" && (!ok || got != netip.MustParseAddr(tc.want)):
				t.Fatalf("Of(%q, %q, %d) = %v, %v, want %s", tc.peer, tc.xff, tc.hops, got, ok, tc.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.1.2.3", "10.1.2.3"},
		{" 10.1.2.3 ", "10.1.2.3"},
		{"10.1.2.3:80", "10.1.2.3"},
		{"10.1.2.3:65535", "10.1.2.3"},
		{"::1", "::1"},
		{"[::1]", "::1"},
		{"[::1]:8080", "::1"},
		{"2001:DB8::1", "2001:db8::1"},
		{"::ffff:10.1.2.3", "10.1.2.3"},
		{"[::ffff:10.1.2.3]:80", "10.1.2.3"},
		{"fe80::1%eth0", "fe80::1"},
		{"[fe80::1%25eth0]:80", "fe80::1"},
		{"", ""},
		{"10.1.2.3:", ""},
		{"10.1.2.3:123456", ""},
		{"10.1.2.3:-1", ""},
		{"[::1]x", ""},
		{"[::1", ""},
		{"::ffff:10.1.2.3:80", ""},
		{"10.1.2", ""},
		{"10.1.2.3/32", ""},
		{"example.com", ""},
		{"_hidden", ""},
		{"\"[::1]\"", ""},
		{"10.1.2.3\n", ""},
	} {
		got, ok := clientip.Parse(tc.in)
		if want, err := netip.ParseAddr(tc.want); ok != (err == nil) || ok && got != want {
			t.Errorf("Parse(%q) = %v, %v, want %q", tc.in, got, ok, tc.want)
		}
	}
}

// Finding the address allocates nothing: it runs on every check of a key
// with an allowlist.
func TestOfAllocatesNothing(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, ok := clientip.Of("[2001:db8::5]:443", "6.6.6.6, [2001:db8::9]:5000, 10.0.0.4, 2001:db8::5", 2); !ok {
			t.Fatal("unknown")
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}
