// Package ratelimit enforces per-key rate limits, N requests per fixed
// window, as one budget shared by every keygate that uses the same Store.
//
// The budget of a key's window lives in the Store (a NATS KV entry per
// key); each keygate takes leases from it, some requests at a time, with a
// compare-and-set, and answers checks from the requests it holds, in
// memory. So the fleet together never allows more than the limit, and a
// check waits on the network only when its keygate has run out of leased
// requests for the key (leases are taken ahead, sized to the key's recent
// traffic). Keygates also tell each other, batched, how many leased
// requests they still hold, so that the remaining count is the fleet's.
// When the Store cannot be reached, each keygate allows only its share of
// the limit: the limit divided by the keygates it last knew of.
package ratelimit

import (
	"context"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keygate/keygate/internal/shrink"
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
	Remaining int64 // in the whole fleet's budget for this window
	// Reset is the time until the window ends and its budget is whole
	// again; for a denied request, the time to wait before retrying.
	Reset time.Duration
}

// Options configure a Limiter.
type Options struct {
	// Store holds the budgets; nil keeps them in this process alone.
	Store Store
	Now   func() time.Time // time.Now if nil
	// LeaseTimeout bounds how long a check waits for a lease before this
	// keygate falls back to its share of the limit; 100ms if zero.
	LeaseTimeout time.Duration
	// Online, if set, reports whether the Store can be reached: while it
	// cannot, windows start on the local share at once, without waiting
	// for a lease to time out.
	Online func() bool
	Log    *slog.Logger
}

// Limiter decides requests against per-key limits.
type Limiter struct {
	store   Store
	now     func() time.Time
	timeout time.Duration
	log     *slog.Logger
	kmu     sync.RWMutex
	keys    map[string]*keyState
	peak    int // for shrink.Map
	peers   peers
	online  func() bool
	bg      context.Context
	stop    context.CancelFunc
	leases  sync.WaitGroup // prefetches and hand-backs in flight (track)
	closing sync.RWMutex   // orders track's Add before Close's Wait
	workers *workers       // run the prefetches
	syncBuf []*keyState    // reused by reports, on the sync loop alone
	swept   atomic.Uint64  // sweeps that dropped keys
}

