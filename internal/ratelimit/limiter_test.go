package ratelimit

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/poll"
)

// fakeClock is a clock that tests move by hand.
type fakeClock struct{ t atomic.Int64 }

func newFakeClock(at time.Time) *fakeClock {
	c := &fakeClock{}
	c.t.Store(at.UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) set(t time.Time)         { c.t.Store(t.UnixNano()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

func newTestLimiter(t *testing.T, o Options) *Limiter {
	l := New(o)
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// windowStart puts c at the start of id's window of lim.
func windowStart(c *fakeClock, id string, lim Limit) {
	s, _ := Grid(id, lim, c.now())
	c.set(s.Add(lim.Window))
}

func granted(t *testing.T, s Store, id string, at time.Time) int64 {
	t.Helper()
	e, _, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if i := e.at(at.UnixNano()); i >= 0 {
		return e.Windows[i].Granted
	}
	return 0
}

// TestTakeUnits: takes of several units spend a budget exactly.
func TestTakeUnits(t *testing.T) {
	c := newFakeClock(time.Unix(1_800_000_000, 0))
	lim := Limit{Units: 100, Window: time.Minute}
	windowStart(c, "k", lim)
	l := newTestLimiter(t, Options{Now: c.now})
	ctx := context.Background()
	var slot Slot
	allowed := int64(0)
	for _, n := range []int64{30, -1000, 30, 30, 30, 10, 1} {
		r := l.Take(ctx, &slot, "k", lim, n)
		if r.Allowed && n < 0 { // a take never credits
			t.Fatalf("a negative take: %+v", r)
		}
		if r.Allowed {
			allowed += n
		}
		c.advance(time.Second)
	}
	if allowed != 100 {
		t.Fatalf("allowed %d units of a budget of 100", allowed)
	}
	r := l.Take(ctx, &slot, "k", lim, 1)
	if r.Allowed || r.Limit != 100 || r.Remaining != 0 || r.Reset != 53*time.Second {
		t.Fatalf("a spent budget: %+v", r)
	}
	c.advance(r.Reset)
	if r := l.Take(ctx, &slot, "k", lim, 100); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("the next window: %+v", r)
	}
}

// TestSettle: units not used go back; units used beyond a take are
// spent from what is held, and charged past the limit if need be.
func TestSettle(t *testing.T) {
	c := newFakeClock(time.Unix(1_800_000_000, 0))
	lim := Limit{Units: 100, Window: time.Hour}
	windowStart(c, "k", lim)
	store := NewMemStore()
	l := newTestLimiter(t, Options{Now: c.now, Store: store})
	ctx := context.Background()
	r := l.Take(ctx, nil, "k", lim, 50)
	l.Settle(ctx, nil, "k", lim, r.Window, -20) // 30 used
	if r := l.Take(ctx, nil, "k", lim, 70); !r.Allowed {
		t.Fatalf("the 20 settled back are not spendable: %+v", r)
	}
	if r := l.Take(ctx, nil, "k", lim, 1); r.Allowed {
		t.Fatalf("more than the limit net of settlements: %+v", r)
	}
	l.Settle(ctx, nil, "k", lim, r.Window, 15) // 15 more used than taken, none held
	l.chargeAll(ctx)
	if g := granted(t, store, "k", c.now()); g != 115 {
		t.Fatalf("granted %d after a settlement of 15 beyond the limit, want 115", g)
	}
	if n := l.Stats().Charged.Load(); n != 15 {
		t.Fatalf("charged %d", n)
	}
}

// TestOutageRule: cut off, a keygate allows its share of what the fleet
// had not leased, and charges it once it can write again.
func TestOutageRule(t *testing.T) {
	c := newFakeClock(time.Unix(1_800_000_000, 0))
	lim := Limit{Units: 100, Window: time.Hour}
	windowStart(c, "k", lim)
	store := NewMemStore()
	var online atomic.Bool
	online.Store(true)
	l := newTestLimiter(t, Options{Now: c.now, Store: store, Online: online.Load, Peers: func() int64 { return 4 }})
	ctx := context.Background()
	if r := l.Take(ctx, nil, "k", lim, 20); !r.Allowed { // the fleet has granted 20 when this keygate is cut off
		t.Fatal(r)
	}
	online.Store(false)
	allowed := int64(0)
	for range 100 {
		if l.Take(ctx, nil, "k", lim, 1).Allowed {
			allowed++
		}
	}
	if allowed != 20 { // (100 - 20) / 4
		t.Fatalf("allowed %d under the outage rule, want (100-20)/4 = 20", allowed)
	}
	online.Store(true)
	poll.Until(t, 5*time.Second, "the outage units charged", func() bool { return l.Stats().Charged.Load() == 20 })
	if g := granted(t, store, "k", c.now()); g != 40 {
		t.Fatalf("granted %d after the charge, want 40", g)
	}
}

// TestSweepHandsBack: units an idle key holds go back to its budget.
func TestSweepHandsBack(t *testing.T) {
	c := newFakeClock(time.Unix(1_800_000_000, 0))
	lim := Limit{Units: 1000, Window: time.Hour}
	windowStart(c, "k", lim)
	store := NewMemStore()
	l := newTestLimiter(t, Options{Now: c.now, Store: store})
	ctx := context.Background()
	var slot Slot
	for range 50 { // a rate that makes leases of more than one
		l.Take(ctx, &slot, "k", lim, 1)
		c.advance(10 * time.Millisecond)
	}
	poll.Until(t, 5*time.Second, "no lease in flight", func() bool { return slot.st.Load().flight.Load() == nil })
	if g := granted(t, store, "k", c.now()); g <= 50 {
		t.Fatalf("granted %d for 50 takes: the test needs leases ahead", g)
	}
	c.advance(idleFor + time.Second)
	l.Sweep()
	if g := granted(t, store, "k", c.now()); g != 50 {
		t.Fatalf("granted %d after the sweep, want the 50 used", g)
	}
	if r := l.Take(ctx, &slot, "k", lim, 1); !r.Allowed || r.Remaining != 949 {
		t.Fatalf("a take after the sweep: %+v", r)
	}
}

// TestLeasesThroughWindows: a key in use through its windows' ends,
// with a pause in each window and half of each take given back, takes a
// few leases a window, and at most a few of them in a window's last half
// cover (where what it holds is about what the rest of the window
// needs), because its rate is its use since its last lease.
func TestLeasesThroughWindows(t *testing.T) {
	c := newFakeClock(time.Unix(1_800_000_000, 0))
	lim := Limit{Units: 10_000_000, Window: time.Minute}
	windowStart(c, "k", lim)
	l := newTestLimiter(t, Options{Now: c.now})
	ctx := context.Background()
	var slot Slot
	const windows, perSecond = 3, 30
	var tail uint64
	for i := 0; i < windows*60*perSecond; i++ {
		if at := i % (60 * perSecond); at >= 20*perSecond && at < 30*perSecond { // a 10 s pause mid-window
			c.advance(time.Second / perSecond)
			continue
		}
		before := l.Stats().Leases.Load()
		r := l.Take(ctx, &slot, "k", lim, 2)
		if !r.Allowed {
			t.Fatalf("take %d denied: %+v", i, r)
		}
		l.Settle(ctx, &slot, "k", lim, r.Window, -1)
		poll.Until(t, 5*time.Second, "no lease in flight", func() bool { return slot.st.Load().flight.Load() == nil })
		if r.Reset <= cover(lim.Window)/2 {
			tail += l.Stats().Leases.Load() - before
		}
		c.advance(time.Second / perSecond)
	}
	if n := l.Stats().Leases.Load(); n > 6*windows {
		t.Errorf("%d leases in %d windows, want at most 6 a window", n, windows)
	}
	if tail > 3*windows {
		t.Errorf("%d leases in the windows' last half covers, want at most 3 a window", tail)
	}
	t.Logf("%d leases, %d in last half covers", l.Stats().Leases.Load(), tail)
	ks := slot.st.Load()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.rate < 15 || ks.rate > 60 {
		t.Errorf("rate %.1f units a second, want about 30: one unit a take after refunds, 30 takes a second", ks.rate)
	}
}

// TestRateThroughRefunds: settlements that give back more than was taken
// since the last lease leave the rate as it was, rather than read as a
// key that stopped.
func TestRateThroughRefunds(t *testing.T) {
	ks := &keyState{id: "k", rate: 30}
	win := Window{Start: 0, Len: int64(time.Minute), Limit: 1000}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	w := ks.install(win, 100, 0)
	w.tokens.Add(-50) // taken
	w.tokens.Add(60)  // given back, of takes before the lease
	ks.install(win, 10, int64(2*time.Second))
	if ks.rate != 30 {
		t.Fatalf("rate %v after refunds, want 30 as before", ks.rate)
	}
	w.tokens.Add(-40) // taken over the next 2 s: 20 a second
	ks.install(win, 10, int64(4*time.Second))
	if ks.rate != 20 {
		t.Fatalf("rate %v, want 20: 40 units over 2 s", ks.rate)
	}
}
