package funds

import "testing"

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		need, avail, peers, rate int64
		want                     int64
	}{
		{"near empty: exactly what is needed", 10, 100, 3, 1000, 10},
		{"far from empty, fast: a second of holds", 10, 1_000_000, 3, 1000, 1000},
		{"far from empty, slow: a few needs", 10, 1_000_000, 3, 0, 80},
		{"capped at a quarter of the share", 10, 1200, 3, 1_000_000, 100},
		{"short: all that is available", 10, 7, 3, 0, 7},
		{"nothing available", 10, 0, 1, 5, 0},
		{"no peers counted yet", 10, 100, 0, 1000, 25},
		{"a need too large to multiply", 1 << 61, 1 << 62, 1, 0, 1 << 61},
	} {
		if got := size(tc.need, tc.avail, tc.peers, tc.rate); got != tc.want {
			t.Errorf("%s: size = %d, want %d", tc.name, got, tc.want)
		}
	}
}
