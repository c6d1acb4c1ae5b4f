package ratelimit

import (
	"math"
	"time"
)

// Sizing: how many units a keygate leases at a time.
const (
	// coverFor is how long a lease lasts at the key's recent rate, at
	// least. The next lease is taken in the background once half of it is
	// left, so a store that stalls for up to half of it (500 ms) denies
	// nothing.
	coverFor = time.Second
	// windowShare caps coverFor at an eighth of the window: the units a
	// keygate holds and does not use before the window ends are lost to
	// the others, so a short window's leases are short too.
	windowShare = 8
	// freeShare: while a key is far from its limit, a lease may run to
	// this fraction of the keygate's share of what nobody holds (the free
	// units divided by the keygates), up to what the key will use here
	// before the window ends. A key in steady use far from its limit then
	// takes about one lease a window; as the free units run out, leases
	// shrink with them, so little is held unused when the limit is near.
	freeShare = 4
	// refillShare: the next lease is taken once a lease's units are down
	// to a quarter, at the latest.
	refillShare = 4
	// minRateSpan is the shortest span a rate is measured over (or half a
	// cover, if shorter): a burst of units close together counts as
	// spread over it, so that a lease or two in, a burst leases tens at a
	// time, not one by one.
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

// cover is how long a lease lasts at least: coverFor, or less in a short
// window.
func cover(window time.Duration) time.Duration { return min(coverFor, window/windowShare) }

// size is how many units to lease, beyond what this keygate holds: what
// it expects to use over a lease's cover, or, if more, up to freeShare of
// its share of the free units but no more than it expects to use before
// the window ends; never more than its share of the free units (so the
// others find some), and at least what is waiting.
func size(s sizing) int64 {
	peers := max(s.peers, 1)
	use := units(s.rate, min(cover(s.window), s.left))
	ahead := min(s.free/(freeShare*peers), units(s.rate, s.left))
	n := min(max(use, ahead)-s.held, s.free/peers)
	return max(n, s.need, 0)
}

// units is what rate uses over d, rounded up.
func units(rate float64, d time.Duration) int64 {
	return int64(math.Min(math.Ceil(rate*d.Seconds()), math.MaxInt32))
}

// lowWater is how few units may be left before the next lease is taken:
// half of a lease's cover at rate, or a quarter of what a lease left held
// (a rate measured early in a window may be far too low), whichever is
// more.
func lowWater(rate float64, window time.Duration, held int64) int64 {
	return max(units(rate, cover(window)/2), held/refillShare)
}

// rateOver is the rate of used units over span, taken as at least
// minRateSpan, or half a cover of window if that is shorter.
func rateOver(used int64, span, window time.Duration) float64 {
	return float64(max(used, 0)) / max(span, min(minRateSpan, cover(window)/2)).Seconds()
}
