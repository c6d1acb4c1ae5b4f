package pricing

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keygate/keygate/internal/money"
)

// perMillion: config prices are per 1M tokens.
const perMillion = 1_000_000

// maxPerMillion bounds a price per 1M tokens, in major units.
const maxPerMillion = 1_000_000

// ParsePerToken reads a price in major units of currency per 1M tokens
// ("2.50") and returns it in nanos of a minor unit per token: the price
// × 10^(decimals+3). The price must be a whole number of nanos per token,
// so it has at most decimals+3 decimal places (5 for USD, 3 for JPY), and
// it is from 0 to 1,000,000.
func ParsePerToken(s, currency string) (int64, error) {
	places := money.Decimals(currency) + 3
	if _, frac, _ := strings.Cut(s, "."); len(frac) > places && decimal(s) {
		return 0, fmt.Errorf("%q has more than %d decimal places for %s (a price per 1M tokens is a whole number of nanos per token)", s, places, currency)
	}
	n, err := money.ParseNanos(s, currency)
	if err != nil {
		return 0, err
	}
	switch {
	case n < 0:
		return 0, fmt.Errorf("%q must not be negative", s)
	case n > maxPerMillion*pow10(money.Decimals(currency)+9):
		return 0, fmt.Errorf("%q is more than %d per 1M tokens", s, maxPerMillion)
	}
	return n / perMillion, nil // exact: at most places decimal places
}

// ParseFlat reads a flat price per request in major units of currency
// ("0.04") and returns it in nanos of a minor unit. It may have up to
// decimals+9 decimal places and be up to 1e9 minor units.
func ParseFlat(s, currency string) (int64, error) {
	n, err := money.ParseNanos(s, currency)
	if err == nil && n < 0 {
		return 0, fmt.Errorf("%q must not be negative", s)
	}
	return n, err
}

// CheckPattern says what is wrong with a model pattern, or nil: it is
// printable ASCII without spaces, with * standing for any run of
// characters, written once at a time.
func CheckPattern(p string) error {
	if p == "" {
		return errors.New("must be set: a model name, with * for any run of characters")
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] > '~' {
			return fmt.Errorf("%q holds %q: a model pattern is printable ASCII without spaces", p, p[i:i+1])
		}
	}
	if strings.Contains(p, "**") {
		return fmt.Errorf("%q: write * once", p)
	}
	return nil
}

// decimal reports whether s is digits with an optional - and one .
// between digits.
func decimal(s string) bool {
	whole, frac, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	return whole != "" && frac != "" && strings.Trim(whole, "0123456789") == "" && strings.Trim(frac, "0123456789") == ""
}

func pow10(n int) int64 {
	v := int64(1)
	for range n {
		v *= 10
	}
	return v
}
