// Package ratelimit keeps budgets that every keygate sharing a Store
// spends together: N units per fixed window, where a unit is a request, a
// token or an amount of money. A budget is one Store entry (a NATS KV
// entry per key) changed only by compare-and-set, and a keygate allows
// only by spending units it leased from it, so while the Store can be
// written the fleet never allows more than the limit. docs/fleet.md
// states the invariant, the rules, the guarantees and the failure modes.
package ratelimit

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/shrink"
)

// Limit allows Units per Window.
type Limit struct {
	Units  int64
	Window time.Duration // for a calendar period, its nominal length
	// Calendar, if set, aligns windows on UTC calendar periods instead
	// of Window's grid.
	Calendar Calendar
}

// Result is the outcome of one Take.
type Result struct {
	Allowed bool
	// Unavailable: denied because this keygate holds none of the budget
	// and could not lease in time, and the outage rule does not apply.
	Unavailable bool
	Limit       int64         // of the window
	Remaining   int64         // of the fleet's budget, as far as this keygate knows
	Reset       time.Duration // until the window ends and its budget is whole again
	Window      int64         // the window's start, for Settle
}

// Options configure a Limiter.
type Options struct {
	Store Store            // nil: a MemStore
	Now   func() time.Time // the fleet's clock; time.Now if nil
	// LeaseTimeout bounds a check's wait for a lease; 100 ms if zero.
	LeaseTimeout time.Duration
	// OutageAfter is how long leases fail before the outage rule applies
	// (at once while Online says false); 3 s if zero.
	OutageAfter time.Duration
	Online      func() bool  // nil: always
	Peers       func() int64 // keygates sharing the budgets; nil: 1
	// Observe, if set, is told how long each lease took.
	Observe func(time.Duration)
	Log     *slog.Logger
}

// Limiter decides takes against budgets.
type Limiter struct {
	o       Options
	kmu     sync.RWMutex
	keys    map[string]*keyState
	peak    int           // for shrink.Map
	failing atomic.Int64  // unix nanoseconds of the first of the failed leases since the last success; 0: none
	probeAt atomic.Int64  // unix nanoseconds from which a check may try a lease under the outage rule
	warned  atomic.Int64  // unix nanoseconds of the last warning of an entry refused
	bgSlots chan struct{} // background leases in flight
	owing   sync.Map      // *keyState -> struct{}: units to charge
	bg      context.Context
	stop    context.CancelFunc
	closing sync.RWMutex   // orders background work's wg.Add before Close's wg.Wait
	wg      sync.WaitGroup // background work
	stats   Stats
}

// Stats count what a Limiter did: totals, no key's own.
type Stats struct {
	Leases      atomic.Uint64 // writes that leased units
	Timeouts    atomic.Uint64 // leases a check gave up waiting for
	Failures    atomic.Uint64 // leases that failed otherwise
	OutageUnits atomic.Uint64 // units allowed under the outage rule
	HandedBack  atomic.Uint64 // units handed back to their budgets
	Settled     atomic.Uint64 // settlements
	Charged     atomic.Uint64 // units charged after the fact (outage, settlements)
}

// background bounds the leases taken ahead of need at once.
const background = 16

