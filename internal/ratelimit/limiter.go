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
	"errors"
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
	Window time.Duration
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
	mu      sync.Mutex // one lease at a time; guards seen, rate
	seen    seenEntry  // the Store's entry as last seen
	cur     atomic.Pointer[window]
	next    atomic.Pointer[window] // the window after cur, leased ahead
	rate    float64                // units a second used here, at the last lease
	lastUse atomic.Int64
	busy    atomic.Bool // a background lease is in flight
	listed  atomic.Bool // in Limiter.keys (false once swept)
}

type seenEntry struct {
	e   Entry
	rev uint64
}

// window is a window of a budget and what this keygate holds of it.
type window struct {
	Window               // as last seen
	since   int64        // when this keygate first leased of it
	tokens  atomic.Int64 // leased here and not spent
	leased  atomic.Int64 // leased here in all
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
// this keygate begins) at the Limiter's clock's time.
func (l *Limiter) Take(ctx context.Context, slot *Slot, id string, lim Limit, n int64) Result {
	ks := l.state(slot, id, lim)
	t := l.o.Now().UnixNano()
	ks.lastUse.Store(t)
	if w := ks.cur.Load(); w != nil && w.holds(t) {
		if left := w.tokens.Add(-n); left >= 0 {
			if left <= w.low.Load() || t >= w.End()-int64(cover(time.Duration(w.Len)))/2 {
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

// slow decides a take that the units held here do not cover: it leases,
// waiting at most LeaseTimeout, or applies the outage rule.
func (l *Limiter) slow(ctx context.Context, ks *keyState, n, t int64) Result {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	w := ks.current(t)
	for {
		if w != nil {
			if w.tokens.Add(-n) >= 0 {
				return w.result(true, t)
			}
			w.tokens.Add(n)
			if w.spent.Load() {
				return w.result(false, t)
			}
		}
		if l.outage() && !l.probe() {
			return l.underOutage(ks, w, n, t)
		}
		lctx, cancel := context.WithTimeout(ctx, l.o.LeaseTimeout)
		var err error
		w, err = l.lease(lctx, ks, t, n)
		cancel()
		if err != nil && !l.outage() {
			if errors.Is(err, context.DeadlineExceeded) {
				l.stats.Timeouts.Add(1)
			}
			return Result{Unavailable: true, Limit: ks.limit.Units, Reset: time.Second}
		}
	}
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

// lease takes units of the window holding t, at least need, sized by
// size, and returns that window as this keygate then holds it; the
// caller holds ks.mu.
func (l *Limiter) lease(ctx context.Context, ks *keyState, t, need int64) (*window, error) {
	begin := time.Now()
	now := l.o.Now().UnixNano()
	seen, fresh := ks.seen, false
	for {
		cur := seen.e.pruned(now).window(ks.id, ks.limit, t)
		want := size(sizing{need: need, rate: ks.rate, window: time.Duration(cur.Len), left: time.Duration(cur.End() - t),
			free: cur.Limit - cur.Granted, peers: l.o.Peers()})
		if want == 0 { // nothing to take ahead
			return ks.holding(cur.Start), nil
		}
		e, got, win := seen.e.lease(ks.id, ks.limit, t, now, want)
		if got == 0 && !fresh { // the entry seen may be out of date: read it
			if seen, fresh = l.read(ctx, ks.id); !fresh {
				return nil, l.failed(ctx)
			}
			continue
		}
		if got == 0 {
			return ks.install(win, 0, now), nil
		}
		rev, err := l.o.Store.Put(ctx, ks.id, e, seen.rev)
		if errors.Is(err, ErrConflict) {
			if seen, fresh = l.read(ctx, ks.id); !fresh {
				return nil, l.failed(ctx)
			}
			continue
		}
		if err != nil {
			l.o.Log.Debug("lease failed", "budget", ks.id, "err", err)
			return nil, l.failed(ctx)
		}
		l.failing.Store(0)
		l.stats.Leases.Add(1)
		if l.o.Observe != nil {
			l.o.Observe(time.Since(begin))
		}
		ks.seen = seenEntry{e, rev}
		return ks.install(win, got, now), nil
	}
}

// read reads id's entry; false when it cannot be read.
func (l *Limiter) read(ctx context.Context, id string) (seenEntry, bool) {
	e, rev, err := l.o.Store.Get(ctx, id)
	if err != nil {
		l.o.Log.Debug("reading a budget failed", "budget", id, "err", err)
		return seenEntry{}, false
	}
	return seenEntry{e, rev}, true
}

// failed records a lease that failed, and returns why.
func (l *Limiter) failed(ctx context.Context) error {
	l.failing.CompareAndSwap(0, time.Now().UnixNano())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	l.stats.Failures.Add(1)
	return errLease
}

var errLease = errors.New("lease failed")

// install adds got units of win, just leased, to the window this keygate
// holds (begun if new), updates the rate and the low water, and returns
// it; the caller holds ks.mu.
func (ks *keyState) install(win Window, got, now int64) *window {
	w := ks.holding(win.Start)
	if w == nil {
		w = &window{Window: win, since: now}
		if win.Start <= now {
			ks.cur.Store(w)
		} else {
			ks.next.Store(w)
		}
	}
	if used, span := w.leased.Load()-w.tokens.Load(), time.Duration(now-w.since); span >= cover(time.Duration(w.Len)) || used > 0 {
		r := rateOver(used, span)
		if span < cover(time.Duration(w.Len)) {
			r = max(r, ks.rate) // early in a window, the rate before still counts
		}
		ks.rate = r
	}
	w.tokens.Add(got)
	w.leased.Add(got)
	raise(&w.granted, win.Granted)
	w.spent.Store(win.Granted >= win.Limit)
	w.low.Store(lowWater(ks.rate, time.Duration(w.Len)))
	return w
}

// holding returns the window starting at start that ks holds, if any.
func (ks *keyState) holding(start int64) *window {
	for _, w := range []*window{ks.cur.Load(), ks.next.Load()} {
		if w != nil && w.Start == start {
			return w
		}
	}
	return nil
}

func raise(v *atomic.Int64, n int64) {
	for cur := v.Load(); n > cur && !v.CompareAndSwap(cur, n); cur = v.Load() {
	}
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
		l.handBack(l.bg, ks)
	}
}

// handBack returns the units ks holds of windows not over, and drops its
// windows.
func (l *Limiter) handBack(ctx context.Context, ks *keyState) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	now := l.o.Now().UnixNano()
	for _, w := range []*window{ks.cur.Swap(nil), ks.next.Swap(nil)} {
		if w == nil || w.End() <= now || !l.o.Online() {
			continue
		}
		if n := w.tokens.Swap(0); n > 0 {
			if err := l.update(ctx, ks, func(e Entry) (Entry, bool) { return e.adjust(w.Start, -n, now) }); err == nil {
				l.stats.HandedBack.Add(uint64(n))
			}
		}
	}
}

// update applies change to ks's entry with compare-and-set, reading it
// afresh on a conflict; the caller holds ks.mu.
func (l *Limiter) update(ctx context.Context, ks *keyState, change func(Entry) (Entry, bool)) error {
	ctx, cancel := context.WithTimeout(ctx, l.o.LeaseTimeout)
	defer cancel()
	seen := ks.seen
	for {
		e, write := change(seen.e)
		if !write {
			return nil
		}
		rev, err := l.o.Store.Put(ctx, ks.id, e, seen.rev)
		if err == nil {
			ks.seen = seenEntry{e, rev}
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return err
		}
		var ok bool
		if seen, ok = l.read(ctx, ks.id); !ok {
			return errLease
		}
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
			l.handBack(ctx, ks)
		}()
	}
	wg.Wait()
}
