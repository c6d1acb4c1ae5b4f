package pricing

import (
	"errors"
	"math"
	"testing"
)

// mini is gpt-4o-mini in USD: 0.15 / 0.075 / 0.60 per 1M tokens.
var mini = Price{Input: 15_000, CachedInput: 7_500, Output: 60_000, MaxOutput: 16_384}

func TestCost(t *testing.T) {
	tests := []struct {
		name string
		p    Price
		u    Usage
		want int64
		err  error
	}{
		{"nothing", mini, Usage{}, 0, nil},
		// 1,000 input, 200 of them cached, 500 output:
		// 800×15,000 + 200×7,500 + 500×60,000 = 43,500,000 nanos (0.0435 cents).
		{"cached part of input", mini, Usage{Input: 1000, CachedInput: 200, Output: 500}, 43_500_000, nil},
		{"no cache", mini, Usage{Input: 1000, Output: 500}, 45_000_000, nil},
		{"all cached", mini, Usage{Input: 1000, CachedInput: 1000}, 7_500_000, nil},
		{"cached held to input", mini, Usage{Input: 1000, CachedInput: 5000}, 7_500_000, nil},
		{"negative cached held to 0", mini, Usage{Input: 1000, CachedInput: -5}, 15_000_000, nil},
		{"1M input tokens cost the price per 1M", mini, Usage{Input: 1_000_000}, 15 * 1e9, nil}, // 15 cents
		{"negative input", mini, Usage{Input: -1}, 0, ErrNegative},
		{"negative output", mini, Usage{Output: -1}, 0, ErrNegative},
		{"product overflows", mini, Usage{Output: math.MaxInt64 / 1000}, 0, ErrOverflow},
		{"sum overflows", Price{Input: 1, Output: 1}, Usage{Input: math.MaxInt64, Output: 1}, 0, ErrOverflow},
		{"largest sum", Price{Input: 1, Output: 1}, Usage{Input: math.MaxInt64 - 1, Output: 1}, math.MaxInt64, nil},
		{"price of 2^63-1", Price{Output: math.MaxInt64}, Usage{Output: 2}, 0, ErrOverflow},
		{"a negative price is refused", Price{Output: -1}, Usage{Output: 1}, 0, ErrOverflow},
	}
	for _, tc := range tests {
		got, err := tc.p.Cost(tc.u)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%s: Cost(%+v) = %d, %v; want %d, %v", tc.name, tc.u, got, err, tc.want, tc.err)
		}
	}
}

func TestEstimate(t *testing.T) {
	tests := []struct {
		name    string
		in, out int64
		want    int64
		err     error
	}{
		{"nothing", 0, 0, 0, nil},
		{"input and the model's cap", 1000, mini.MaxOutput, 1000*15_000 + 16_384*60_000, nil},
		{"negative input", -1, 0, 0, ErrNegative},
		{"negative output", 0, -1, 0, ErrNegative},
		{"overflow", math.MaxInt64 / 10_000, 0, 0, ErrOverflow},
	}
	for _, tc := range tests {
		got, err := mini.Estimate(tc.in, tc.out)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%s: Estimate(%d, %d) = %d, %v; want %d, %v", tc.name, tc.in, tc.out, got, err, tc.want, tc.err)
		}
	}
	// The estimate bounds the cost of any usage within it.
	for _, u := range []Usage{{1000, 0, 100}, {1000, 1000, 100}, {1000, 400, 0}} {
		est, _ := mini.Estimate(u.Input, u.Output)
		if cost, _ := mini.Cost(u); cost > est {
			t.Errorf("Cost(%+v) = %d is over the estimate %d", u, cost, est)
		}
	}
}
