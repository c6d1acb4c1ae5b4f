package money

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

const maxA = 1 << 60 // the largest supported amount, in minor units

func TestExactValid(t *testing.T) {
	tests := []struct {
		e    Exact
		want bool
	}{
		{Exact{}, true},
		{Exact{Minor: 5, Nanos: 999_999_999}, true},
		{Exact{Minor: -1, Nanos: 700_000_000}, true},
		{Exact{Minor: 5, Nanos: 1_000_000_000}, false},
		{Exact{Minor: 5, Nanos: -1}, false},
		{Exact{Minor: maxA}, true},
		{Exact{Minor: maxA, Nanos: 1}, false},
		{Exact{Minor: maxA - 1, Nanos: 999_999_999}, true},
		{Exact{Minor: -maxA}, true},
		{Exact{Minor: -maxA - 1, Nanos: 999_999_999}, false},
		{Exact{Minor: math.MaxInt64}, false},
		{Exact{Minor: math.MinInt64}, false},
	}
	for _, tc := range tests {
		if got := tc.e.Valid(); got != tc.want {
			t.Errorf("%+v.Valid() = %v, want %v", tc.e, got, tc.want)
		}
	}
}

func TestAddNanos(t *testing.T) {
	tests := []struct {
		name    string
		e       Exact
		n       int64
		want    Exact
		wantErr bool
	}{
		{"zero", Exact{}, 0, Exact{}, false},
		{"a nano", Exact{}, 1, Exact{Nanos: 1}, false},
		{"a nano below zero", Exact{}, -1, Exact{Minor: -1, Nanos: 999_999_999}, false},
		{"-0.3 minor", Exact{}, -300_000_000, Exact{Minor: -1, Nanos: 700_000_000}, false},
		{"carry up", Exact{Minor: 1, Nanos: 999_999_999}, 1, Exact{Minor: 2}, false},
		{"borrow", Exact{Minor: 1}, -1, Exact{Nanos: 999_999_999}, false},
		{"whole minor units", Exact{Minor: 10, Nanos: 5}, 3 * NanosPerMinor, Exact{Minor: 13, Nanos: 5}, false},
		{"debit past zero", Exact{Minor: 10, Nanos: 5}, -11*NanosPerMinor - 10, Exact{Minor: -2, Nanos: 999_999_995}, false},
		{"int64 extremes up", Exact{}, math.MaxInt64, Exact{Minor: 9_223_372_036, Nanos: 854_775_807}, false},
		{"int64 extremes down", Exact{}, math.MinInt64, Exact{Minor: -9_223_372_037, Nanos: 145_224_192}, false},
		{"to the top", Exact{Minor: maxA - 1, Nanos: 1}, NanosPerMinor - 1, Exact{Minor: maxA}, false},
		{"over the top", Exact{Minor: maxA}, 1, Exact{Minor: maxA}, true},
		{"to the bottom", Exact{Minor: -maxA + 1}, -NanosPerMinor, Exact{Minor: -maxA}, false},
		{"under the bottom", Exact{Minor: -maxA}, -1, Exact{Minor: -maxA}, true},
		{"invalid nanos", Exact{Nanos: -5}, 5, Exact{Nanos: -5}, true},
		{"invalid minor", Exact{Minor: math.MaxInt64}, -1, Exact{Minor: math.MaxInt64}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.e.AddNanos(tc.n)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("%+v.AddNanos(%d) = %+v, %v; want %+v (error: %v)", tc.e, tc.n, got, err, tc.want, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "range") {
				t.Errorf("error %q does not mention the range", err)
			}
		})
	}
}

func TestTotalNanosAndCmp(t *testing.T) {
	tests := []struct {
		e    Exact
		want int64
		ok   bool
	}{
		{Exact{}, 0, true},
		{Exact{Minor: 12, Nanos: 5}, 12_000_000_005, true},
		{Exact{Minor: -1, Nanos: 700_000_000}, -300_000_000, true},
		{Exact{Minor: 9_223_372_036, Nanos: 854_775_807}, math.MaxInt64, true},
		{Exact{Minor: 9_223_372_036, Nanos: 854_775_808}, 0, false},
		{Exact{Minor: 9_223_372_037}, 0, false},
		{Exact{Minor: -9_223_372_037, Nanos: 145_224_192}, math.MinInt64, true},
		{Exact{Minor: -9_223_372_037, Nanos: 145_224_191}, 0, false},
		{Exact{Minor: -9_223_372_038}, 0, false},
		{Exact{Minor: maxA}, 0, false},
		{Exact{Nanos: NanosPerMinor}, 0, false},
	}
	for _, tc := range tests {
		got, ok := tc.e.TotalNanos()
		if got != tc.want || ok != tc.ok {
			t.Errorf("%+v.TotalNanos() = %d, %v; want %d, %v", tc.e, got, ok, tc.want, tc.ok)
		}
		if !ok || !tc.e.Valid() {
			continue
		}
		for _, d := range []int64{-1, 0, 1} {
			n := got - d // no overflow: skipped at the extremes below
			if got == math.MaxInt64 && d == -1 || got == math.MinInt64 && d == 1 {
				continue
			}
			if c := tc.e.Cmp(n); c != int(d) {
				t.Errorf("%+v.Cmp(%d) = %d, want %d", tc.e, n, c, d)
			}
		}
	}
	// Cmp holds for amounts no int64 of nanos can write.
	if c := (Exact{Minor: maxA}).Cmp(math.MaxInt64); c != 1 {
		t.Errorf("Cmp(MaxInt64) of the largest amount = %d, want 1", c)
	}
	if c := (Exact{Minor: -maxA}).Cmp(math.MinInt64); c != -1 {
		t.Errorf("Cmp(MinInt64) of the smallest amount = %d, want -1", c)
	}
}

