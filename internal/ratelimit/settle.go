package ratelimit

import "context"

// Settle corrects a take by delta units once the real use is known
// (actual - taken): units not used go back to what this keygate holds of
// the window they were taken from, if it is not over; units used beyond
// the take are spent from what it holds, and what it does not hold is
// charged to the budget's window now, past its limit if need be. window
// is the take's Result.Window.
func (l *Limiter) Settle(ctx context.Context, slot *Slot, id string, lim Limit, window, delta int64) {
	l.stats.Settled.Add(1)
	if delta == 0 {
		return
	}
	ks := l.state(slot, id, lim)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	t := l.o.Now().UnixNano()
	if delta < 0 {
		if w := ks.holding(window); w != nil && w.holds(t) {
			w.tokens.Add(-delta)
		}
		return
	}
	w := ks.current(t)
	if w == nil {
		w = ks.install(ks.seen.e.window(ks.id, ks.limit, t), 0, t)
	}
	if left := w.tokens.Add(-delta); left < 0 {
		w.tokens.Add(-left)
		w.owed.Add(-left)
		l.owing.Store(ks, struct{}{})
	}
}
