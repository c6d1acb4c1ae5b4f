package ratelimit

import "context"

// ahead starts, in the background, the lease a budget in use will need
// soon: more of its window once what is held here is down to the low
// water, and some of the next window in the last half cover of this one
// (see lease). At most `background` of them fly at once; one that finds
// no room is left to a later take.
func (l *Limiter) ahead(ks *keyState) {
	if ks.flight.Load() != nil {
		return
	}
	select {
	case l.bgSlots <- struct{}{}:
	default:
		return
	}
	f := &flight{done: make(chan struct{})}
	if !ks.flight.CompareAndSwap(nil, f) {
		<-l.bgSlots
		return
	}
	if !l.track() {
		<-l.bgSlots
		l.land(ks, f, errClosed)
		return
	}
	go func() {
		defer func() {
			<-l.bgSlots
			l.wg.Done()
		}()
		if l.outage() {
			l.land(ks, f, nil)
			return
		}
		ctx, cancel := context.WithTimeout(l.bg, flightTimeout)
		defer cancel()
		l.land(ks, f, l.lease(ctx, ks, 0))
	}()
}