func TestFormatExact(t *testing.T) {
	tests := []struct {
		e        Exact
		currency string
		want     string
	}{
		{Exact{}, "USD", "0.00"},
		{Exact{Minor: 1250}, "USD", "12.50"},
		{Exact{Minor: 1249, Nanos: 999_950_000}, "USD", "12.4999995"},
		{Exact{Minor: 1249, Nanos: 999_999_999}, "USD", "12.49999999999"},
		{Exact{Nanos: 1}, "USD", "0.00000000001"},
		{Exact{Minor: -1, Nanos: 700_000_000}, "USD", "-0.003"}, // -0.3 minor
		{Exact{Minor: -1, Nanos: 999_999_900}, "USD", "-0.000000001"},
		{Exact{Minor: -1}, "USD", "-0.01"},
		{Exact{Minor: -1, Nanos: 1}, "USD", "-0.00999999999"},
		{Exact{Minor: -1250, Nanos: 500_000_000}, "MXN", "-12.495"},
		{Exact{Minor: 5}, "JPY", "5"},
		{Exact{Minor: 5, Nanos: 500_000_000}, "JPY", "5.5"},
		{Exact{Minor: -1, Nanos: 500_000_000}, "JPY", "-0.5"},
		{Exact{Nanos: 1}, "JPY", "0.000000001"},
		{Exact{Minor: math.MaxInt64, Nanos: 999_999_999}, "USD", "92233720368547758.07999999999"},
		{Exact{Minor: math.MinInt64}, "USD", "-92233720368547758.08"},
		{Exact{Minor: math.MinInt64, Nanos: 1}, "USD", "-92233720368547758.07999999999"},
		{Exact{Nanos: -1}, "USD", "invalid"},
		{Exact{Nanos: NanosPerMinor}, "USD", "invalid"},
	}
	for _, tc := range tests {
		if got := FormatExact(tc.e, tc.currency); got != tc.want {
			t.Errorf("FormatExact(%+v, %s) = %q, want %q", tc.e, tc.currency, got, tc.want)
		}
		// Written without nanos, it is what Format writes.
		if tc.e.Nanos == 0 && FormatExact(tc.e, tc.currency) != Format(tc.e.Minor, tc.currency) {
			t.Errorf("FormatExact(%+v) differs from Format", tc.e)
		}
		// The text reads back as the same amount.
		if n, ok := tc.e.TotalNanos(); ok && tc.e.Valid() {
			back, err := ParseNanos(tc.want, tc.currency)
			if err != nil || back != n {
				t.Errorf("ParseNanos(%q) = %d, %v; want %d", tc.want, back, err, n)
			}
		}
	}
}

func TestParseNanos(t *testing.T) {
	tests := []struct {
		in, currency string
		want         int64
		why          string // a word the error must contain
	}{
		{"1", "USD", 100_000_000_000, ""},
		{"0.01", "USD", NanosPerMinor, ""},
		{"0.00000000001", "USD", 1, ""},
		{"0.000000001", "USD", 100, ""},
		{"-0.003", "USD", -300_000_000, ""},
		{"2.50", "USD", 250_000_000_000, ""},
		{"1", "JPY", NanosPerMinor, ""},
		{"0.000000001", "JPY", 1, ""},
		{"10000000", "USD", 1e18, ""}, // the largest: 1e9 minor units
		{"-10000000", "USD", -1e18, ""},
		{"1000000000", "JPY", 1e18, ""},
		{"0.000000000001", "USD", 0, "has more than 11 decimal places for USD"},
		{"0.0000000001", "JPY", 0, "has more than 9 decimal places for JPY"},
		{"10000000.00000000001", "USD", 0, "too large"},
		{"1000000001", "JPY", 0, "too large"},
		{"99999999999999999999", "USD", 0, "too large"},
		{"1e3", "USD", 0, "not a decimal"},
		{"", "USD", 0, "not a decimal"},
		{".5", "USD", 0, "not a decimal"},
		{"+1", "USD", 0, "not a decimal"},
	}
	for _, tc := range tests {
		got, err := ParseNanos(tc.in, tc.currency)
		if tc.why == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseNanos(%q, %s) = %d, %v; want %d", tc.in, tc.currency, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.why) || got != 0 {
			t.Errorf("ParseNanos(%q, %s) = %d, %v; want an error saying %q", tc.in, tc.currency, got, err, tc.why)
		}
	}
}

