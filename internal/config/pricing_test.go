package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/pricing"
)

// TestPriceTable: full.yaml's prices become the table they say, exactly.
func TestPriceTable(t *testing.T) {
	c, err := config.Load("testdata/full.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tb, err := c.PriceTable()
	if err != nil || tb == nil {
		t.Fatalf("PriceTable() = %v, %v", tb, err)
	}
	for _, tc := range []struct {
		model, currency string
		want            pricing.Price
		ok              bool
	}{
		// 0.15 / 0.075 / 0.60 USD per 1M tokens: × 10^5 nanos of a cent per token.
		{"gpt-4o-mini", "USD", pricing.Price{Input: 15_000, CachedInput: 7_500, Output: 60_000, MaxOutput: 16384}, true},
		{"gpt-4o-mini-2024-07-18", "USD", pricing.Price{Input: 15_000, CachedInput: 7_500, Output: 60_000, MaxOutput: 16384}, true},
		{"gpt-4o", "USD", pricing.Price{Input: 250_000, CachedInput: 125_000, Output: 1_000_000, MaxOutput: 16384}, true},
		{"gpt-4o-mini", "MXN", pricing.Price{Input: 300_000, CachedInput: 150_000, Output: 1_200_000, MaxOutput: 16384}, true},
		{"text-embedding-3-small", "USD", pricing.Price{Input: 2_000, CachedInput: 2_000, MaxOutput: 1}, true}, // cached_input left out: input
		{"gpt-4o", "MXN", pricing.Price{}, false},
	} {
		got, ok := tb.Lookup(tc.model, tc.currency)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Lookup(%s, %s) = %+v, %v; want %+v, %v", tc.model, tc.currency, got, ok, tc.want, tc.ok)
		}
	}
	images := len(c.Routes) - 1
	for _, tc := range []struct {
		call pricing.Call
		want pricing.Charge
	}{
		{pricing.Call{Method: "POST", Route: images, Currency: "USD"}, pricing.Charge{Outcome: pricing.Metered, Flat: 4e9}},
		{pricing.Call{Method: "POST", Route: images, Currency: "MXN"}, pricing.Charge{Outcome: pricing.Metered, Flat: 80e9}},
		{pricing.Call{Method: "POST", Route: images, Currency: "EUR"}, pricing.Charge{Outcome: pricing.RefuseEndpoint}},
		{pricing.Call{Method: "POST", Route: 4, Currency: "USD"}, pricing.Charge{Outcome: pricing.RefuseEndpoint}}, // /v1/files
		{pricing.Call{Method: "POST", Route: 0, Parsed: true, Model: "o3", Currency: "USD"}, // the default price
			pricing.Charge{Outcome: pricing.Metered, Tokens: true, Price: pricing.Price{Input: 500_000, CachedInput: 250_000, Output: 2_000_000, MaxOutput: 4096}}},
		{pricing.Call{Method: "POST", Route: 0, Parsed: true, Model: "o3", Currency: "MXN"}, pricing.Charge{Outcome: pricing.RefuseModel}},
	} {
		if got := tb.Rule(tc.call); got != tc.want {
			t.Errorf("Rule(%+v) = %+v, want %+v", tc.call, got, tc.want)
		}
	}
	if tb.HoldTTL() != time.Hour || tb.InputTokens(10) != 10 {
		t.Errorf("HoldTTL() = %s, InputTokens(10) = %d; want 1h, 10", tb.HoldTTL(), tb.InputTokens(10))
	}
}

