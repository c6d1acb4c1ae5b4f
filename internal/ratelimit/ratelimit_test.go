package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a test clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func allow(l *Limiter, key string, limit Limit, now time.Time) Result {
	return l.Allow(context.Background(), nil, key, limit, now)
}

// TestFixedWindow: N requests per window, the remaining count going down,
// denials until the window ends, then a whole budget again.
func TestFixedWindow(t *testing.T) {
	for _, lim := range []Limit{{3, time.Minute}, {1, time.Hour}, {600, time.Minute}, {13, 17 * time.Second}, {1_000_000_000, 24 * time.Hour}} {
		t.Run(fmt.Sprintf("%d/%s", lim.Requests, lim.Window), func(t *testing.T) {
			c := newClock()
			l := New(Options{Now: c.now})
			_, end := Window("k", lim, c.now())
			n := min(lim.Requests, 1000)
			for i := range n {
				l.leases.Wait() // a lease taken ahead lands between requests, as it mostly does
				r := allow(l, "k", lim, c.now())
				if !r.Allowed || r.Remaining != lim.Requests-i-1 || r.Reset != end.Sub(c.now()) || r.Limit != lim.Requests {
					t.Fatalf("request %d: %+v, want allowed, remaining %d, reset %s", i, r, lim.Requests-i-1, end.Sub(c.now()))
				}
			}
			if n < lim.Requests {
				return
			}
			c.set(end.Add(-time.Nanosecond))
			if r := allow(l, "k", lim, c.now()); r.Allowed || r.Remaining != 0 || r.Reset != time.Nanosecond {
				t.Fatalf("over the limit: %+v", r)
			}
			c.set(end)
			if r := allow(l, "k", lim, c.now()); !r.Allowed || r.Remaining != lim.Requests-1 || r.Reset != lim.Window {
				t.Fatalf("next window: %+v", r)
			}
		})
	}
}

// TestWindows: every keygate computes the same windows, and keys' windows
// end at different times.
func TestWindows(t *testing.T) {
	lim := Limit{10, time.Minute}
	now := time.Now()
	ends := map[time.Time]bool{}
	for i := range 20 {
		key := fmt.Sprintf("key_%d", i)
		idx, end := Window(key, lim, now)
		if !end.After(now) || end.Sub(now) > lim.Window {
			t.Fatalf("%s: window ends %s from now", key, end.Sub(now))
		}
		if idx2, end2 := Window(key, lim, end.Add(-1)); idx2 != idx || !end2.Equal(end) {
			t.Fatalf("%s: the window's last instant is in another window", key)
		}
		if idx3, _ := Window(key, lim, end); idx3 != idx+1 {
			t.Fatalf("%s: the window's end starts window %d, want %d", key, idx3, idx+1)
		}
		ends[end] = true
	}
	if len(ends) < 15 {
		t.Fatalf("20 keys' windows end at only %d times", len(ends))
	}
}

// TestConcurrentExactlyN: many goroutines racing on one key get exactly
// the limit, whatever the lease sizes.
func TestConcurrentExactlyN(t *testing.T) {
	c := newClock()
	l := New(Options{Now: c.now})
	lim := Limit{Requests: 1000, Window: time.Hour}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	var slot Slot
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if l.Allow(context.Background(), &slot, "k", lim, c.now()).Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != lim.Requests {
		t.Fatalf("allowed %d, want %d", allowed.Load(), lim.Requests)
	}
}

// TestLimitChange: a key whose limit changes starts on the new one.
func TestLimitChange(t *testing.T) {
	c := newClock()
	l := New(Options{Now: c.now})
	var slot Slot
	for range 2 {
		l.Allow(context.Background(), &slot, "k", Limit{2, time.Hour}, c.now())
	}
	if r := l.Allow(context.Background(), &slot, "k", Limit{2, time.Hour}, c.now()); r.Allowed {
		t.Fatal("over the old limit")
	}
	if r := l.Allow(context.Background(), &slot, "k", Limit{5, time.Hour}, c.now()); !r.Allowed || r.Limit != 5 {
		t.Fatalf("new limit: %+v", r)
	}
}

// TestMixedLimits: keygates on different limits for one key (a config
// change rolling out) share the window's count: together they allow at
// most the larger limit, however their requests interleave.
func TestMixedLimits(t *testing.T) {
	c := newClock()
	st := NewLocalStore()
	small := New(Options{Now: c.now, Store: st})
	large := New(Options{Now: c.now, Store: st})
	n := 0
	for i := range 400 {
		l, lim := small, Limit{100, time.Hour}
		if i%2 == 1 {
			l, lim = large, Limit{150, time.Hour}
		}
		if allow(l, "k", lim, c.now()).Allowed {
			n++
		}
	}
	if n > 150 || n < 100 {
		t.Fatalf("allowed %d; want 100 to 150", n)
	}
}

