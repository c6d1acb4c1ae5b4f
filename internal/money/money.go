// Package money converts between decimal amounts in major units ("12.50")
// and the integer minor units (centavos) that keygate stores, and keeps
// amounts finer than a minor unit exactly, as integer nanos (1e-9 of a
// minor unit) beside them. No amount is ever a float.
package money

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultCurrency is used when an account names none.
const DefaultCurrency = "MXN"

// zeroDecimal lists ISO 4217 currencies without minor units.
var zeroDecimal = map[string]bool{"JPY": true, "KRW": true, "CLP": true, "VND": true, "ISK": true}

// Decimals returns how many decimal places currency has.
func Decimals(currency string) int {
	if zeroDecimal[currency] {
		return 0
	}
	return 2
}

// ValidCurrency reports whether c looks like an ISO 4217 code.
func ValidCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

// Parse reads a decimal amount in major units ("100", "12.50", "-3.25") and
// returns it in minor units of currency.
func Parse(s, currency string) (int64, error) {
	return parseScaled(s, currency, Decimals(currency), maxAmount)
}

// parseScaled reads the decimal s, with at most places fractional digits,
// as an integer of 10^-places units no larger than max in magnitude.
// Its errors name currency.
func parseScaled(s, currency string, places int, max int64) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	whole, frac, hasDot := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if whole == "" || (hasDot && frac == "") || !digits(whole) || !digits(frac) {
		return 0, fmt.Errorf("%q is not a decimal amount like 12.50", s)
	}
	if len(frac) > places {
		return 0, fmt.Errorf("%q has more than %d decimal places for %s", s, places, currency)
	}
	frac += strings.Repeat("0", places-len(frac))
	v, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil || v > max {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if neg {
		v = -v
	}
	return v, nil
}

// maxAmount keeps sums of two amounts far from int64 overflow.
const maxAmount = 1 << 60

// Format writes minor units of currency as a decimal in major units.
func Format(minor int64, currency string) string {
	dec := Decimals(currency)
	if dec == 0 {
		return strconv.FormatInt(minor, 10)
	}
	s := strconv.FormatInt(minor, 10)
	sign := ""
	if minor < 0 {
		sign, s = "-", s[1:]
	}
	if len(s) <= dec {
		s = strings.Repeat("0", dec-len(s)+1) + s
	}
	return sign + s[:len(s)-dec] + "." + s[len(s)-dec:]
}

// Add returns a+b, or an error if the sum leaves the supported range.
func Add(a, b int64) (int64, error) {
	if a > maxAmount || a < -maxAmount {
		return 0, fmt.Errorf("amount out of range")
	}
	s := a + b
	if s > maxAmount || s < -maxAmount {
		return 0, fmt.Errorf("amount out of range")
	}
	return s, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
