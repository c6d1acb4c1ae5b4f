package ratelimit

import (
	"context"
	"math"
)

// shed hands back, once per window, what this keygate holds leased of
// window index beyond what it expects to use here before the window
// ends, once another keygate's report shows the fleet has leased more
// than half of the budget. Leases of a key far from its limit run ahead
// of its use (see plenty), by at most a quarter of the budget in all;
// when its traffic grows on another keygate, that keygate needs them,
// and the half left when they go back is ample time. Neither a key just
// over the quarter (nobody is short) nor the fleet's pace (leased so far
// ahead of use, its leases early in a window look on pace to run out)
// is worth a write. Called from report handling, it writes in the
// background.
func (l *Limiter) shed(ks *keyState, index int64) {
	p := ks.cur.Load()
	if p == nil || p.index != index {
		if p = ks.next.Load(); p == nil || p.index != index {
			return
		}
	}
	t := l.now().UnixNano()
	if t < p.start || t >= p.end || p.local.Load() || p.tokens.Load() < l.shedMin(ks) ||
		p.granted.Load() <= ks.limit.Requests/2 || !p.shed.CompareAndSwap(false, true) {
		return
	}
	l.leases.Add(1)
	if !l.workers.run(func() { defer l.leases.Done(); l.handBackExcess(ks, p) }, false) {
		p.shed.Store(false) // the queue is full: a later report tries again
		l.leases.Done()
	}
}

// shedMin is the least worth a write to hand back: 2 % of the limit
// spread over the fleet (the tolerance below the limit), at least 1.
func (l *Limiter) shedMin(ks *keyState) int64 {
	return max(ks.limit.Requests/(50*l.peers.count()), 1)
}

// handBackExcess returns what p holds beyond the key's use here at its
// rate until p ends; the caller counted it in l.leases.
func (l *Limiter) handBackExcess(ks *keyState, p *period) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	t := l.now().UnixNano()
	if ks.cur.Load() != p && ks.next.Load() != p || t >= p.end || p.local.Load() || l.bg.Err() != nil || !l.online() {
		return
	}
	var keep int64 // of a window begun with no check here yet: none
	if ks.cur.Load() == p {
		keep = int64(math.Ceil(ks.rate(p, t) * float64(p.end-t)))
	}
	var n int64
	for {
		have := p.tokens.Load()
		if n = have - keep; n < l.shedMin(ks) {
			return
		}
		if p.tokens.CompareAndSwap(have, keep) {
			break
		}
	}
	p.mine.Add(-n)
	ctx, cancel := context.WithTimeout(l.bg, l.timeout)
	defer cancel()
	if err := l.store.Return(ctx, ks.key, ks.limit, p.index, n); err != nil {
		l.log.Debug("handing back leased requests", "key_id", ks.key, "err", err)
		return // lost to both: the fleet allows less, never more
	}
	p.granted.Add(-n)
}
