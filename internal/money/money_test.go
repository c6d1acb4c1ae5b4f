package money

import (
	"math"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		currency string
		want     int64
		format   string // Format(want) if it differs from in
	}{
		{"100", "MXN", 10000, "100.00"},
		{"12.50", "MXN", 1250, ""},
		{"12.5", "MXN", 1250, "12.50"},
		{"-3.25", "MXN", -325, ""},
		{"0.5", "MXN", 50, "0.50"},
		{"0.05", "MXN", 5, ""},
		{"-0.05", "MXN", -5, ""},
		{"0", "MXN", 0, "0.00"},
		{"-0", "MXN", 0, "0.00"},
		{"0.00", "MXN", 0, ""},
		{"007.10", "MXN", 710, "7.10"},
		{"1000000", "USD", 100000000, "1000000.00"},
		{"11529215046068469.76", "MXN", 1 << 60, ""}, // the largest amount
		{"-11529215046068469.76", "MXN", -(1 << 60), ""},
		{"100", "JPY", 100, ""},
		{"-7", "JPY", -7, ""},
		{"100", "KRW", 100, ""},
		{"1152921504606846976", "JPY", 1 << 60, ""},
	}
	for _, tc := range tests {
		t.Run(tc.currency+" "+tc.in, func(t *testing.T) {
			got, err := Parse(tc.in, tc.currency)
			if err != nil {
				t.Fatalf("Parse(%q, %s): %v", tc.in, tc.currency, err)
			}
			if got != tc.want {
				t.Fatalf("Parse(%q, %s) = %d, want %d", tc.in, tc.currency, got, tc.want)
			}
			want := tc.format
			if want == "" {
				want = tc.in
			}
			s := Format(got, tc.currency)
			if s != want {
				t.Fatalf("Format(%d, %s) = %q, want %q", got, tc.currency, s, want)
			}
			// Format's output parses back to the same amount.
			if back, err := Parse(s, tc.currency); err != nil || back != got {
				t.Fatalf("Parse(Format(%d)) = %d, %v", got, back, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in       string
		currency string
		why      string // a word the error must contain
	}{
		{"12.505", "MXN", "decimal places"},
		{"1.5", "JPY", "decimal places"},
		{"abc", "MXN", "not a decimal"},
		{"", "MXN", "not a decimal"},
		{"-", "MXN", "not a decimal"},
		{"--1", "MXN", "not a decimal"},
		{"+1", "MXN", "not a decimal"},
		{"1.", "MXN", "not a decimal"},
		{"1.", "JPY", "not a decimal"},
		{".5", "MXN", "not a decimal"},
		{"-.5", "MXN", "not a decimal"},
		{"1e5", "MXN", "not a decimal"},
		{"1,000", "MXN", "not a decimal"},
		{"1.2.3", "MXN", "not a decimal"},
		{" 1", "MXN", "not a decimal"},
		{"1 ", "MXN", "not a decimal"},
		{"0x10", "MXN", "not a decimal"},
		{"١٢", "MXN", "not a decimal"}, // Arabic-Indic digits
		{"NaN", "MXN", "not a decimal"},
		{"11529215046068469.77", "MXN", "too large"}, // one centavo over the largest
		{"-11529215046068469.77", "MXN", "too large"},
		{"92233720368547758.07", "MXN", "too large"}, // MaxInt64 centavos
		{"99999999999999999999", "MXN", "too large"},
		{"1152921504606846977", "JPY", "too large"},
		{strings.Repeat("9", 400), "MXN", "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.currency+" "+tc.in, func(t *testing.T) {
			got, err := Parse(tc.in, tc.currency)
			if err == nil {
				t.Fatalf("Parse(%q, %s) = %d, want an error", tc.in, tc.currency, got)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Errorf("Parse(%q, %s) error %q does not say %q", tc.in, tc.currency, err, tc.why)
			}
			if got != 0 {
				t.Errorf("Parse(%q, %s) = %d with an error, want 0", tc.in, tc.currency, got)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		minor    int64
		currency string
		want     string
	}{
		{0, "MXN", "0.00"},
		{1, "MXN", "0.01"},
		{5, "MXN", "0.05"},
		{-5, "MXN", "-0.05"},
		{-1, "MXN", "-0.01"},
		{10, "MXN", "0.10"},
		{-10, "MXN", "-0.10"},
		{99, "MXN", "0.99"},
		{100, "MXN", "1.00"},
		{-100, "MXN", "-1.00"},
		{-325, "MXN", "-3.25"},
		{123456789, "USD", "1234567.89"},
		{math.MaxInt64, "MXN", "92233720368547758.07"},
		{math.MinInt64, "MXN", "-92233720368547758.08"},
		{0, "JPY", "0"},
		{5, "JPY", "5"},
		{-5, "JPY", "-5"},
		{100, "CLP", "100"},
		{100, "", "1.00"}, // unknown currencies have 2 decimals
	}
	for _, tc := range tests {
		if got := Format(tc.minor, tc.currency); got != tc.want {
			t.Errorf("Format(%d, %q) = %q, want %q", tc.minor, tc.currency, got, tc.want)
		}
	}
}

func TestDecimalsAndCurrency(t *testing.T) {
	for c, want := range map[string]int{"MXN": 2, "USD": 2, "EUR": 2, "JPY": 0, "KRW": 0, "CLP": 0} {
		if got := Decimals(c); got != want {
			t.Errorf("Decimals(%s) = %d, want %d", c, got, want)
		}
	}
	for c, want := range map[string]bool{"MXN": true, "USD": true, "mxn": false, "MX": false, "MXNN": false, "": false, "M1N": false, "ÑXN": false} {
		if got := ValidCurrency(c); got != want {
			t.Errorf("ValidCurrency(%q) = %v, want %v", c, got, want)
		}
	}
	if DefaultCurrency != "MXN" {
		t.Errorf("DefaultCurrency = %q, want MXN", DefaultCurrency)
	}
}

func TestAdd(t *testing.T) {
	const max = 1 << 60 // the largest supported amount
	tests := []struct {
		name    string
		a, b    int64
		want    int64
		wantErr bool
	}{
		{"credit", 1000, 250, 1250, false},
		{"debit", 1000, -325, 675, false},
		{"debit below zero", 100, -325, -225, false},
		{"zero", 0, 0, 0, false},
		{"up to the top", max - 1, 1, max, false},
		{"down to the bottom", -max + 1, -1, -max, false},
		{"from the top down", max, -max, 0, false},
		{"over the top", max, 1, 0, true},
		{"under the bottom", -max, -1, 0, true},
		{"huge credit", 0, max + 1, 0, true},
		{"huge debit", 0, -max - 1, 0, true},
		{"a out of range", max + 1, -5, 0, true},
		{"a out of range below", -max - 1, 5, 0, true},
		{"int64 overflow", 1, math.MaxInt64, 0, true},
		{"int64 overflow from the top", max, math.MaxInt64, 0, true},
		{"int64 underflow", -1, math.MinInt64, 0, true},
		{"int64 underflow from the bottom", -max, math.MinInt64, 0, true},
		{"extremes", math.MaxInt64, math.MinInt64, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Add(tc.a, tc.b)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Add(%d, %d) = %d, want a range error", tc.a, tc.b, got)
				}
				if !strings.Contains(err.Error(), "range") {
					t.Errorf("Add error %q does not mention the range", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Add(%d, %d) = %d, %v; want %d", tc.a, tc.b, got, err, tc.want)
			}
		})
	}
}