// New returns a Limiter.
func New(o Options) *Limiter {
	l := &Limiter{store: o.Store, now: o.Now, timeout: o.LeaseTimeout, log: o.Log, online: o.Online, keys: map[string]*keyState{}}
	if l.store == nil {
		l.store = NewLocalStore()
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.timeout == 0 {
		l.timeout = 100 * time.Millisecond
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.online == nil {
		l.online = func() bool { return true }
	}
	l.bg, l.stop = context.WithCancel(context.Background())
	l.workers = newWorkers(prefetchers, prefetchQueue, time.Second, gatherEvery)
	l.peers.init(l.now)
	return l
}

// prefetchers bounds the leases a Limiter takes in the background at
// once, each a round trip to NATS: enough for thousands a second.
// Beyond prefetchQueue waiting, a prefetch is left to a later check.
// A prefetch for a key far from contention waits up to gatherEvery for
// others to run beside it (see workers): it is taken ahead of need.
const (
	prefetchers   = 16
	prefetchQueue = 4096
	gatherEvery   = 5 * time.Millisecond
)

// Slot remembers a key's state, so that a caller holding one per key
// (next to its cached record) skips the lookup by key. The zero Slot is
// empty; a Slot belongs to one key and one Limiter.
//
// Sweep empties the Slot when it forgets an idle key, so that the state
// goes even while the caller still holds the Slot.
type Slot struct {
	st atomic.Pointer[keyState]
}

// keyState is one key's limit and its current window here.
type keyState struct {
	key    string
	limit  Limit
	offset int64 // where the key's windows start, so that keys reset at different times
	cur    atomic.Pointer[period]
	next   atomic.Pointer[period] // the following window, leased a little of ahead

	mu       sync.Mutex // one lease at a time; guards prevRate and prevRoomy
	waiting  atomic.Int64
	refill   atomic.Bool // a prefetch is in flight
	prevRate float64     // requests per nanosecond in the window before
	prevOut  atomic.Bool // the fleet ran out of the window before
	// prevRoomy: the window before was seen here for at least half of
	// it, and the fleet leased at most a quarter of it; guarded by mu
	prevRoomy bool
	// prevKnown: prevRoomy is known, from the window before seen here
	// for at least half of it, or from the Store; guarded by mu
	prevKnown bool
	lastUse   atomic.Int64
	dead      atomic.Bool          // swept: look the key up again
	slot      atomic.Pointer[Slot] // the Slot last given ks, emptied when swept
	others    othersView           // other keygates' unspent leases, from their reports
}

// period is a key's window as seen here.
type period struct {
	index     int64
	start     int64        // unix nanoseconds
	end       int64        // unix nanoseconds
	late      int64        // from then on, lease some of the next window ahead
	seen      int64        // from then on this keygate counted the key's requests: start, or later for a key new here
	tokens    atomic.Int64 // requests leased here and not yet allowed
	mine      atomic.Int64 // requests leased here in this window
	granted   atomic.Int64 // requests leased by the whole fleet, as last seen
	refillAt  atomic.Int64 // with this few tokens left, lease more in the background
	exhausted atomic.Bool  // the fleet's budget for the window is spent
	local     atomic.Bool  // the Store was unreachable: tokens are a local share
	shed      atomic.Bool  // what was leased beyond use here went back (shed)
	shedAfter atomic.Int64 // a hand-back that found nothing looks again from then on
	leasedAt  int64        // when the last lease here landed; guarded by ks.mu
	usedAt    int64        // requests allowed here by then; guarded by ks.mu
}

// Allow counts one request for key under limit at time now.
func (l *Limiter) Allow(ctx context.Context, slot *Slot, key string, limit Limit, now time.Time) Result {
	ks := l.state(slot, key, limit)
	t := now.UnixNano()
	ks.lastUse.Store(t)
	if p := ks.cur.Load(); p != nil && t >= p.start && t < p.end {
		if p.tokens.Add(-1) >= 0 {
			l.prefetch(ks, p, t)
			return ks.result(true, p, t)
		}
		p.tokens.Add(1)
		if p.exhausted.Load() {
			return ks.result(false, p, t)
		}
	}
	return l.slow(ctx, ks, t)
}

// result is the outcome at time t in window p.
func (ks *keyState) result(allowed bool, p *period, t int64) Result {
	r := Result{Allowed: allowed, Limit: ks.limit.Requests, Reset: time.Duration(p.end - t)}
	if allowed {
		rem := ks.limit.Requests - p.granted.Load() + p.tokens.Load() + ks.others.unspent(p.index)
		r.Remaining = min(max(rem, 0), ks.limit.Requests)
	}
	return r
}

// state returns key's state, from slot when it holds it for this limit.
func (l *Limiter) state(slot *Slot, key string, limit Limit) *keyState {
	if slot != nil {
		if ks := slot.st.Load(); ks != nil && ks.limit == limit && !ks.dead.Load() {
			return ks
		}
	}
	ks := l.lookup(key, limit)
	if slot != nil {
		slot.st.Store(ks)
		ks.slot.Store(slot)
		if ks.dead.Load() { // swept meanwhile, maybe before it saw slot
			slot.st.CompareAndSwap(ks, nil)
		}
	}
	return ks
}

func (l *Limiter) lookup(key string, limit Limit) *keyState {
	l.kmu.RLock()
	ks, ok := l.keys[key]
	l.kmu.RUnlock()
	if ok && ks.limit == limit {
		return ks
	}
	l.kmu.Lock()
	defer l.kmu.Unlock()
	if ks, ok := l.keys[key]; ok && ks.limit == limit {
		return ks
	}
	ks = &keyState{key: key, limit: limit, offset: offset(key, limit.Window)} // new, or the key's limit changed
	l.keys[key] = ks
	return ks
}

// key returns the state of key, if any.
func (l *Limiter) key(key string) (*keyState, bool) {
	l.kmu.RLock()
	defer l.kmu.RUnlock()
	ks, ok := l.keys[key]
	return ks, ok
}

// states appends every key's state to buf[:0].
func (l *Limiter) states(buf []*keyState) []*keyState {
	l.kmu.RLock()
	defer l.kmu.RUnlock()
	return slices.AppendSeq(buf[:0], maps.Values(l.keys))
}

// offset spreads the keys' window boundaries over the window.
func offset(key string, window time.Duration) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return int64(h.Sum64() % uint64(window))
}

// Window returns the index and end of the window of key under limit that
// holds t; every keygate computes the same.
func Window(key string, limit Limit, t time.Time) (int64, time.Time) {
	idx, _, end := window(t.UnixNano(), int64(limit.Window), offset(key, limit.Window))
	return idx, time.Unix(0, end)
}

// window returns the index, start and end of the window holding t.
func window(t, w, offset int64) (index, start, end int64) {
	index = (t + offset) / w
	if (t+offset)%w < 0 {
		index--
	}
	start = index*w - offset
	return index, start, start + w
}

// idleFor is how long an unused key's state is kept, at most: it goes
// (and the requests it holds leased are handed back where the fleet may
// need them) once the traffic that needed it has gone, so that memory
// falls back within half a minute of a burst. A key back sooner, as a
// client sending in bursts a few seconds apart is, uses what it holds
// leased rather than wait for a lease.
const idleFor = 15 * time.Second

// Sweep forgets keys unused for idleFor (or two windows, if shorter),
// handing back what they hold of a window the fleet may need (mayNeed).
// Call it every few seconds.
func (l *Limiter) Sweep() {
	now := l.now().UnixNano()
	var gone []*keyState
	l.kmu.Lock()
	for k, ks := range l.keys {
		w := int64(ks.limit.Window)
		if idle := now - ks.lastUse.Load(); idle > min(2*w, int64(idleFor)) {
			delete(l.keys, k)
			ks.dead.Store(true)
			if slot := ks.slot.Swap(nil); slot != nil {
				slot.st.CompareAndSwap(ks, nil)
			}
			gone = append(gone, ks)
		}
	}
	l.keys = shrink.Map(l.keys, &l.peak)
	l.kmu.Unlock()
	if len(gone) > 0 {
		l.swept.Add(1)
	}
	for _, ks := range gone {
		ks.mu.Lock() // no lease of ks's is in flight past here
		// Requests left leased matter only where the fleet may run short:
		// elsewhere, handing them back would cost a write for nothing.
		if l.mayNeed(ks, now) {
			l.giveBack(l.bg, ks, now)
		}
		// A check that took ks from its Slot just before may still use
		// it: keep only the little it needs.
		ks.cur.Store(nil)
		ks.next.Store(nil)
		ks.others.reset()
		ks.mu.Unlock()
		if f, ok := l.store.(forgetter); ok {
			f.Forget(ks.key)
		}
	}
}

// giveBack hands back the requests ks holds leased in windows not over
// at now.
func (l *Limiter) giveBack(ctx context.Context, ks *keyState, now int64) {
	if !l.online() {
		return
	}
	for _, p := range []*period{ks.cur.Load(), ks.next.Load()} {
		if p == nil || p.local.Load() || now >= p.end {
			continue
		}
		if n := p.tokens.Swap(0); n > 0 {
			rctx, cancel := context.WithTimeout(ctx, l.timeout)
			if err := l.store.Return(rctx, ks.key, ks.limit, p.index, n); err != nil {
				l.log.Debug("returning leased requests", "key_id", ks.key, "err", err)
			}
			cancel()
		}
	}
}

// forgetter is a Store that keeps something per key it can drop.
type forgetter interface{ Forget(key string) }

// Close stops background work and hands unspent leases back to the
// Store, so that a keygate going away strands none of the budget that
// others may need: that of keys whose fleet has leased more than a
// quarter of the window's budget or ran out of the window before (for
// the others, handing back would cost a write for nothing).
func (l *Limiter) Close(ctx context.Context) {
	l.closing.Lock()
	l.stop() // track counts nothing more
	l.closing.Unlock()
	l.leases.Wait()
	now := l.now().UnixNano()
	var g errgroup.Group
	g.SetLimit(closers)
	for _, ks := range l.states(nil) {
		if ctx.Err() != nil {
			break
		}
		if l.mayNeed(ks, now) {
			g.Go(func() error { l.giveBack(ctx, ks, now); return nil })
		}
	}
	_ = g.Wait()
}

// mayNeed reports whether the fleet may need what ks holds leased of
// its window in progress at now (the one after its last check's, if
// leased ahead and begun): its fleet has leased more than a quarter of
// the budget, or ran out of the window before.
func (l *Limiter) mayNeed(ks *keyState, now int64) bool {
	p := ks.cur.Load()
	if p == nil || now >= p.end {
		p = ks.next.Load()
	}
	return p != nil && now >= p.start && now < p.end && (!l.quarter(ks, p) || ks.prevOut.Load())
}

// track counts a background lease or hand-back in flight, unless l is
// closed: Close waits for those counted.
func (l *Limiter) track() bool {
	l.closing.RLock()
	defer l.closing.RUnlock()
	if l.bg.Err() != nil {
		return false
	}
	l.leases.Add(1)
	return true
}

// closers is how many hand-backs Close has in flight at once.
const closers = 16
