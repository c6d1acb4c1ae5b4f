package ratelimit

import (
	"context"
	"math"
)

// shed hands back what this keygate holds leased of window index beyond
// what it expects to use here before the window ends, once another
// keygate's report shows the fleet has leased more than half of the
// budget. Leases of a key far from its limit run ahead of its use (see
// plenty); when its traffic grows on another keygate, that keygate needs
// them, and half the budget is left when they go back. Neither a key just
// over the quarter (nobody is short) nor the fleet's pace (leased so far
// ahead of use, its leases early in a window look on pace to run out) is
// worth a write. It writes at most once per window, in the background:
// it is called from report handling, with the time t.
func (l *Limiter) shed(ks *keyState, index, t int64) {
	p := ks.cur.Load()
	if p == nil || p.index != index {
		if p = ks.next.Load(); p == nil || p.index != index {
			return
		}
	}
	if t < p.start || t >= p.end || t < p.shedAfter.Load() || p.local.Load() || p.tokens.Load() < l.shedMin(ks) ||
		p.granted.Load() <= ks.limit.Requests/2 || !p.shed.CompareAndSwap(false, true) {
		return
	}
	if !l.track() {
		p.shed.Store(false)
		return
	}
	if !l.workers.run(func() {
		defer l.leases.Done()
		if !l.handBackExcess(ks, p) {
			// Nothing went back: a report a hundredth of a window later
			// looks again (not every report, for a keygate that uses
			// what it holds).
			p.shedAfter.Store(l.now().UnixNano() + (p.end-p.start)/100)
			p.shed.Store(false)
		}
	}, false) {
		p.shed.Store(false) // the queue is full: a later report tries again
		l.leases.Done()
	}
}

// shedMin is the least worth a write to hand back: 2 % of the limit
// spread over the fleet (the tolerance below the limit), at least 1.
func (l *Limiter) shedMin(ks *keyState) int64 {
	return max(ks.limit.Requests/(50*l.peers.count()), 1)
}

// handBackExcess returns what p holds beyond the key's use here until p
// ends, at the slower of its rate over the last window and its pace since
// its last lease (a keygate its traffic has left keeps nothing), and
// reports whether it wrote. The caller counted it in l.leases.
func (l *Limiter) handBackExcess(ks *keyState, p *period) bool {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	t := l.now().UnixNano()
	if ks.cur.Load() != p && ks.next.Load() != p || t >= p.end || p.local.Load() || l.bg.Err() != nil || !l.online() {
		return false
	}
	var keep int64 // of a window begun with no check here yet: none
	if ks.cur.Load() == p {
		rate := ks.rate(p, t)
		if t-p.leasedAt >= (p.end-p.start)/100 { // long enough to tell a pace
			rate = min(rate, p.recent(t))
		}
		keep = int64(math.Ceil(rate * float64(p.end-t)))
	}
	var n int64
	for {
		have := p.tokens.Load()
		if n = have - keep; n < l.shedMin(ks) {
			return false
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
		return true // lost to both: the fleet allows less, never more
	}
	// The fleet's grants as seen here, less what went back; never below
	// this keygate's own (a report may have counted the return already).
	for g := p.granted.Load(); !p.granted.CompareAndSwap(g, max(g-n, p.mine.Load())); g = p.granted.Load() {
	}
	return true
}
