package ratelimit

import (
	"testing"
	"time"
)

func TestSize(t *testing.T) {
	for _, c := range []struct {
		name string
		in   sizing
		want int64
	}{
		{"a new key: what is waiting", sizing{need: 1, window: time.Minute, left: time.Minute, free: 600, peers: 1}, 1},
		{"a sparse key: what it will use this window", sizing{need: 1, rate: 1. / 60, window: time.Minute, left: time.Minute, free: 600, peers: 1}, 1},
		{"far from the limit: what it will use this window", sizing{need: 1, rate: 1, window: time.Minute, left: time.Minute, free: 600, peers: 1}, 60},
		{"far from the limit: a quarter of its share", sizing{need: 1, rate: 5, window: time.Minute, left: time.Minute, free: 600, peers: 1}, 150},
		{"a quarter of its share among 3", sizing{rate: 5, window: time.Minute, left: time.Minute, free: 600, peers: 3}, 50},
		{"near the limit: a cover of use", sizing{rate: 100, window: time.Minute, left: time.Minute, free: 600, peers: 1}, 150},
		{"a cover of use, over a quarter share", sizing{rate: 100, window: time.Minute, left: time.Minute, free: 200, peers: 1}, 100},
		{"never past the window's end", sizing{rate: 100, window: time.Minute, left: 200 * time.Millisecond, free: 600, peers: 1}, 20},
		{"a short window's eighth", sizing{rate: 2000, window: time.Second, left: time.Second, free: 1000, peers: 1}, 250},
		{"never more than its share of what is free", sizing{rate: 1000, window: time.Minute, left: time.Minute, free: 300, peers: 3}, 100},
		{"what waits, over the share", sizing{need: 7, rate: 1, window: time.Minute, left: time.Minute, free: 3, peers: 3}, 7},
		{"nothing to take ahead", sizing{window: time.Minute, left: time.Minute, free: 600, peers: 2}, 0},
		{"no peers counted", sizing{rate: 100, window: time.Minute, left: time.Minute, free: 600}, 150},
		{"a huge rate", sizing{rate: 1e12, window: time.Hour, left: time.Hour, free: 1 << 62, peers: 1}, 1<<31 - 1},
		{"less what is held", sizing{rate: 10, held: 4, window: time.Minute, left: time.Second, free: 600, peers: 1}, 6},
		{"held covers it", sizing{rate: 10, held: 40, window: time.Minute, left: 2 * time.Second, free: 600, peers: 1}, 0},
		{"held covers it but a take waits", sizing{need: 3, rate: 10, held: 40, window: time.Minute, left: 2 * time.Second, free: 600, peers: 1}, 3},
	} {
		if got := size(c.in); got != c.want {
			t.Errorf("%s: size(%+v) = %d, want %d", c.name, c.in, got, c.want)
		}
	}
}

func TestLowWaterAndRate(t *testing.T) {
	for _, c := range []struct {
		rate   float64
		window time.Duration
		held   int64
		want   int64
	}{
		{100, time.Minute, 100, 50},     // half a second of use
		{1000, time.Second, 125, 63},    // half of an eighth of a second
		{20, time.Hour, 72_000, 18_000}, // a quarter of what was held: the rate may be low
	} {
		if got := lowWater(c.rate, c.window, c.held); got != c.want {
			t.Errorf("lowWater(%v/s, %v, %d held) = %d, want %d", c.rate, c.window, c.held, got, c.want)
		}
	}
	if got := rateOver(1, time.Millisecond, time.Minute); got != 20 {
		t.Errorf("rateOver(1, 1ms) = %v, want 20: a burst counts over minRateSpan", got)
	}
	if got := rateOver(1, time.Microsecond, 8*time.Millisecond); got != 2000 {
		t.Errorf("rateOver(1, 1us) in an 8 ms window = %v, want 2000: over half an eighth of the window", got)
	}
	if got := rateOver(30, 3*time.Second, time.Minute); got != 10 {
		t.Errorf("rateOver(30, 3s) = %v, want 10", got)
	}
}
