package pricing

import (
	"strings"
	"testing"
)

func TestParsePerToken(t *testing.T) {
	tests := []struct {
		in, currency string
		want         int64  // nanos of a minor unit per token
		why          string // a word the error must contain
	}{
		{"2.50", "USD", 250_000, ""}, // 250 cents / 1M tokens = 0.00025 cents
		{"0.15", "USD", 15_000, ""},
		{"0.075", "USD", 7_500, ""},
		{"0.60", "USD", 60_000, ""},
		{"0", "USD", 0, ""},
		{"0.00001", "USD", 1, ""}, // the smallest: a nano per token
		{"1000000", "USD", 1e11, ""},
		{"1000000.00000", "USD", 1e11, ""},
		{"3.00", "MXN", 300_000, ""},
		{"300", "JPY", 300_000, ""}, // 300 yen / 1M tokens = 0.0003 yen
		{"0.001", "JPY", 1, ""},
		{"1000000", "JPY", 1e9, ""},
		{"0.000001", "USD", 0, "more than 5 decimal places for USD"},
		{"2.500000", "USD", 0, "more than 5 decimal places for USD"},
		{"0.000000000001", "USD", 0, "more than 5 decimal places for USD"},
		{"0.0001", "JPY", 0, "more than 3 decimal places for JPY"},
		{"1.5", "JPY", 1_500, ""},
		{"-1", "USD", 0, "must not be negative"},
		{"-0.00001", "USD", 0, "must not be negative"},
		{"1000000.00001", "USD", 0, "more than 1000000 per 1M tokens"},
		{"1000001", "JPY", 0, "more than 1000000 per 1M tokens"},
		{"99999999999999", "USD", 0, "too large"},
		{"2,50", "USD", 0, "not a decimal"},
		{"1e-5", "USD", 0, "not a decimal"},
		{"", "USD", 0, "not a decimal"},
		{"0.0000001x", "USD", 0, "not a decimal"},
		{" 2.50", "USD", 0, "not a decimal"},
	}
	for _, tc := range tests {
		got, err := ParsePerToken(tc.in, tc.currency)
		if tc.why == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParsePerToken(%q, %s) = %d, %v; want %d", tc.in, tc.currency, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.why) || got != 0 {
			t.Errorf("ParsePerToken(%q, %s) = %d, %v; want an error saying %q", tc.in, tc.currency, got, err, tc.why)
		}
	}
}

func TestParseFlat(t *testing.T) {
	tests := []struct {
		in, currency string
		want         int64
		why          string
	}{
		{"0.04", "USD", 4e9, ""},
		{"0.80", "MXN", 80e9, ""},
		{"5", "JPY", 5e9, ""},
		{"0", "USD", 0, ""},
		{"0.00000000001", "USD", 1, ""},
		{"0.000000001", "JPY", 1, ""},
		{"10000000", "USD", 1e18, ""},
		{"0.000000000001", "USD", 0, "more than 11 decimal places for USD"},
		{"-0.04", "USD", 0, "must not be negative"},
		{"10000000.01", "USD", 0, "too large"},
		{"free", "USD", 0, "not a decimal"},
	}
	for _, tc := range tests {
		got, err := ParseFlat(tc.in, tc.currency)
		if tc.why == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseFlat(%q, %s) = %d, %v; want %d", tc.in, tc.currency, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.why) || got != 0 {
			t.Errorf("ParseFlat(%q, %s) = %d, %v; want an error saying %q", tc.in, tc.currency, got, err, tc.why)
		}
	}
}

func TestCheckPattern(t *testing.T) {
	for p, why := range map[string]string{
		"gpt-4o":                    "",
		"*":                         "",
		"gpt-4o-mini*":              "",
		"*-mini":                    "",
		"gpt-*-mini-*":              "",
		"accounts/fireworks/model*": "",
		"":                          "must be set",
		"gpt 4o":                    "without spaces",
		"gpt-4o\n":                  "without spaces",
		"gpt-4ö":                    "printable ASCII",
		"gpt\x7f":                   "printable ASCII",
		"gpt-**":                    "write * once",
	} {
		err := CheckPattern(p)
		if why == "" && err != nil || why != "" && (err == nil || !strings.Contains(err.Error(), why)) {
			t.Errorf("CheckPattern(%q) = %v, want %q", p, err, why)
		}
	}
}