// TestSweep forgets keys idle for two windows or idleFor, whichever is
// shorter, and hands back what they leased.
func TestSweep(t *testing.T) {
	c := newClock()
	st := NewLocalStore()
	l := New(Options{Now: c.now, Store: st})
	allow(l, "a", Limit{1, time.Second}, c.now())
	for range 600 { // more than half the window's budget at once: contended
		allow(l, "b", Limit{1000, time.Hour}, c.now())
	}
	allow(l, "c", Limit{10, time.Hour}, c.now())
	c.set(c.now().Add(5 * time.Second))
	allow(l, "c", Limit{10, time.Hour}, c.now())
	c.set(c.now().Add(idleFor))
	l.Sweep()
	_, a := l.key("a")
	_, b := l.key("b")
	_, cc := l.key("c")
	if a || b || !cc {
		t.Fatalf("kept: a %v, b %v, c %v; want c only", a, b, cc)
	}
	// b leased ahead of a contended window; what it did not use is back.
	if got, _, _ := st.Lease(context.Background(), "b", Limit{1000, time.Hour}, windowIndex("b", Limit{1000, time.Hour}, c.now()), 1000); got != 400 {
		t.Fatalf("after the sweep, %d of b's 400 left could be leased", got)
	}
}

// TestSweepHandsBackLeaseAhead: a key swept once the window it leased
// ahead in has begun hands that lease back where the fleet may need it.
func TestSweepHandsBackLeaseAhead(t *testing.T) {
	c := newClock()
	st := NewLocalStore()
	l := New(Options{Now: c.now, Store: st})
	lim := Limit{1000, time.Minute}
	_, start := Window("k", lim, c.now())
	c.set(start)    // the key is seen through its whole window
	for range 300 { // over a quarter of the budget: the fleet may need what is left
		allow(l, "k", lim, c.now())
	}
	l.leases.Wait()
	c.set(start.Add(lim.Window - 5*time.Second)) // late: the next window is leased ahead
	allow(l, "k", lim, c.now())
	l.leases.Wait()
	ks, _ := l.key("k")
	np := ks.next.Load()
	if np == nil || np.tokens.Load() == 0 {
		t.Fatal("nothing leased ahead")
	}
	c.set(start.Add(lim.Window + idleFor + time.Second)) // idle, in the window leased ahead
	l.Sweep()
	if got, _, _ := st.Lease(context.Background(), "k", lim, np.index, lim.Requests); got != lim.Requests {
		t.Fatalf("after the sweep, %d of the next window's %d could be leased; %d were leased ahead", got, lim.Requests, np.mine.Load())
	}
}

func windowIndex(key string, lim Limit, t time.Time) int64 {
	idx, _ := Window(key, lim, t)
	return idx
}

// TestOutageShare: without the Store, a keygate allows its share of the
// limit per window: the limit divided by the keygates it knew of.
func TestOutageShare(t *testing.T) {
	c := newClock()
	var online atomic.Bool
	l := New(Options{Now: c.now, Online: online.Load})
	l.peers.saw("other-1", time.Second)
	l.peers.saw("other-2", time.Second)
	lim := Limit{Requests: 30, Window: time.Minute}
	n := 0
	for range 100 {
		if allow(l, "k", lim, c.now()).Allowed {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("offline with 3 keygates: allowed %d of 30, want 10", n)
	}
}

// TestBudgetJSON checks the budget's hand-written JSON against the
// documented form (budgetJSON) and that it reads back.
func TestBudgetJSON(t *testing.T) {
	for _, b := range []budget{
		{},
		{Limit: 600, Window: int64(time.Minute), Granted: [2]grant{{29876544, 20}, {29876543, 250}}},
		{Limit: 1, Window: 1, Granted: [2]grant{{0, 0}, {-5, 3}}},
		{Limit: math.MaxInt64, Window: math.MaxInt64, Granted: [2]grant{{math.MinInt64, math.MinInt64}, {7, 0}}},
	} {
		got, _ := b.MarshalJSON()
		j := budgetJSON{Limit: b.Limit, Window: b.Window, Granted: map[string]int64{}}
		for _, g := range b.Granted {
			if g.Index != 0 {
				j.Granted[strconv.FormatInt(g.Index, 10)] = g.N
			}
		}
		var read budgetJSON
		if err := json.Unmarshal(got, &read); err != nil || !reflect.DeepEqual(read, j) {
			t.Errorf("%+v: wrote %s, read %+v (%v), want %+v", b, got, read, err, j)
		}
	}
}

// TestSweepEmptiesSlot: a swept key's state is no longer held by the
// Slot a cached key keeps, and the key's next check starts afresh.
func TestSweepEmptiesSlot(t *testing.T) {
	c := newClock()
	l := New(Options{Now: c.now})
	var slot Slot
	lim := Limit{Requests: 5, Window: time.Second}
	l.Allow(context.Background(), &slot, "k", lim, c.now())
	swept := slot.st.Load()
	c.set(c.now().Add(idleFor + time.Second))
	l.Sweep()
	if slot.st.Load() != nil {
		t.Fatal("the slot still holds a swept state")
	}
	if r := l.Allow(context.Background(), &slot, "k", lim, c.now()); !r.Allowed || slot.st.Load() == swept {
		t.Fatalf("after the sweep: %+v, same state %v", r, slot.st.Load() == swept)
	}
}
