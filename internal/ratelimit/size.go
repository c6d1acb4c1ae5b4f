package ratelimit

import (
	"math"
	"time"
)

// Sizing: how many units a keygate leases at a time.
const (
	// coverFor is how long a lease lasts at the key's recent rate. The
	// next lease is taken in the background once half of it is left, so
	// a store that stalls for up to half of it (500 ms) denies nothing.
	coverFor = time.Second
	// windowShare caps coverFor at an eighth of the window: the units a
	// keygate holds and does not use before the window ends are lost to
	// the others, so a short window's leases are short too.
	windowShare = 8
	// minRateSpan is the shortest span a rate is measured over: a burst
	// of units close together counts as spread over it, so that a lease
	// or two in, a burst leases tens at a time, not one by one.
	minRateSpan = 50 * time.Millisecond
)

// sizing are the named inputs of one lease's size.
type sizing struct {
	need   int64         // units the checks waiting for this lease ask for
	rate   float64       // units a second this keygate used lately
	held   int64         // units of the window this keygate holds already
	window time.Duration // the window's length
	left   time.Duration // until the window ends
	free   int64         // units of the window nobody has leased, as last seen
	peers  int64         // keygates sharing the budget, this one included
}

// cover is how long a lease lasts: coverFor, or less in a short window.
func cover(window time.Duration) time.Duration { return min(coverFor, window/windowShare) }

// size is how many units to lease: what this keygate expects to use over
// a lease's cover beyond what it holds, but no more than it can use before
// the window ends, nor more than its share of what nobody holds (so the
// others find some too); and at least what is waiting.
func size(s sizing) int64 {
	horizon := min(cover(s.window), s.left)
	n := int64(math.Min(math.Ceil(s.rate*horizon.Seconds()), math.MaxInt32)) - s.held
	n = min(n, s.free/max(s.peers, 1))
	return max(n, s.need, 0)
}

// lowWater is how few units may be left before the next lease is taken:
// half of a lease's cover at rate.
func lowWater(rate float64, window time.Duration) int64 {
	return int64(math.Min(math.Ceil(rate*cover(window).Seconds()/2), math.MaxInt32))
}

// rateOver is the rate of used units over span, at least minRateSpan.
func rateOver(used int64, span time.Duration) float64 {
	return float64(max(used, 0)) / max(span, minRateSpan).Seconds()
}
