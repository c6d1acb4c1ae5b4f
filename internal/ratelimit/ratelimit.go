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
	keys    sync.Map // key -> *keyState
	peers   peers
	online  func() bool
	bg      context.Context
	stop    context.CancelFunc
	leases  sync.WaitGroup // prefetches in flight
}

// New returns a Limiter.
func New(o Options) *Limiter {
	l := &Limiter{store: o.Store, now: o.Now, timeout: o.LeaseTimeout, log: o.Log, online: o.Online}
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
	l.peers.init(l.now)
	return l
}

// Slot remembers a key's state, so that a caller holding one per key
// (next to its cached record) skips the lookup by key. The zero Slot is
// empty; a Slot belongs to one key and one Limiter.
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

	mu       sync.Mutex // one lease at a time; guards prevRate
	waiting  atomic.Int64
	refill   atomic.Bool // a prefetch is in flight
	prevRate float64     // requests per nanosecond in the window before
	lastUse  atomic.Int64
	others   othersView // other keygates' unspent leases, from their reports
}

// period is a key's window as seen here.
type period struct {
	index     int64
	start     int64        // unix nanoseconds
	end       int64        // unix nanoseconds
	late      int64        // from then on, lease some of the next window ahead
	tokens    atomic.Int64 // requests leased here and not yet allowed
	mine      atomic.Int64 // requests leased here in this window
	granted   atomic.Int64 // requests leased by the whole fleet, as last seen
	lastLease atomic.Int64
	exhausted atomic.Bool // the fleet's budget for the window is spent
	local     atomic.Bool // the Store was unreachable: tokens are a local share
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
		if ks := slot.st.Load(); ks != nil && ks.limit == limit {
			return ks
		}
	}
	ks := l.lookup(key, limit)
	if slot != nil {
		slot.st.Store(ks)
	}
	return ks
}

func (l *Limiter) lookup(key string, limit Limit) *keyState {
	fresh := &keyState{key: key, limit: limit, offset: offset(key, limit.Window)}
	for {
		v, loaded := l.keys.LoadOrStore(key, fresh)
		if !loaded {
			return fresh
		}
		if old := v.(*keyState); old.limit == limit {
			return old
		} else if l.keys.CompareAndSwap(key, old, fresh) { // the key's limit changed
			return fresh
		}
	}
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

// Sweep forgets keys unused for two windows.
func (l *Limiter) Sweep() {
	now := l.now().UnixNano()
	l.keys.Range(func(k, v any) bool {
		ks := v.(*keyState)
		if now-ks.lastUse.Load() > 2*int64(ks.limit.Window) {
			l.keys.CompareAndDelete(k, v)
		}
		return true
	})
}

// Close stops background work and hands unspent leases back to the
// Store, so that a keygate going away strands none of the budget.
func (l *Limiter) Close(ctx context.Context) {
	l.stop()
	l.leases.Wait()
	if !l.online() {
		return
	}
	now := l.now().UnixNano()
	l.keys.Range(func(_, v any) bool {
		ks := v.(*keyState)
		for _, p := range []*period{ks.cur.Load(), ks.next.Load()} {
			if p == nil || p.local.Load() || now >= p.end {
				continue
			}
			if n := p.tokens.Swap(0); n > 0 {
				if err := l.store.Return(ctx, ks.key, ks.limit, p.index, n); err != nil {
					l.log.Debug("returning leased requests", "key_id", ks.key, "err", err)
				}
			}
		}
		return ctx.Err() == nil
	})
}
