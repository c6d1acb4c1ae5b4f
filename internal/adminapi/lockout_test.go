package adminapi

import (
	"net/netip"
	"testing"
	"time"
)

// TestPolicy: the lock-out as a pure function of an address's failures
// and the time.
func TestPolicy(t *testing.T) {
	p := Policy{Failures: 3, Window: time.Minute, BaseDelay: time.Second, MaxDelay: 8 * time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name  string
		times []time.Duration // failures, after t0
		waits []time.Duration // what each is answered: 0 for 401
	}{
		{"within the allowance", []time.Duration{0, 1, 2}, []time.Duration{0, 0, 0}},
		{"then a growing delay", []time.Duration{0, 1, 2, 3, 4, 5, 6, 7},
			[]time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}},
		{"a new window starts afresh", []time.Duration{0, 1, 2, time.Minute, time.Minute + 1, time.Minute + 2},
			[]time.Duration{0, 0, 0, 0, 0, 0}},
		{"no fresh start while locked out", []time.Duration{0, 1, 2, 3, 4, 5, 6, 59 * time.Second, time.Minute + 5*time.Second},
			[]time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}},
		{"fresh once the window and the lock-out are over", []time.Duration{0, 1, 2, 3, time.Minute + time.Second},
			[]time.Duration{0, 0, 0, time.Second, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s strikes
			for i, d := range tt.times {
				var wait time.Duration
				s, wait = p.fail(s, at(d))
				if wait != tt.waits[i] {
					t.Errorf("failure %d at +%s: wait %s, want %s", i+1, d, wait, tt.waits[i])
				}
			}
		})
	}
}

// TestPolicyDelayBounded: however many failures, the delay stays within
// MaxDelay and does not overflow.
func TestPolicyDelayBounded(t *testing.T) {
	var s strikes
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 200 {
		var wait time.Duration
		s, wait = DefaultPolicy.fail(s, now)
		if wait < 0 || wait > DefaultPolicy.MaxDelay || i >= DefaultPolicy.Failures && wait == 0 {
			t.Fatalf("failure %d: wait %s", i+1, wait)
		}
	}
}

func TestAddressKey(t *testing.T) {
	for _, tt := range []struct{ remote, want string }{
		{"127.0.0.1:5555", "127.0.0.1/32"},
		{"[::ffff:10.1.2.3]:80", "10.1.2.3/32"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:22", "fe80::/64"},
	} {
		k, ok := addressKey(tt.remote)
		if !ok || k.String() != tt.want {
			t.Errorf("addressKey(%q) = %v, %v; want %s", tt.remote, k, ok, tt.want)
		}
	}
	if _, ok := addressKey("pipe"); ok {
		t.Errorf("addressKey of a non-IP address succeeded")
	}
}

// TestLockoutFull: with every slot taken by addresses still locked out, a
// failure from a new address is answered as locked out.
func TestLockoutFull(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLockout(DefaultPolicy, func() time.Time { return now })
	for i := range maxTracked {
		l.by[addrPrefix(i)] = strikes{start: now, count: 1}
	}
	if wait := l.fail("192.0.2.1:1"); wait != DefaultPolicy.Window {
		t.Errorf("full table: wait %s", wait)
	}
	now = now.Add(DefaultPolicy.Window)
	if wait := l.fail("192.0.2.1:1"); wait != 0 || len(l.by) != 1 {
		t.Errorf("after the window: wait %s, %d tracked", wait, len(l.by))
	}
}

// addrPrefix is the i-th IPv4 address as a key of the lockout table.
func addrPrefix(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
}
