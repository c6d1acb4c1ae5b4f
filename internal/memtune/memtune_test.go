package memtune

import "testing"

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, GCPercent},
		{1 << 20, 100},               // a tiny heap: Go's default, no more
		{MinHeadroom, 100},           // grows by MinHeadroom
		{MinHeadroom * 5 / 4, 80},    // still by MinHeadroom
		{2 * MinHeadroom, GCPercent}, // 1.5 times is as much
		{400 << 20, GCPercent},       // a cache of a million keys
	} {
		if got := Percent(c.live); got != c.want {
			t.Errorf("Percent(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}
