package ratelimit

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// flight is the one store operation in progress on a budget's entry:
// leases, hand-backs and charges take turns. A lease flies in the
// background, for at most flightTimeout: a check waits for it at most
// LeaseTimeout, and what a lease slower than that takes is held here for
// the checks after it, never lost.
type flight struct {
	done chan struct{}
	err  error
}

// flightTimeout bounds a store operation on a budget's entry; a lease
// that cannot end within it counts as failed (see outage).
const flightTimeout = time.Second

var (
	errLease  = errors.New("lease failed")
	errClosed = errors.New("limiter closed")
)

// leaseFlight returns the flight in progress on ks, or starts a lease of
// at least need units of the window now.
func (l *Limiter) leaseFlight(ks *keyState, need int64) *flight {
	for {
		if f := ks.flight.Load(); f != nil {
			return f
		}
		f := &flight{done: make(chan struct{})}
		if !ks.flight.CompareAndSwap(nil, f) {
			continue
		}
		if !l.track() {
			l.land(ks, f, errClosed)
			return f
		}
		go func() {
			defer l.wg.Done()
			ctx, cancel := context.WithTimeout(l.bg, flightTimeout)
			defer cancel()
			l.land(ks, f, l.lease(ctx, ks, need))
		}()
		return f
	}
}

// land ends flight f with err.
func (l *Limiter) land(ks *keyState, f *flight, err error) {
	f.err = err
	ks.flight.Store(nil)
	close(f.done)
}

