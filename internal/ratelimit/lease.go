package ratelimit

import (
	"context"
	"math"
	"time"
)

// slow decides a request when this keygate holds no leased request for
// the key in the window at t: it starts the window if it is new, and
// takes a lease unless the fleet's budget is spent. Callers for one key
// queue here while one of them takes the lease.
func (l *Limiter) slow(ctx context.Context, ks *keyState, t int64) Result {
	ks.waiting.Add(1)
	ks.mu.Lock()
	ks.waiting.Add(-1)
	defer ks.mu.Unlock()
	p, ahead := l.current(ks, t)
	for {
		if p.tokens.Add(-1) >= 0 {
			if ahead { // the window starts on what was leased ahead: lease the rest
				l.prefetch(ks, p, t)
			}
			return ks.result(true, p, t)
		}
		p.tokens.Add(1)
		if p.exhausted.Load() {
			return ks.result(false, p, t)
		}
		l.lease(ctx, ks, p, t)
	}
}

// current returns the key's period holding t, starting a new one if the
// window has changed, and whether it started it from a lease taken ahead;
// the caller holds ks.mu.
func (l *Limiter) current(ks *keyState, t int64) (*period, bool) {
	p := ks.cur.Load()
	if p != nil && t >= p.start && t < p.end {
		return p, false
	}
	idx, start, end := window(t, int64(ks.limit.Window), ks.offset)
	if p != nil && t >= p.end {
		// The window that ended sizes the first leases of this one.
		ks.prevRate = float64(p.mine.Load()-p.tokens.Load()) / float64(p.observed())
		ks.prevOut.Store((p.exhausted.Load() || p.granted.Load() >= ks.limit.Requests) && !p.local.Load())
		ks.prevRoomy = l.wasRoomy(ks, p)
		ks.prevKnown = p.index == idx-1 && p.seenMost()
	}
	np := ks.next.Swap(nil)
	ahead := np != nil && np.index == idx
	if !ahead {
		np = newPeriod(idx, start, end)
		if p == nil { // the key is new here: its requests count from now
			np.seen = t
		}
	}
	ks.cur.Store(np)
	return np, ahead
}

// observed is how long this keygate has seen p's window, counted as at
// least half of it: a rate seen briefly may be far too high.
func (p *period) observed() int64 { return max(p.end-p.seen, (p.end-p.start)/2) }

// fleetRoomy reports whether the fleet leased at most a quarter of the
// key's budget in window index, as the Store last showed it here: for a
// key this keygate did not see through most of that window (new here, or
// dropped while idle), it tells what wasRoomy would. The caller holds
// ks.mu.
func (l *Limiter) fleetRoomy(ks *keyState, index int64) bool {
	g, ok := l.store.(granter)
	if !ok {
		return false
	}
	n, known := g.Granted(ks.key, ks.limit, index)
	return known && n <= ks.limit.Requests/4
}

// wasRoomy reports whether p, as far as seen, is a window the fleet
// leased at most a quarter of, seen here for at least half of it.
func (l *Limiter) wasRoomy(ks *keyState, p *period) bool {
	return p.seenMost() && l.quarter(ks, p)
}

// seenMost reports whether this keygate has seen at least half of p's
// window: enough to tell whether the key is far from its limit.
func (p *period) seenMost() bool { return p.end-p.seen >= (p.end-p.start)/2 }

// newPeriod is a window with nothing leased yet.
func newPeriod(idx, start, end int64) *period {
	// Lease ahead in the last quarter of the window, at most 15 s before
	// it ends: a keygate sent the key's requests in bursts (a few seconds
	// of every 15, say) still sees it then.
	return &period{index: idx, start: start, end: end, seen: start, late: end - min((end-start)/4, int64(15*time.Second))}
}

