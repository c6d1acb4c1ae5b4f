// Package ratelimit limits requests per key in memory with the generic cell
// rate algorithm (GCRA): N requests per window, spread evenly, with a burst
// of up to N. Each key's whole state is one atomic timestamp.
package ratelimit

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Limit allows Requests per Window.
type Limit struct {
	Requests int64
	Window   time.Duration
}

// Result is the outcome of one request.
type Result struct {
	Allowed   bool
	Limit     int64
	Remaining int64
	// Reset is the time until the window frees a request; for a denied
	// request, also the time to wait before retrying.
	Reset time.Duration
}

// Limiter tracks every key's theoretical arrival time (TAT).
type Limiter struct {
	now   func() time.Time
	epoch time.Time
	tats  sync.Map // key -> *atomic.Int64, nanoseconds since epoch
}

// New returns a Limiter reading the clock with now (time.Now if nil).
func New(now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{now: now, epoch: now()}
}

// Allow counts one request for key under limit.
func (l *Limiter) Allow(key string, limit Limit) Result {
	return l.AllowAt(key, limit, l.now())
}

// AllowAt counts one request for key under limit at time t, for callers
// that have read the clock already.
func (l *Limiter) AllowAt(key string, limit Limit, t time.Time) Result {
	return l.AllowSlot(nil, key, limit, t)
}

// Slot remembers where a key's state is, so that a caller holding one per
// key (next to its cached record) skips the lookup by key. The zero Slot
// is empty; a Slot belongs to one key and one Limiter.
type Slot struct {
	tat atomic.Pointer[atomic.Int64]
}

// AllowSlot is AllowAt with the key's state found through slot, which may
// be nil.
func (l *Limiter) AllowSlot(slot *Slot, key string, limit Limit, t time.Time) Result {
	// The window is a whole number of intervals, so the burst is exactly
	// Requests even when Window/Requests does not divide evenly.
	interval := max(int64(limit.Window)/limit.Requests, 1)
	window := interval * limit.Requests
	now := int64(t.Sub(l.epoch))
	tat := l.slotState(slot, key)
	for {
		old := tat.Load()
		if old == dead { // dropped by Sweep: use the key's new state
			l.tats.CompareAndDelete(key, tat)
			tat = l.state(key)
			if slot != nil {
				slot.tat.Store(tat)
			}
			continue
		}
		used := max(old, now) + interval - now // window used after this request
		if used > window {
			return result(false, limit, old-now, interval)
		}
		if tat.CompareAndSwap(old, now+used) {
			return result(true, limit, used, interval)
		}
	}
}

// slotState returns key's state, from slot when it holds it.
func (l *Limiter) slotState(slot *Slot, key string) *atomic.Int64 {
	if slot == nil {
		return l.state(key)
	}
	if tat := slot.tat.Load(); tat != nil {
		return tat
	}
	tat := l.state(key)
	slot.tat.Store(tat)
	return tat
}

func (l *Limiter) state(key string) *atomic.Int64 {
	if v, ok := l.tats.Load(key); ok {
		return v.(*atomic.Int64)
	}
	v, _ := l.tats.LoadOrStore(key, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// result computes the headers' numbers from the window in use.
func result(allowed bool, limit Limit, used, interval int64) Result {
	window := interval * limit.Requests
	used = max(used, 0)
	remaining := max((window-used)/interval, 0)
	remaining = min(remaining, limit.Requests)
	reset := used - (window - interval*(remaining+1))
	return Result{Allowed: allowed, Limit: limit.Requests, Remaining: remaining, Reset: time.Duration(max(reset, 0))}
}

// dead marks a state that Sweep dropped. A request that raced with Sweep
// and still holds the state sees it and counts in the key's new state
// instead, so no request is counted in a state that is forgotten.
const dead = math.MinInt64

// Sweep forgets keys whose windows are empty, bounding memory to the keys
// used recently. Call it from time to time.
func (l *Limiter) Sweep() {
	now := int64(l.now().Sub(l.epoch))
	l.tats.Range(func(k, v any) bool {
		tat := v.(*atomic.Int64)
		if old := tat.Load(); old <= now && tat.CompareAndSwap(old, dead) {
			l.tats.CompareAndDelete(k, v)
		}
		return true
	})
}