// exclusive runs op on ks's entry in this goroutine, once no other
// operation is in flight.
func (l *Limiter) exclusive(ctx context.Context, ks *keyState, op func(context.Context) error) error {
	f := &flight{done: make(chan struct{})}
	for !ks.flight.CompareAndSwap(nil, f) {
		if cur := ks.flight.Load(); cur != nil {
			select {
			case <-cur.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	err := op(ctx)
	l.land(ks, f, err)
	return err
}

// track counts background work in flight, unless l is closed: Close waits
// for what it counted.
func (l *Limiter) track() bool {
	l.closing.RLock()
	defer l.closing.RUnlock()
	if l.bg.Err() != nil {
		return false
	}
	l.wg.Add(1)
	return true
}

// lease leases at least need units of the window now, more as size says;
// a lease ahead of need (need 0) also takes some of the next window in
// this one's last half cover. It runs as ks's flight.
func (l *Limiter) lease(ctx context.Context, ks *keyState, need int64) error {
	t := l.o.Now().UnixNano()
	if err := l.leaseAt(ctx, ks, t, need); err != nil || need > 0 {
		return err
	}
	ks.mu.Lock()
	w, next, rate := ks.cur.Load(), ks.next.Load(), ks.rate
	ks.mu.Unlock()
	if w != nil && next == nil && rate > 0 && t >= w.End()-int64(cover(time.Duration(w.Len)))/2 {
		return l.leaseAt(ctx, ks, w.End(), 0)
	}
	return nil
}

// leaseAt leases units of the window holding t: at least need, sized by
// size; the window's entry is read only when the one seen is out of date.
func (l *Limiter) leaseAt(ctx context.Context, ks *keyState, t, need int64) error {
	begin := time.Now()
	ks.mu.Lock()
	seen, rate, held := ks.seen, ks.rate, ks.held(t)
	ks.mu.Unlock()
	fresh := false
	for {
		now := l.o.Now().UnixNano()
		cur := seen.e.pruned(now).window(ks.id, ks.limit, t)
		want := size(sizing{need: need, rate: rate, held: held, window: time.Duration(cur.Len),
			left: time.Duration(cur.End() - t), free: cur.Limit - cur.Granted, peers: l.o.Peers()})
		if want == 0 {
			return nil
		}
		e, got, win := seen.e.lease(ks.id, ks.limit, t, now, want)
		var err error
		switch {
		case got == 0 && !fresh: // the entry seen may be out of date
			seen, err = l.read(ctx, ks.id)
			fresh = true
		case got == 0:
			l.settled(ks, seen, win, 0, now)
			return nil
		default:
			var rev uint64
			if rev, err = l.o.Store.Put(ctx, ks.id, e, seen.rev); err == nil {
				l.failing.Store(0)
				l.stats.Leases.Add(1)
				if l.o.Observe != nil {
					l.o.Observe(time.Since(begin))
				}
				l.settled(ks, seenEntry{e, rev}, win, got, now)
				return nil
			}
			if errors.Is(err, ErrConflict) {
				seen, err = l.read(ctx, ks.id)
				fresh = true
			}
		}
		if refused(err) {
			l.refusedEntry(ks.id, err)
			return err
		}
		if err != nil {
			l.o.Log.Debug("lease failed", "budget", ks.id, "err", err)
			return l.failed(ctx)
		}
	}
}

// settled records the entry as written or read, and what was leased of
// win.
func (l *Limiter) settled(ks *keyState, seen seenEntry, win Window, got, now int64) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.seen = seen
	ks.install(win, got, now)
}

// held is what ks holds of the window holding t; the caller holds ks.mu.
func (ks *keyState) held(t int64) int64 {
	for _, w := range []*window{ks.cur.Load(), ks.next.Load()} {
		if w != nil && w.holds(t) {
			return max(w.tokens.Load(), 0)
		}
	}
	return 0
}

// read reads id's entry.
func (l *Limiter) read(ctx context.Context, id string) (seenEntry, error) {
	e, rev, err := l.o.Store.Get(ctx, id)
	return seenEntry{e, rev}, err
}

// refusedEntry warns of budget id's entry, refused, at most once a minute:
// every check of the key meets it until the entry is deleted.
func (l *Limiter) refusedEntry(id string, err error) {
	now, last := time.Now().UnixNano(), l.warned.Load()
	if now-last >= int64(time.Minute) && l.warned.CompareAndSwap(last, now) {
		l.o.Log.Warn("budget entry not leased from: delete it to begin the key's windows afresh", "budget", id, "err", err)
	}
}

// failed records a store operation that failed.
func (l *Limiter) failed(ctx context.Context) error {
	l.failing.CompareAndSwap(0, time.Now().UnixNano())
	l.stats.Failures.Add(1)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errLease
}

// install adds got units of win, just leased, to the window this keygate
// holds (begun if new), updates the rate and the low water, and returns
// it; the caller holds ks.mu.
//
// The rate is measured since the window's last lease here, so that a key
// busy again after a pause leases for its use now, not for an average
// that counts the pause. Settlements that gave back more than was taken
// since leave the rate as it was.
func (ks *keyState) install(win Window, got, now int64) *window {
	w := ks.holding(win.Start)
	if w == nil {
		w = &window{Window: win}
		if win.Start <= now {
			ks.cur.Store(w)
		} else {
			ks.next.Store(w)
		}
	} else if used, span := w.after-w.tokens.Load(), time.Duration(now-w.lastAt); used > 0 || used == 0 && span >= cover(time.Duration(w.Len)) {
		r := rateOver(used, span, time.Duration(w.Len))
		if span < cover(time.Duration(w.Len)) {
			r = max(r, ks.rate) // a short span: the rate before still counts
		}
		ks.rate = r
	}
	w.tokens.Add(got)
	w.lastAt, w.after = now, w.tokens.Load()
	raise(&w.granted, win.Granted)
	w.spent.Store(win.Granted >= win.Limit)
	w.low.Store(lowWater(ks.rate, time.Duration(w.Len), w.tokens.Load()))
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

// update applies change to ks's entry with compare-and-set, reading it
// afresh on a conflict; it runs as ks's flight.
func (l *Limiter) update(ctx context.Context, ks *keyState, change func(Entry) (Entry, bool)) error {
	ks.mu.Lock()
	seen := ks.seen
	ks.mu.Unlock()
	for {
		e, write := change(seen.e)
		if !write {
			return nil
		}
		rev, err := l.o.Store.Put(ctx, ks.id, e, seen.rev)
		if err == nil {
			l.failing.Store(0)
			ks.mu.Lock()
			ks.seen = seenEntry{e, rev}
			ks.mu.Unlock()
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return l.failed(ctx)
		}
		if seen, err = l.read(ctx, ks.id); refused(err) {
			return err
		} else if err != nil {
			return l.failed(ctx)
		}
	}
}

// handBack returns the units ks holds of windows not over, and drops its
// windows; it runs as ks's flight.
func (l *Limiter) handBack(ctx context.Context, ks *keyState) error {
	ks.mu.Lock()
	ws := []*window{ks.cur.Swap(nil), ks.next.Swap(nil)}
	ks.mu.Unlock()
	now := l.o.Now().UnixNano()
	for _, w := range ws {
		if w == nil || w.End() <= now || !l.o.Online() {
			continue
		}
		if n := w.tokens.Swap(0); n > 0 {
			if err := l.update(ctx, ks, func(e Entry) (Entry, bool) { return e.adjust(w.Start, -n, now) }); err != nil {
				return err
			}
			l.stats.HandedBack.Add(uint64(n))
		}
	}
	return nil
}