// lease takes requests for p from the Store, or on failure falls back to
// this keygate's share of the limit; the caller holds ks.mu.
func (l *Limiter) lease(ctx context.Context, ks *keyState, p *period, t int64) {
	if !l.online() {
		l.fallBack(ks, p)
		return
	}
	want := l.want(ks, p, t)
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	got, granted, err := l.store.Lease(ctx, ks.key, ks.limit, p.index, want)
	if err != nil {
		l.log.Debug("rate-limit lease failed; using this keygate's share", "key_id", ks.key, "err", err)
		l.fallBack(ks, p)
		return
	}
	if got == 0 {
		raise(&p.granted, granted)
		p.exhausted.Store(true)
		return
	}
	if !ks.prevKnown { // the first lease here in p for a key not seen through the window before
		ks.prevKnown = true
		ks.prevRoomy = l.fleetRoomy(ks, p.index-1)
	}
	p.leasedAt, p.usedAt = t, p.mine.Load()-p.tokens.Load()
	p.mine.Add(got)
	p.tokens.Add(got) // before granted: a remaining count read between the two is high, not low
	raise(&p.granted, granted)
	p.refillAt.Store(refillAt(got, l.roomy(ks, p, t)))
}

// refillAt is how few of a lease of got requests are left when the next
// is taken, in the background: halfway through, or, while the fleet has
// far more budget than it uses (roomy), once a tenth is left (leases then
// cover more than the key's expected use, so the next is rarely needed).
func refillAt(got int64, roomy bool) int64 {
	if roomy {
		return got / 10
	}
	return got / 2
}

// want is the size of the next lease, at least what is waiting and at
// most a share of what the fleet has left, so that the others find some.
//
// While the fleet uses its budget slower than the window passes, a
// keygate leases what it expects to use before the window ends at its
// recent rate: few leases. Once the fleet would run out before the
// window ends, a keygate leases only what it uses while the next lease is
// on its way: leased requests it would not use before the window ends
// would be lost to the keygates that need them. A keygate using less than
// that leases nothing ahead (0: only what is waiting, on demand).
func (l *Limiter) want(ks *keyState, p *period, t int64) int64 {
	left := ks.limit.Requests - p.granted.Load()
	need := ks.waiting.Load() + 1
	if left <= l.endgame(ks.limit) {
		return need
	}
	share := max(left/(2*l.peers.count()), 1)
	if l.contended(ks, p, t) {
		return max(min(int64(ks.rate(p, t)*float64(l.horizon())), share), need)
	}
	roomy, rate := l.roomy(ks, p, t), ks.expected(p, t)
	if roomy { // a burst leases at its pace: what it leaves unused nobody needs
		rate = max(rate, p.recent(t))
	}
	expect := l.plenty(ks, rate, p.end-t, roomy) - max(p.tokens.Load(), 0)
	return max(min(expect, share), need)
}

// recent is the key's requests per nanosecond here since the last lease
// landed, 0 if that was less than a hundredth of the window ago (too
// soon to tell) or there was none; the caller holds ks.mu.
func (p *period) recent(t int64) float64 {
	d := t - p.leasedAt
	if p.leasedAt == 0 || d < (p.end-p.start)/100 {
		return 0
	}
	return float64(p.mine.Load()-p.tokens.Load()-p.usedAt) / float64(d)
}

// covered reports whether, the fleet having budget to spare, the
// requests this keygate holds cover what the key is expected to use here
// until p ends.
func (l *Limiter) covered(ks *keyState, p *period, t int64) bool {
	return !l.contended(ks, p, t) && float64(p.tokens.Load()) >= ks.expected(p, t)*float64(p.end-t)
}

// plenty is the lease that covers what a key used at rate is expected to
// use over d, while the fleet has budget to spare: that, and at least 2 %
// of the limit spread over the fleet, so that a key far from its limit (a
// new one included) takes few leases and little is stranded should it
// become contended. If roomy, it is at least a quarter more (so that it
// lasts though the rate varies), and at least this keygate's share of a
// quarter of the budget, at that pace over d: a key far from its limit
// takes one lease a window, however its use varies, and that floor alone
// keeps the fleet's leases within the quarter that keeps the key far from
// its limit. What a keygate holds beyond its use goes back once the key
// nears its limit (shed).
func (l *Limiter) plenty(ks *keyState, rate float64, d int64, roomy bool) int64 {
	n := l.peers.count()
	floor := ks.limit.Requests / (50 * n)
	if roomy {
		rate *= 1.25
		share := float64(ks.limit.Requests) / float64(4*n) * min(float64(d)/float64(ks.limit.Window), 1)
		floor = max(floor, int64(share))
	}
	expect := int64(math.Min(math.Floor(rate*float64(d)), math.MaxInt32))
	return max(expect, floor)
}

