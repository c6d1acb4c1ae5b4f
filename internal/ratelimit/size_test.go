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
		{"a second of use", sizing{need: 1, rate: 5, window: time.Minute, left: time.Minute, free: 600, peers: 1}, 5},
		{"never past the window's end", sizing{rate: 100, window: time.Minute, left: 200 * time.Millisecond, free: 600, peers: 1}, 20},
		{"a short window's eighth", sizing{rate: 1000, window: time.Second, left: time.Second, free: 1000, peers: 1}, 125},
		{"a share of what is free", sizing{rate: 1000, window: time.Minute, left: time.Minute, free: 300, peers: 3}, 100},
		{"what waits, over the share", sizing{need: 7, rate: 1, window: time.Minute, left: time.Minute, free: 3, peers: 3}, 7},
		{"nothing to take ahead", sizing{window: time.Minute, left: time.Minute, free: 600, peers: 2}, 0},
		{"no peers counted", sizing{rate: 10, window: time.Minute, left: time.Minute, free: 600}, 10},
		{"a huge rate", sizing{rate: 1e12, window: time.Hour, left: time.Hour, free: 1 << 62, peers: 1}, 1<<31 - 1},
		{"less what is held", sizing{rate: 10, held: 4, window: time.Minute, left: time.Minute, free: 600, peers: 1}, 6},
		{"held covers it", sizing{rate: 10, held: 40, window: time.Minute, left: time.Minute, free: 600, peers: 1}, 0},
		{"held covers it but a take waits", sizing{need: 3, rate: 10, held: 40, window: time.Minute, left: time.Minute, free: 600, peers: 1}, 3},
	} {
		if got := size(c.in); got != c.want {
			t.Errorf("%s: size(%+v) = %d, want %d", c.name, c.in, got, c.want)
		}
	}
}

func TestLowWaterAndRate(t *testing.T) {
	if got := lowWater(100, time.Minute); got != 50 {
		t.Errorf("lowWater(100/s, 1m) = %d, want 50 (half a second)", got)
	}
	if got := lowWater(1000, time.Second); got != 63 {
		t.Errorf("lowWater(1000/s, 1s) = %d, want 63 (half of an eighth of a second)", got)
	}
	if got := rateOver(1, time.Millisecond); got != 20 {
		t.Errorf("rateOver(1, 1ms) = %v, want 20: a burst counts over minRateSpan", got)
	}
	if got := rateOver(30, 3*time.Second); got != 10 {
		t.Errorf("rateOver(30, 3s) = %v, want 10", got)
	}
}