// TestAddNanosNeverDrifts: random sequences of debits and credits leave
// an Exact at exactly the sum of its nanos (kept as a big.Int), and
// AddNanos refuses exactly the steps that would leave the range.
func TestAddNanosNeverDrifts(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		steps := make([]int64, 1+r.IntN(200))
		for i := range steps {
			switch r.IntN(4) {
			case 0: // a token's worth
				steps[i] = r.Int64N(1_000_000) - 500_000
			case 1: // a call's worth
				steps[i] = r.Int64N(1e15) - 5e14
			case 2:
				steps[i] = int64(r.Uint64()) // anything
			default: // a top-up of whole minor units
				steps[i] = r.Int64N(1e9) * NanosPerMinor
			}
		}
		start := Exact{Minor: r.Int64N(2*maxA+1) - maxA, Nanos: r.Int64N(NanosPerMinor)}
		if r.IntN(2) == 0 {
			start.Minor = r.Int64N(2_000_000) - 1_000_000
		}
		checkSum(t, start, steps)
	}
}

// FuzzAddNanos: the same property on sequences the fuzzer chooses.
func FuzzAddNanos(f *testing.F) {
	f.Add(int64(0), int64(0), []byte{})
	f.Add(int64(maxA-1), int64(999_999_999), binary.LittleEndian.AppendUint64(nil, 1))
	f.Add(int64(-3), int64(1), binary.LittleEndian.AppendUint64(nil, math.MaxUint64))
	f.Fuzz(func(t *testing.T, minor, nanos int64, b []byte) {
		start := Exact{Minor: minor, Nanos: nanos}
		if !start.Valid() {
			return
		}
		var steps []int64
		for ; len(b) >= 8; b = b[8:] {
			steps = append(steps, int64(binary.LittleEndian.Uint64(b)))
		}
		checkSum(t, start, steps)
	})
}

// checkSum adds steps to start one by one and compares each result with
// the exact sum.
func checkSum(t *testing.T, start Exact, steps []int64) {
	t.Helper()
	nano := big.NewInt(NanosPerMinor)
	want := new(big.Int).Mul(big.NewInt(start.Minor), nano)
	want.Add(want, big.NewInt(start.Nanos))
	lo := new(big.Int).Mul(big.NewInt(-maxA), nano)
	hi := new(big.Int).Mul(big.NewInt(maxA), nano)
	e := start
	for _, n := range steps {
		next := new(big.Int).Add(want, big.NewInt(n))
		got, err := e.AddNanos(n)
		inRange := next.Cmp(lo) >= 0 && next.Cmp(hi) <= 0
		if !inRange {
			if err == nil || got != e {
				t.Fatalf("%+v.AddNanos(%d) = %+v, %v; want it refused unchanged", e, n, got, err)
			}
			continue
		}
		if err != nil || !got.Valid() {
			t.Fatalf("%+v.AddNanos(%d) = %+v, %v", e, n, got, err)
		}
		e, want = got, next
		have := new(big.Int).Mul(big.NewInt(e.Minor), nano)
		if have.Add(have, big.NewInt(e.Nanos)).Cmp(want) != 0 {
			t.Fatalf("after adding %d: %+v is %s nanos, want %s", n, e, have, want)
		}
	}
}

// FuzzParseNanos: what ParseNanos accepts, FormatExact writes back as
// the same amount.
func FuzzParseNanos(f *testing.F) {
	for _, s := range []string{"12.50", "-0.003", "0.00000000001", "10000000", "1.5"} {
		f.Add(s, "USD")
		f.Add(s, "JPY")
	}
	f.Fuzz(func(t *testing.T, s, currency string) {
		n, err := ParseNanos(s, currency)
		if err != nil {
			return
		}
		var e Exact
		if e, err = e.AddNanos(n); err != nil {
			t.Fatalf("AddNanos(%d): %v", n, err)
		}
		back, err := ParseNanos(FormatExact(e, currency), currency)
		if err != nil || back != n {
			t.Fatalf("ParseNanos(%q) = %d; FormatExact = %q reads as %d, %v", s, n, FormatExact(e, currency), back, err)
		}
	})
}
