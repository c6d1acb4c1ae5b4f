package money

import (
	"cmp"
	"errors"
	"math"
	"strconv"
	"strings"
)

// NanosPerMinor is how many nanos make one minor unit: a nano is 1e-9 of
// a minor unit (of a centavo, of a yen).
const NanosPerMinor = 1_000_000_000

// maxNanos bounds what ParseNanos reads: 1e9 minor units, so that sums
// of a few such amounts stay far from int64 overflow.
const maxNanos = 1_000_000_000 * NanosPerMinor

// Exact is an amount of Minor + Nanos/1e9 minor units: a balance in whole
// minor units with the remainder finer than a minor unit beside it.
// Nanos is always from 0 to 999,999,999, so Minor is the floor of the
// amount: -0.3 minor units is Minor -1, Nanos 700,000,000. Every change
// to it is a whole number of nanos, so nothing is ever rounded.
type Exact struct {
	Minor int64
	Nanos int64
}

var errRange = errors.New("amount out of range")

// Valid reports whether Nanos is from 0 to 999,999,999 and the amount is
// within the supported range (±2^60 minor units, as for Add).
func (e Exact) Valid() bool {
	return e.Nanos >= 0 && e.Nanos < NanosPerMinor && e.Minor >= -maxAmount &&
		(e.Minor < maxAmount || e.Minor == maxAmount && e.Nanos == 0)
}

// AddNanos returns e plus n nanos (n may be negative). It returns e
// unchanged and an error if e is not Valid or the sum would leave the
// supported range.
func (e Exact) AddNanos(n int64) (Exact, error) {
	if !e.Valid() {
		return e, errRange
	}
	q, r := floorDiv(n)
	s := Exact{Minor: e.Minor + q, Nanos: e.Nanos + r} // |q| < 1e10: no overflow
	if s.Nanos >= NanosPerMinor {
		s.Minor, s.Nanos = s.Minor+1, s.Nanos-NanosPerMinor
	}
	if !s.Valid() {
		return e, errRange
	}
	return s, nil
}

// TotalNanos returns the whole amount in nanos, and false if that does
// not fit an int64 (beyond about ±9.2e9 minor units).
func (e Exact) TotalNanos() (int64, bool) {
	if e.Nanos < 0 || e.Nanos >= NanosPerMinor {
		return 0, false
	}
	m, n := e.Minor, e.Nanos
	if m < 0 && n > 0 { // the same amount with n from -999,999,999 to 0
		m, n = m+1, n-NanosPerMinor
	}
	if m > math.MaxInt64/NanosPerMinor || m < math.MinInt64/NanosPerMinor {
		return 0, false
	}
	m *= NanosPerMinor
	if n > 0 && m > math.MaxInt64-n || n < 0 && m < math.MinInt64-n {
		return 0, false
	}
	return m + n, true
}

// Cmp compares a Valid e with an amount of nanos: -1 if e is less, 0 if
// equal, +1 if e is more. It holds for every int64 nanos.
func (e Exact) Cmp(nanos int64) int {
	q, r := floorDiv(nanos)
	if c := cmp.Compare(e.Minor, q); c != 0 {
		return c
	}
	return cmp.Compare(e.Nanos, r)
}

// floorDiv splits n nanos into whole minor units and nanos from 0 to
// 999,999,999.
func floorDiv(n int64) (q, r int64) {
	q, r = n/NanosPerMinor, n%NanosPerMinor
	if r < 0 {
		q, r = q-1, r+NanosPerMinor
	}
	return q, r
}

// FormatExact writes e as a decimal in major units of currency: the
// currency's decimals always ("12.50"), then the digits finer than a
// minor unit while any is not zero ("12.4999995"), so the text is the
// exact amount. An Exact whose Nanos is out of its range is written
// "invalid".
func FormatExact(e Exact, currency string) string {
	if e.Nanos < 0 || e.Nanos >= NanosPerMinor {
		return "invalid"
	}
	// The magnitude, as minor units and nanos: -0.3 (Minor -1, Nanos
	// 7e8) is 0 minor units and 3e8 nanos below zero.
	sign, minor, nanos := "", uint64(e.Minor), e.Nanos
	if e.Minor < 0 {
		sign, minor = "-", uint64(-(e.Minor+1))+1 // math.MinInt64 too
		if nanos > 0 {
			minor, nanos = minor-1, NanosPerMinor-nanos
		}
	}
	dec := Decimals(currency)
	s := strconv.FormatUint(minor, 10)
	if len(s) <= dec {
		s = strings.Repeat("0", dec-len(s)+1) + s
	}
	whole, frac := s[:len(s)-dec], s[len(s)-dec:]
	if nanos > 0 {
		n := strconv.FormatInt(nanos, 10)
		frac += strings.TrimRight(strings.Repeat("0", 9-len(n))+n, "0")
	}
	if frac == "" {
		return sign + whole
	}
	return sign + whole + "." + frac
}

// ParseNanos reads a decimal amount in major units of currency, with at
// most the currency's decimals plus 9 fractional digits, and returns it in
// nanos of a minor unit: one major unit of USD (2 decimals) is 10^11
// nanos, of JPY (0 decimals) 10^9. Amounts beyond ±1e9 minor units
// (10,000,000.00 USD, 1,000,000,000 JPY) are refused.
func ParseNanos(s, currency string) (int64, error) {
	return parseScaled(s, currency, Decimals(currency)+9, maxNanos)
}
