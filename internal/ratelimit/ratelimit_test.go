package ratelimit

import (
	"fmt"
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

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// step is one request, after moving the clock by advance.
type step struct {
	advance   time.Duration
	key       string // "k" if empty
	allowed   bool
	remaining int64
	reset     time.Duration
}

func TestAllow(t *testing.T) {
	tests := []struct {
		name  string
		limit Limit
		steps []step
	}{
		{
			name:  "3 per minute",
			limit: Limit{Requests: 3, Window: time.Minute},
			steps: []step{
				{allowed: true, remaining: 2, reset: 20 * time.Second},
				{allowed: true, remaining: 1, reset: 20 * time.Second},
				{allowed: true, remaining: 0, reset: 20 * time.Second},
				{allowed: false, remaining: 0, reset: 20 * time.Second}, // retry after 20s
				{allowed: false, remaining: 0, reset: 20 * time.Second}, // a denial costs nothing
				{advance: 20 * time.Second, allowed: true, remaining: 0, reset: 20 * time.Second},
				{allowed: false, remaining: 0, reset: 20 * time.Second},
				{advance: 10 * time.Second, allowed: false, remaining: 0, reset: 10 * time.Second},
				{advance: 10 * time.Second, allowed: true, remaining: 0, reset: 20 * time.Second},
				{advance: 30 * time.Second, allowed: true, remaining: 0, reset: 10 * time.Second},
				{advance: time.Hour, allowed: true, remaining: 2, reset: 20 * time.Second}, // idle: a full burst again
			},
		},
		{
			name:  "keys are independent",
			limit: Limit{Requests: 1, Window: time.Minute},
			steps: []step{
				{key: "a", allowed: true, remaining: 0, reset: time.Minute},
				{key: "a", allowed: false, remaining: 0, reset: time.Minute},
				{key: "b", allowed: true, remaining: 0, reset: time.Minute},
				{advance: 59 * time.Second, key: "a", allowed: false, remaining: 0, reset: time.Second},
				{advance: time.Second, key: "a", allowed: true, remaining: 0, reset: time.Minute},
			},
		},
		{
			name:  "1e9 per second",
			limit: Limit{Requests: 1_000_000_000, Window: time.Second},
			steps: []step{
				{allowed: true, remaining: 999_999_999, reset: time.Nanosecond},
				{allowed: true, remaining: 999_999_998, reset: time.Nanosecond},
				{allowed: true, remaining: 999_999_997, reset: time.Nanosecond},
				{advance: time.Second, allowed: true, remaining: 999_999_999, reset: time.Nanosecond},
			},
		},
		{
			name:  "1e9 per day",
			limit: Limit{Requests: 1_000_000_000, Window: 24 * time.Hour},
			steps: []step{
				{allowed: true, remaining: 999_999_999, reset: 86400 * time.Nanosecond},
				{allowed: true, remaining: 999_999_998, reset: 86400 * time.Nanosecond},
			},
		},
		{
			name:  "1 per hour",
			limit: Limit{Requests: 1, Window: time.Hour},
			steps: []step{
				{allowed: true, remaining: 0, reset: time.Hour},
				{advance: 15 * time.Minute, allowed: false, remaining: 0, reset: 45 * time.Minute},
				{advance: 45 * time.Minute, allowed: true, remaining: 0, reset: time.Hour},
			},
		},
		{
			name:  "600 per minute",
			limit: Limit{Requests: 600, Window: time.Minute},
			steps: []step{
				{allowed: true, remaining: 599, reset: 100 * time.Millisecond},
				{advance: 50 * time.Millisecond, allowed: true, remaining: 598, reset: 50 * time.Millisecond},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := New(c.now)
			for i, s := range tc.steps {
				c.advance(s.advance)
				key := s.key
				if key == "" {
					key = "k"
				}
				got := l.Allow(key, tc.limit)
				want := Result{Allowed: s.allowed, Limit: tc.limit.Requests, Remaining: s.remaining, Reset: s.reset}
				if got != want {
					t.Fatalf("step %d (%s): Allow = %+v, want %+v", i, key, got, want)
				}
			}
		})
	}
}

// A burst of exactly N is allowed from an idle key, then every request is
// denied until the window frees one.
func TestBurstIsExactlyN(t *testing.T) {
	for _, lim := range []Limit{
		{1, time.Second}, {3, time.Minute}, {7, time.Minute}, {10, time.Second},
		{600, time.Minute}, {1000, time.Hour}, {60, time.Minute}, {13, 17 * time.Second},
	} {
		t.Run(fmt.Sprintf("%d/%v", lim.Requests, lim.Window), func(t *testing.T) {
			c := newClock()
			l := New(c.now)
			for i := range lim.Requests {
				r := l.Allow("k", lim)
				if !r.Allowed || r.Remaining != lim.Requests-1-i {
					t.Fatalf("request %d: %+v, want allowed with %d remaining", i, r, lim.Requests-1-i)
				}
				if r.Reset <= 0 || r.Reset > lim.Window {
					t.Fatalf("request %d: reset %v outside (0, %v]", i, r.Reset, lim.Window)
				}
			}
			r := l.Allow("k", lim)
			if r.Allowed || r.Remaining != 0 || r.Reset <= 0 {
				t.Fatalf("request %d: %+v, want denied with a retry time", lim.Requests, r)
			}
			// Waiting the reset it reported is enough for one more.
			c.advance(r.Reset)
			if r := l.Allow("k", lim); !r.Allowed {
				t.Fatalf("after waiting the reset: %+v, want allowed", r)
			}
		})
	}
}

func TestNilClockUsesTimeNow(t *testing.T) {
	l := New(nil)
	if r := l.Allow("k", Limit{Requests: 2, Window: time.Hour}); !r.Allowed || r.Remaining != 1 {
		t.Fatalf("Allow = %+v", r)
	}
}

// Many goroutines hitting one key in a frozen clock get exactly N allows,
// each with a different remaining count.
func TestAllowConcurrent(t *testing.T) {
	tests := []struct {
		name       string
		limit      Limit
		goroutines int
		each       int
	}{
		{"1 per minute", Limit{Requests: 1, Window: time.Minute}, 64, 10},
		{"100 per minute", Limit{Requests: 100, Window: time.Minute}, 50, 20},
		{"1000 per second", Limit{Requests: 1000, Window: time.Second}, 16, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := New(c.now)
			var allowed, denied atomic.Int64
			seen := make([]atomic.Int32, tc.limit.Requests) // remaining values of allowed requests
			start := make(chan struct{})
			var wg sync.WaitGroup
			for range tc.goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for range tc.each {
						r := l.Allow("shared", tc.limit)
						if !r.Allowed {
							denied.Add(1)
							continue
						}
						allowed.Add(1)
						if r.Remaining >= 0 && r.Remaining < tc.limit.Requests {
							seen[r.Remaining].Add(1)
						}
					}
				}()
			}
			close(start)
			wg.Wait()
			total := int64(tc.goroutines * tc.each)
			if allowed.Load() != tc.limit.Requests || denied.Load() != total-tc.limit.Requests {
				t.Fatalf("allowed %d, denied %d; want %d and %d", allowed.Load(), denied.Load(), tc.limit.Requests, total-tc.limit.Requests)
			}
			for i := range seen {
				if n := seen[i].Load(); n != 1 {
					t.Fatalf("remaining %d reported %d times, want once", i, n)
				}
			}
		})
	}
}

