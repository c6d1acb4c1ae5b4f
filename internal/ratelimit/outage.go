package ratelimit

import (
	"context"
	"time"
)

// outage reports whether the outage rule applies: the Store is
// unreachable, or leases have failed for OutageAfter.
func (l *Limiter) outage() bool {
	if !l.o.Online() {
		return true
	}
	f := l.failing.Load()
	return f != 0 && time.Since(time.Unix(0, f)) >= l.o.OutageAfter
}

// probeEvery is how often, while leases fail but NATS is connected, one
// check tries a lease instead of the outage rule: the first that succeeds
// ends the outage.
const probeEvery = time.Second

// probe reports whether this check should try a lease although the
// outage rule applies: the Store is reachable, and no check has tried
// for probeEvery.
func (l *Limiter) probe() bool {
	if !l.o.Online() {
		return false
	}
	now := time.Now().UnixNano()
	at := l.probeAt.Load()
	return now >= at && l.probeAt.CompareAndSwap(at, now+int64(probeEvery))
}

// underOutage decides a take under the outage rule: this keygate may
// allow, beyond what it holds, its share of what the fleet had not leased
// of the window when it last saw it, (limit - granted) / peers. What it
// allows so is charged to the budget once the Store can be written again
// (chargeLoop). The caller holds ks.mu.
func (l *Limiter) underOutage(ks *keyState, w *window, n, t int64) Result {
	if w == nil { // a window begun while cut off: what this keygate knows of it is nothing
		w = ks.install(ks.seen.e.window(ks.id, ks.limit, t), 0, t)
	}
	share := (w.Limit - w.granted.Load()) / max(l.o.Peers(), 1)
	if w.owed.Load()+n > share {
		return w.result(false, t)
	}
	w.owed.Add(n)
	l.stats.OutageUnits.Add(uint64(n))
	l.owing.Store(ks, struct{}{})
	return w.result(true, t)
}

// owes reports whether ks has units to charge.
func (ks *keyState) owes() bool {
	for _, w := range []*window{ks.cur.Load(), ks.next.Load()} {
		if w != nil && w.owed.Load() > 0 {
			return true
		}
	}
	return false
}

// chargeEvery is how often owed units are charged while the Store can be
// written.
const chargeEvery = time.Second

// chargeLoop charges owed units every chargeEvery until the Limiter
// closes.
func (l *Limiter) chargeLoop() {
	defer l.wg.Done()
	t := time.NewTicker(chargeEvery)
	defer t.Stop()
	for {
		select {
		case <-l.bg.Done():
			return
		case <-t.C:
			if !l.outage() {
				l.chargeAll(l.bg)
			}
		}
	}
}

// chargeAll charges every budget's owed units of windows not over to its
// entry; what cannot be written now stays owed.
func (l *Limiter) chargeAll(ctx context.Context) {
	l.owing.Range(func(k, _ any) bool {
		ks := k.(*keyState)
		l.owing.Delete(ks)
		if !l.charge(ctx, ks) {
			l.owing.Store(ks, struct{}{})
		}
		return ctx.Err() == nil
	})
}

// charge writes ks's owed units to its entry; false if some remain owed.
func (l *Limiter) charge(ctx context.Context, ks *keyState) bool {
	done := true
	_ = l.exclusive(ctx, ks, func(ctx context.Context) error {
		now := l.o.Now().UnixNano()
		for _, w := range []*window{ks.cur.Load(), ks.next.Load()} {
			if w == nil || w.End() <= now {
				continue // over: nothing left to protect
			}
			n := w.owed.Load()
			if n == 0 {
				continue
			}
			if err := l.update(ctx, ks, func(e Entry) (Entry, bool) { return e.charge(ks.id, ks.limit, w.Start, now, n), true }); err != nil {
				done = false
				continue
			}
			w.owed.Add(-n)
			w.granted.Add(n)
			l.stats.Charged.Add(uint64(n))
		}
		return nil
	})
	return done
}
