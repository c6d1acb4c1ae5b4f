package adminapi

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Policy slows the guessing of admin tokens by counting failed
// authentications, not requests, per client address: after Failures
// failures within Window, each further failure from the address is
// answered 429 and locks it out for a delay that doubles with each one,
// from BaseDelay to MaxDelay. A request with a valid token always
// passes, so a dashboard behind the same address as an attacker is never
// locked out by the attacker's failures.
type Policy struct {
	Failures  int
	Window    time.Duration
	BaseDelay time.Duration
	MaxDelay  time.Duration
}

// DefaultPolicy allows 10 failures a minute per address, then answers
// failures 429 with a wait of 1 s, 2 s, 4 s ... up to 15 minutes.
var DefaultPolicy = Policy{Failures: 10, Window: time.Minute, BaseDelay: time.Second, MaxDelay: 15 * time.Minute}

// strikes are one address's failures.
type strikes struct {
	start time.Time // of the window
	count int       // failures since start
	until time.Time // locked out until
}

// fail is the address's state after a failed authentication at now, and
// how long it must wait (0: the failure is answered 401, not 429). It
// starts afresh once both the window and any lock-out are over.
func (p Policy) fail(s strikes, now time.Time) (strikes, time.Duration) {
	if !now.Before(s.start.Add(p.Window)) && !now.Before(s.until) {
		s = strikes{start: now}
	}
	s.count++
	over := s.count - p.Failures
	if over <= 0 {
		return s, 0
	}
	delay := p.MaxDelay
	if over <= 30 && p.BaseDelay<<(over-1) < p.MaxDelay {
		delay = p.BaseDelay << (over - 1)
	}
	s.until = now.Add(delay)
	return s, delay
}

// idle reports whether s no longer matters at now.
func (p Policy) idle(s strikes, now time.Time) bool {
	return !now.Before(s.start.Add(p.Window)) && !now.Before(s.until)
}

// maxTracked bounds the addresses a lockout remembers; past it, a
// failure from an address it does not know is answered as one locked out.
const maxTracked = 1 << 16

// lockout applies a Policy to client addresses.
type lockout struct {
	p   Policy
	now func() time.Time
	mu  sync.Mutex
	by  map[netip.Prefix]strikes
}

func newLockout(p Policy, now func() time.Time) *lockout {
	return &lockout{p: p, now: now, by: map[netip.Prefix]strikes{}}
}

// fail counts a failed authentication from remote (a connection's
// address, host:port) and returns how long it must wait: 0 for none.
func (l *lockout) fail(remote string) time.Duration {
	key, ok := addressKey(remote)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s, known := l.by[key]
	if !ok || !known && len(l.by) >= maxTracked && !l.sweep(now) {
		return l.p.Window
	}
	s, wait := l.p.fail(s, now)
	l.by[key] = s
	return wait
}

// sweep forgets the addresses that no longer matter, and reports whether
// there is room for another.
func (l *lockout) sweep(now time.Time) bool {
	for k, s := range l.by {
		if l.p.idle(s, now) {
			delete(l.by, k)
		}
	}
	return len(l.by) < maxTracked
}

// addressKey is what failures are counted by: an IPv4 address, or an
// IPv6 address's /64, which one client usually has whole.
func addressKey(remote string) (netip.Prefix, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	return netip.PrefixFrom(a, bits).Masked(), true
}