// keys counts the keys the limiter remembers.
func keys(l *Limiter) int {
	n := 0
	l.tats.Range(func(any, any) bool { n++; return true })
	return n
}

func TestSweep(t *testing.T) {
	lim := Limit{Requests: 3, Window: time.Minute}
	c := newClock()
	l := New(c.now)
	for range 3 {
		l.Allow("busy", lim) // whole window used: busy for 60s
	}
	l.Allow("idle", lim) // 20s of window used
	l.Allow("old", lim)
	c.advance(30 * time.Second)
	l.Allow("recent", lim) // used just now: busy for 20s
	if n := keys(l); n != 4 {
		t.Fatalf("limiter holds %d keys, want 4", n)
	}

	l.Sweep()

	if n := keys(l); n != 2 {
		t.Fatalf("after Sweep the limiter holds %d keys, want 2 (busy, recent)", n)
	}
	tests := []struct {
		key       string
		allowed   bool
		remaining int64
	}{
		// Busy keys keep their state: one more request fits in the window
		// (60s used, 30s passed), then none.
		{"busy", true, 0},
		{"busy", false, 0},
		{"recent", true, 1},
		// Idle keys behave exactly as keys never seen.
		{"idle", true, 2},
		{"old", true, 2},
		{"never", true, 2},
	}
	for _, tc := range tests {
		r := l.Allow(tc.key, lim)
		if r.Allowed != tc.allowed || r.Remaining != tc.remaining {
			t.Errorf("%s after Sweep: %+v, want allowed=%v remaining=%d", tc.key, r, tc.allowed, tc.remaining)
		}
	}

	// Once every window is empty, Sweep forgets everything.
	c.advance(time.Hour)
	l.Sweep()
	if n := keys(l); n != 0 {
		t.Fatalf("after an idle hour the limiter holds %d keys, want 0", n)
	}
	if r := l.Allow("busy", lim); !r.Allowed || r.Remaining != 2 {
		t.Fatalf("busy after an idle hour: %+v, want a full burst", r)
	}
}