// roomy reports whether the fleet leased at most a quarter of the
// budget of the window before (seen here for at least half of it) and,
// so far, of this one: then leases may run ahead of use, since what is
// left unused at the window's end is not needed by anyone.
func (l *Limiter) roomy(ks *keyState, p *period, t int64) bool {
	return ks.prevRoomy && l.quarter(ks, p) && !l.contended(ks, p, t)
}

// quarter reports whether the fleet has leased at most a quarter of p's
// budget, as far as this keygate knows.
func (l *Limiter) quarter(ks *keyState, p *period) bool {
	return p.granted.Load() <= ks.limit.Requests/4 && !p.exhausted.Load()
}

// rate estimates the key's requests per nanosecond here over the last
// whole window: this one so far and the end of the one before, as if its
// requests had come evenly. Early in a window a few requests do not make
// it look huge.
func (ks *keyState) rate(p *period, t int64) float64 {
	w := float64(ks.limit.Window)
	used := float64(p.mine.Load() - p.tokens.Load())
	return (used + ks.prevRate*max(w-float64(t-p.start), 0)) / w
}

// expected is the rate leases are sized for while the fleet has budget
// to spare: rate, or for a key new here the pace since it came, so that
// its leases grow fast from its first requests.
func (ks *keyState) expected(p *period, t int64) float64 {
	r := ks.rate(p, t)
	if ks.prevRate == 0 {
		used := float64(p.mine.Load() - p.tokens.Load())
		r = max(r, used/float64(max(t-p.seen, int64(ks.limit.Window)/20)))
	}
	return r
}

// contended reports whether the fleet ran out of the window before, or
// has leased more than a quarter of this one and at the pace it has
// leased so far would run out before the window ends (at a window's
// start, the pace says little yet). Within the quarter the pace says
// nothing: leases of a key far from its limit run ahead of its use, by
// design, most of them taken before the window starts.
func (l *Limiter) contended(ks *keyState, p *period, t int64) bool {
	if ks.prevOut.Load() {
		return true
	}
	if l.quarter(ks, p) {
		return false
	}
	elapsed := max(t-p.start, int64(ks.limit.Window)/20)
	return float64(p.granted.Load())*float64(ks.limit.Window) > float64(ks.limit.Requests)*float64(elapsed)
}

// horizon is how far ahead a keygate leases when the fleet's budget is
// contended: about two round trips to the Store.
func (l *Limiter) horizon() time.Duration { return max(l.timeout/5, time.Millisecond) }

// maxEndgame bounds the endgame, so that a huge limit's last requests
// do not each take a lease.
const maxEndgame = 10_000

// endgame is how little of the fleet's budget is left when keygates stop
// leasing ahead and lease only what is waiting: then the budget is not
// stranded in keygates that will not use it before the window ends.
// It is 2 % of the limit (the tolerance below it), at least two requests
// per keygate, at most maxEndgame.
func (l *Limiter) endgame(limit Limit) int64 {
	return min(max(limit.Requests/50, 2*l.peers.count()), maxEndgame)
}

// fallBack gives p this keygate's share of the limit, less what it has
// leased in the window already: the Store cannot be reached.
func (l *Limiter) fallBack(ks *keyState, p *period) {
	if p.local.Swap(true) {
		p.exhausted.Store(true) // the share is spent
		return
	}
	share := ks.limit.Requests/l.peers.count() - p.mine.Load()
	if share <= 0 {
		p.exhausted.Store(true)
		return
	}
	p.mine.Add(share)
	p.tokens.Add(share)
}

