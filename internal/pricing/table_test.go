package pricing

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// newTable builds a table from o with working defaults for the rest.
func newTable(t testing.TB, o Options) *Table {
	t.Helper()
	if o.InputBytesPerToken == 0 {
		o.InputBytesPerToken = 1
	}
	if o.HoldTTL == 0 {
		o.HoldTTL = time.Hour
	}
	tb, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func price(n int64) Price { return Price{Input: n, CachedInput: n, Output: n, MaxOutput: 1} }

func TestLookupFirstMatchPerCurrency(t *testing.T) {
	tb := newTable(t, Options{Models: []Entry{
		{Match: "gpt-4o-mini*", Currency: "USD", Price: price(1)},
		{Match: "gpt-4o*", Currency: "MXN", Price: price(2)}, // the first MXN entry for gpt-4o-mini
		{Match: "gpt-4o*", Currency: "USD", Price: price(3)},
		{Match: "gpt-4o-mini", Currency: "MXN", Price: price(4)}, // never reached: gpt-4o* comes first
		{Match: "*", Currency: "USD", Price: price(5)},
		{Match: "o1", Currency: "JPY", Price: price(6)},
	}})
	tests := []struct {
		model, currency string
		want            int64 // 0: no price
	}{
		{"gpt-4o-mini", "USD", 1},
		{"gpt-4o-mini-2024-07-18", "USD", 1},
		{"gpt-4o", "USD", 3},
		{"gpt-4o-mini", "MXN", 2},
		{"gpt-4o", "MXN", 2},
		{"o1", "USD", 5},
		{"", "USD", 5},
		{"o1", "MXN", 0},
		{"o1", "JPY", 6},
		{"o1-mini", "JPY", 0},
		{"gpt-4o", "EUR", 0},
		{"gpt-4o", "", 0},
		{"GPT-4O", "MXN", 0}, // case-sensitive
	}
	for _, tc := range tests {
		p, ok := tb.Lookup(tc.model, tc.currency)
		if ok != (tc.want != 0) || p.Input != tc.want {
			t.Errorf("Lookup(%q, %q) = %+v, %v; want price %d", tc.model, tc.currency, p, ok, tc.want)
		}
	}
	var none *Table
	if p, ok := none.Lookup("gpt-4o", "USD"); ok {
		t.Errorf("nil table: Lookup = %+v, want none", p)
	}
}

func TestNewRefuses(t *testing.T) {
	ok := Entry{Match: "gpt-4o", Currency: "USD", Price: price(1)}
	tests := []struct {
		why string
		o   func(*Options)
	}{
		{"models[0]: must be set", func(o *Options) { o.Models = []Entry{{Currency: "USD", Price: price(1)}} }},
		{`models[1]: "usd" is not a currency`, func(o *Options) { o.Models = []Entry{ok, {Match: "x", Currency: "usd", Price: price(1)}} }},
		{"models[0]: a price is negative", func(o *Options) {
			o.Models = []Entry{{Match: "x", Currency: "USD", Price: Price{Input: -1, MaxOutput: 1}}}
		}},
		{"models[0]: the cached input price is more", func(o *Options) {
			o.Models = []Entry{{Match: "x", Currency: "USD", Price: Price{Input: 1, CachedInput: 2, MaxOutput: 1}}}
		}},
		{"models[0]: max output", func(o *Options) { o.Models = []Entry{{Match: "x", Currency: "USD", Price: Price{}}} }},
		{"default EUR: max output", func(o *Options) { o.Default = map[string]Price{"EUR": {}} }},
		{"routes[1]: USD -1", func(o *Options) { o.Routes = []map[string]int64{nil, {"USD": -1}} }},
		{"input bytes per token", func(o *Options) { o.InputBytesPerToken = 0 }},
		{"hold TTL", func(o *Options) { o.HoldTTL = -time.Second }},
	}
	for _, tc := range tests {
		o := Options{Models: []Entry{ok}, InputBytesPerToken: 1, HoldTTL: time.Hour}
		tc.o(&o)
		tb, err := New(o)
		if err == nil || !strings.Contains(err.Error(), tc.why) || tb != nil {
			t.Errorf("New = %v, %v; want an error saying %q", tb, err, tc.why)
		}
	}
}

func TestInputTokens(t *testing.T) {
	for _, tc := range []struct{ per, bytes, want int64 }{
		{1, 0, 0}, {1, 1, 1}, {1, 1000, 1000}, {1, -5, 0},
		{4, 1, 1}, {4, 4, 1}, {4, 5, 2}, {4, 1000, 250}, {4, 1001, 251},
	} {
		tb := newTable(t, Options{InputBytesPerToken: tc.per})
		if got := tb.InputTokens(tc.bytes); got != tc.want {
			t.Errorf("%d bytes per token: InputTokens(%d) = %d, want %d", tc.per, tc.bytes, got, tc.want)
		}
	}
	tb := newTable(t, Options{HoldTTL: 90 * time.Minute})
	if tb.HoldTTL() != 90*time.Minute {
		t.Errorf("HoldTTL() = %s", tb.HoldTTL())
	}
}

// table50 has 50 USD entries with patterns of every kind, the one for
// gpt-4o-mini last, and MXN entries before them that a USD lookup skips.
func table50(t testing.TB) *Table {
	var models []Entry
	for i := range 10 {
		models = append(models, Entry{Match: fmt.Sprintf("gpt-%d*", i), Currency: "MXN", Price: price(1)})
	}
	for i := range 49 {
		pat := [...]string{"vendor/model-%d", "*-model-%d", "m-*-%d-*-x", "gpt-%d-*", "gpt-4o-%d"}[i%5]
		models = append(models, Entry{Match: fmt.Sprintf(pat, i), Currency: "USD", Price: price(2)})
	}
	models = append(models, Entry{Match: "gpt-4o-mini*", Currency: "USD", Price: price(3)})
	return newTable(t, Options{Models: models})
}

// TestLookupAllocatesNothing asserts allocations, not speed.
func TestLookupAllocatesNothing(t *testing.T) {
	tb := table50(t)
	model := strings.Clone("gpt-4o-mini-2024-07-18")
	if p, ok := tb.Lookup(model, "USD"); !ok || p.Input != 3 {
		t.Fatalf("Lookup = %+v, %v", p, ok)
	}
	if n := testing.AllocsPerRun(1000, func() { tb.Lookup(model, "USD") }); n != 0 {
		t.Errorf("Lookup allocates %.0f times", n)
	}
	call := Call{Method: "POST", Route: -1, Parsed: true, Model: model, Currency: "USD"}
	if n := testing.AllocsPerRun(1000, func() { tb.Rule(call) }); n != 0 {
		t.Errorf("Rule allocates %.0f times", n)
	}
}

// BenchmarkLookup: the last of 50 entries in the currency matches (the
// worst case for a hit), and a model that no entry matches.
func BenchmarkLookup(b *testing.B) {
	tb := table50(b)
	for _, model := range []string{"gpt-4o-mini-2024-07-18", "unknown-model"} {
		b.Run(model, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tb.Lookup(model, "USD")
			}
		})
	}
}