// Sweep running concurrently with Allow never lets a key through more than
// its limit: a request counted in a state that Sweep drops must not be
// forgotten.
func TestSweepConcurrentWithAllow(t *testing.T) {
	lim := Limit{Requests: 1, Window: time.Hour}
	c := newClock()
	const rounds, goroutines = 2000, 4
	for round := range rounds {
		l := New(c.now)
		const key = "k"
		var allowed atomic.Int64
		var slot Slot // shared, as by the requests of one cached key
		start := make(chan struct{})
		var allowers, sweeper sync.WaitGroup
		for g := range goroutines {
			allowers.Add(1)
			go func() {
				defer allowers.Done()
				<-start
				var r Result
				if g%2 == 0 {
					r = l.Allow(key, lim)
				} else {
					r = l.AllowSlot(&slot, key, lim, c.now())
				}
				if r.Allowed {
					allowed.Add(1)
				}
			}()
		}
		var done atomic.Bool
		sweeper.Add(1)
		go func() {
			defer sweeper.Done()
			<-start
			for !done.Load() { // sweep for as long as requests are in flight
				l.Sweep()
			}
		}()
		close(start)
		allowers.Wait()
		done.Store(true)
		sweeper.Wait()
		if n := allowed.Load(); n != 1 {
			t.Fatalf("round %d: %d requests allowed under a limit of 1", round, n)
		}
	}
}

// TestSlot: a key's requests counted through a Slot and by key share one
// state, before and after a Sweep drops it.
func TestSlot(t *testing.T) {
	lim := Limit{Requests: 2, Window: time.Minute}
	c := newClock()
	l := New(c.now)
	var slot Slot
	if r := l.AllowSlot(&slot, "k", lim, c.now()); !r.Allowed || r.Remaining != 1 {
		t.Fatalf("first request through the slot: %+v", r)
	}
	if r := l.Allow("k", lim); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("second request by key: %+v", r)
	}
	if r := l.AllowSlot(&slot, "k", lim, c.now()); r.Allowed {
		t.Fatalf("third request through the slot: %+v", r)
	}
	c.advance(time.Hour)
	l.Sweep() // drops the idle state the slot points to
	for want := int64(1); want >= 0; want-- {
		if r := l.AllowSlot(&slot, "k", lim, c.now()); !r.Allowed || r.Remaining != want {
			t.Fatalf("after Sweep, through the slot: %+v, want remaining %d", r, want)
		}
	}
	if r := l.Allow("k", lim); r.Allowed {
		t.Fatalf("after Sweep, by key: %+v: the slot and the key no longer share a state", r)
	}
}

// TestUnevenInterval: when Window/Requests is not a whole number of
// nanoseconds, the burst is still exactly Requests.
func TestUnevenInterval(t *testing.T) {
	for _, limit := range []Limit{
		{Requests: 3, Window: time.Second + 1},
		{Requests: 7, Window: time.Second},
		{Requests: 300_000, Window: 100 * time.Millisecond},
	} {
		l := New(newClock().now)
		for i := range limit.Requests {
			if !l.Allow("k", limit).Allowed {
				t.Fatalf("%+v: request %d denied", limit, i+1)
			}
		}
		if l.Allow("k", limit).Allowed {
			t.Fatalf("%+v: request %d allowed", limit, limit.Requests+1)
		}
	}
}