// prefetch takes the next lease in the background once p's requests run
// low, and, late in the window, some of the next window's budget, so
// that checks rarely wait for a lease, at the start of a window included.
// Only a key seen here for at least half of the window leases ahead: one
// seen briefly (a burst) may not be back, and its state goes while idle.
func (l *Limiter) prefetch(ks *keyState, p *period, t int64) {
	low := p.tokens.Load() <= p.refillAt.Load() && !l.endgameNow(ks, p)
	late := t >= p.late && ks.next.Load() == nil && p.seenMost()
	if !low && !late || p.local.Load() || p.exhausted.Load() && !late {
		return
	}
	if !ks.refill.CompareAndSwap(false, true) {
		return
	}
	if !l.track() {
		ks.refill.Store(false)
		return
	}
	urgent := l.contended(ks, p, t) // its lease is sized to last two round trips
	queued := l.workers.run(func() {
		defer l.leases.Done()
		defer ks.refill.Store(false)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		t := l.now().UnixNano()
		if ks.cur.Load() != p || t >= p.end || p.local.Load() || l.bg.Err() != nil {
			return // moot: waited in the queue past its window, or the state moved on
		}
		if late {
			l.leaseNext(ks, p, t)
		}
		// Under contention a keygate that uses less than a request per
		// lease round trip waits for its leases rather than hold one.
		if !low || p.exhausted.Load() || l.endgameNow(ks, p) || l.contended(ks, p, t) && ks.rate(p, t)*float64(l.horizon()) < 1 {
			return
		}
		if l.covered(ks, p, t) { // slower than leased for: not yet
			p.refillAt.Store(p.tokens.Load() / 2)
			return
		}
		l.lease(l.bg, ks, p, t)
	}, !urgent)
	if !queued { // too many waiting: a later check tries again
		ks.refill.Store(false)
		l.leases.Done()
	}
}

// leaseNext leases, ahead, what the key will use here in the window
// after p. While the fleet has budget to spare, that is what its first
// lease in that window would be (see want), and far from the limit at
// the larger of its pace in p and in the window before, if that was far
// from the limit too (a key's use varies from window to window): for
// most keys, the only lease of the window. Under contention it is only
// what the key uses until a lease in that window lands: at its rate in
// p, for a hundredth of a window or two lease round trips, at least one
// request. A key used less than once a window leases nothing ahead. The
// caller holds ks.mu.
func (l *Limiter) leaseNext(ks *keyState, p *period, t int64) {
	w := int64(ks.limit.Window)
	rate := ks.rate(p, t)
	if rate*float64(w) < 1 || !l.online() { // used less than once a window
		return
	}
	contended := l.contended(ks, p, t)
	// Leases ahead run ahead of use only when p was roomy.
	roomy := l.wasRoomy(ks, p) && !contended
	want := int64(math.Ceil(rate * float64(max(w/100, 2*int64(l.horizon())))))
	if roomy {
		r := ks.expected(p, t)
		if ks.prevRoomy { // the window before was far from the limit too
			r = max(r, ks.prevRate)
		}
		want = l.plenty(ks, r, w, true)
	} else if !contended {
		want = l.plenty(ks, rate, w, false)
	}
	np := newPeriod(p.index+1, p.end, p.end+w)
	ctx, cancel := context.WithTimeout(l.bg, l.timeout)
	defer cancel()
	got, granted, err := l.store.Lease(ctx, ks.key, ks.limit, np.index, min(want, max(ks.limit.Requests/(2*l.peers.count()), 1)))
	if err != nil {
		return
	}
	np.leasedAt = np.start // its pace counts from its start
	np.mine.Store(got)
	np.tokens.Store(got)
	np.refillAt.Store(refillAt(got, roomy))
	np.granted.Store(granted)
	ks.next.Store(np)
}

// endgameNow reports whether p is in its endgame: no leasing ahead.
func (l *Limiter) endgameNow(ks *keyState, p *period) bool {
	return ks.limit.Requests-p.granted.Load() <= l.endgame(ks.limit)
}

// raise sets v to n if n is larger.
func raise(v interface {
	Load() int64
	CompareAndSwap(old, new int64) bool
}, n int64) {
	for cur := v.Load(); n > cur && !v.CompareAndSwap(cur, n); cur = v.Load() {
	}
}
