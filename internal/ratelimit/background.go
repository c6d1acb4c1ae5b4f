package ratelimit

import (
	"context"
	"time"
)

// ahead takes, in the background, the lease a budget in use will need
// soon: more of its window once what is held here is down to the low
// water, and some of the next window in the last half cover of this one.
func (l *Limiter) ahead(ks *keyState) {
	if !ks.busy.CompareAndSwap(false, true) {
		return
	}
	select {
	case l.bgSlots <- struct{}{}:
	default:
		ks.busy.Store(false)
		return
	}
	l.closing.RLock()
	if l.bg.Err() != nil {
		l.closing.RUnlock()
		<-l.bgSlots
		ks.busy.Store(false)
		return
	}
	l.wg.Add(1)
	l.closing.RUnlock()
	go func() {
		defer func() {
			<-l.bgSlots
			ks.busy.Store(false)
			l.wg.Done()
		}()
		if l.outage() {
			return
		}
		ctx, cancel := context.WithTimeout(l.bg, backgroundTimeout)
		defer cancel()
		ks.mu.Lock()
		defer ks.mu.Unlock()
		t := l.o.Now().UnixNano()
		w := ks.current(t)
		if w == nil {
			return
		}
		if !w.spent.Load() && w.tokens.Load() <= w.low.Load() {
			_, _ = l.lease(ctx, ks, t, 0)
		}
		if ks.next.Load() == nil && t >= w.End()-int64(cover(time.Duration(w.Len)))/2 {
			_, _ = l.lease(ctx, ks, w.End(), 0)
		}
	}()
}

// backgroundTimeout bounds a lease taken ahead of need.
const backgroundTimeout = time.Second