// New returns a Limiter; Close stops it.
func New(o Options) *Limiter {
	if o.Store == nil {
		o.Store = NewMemStore()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LeaseTimeout == 0 {
		o.LeaseTimeout = 100 * time.Millisecond
	}
	if o.OutageAfter == 0 {
		o.OutageAfter = 3 * time.Second
	}
	if o.Online == nil {
		o.Online = func() bool { return true }
	}
	if o.Peers == nil {
		o.Peers = func() int64 { return 1 }
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{o: o, keys: map[string]*keyState{}, bgSlots: make(chan struct{}, background)}
	l.bg, l.stop = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.chargeLoop()
	return l
}

// Stats returns the Limiter's counters.
func (l *Limiter) Stats() *Stats { return &l.stats }

// Slot keeps a key's state next to the caller's record of the key, so
// that a take skips the lookup by id. The zero Slot is empty; a Slot
// belongs to one budget and one Limiter.
type Slot struct{ st atomic.Pointer[keyState] }

// keyState is one budget as this keygate holds it.
type keyState struct {
	id      string
	limit   Limit      // the terms of windows this keygate begins
	mu      sync.Mutex // guards seen, rate, and which windows are cur and next
	seen    seenEntry  // the Store's entry as last seen
	cur     atomic.Pointer[window]
	next    atomic.Pointer[window] // the window after cur, leased ahead
	rate    float64                // units a second used here, at the last lease
	lastUse atomic.Int64
	flight  atomic.Pointer[flight] // the store operation in progress on the entry
	listed  atomic.Bool            // in Limiter.keys (false once swept)
}

type seenEntry struct {
	e   Entry
	rev uint64
}

// window is a window of a budget and what this keygate holds of it.
type window struct {
	Window               // as last seen
	lastAt  int64        // when this keygate last leased of it
	after   int64        // tokens held right after that lease
	tokens  atomic.Int64 // leased here and not spent
	granted atomic.Int64 // by the fleet, as last seen
	owed    atomic.Int64 // allowed here beyond what was leased, to charge
	low     atomic.Int64 // lease more once tokens are down to this
	spent   atomic.Bool  // the fleet has leased the whole limit
}

func (w *window) holds(t int64) bool { return w.Start <= t && t < w.End() }

func (w *window) result(allowed bool, t int64) Result {
	rem := min(max(w.Limit-w.granted.Load()+w.tokens.Load(), 0), w.Limit)
	return Result{Allowed: allowed, Limit: w.Limit, Remaining: rem, Reset: time.Duration(w.End() - t), Window: w.Start}
}

// Take spends n units of id's budget under lim (the terms of windows
// this keygate begins) at the Limiter's clock's time. A negative n is
// refused: only Settle gives units back.
func (l *Limiter) Take(ctx context.Context, slot *Slot, id string, lim Limit, n int64) Result {
	if n < 0 {
		return Result{Limit: lim.Units}
	}
	ks := l.state(slot, id, lim)
	t := l.o.Now().UnixNano()
	ks.lastUse.Store(t)
	if w := ks.cur.Load(); w != nil && w.holds(t) {
		if left := w.tokens.Add(-n); left >= 0 {
			if left <= w.low.Load() || t >= w.End()-int64(cover(time.Duration(w.Len)))/2 && ks.next.Load() == nil {
				l.ahead(ks)
			}
			return w.result(true, t)
		}
		w.tokens.Add(n)
		if w.spent.Load() {
			return w.result(false, t)
		}
	}
	return l.slow(ctx, ks, n, t)
}

// slow decides a take that the units held here do not cover: it waits
// at most LeaseTimeout for a lease (the lease goes on without it if the
// store is slower: its units are never lost), or applies the outage rule.
func (l *Limiter) slow(ctx context.Context, ks *keyState, n, t int64) Result {
	timer := time.NewTimer(l.o.LeaseTimeout)
	defer timer.Stop()
	for {
		if r, ok := l.fromHeld(ks, n, t); ok {
			return r
		}
		f := l.leaseFlight(ks, n)
		select {
		case <-f.done:
			if f.err != nil && (!l.outage() || refused(f.err)) {
				return l.unavailable(ks)
			}
		case <-timer.C:
			l.stats.Timeouts.Add(1)
			return l.unavailable(ks)
		case <-ctx.Done():
			return l.unavailable(ks)
		}
	}
}

// fromHeld decides a take of n at t from what ks holds, or under the
// outage rule; false when it needs a lease.
func (l *Limiter) fromHeld(ks *keyState, n, t int64) (Result, bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	w := ks.current(t)
	if w != nil {
		if w.tokens.Add(-n) >= 0 {
			return w.result(true, t), true
		}
		w.tokens.Add(n)
		if w.spent.Load() {
			return w.result(false, t), true
		}
	}
	if l.outage() && !l.probe() {
		return l.underOutage(ks, w, n, t), true
	}
	return Result{}, false
}

// unavailable is the answer to a take that holds nothing and could not
// lease in time.
func (l *Limiter) unavailable(ks *keyState) Result {
	return Result{Unavailable: true, Limit: ks.limit.Units, Reset: time.Second}
}

// current returns the window holding t as this keygate holds it (moving
// a window leased ahead into place), or nil; the caller holds ks.mu.
func (ks *keyState) current(t int64) *window {
	if w := ks.cur.Load(); w != nil && w.holds(t) {
		return w
	}
	if w := ks.next.Load(); w != nil && w.holds(t) {
		ks.cur.Store(w)
		ks.next.Store(nil)
		return w
	}
	return nil
}

// state returns id's state, from slot when it holds it.
func (l *Limiter) state(slot *Slot, id string, lim Limit) *keyState {
	if slot != nil {
		if ks := slot.st.Load(); ks != nil && ks.limit == lim {
			if !ks.listed.Load() {
				l.list(ks) // swept while idle: back in use
			}
			return ks
		}
	}
	l.kmu.RLock()
	ks, ok := l.keys[id]
	l.kmu.RUnlock()
	if !ok || ks.limit != lim {
		ks = l.list(&keyState{id: id, limit: lim})
	}
	if slot != nil {
		slot.st.Store(ks)
	}
	return ks
}

// list puts ks in the Limiter's table, unless one for the same budget
// and terms is there already, and returns the one listed.
func (l *Limiter) list(ks *keyState) *keyState {
	l.kmu.Lock()
	defer l.kmu.Unlock()
	if old, ok := l.keys[ks.id]; ok && old.limit == ks.limit && old != ks {
		return old
	}
	l.keys[ks.id] = ks
	ks.listed.Store(true)
	return ks
}

// states returns every listed state.
func (l *Limiter) states() []*keyState {
	l.kmu.RLock()
	defer l.kmu.RUnlock()
	return slices.Collect(maps.Values(l.keys))
}

// idleFor is how long an unused budget's units stay held here: then they
// go back to the budget, since the fleet may need them.
const idleFor = 15 * time.Second

// Sweep hands back the units of budgets unused for idleFor and forgets
// them (a Slot keeps its state: the entry seen, so that the next lease
// needs no read). Call it every few seconds.
func (l *Limiter) Sweep() {
	now := l.o.Now().UnixNano()
	l.kmu.Lock()
	var idle []*keyState
	for id, ks := range l.keys {
		if now-ks.lastUse.Load() > int64(idleFor) && !ks.owes() {
			delete(l.keys, id)
			ks.listed.Store(false)
			idle = append(idle, ks)
		}
	}
	l.keys = shrink.Map(l.keys, &l.peak)
	l.kmu.Unlock()
	for _, ks := range idle {
		_ = l.exclusive(l.bg, ks, func(ctx context.Context) error { return l.handBack(ctx, ks) })
	}
}

// Close stops the background work and hands back every unit held, so
// that a keygate going away strands none of the fleet's budgets.
func (l *Limiter) Close(ctx context.Context) {
	l.closing.Lock()
	l.stop()
	l.closing.Unlock()
	l.wg.Wait()
	l.chargeAll(ctx)
	var wg sync.WaitGroup
	sem := make(chan struct{}, background)
	for _, ks := range l.states() {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_ = l.exclusive(ctx, ks, func(ctx context.Context) error { return l.handBack(ctx, ks) })
		}()
	}
	wg.Wait()
}