// TestNotMetered: without a price nothing is metered, whatever else the
// pricing section says.
func TestNotMetered(t *testing.T) {
	c := config.Default()
	c.Pricing.UnpricedEndpoints = "free"
	c.Routes, c.DefaultScope = []config.Route{{Method: "POST", PathPrefix: "/v1", Scope: "a", Price: map[string]string{}}}, "none"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if tb, err := c.PriceTable(); tb != nil || err != nil || c.Metered() {
		t.Errorf("PriceTable() = %v, %v; want nil", tb, err)
	}
	c.Routes[0].Price["JPY"] = "5"
	if tb, err := c.PriceTable(); tb == nil || err != nil {
		t.Fatalf("with a route price: PriceTable() = %v, %v", tb, err)
	} else if got := tb.Rule(pricing.Call{Method: "POST", Route: 0, Currency: "JPY"}); got.Flat != 5e9 {
		t.Errorf("Rule = %+v, want a flat 5 yen", got)
	}
}

func TestValidateNamesPricingFields(t *testing.T) {
	model := func(f func(*config.ModelPrice)) func(*config.Config) {
		return func(c *config.Config) {
			m := config.ModelPrice{Match: "gpt-4o", TokenPrice: config.TokenPrice{Currency: "USD", Input: "2.50", Output: "10", MaxOutput: 100}}
			f(&m)
			c.Pricing.Models = []config.ModelPrice{{Match: "o1", TokenPrice: m.TokenPrice}, m}
		}
	}
	tests := []struct {
		field  string
		modify func(*config.Config)
	}{
		{"pricing.models[1].input", model(func(m *config.ModelPrice) { m.Input = "2.505005" })},
		{"pricing.models[1].input", model(func(m *config.ModelPrice) { m.Input = "-1" })},
		{"pricing.models[1].output", model(func(m *config.ModelPrice) { m.Output = "ten" })},
		{"pricing.models[1].cached_input", model(func(m *config.ModelPrice) { m.CachedInput = "3" })},
		{"pricing.models[1].currency", model(func(m *config.ModelPrice) { m.Currency = "Usd" })},
		{"pricing.models[1].match", model(func(m *config.ModelPrice) { m.Match = "" })},
		{"pricing.models[1].match", model(func(m *config.ModelPrice) { m.Match = "o1" })},
		{"pricing.models[1].max_output", model(func(m *config.ModelPrice) { m.MaxOutput = -1 })},
		{"pricing.unpriced_models", func(c *config.Config) { c.Pricing.UnpricedModels = "" }},
		{"pricing.unpriced_endpoints", func(c *config.Config) { c.Pricing.UnpricedEndpoints = "Free" }},
		{"pricing.input_bytes_per_token", func(c *config.Config) { c.Pricing.InputBytesPerToken = -4 }},
		{"pricing.hold_ttl", func(c *config.Config) { c.Pricing.HoldTTL = config.Duration(59 * time.Second) }},
		{"pricing.hold_ttl", func(c *config.Config) { c.Pricing.HoldTTL = config.Duration(24*time.Hour + 1) }},
		{"pricing.default", func(c *config.Config) {
			c.Pricing.Default = []config.TokenPrice{{Currency: "USD", Input: "1", Output: "1", MaxOutput: 1}}
		}},
		{"pricing.default[0].input", func(c *config.Config) {
			c.Pricing.UnpricedModels = "default"
			c.Pricing.Default = []config.TokenPrice{{Currency: "USD", Input: "1.1234567", Output: "1", MaxOutput: 1}}
		}},
		{"routes[0].price.MXN", func(c *config.Config) {
			c.Routes, c.DefaultScope = []config.Route{{PathPrefix: "/", Scope: "a", Price: map[string]string{"MXN": "0.8.0"}}}, "none"
		}},
		{"routes[0].price.mxn", func(c *config.Config) {
			c.Routes, c.DefaultScope = []config.Route{{PathPrefix: "/", Scope: "a", Price: map[string]string{"mxn": "0.80"}}}, "none"
		}},
	}
	for _, tc := range tests {
		c := config.Default()
		tc.modify(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: Validate() = nil, want an error", tc.field)
			continue
		}
		named := false
		for _, line := range strings.Split(err.Error(), "\n") {
			named = named || strings.HasPrefix(line, tc.field+": ")
		}
		if !named {
			t.Errorf("%s: error %q does not name the field", tc.field, err)
		}
	}
}
