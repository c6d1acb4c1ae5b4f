package config

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/pricing"
)

// Pricing says what calls cost (docs/pricing.md). Without any price (in
// models, in default, or on a route) nothing is metered.
type Pricing struct {
	// Models are prices per 1M tokens, in order: for a model and an
	// account's currency, the first entry of that currency whose match
	// matches wins.
	Models []ModelPrice `yaml:"models"`
	// UnpricedModels: deny refuses a model no entry prices in the
	// account's currency; default prices it at Default.
	UnpricedModels string `yaml:"unpriced_models"`
	// Default prices models no entry prices, one entry per currency;
	// only with unpriced_models: default.
	Default []TokenPrice `yaml:"default"`
	// UnpricedEndpoints: refuse or free, for requests with a body on
	// routes whose body keygate does not read and that have no price.
	UnpricedEndpoints string `yaml:"unpriced_endpoints"`
	// InputBytesPerToken: a prompt of n bytes is held as n divided by
	// this many input tokens. 1 is an upper bound for OpenAI's
	// tokenizers; more holds less, and only settlement corrects it.
	InputBytesPerToken int64 `yaml:"input_bytes_per_token"`
	// HoldTTL is how long a hold lives unsettled before it settles at
	// its estimate.
	HoldTTL Duration `yaml:"hold_ttl"`
}

// ModelPrice is a price for the models matching Match (* for any run of
// characters).
type ModelPrice struct {
	Match      string `yaml:"match"`
	TokenPrice `yaml:",inline"`
}

// TokenPrice is a price per 1M tokens, in major units of Currency.
type TokenPrice struct {
	Currency string `yaml:"currency"`
	Input    string `yaml:"input"`
	// CachedInput is the price of cached input tokens; "" is Input.
	CachedInput string `yaml:"cached_input"`
	Output      string `yaml:"output"`
	// MaxOutput is the output tokens held for a request that names no
	// cap: the model's largest output.
	MaxOutput int64 `yaml:"max_output"`
}

// maxOutputTokens bounds max_output.
const maxOutputTokens = 10_000_000

func defaultPricing() Pricing {
	return Pricing{UnpricedModels: "deny", UnpricedEndpoints: "refuse", InputBytesPerToken: 1, HoldTTL: Duration(time.Hour)}
}

// validatePricing checks the pricing section and the routes' prices.
func (c *Config) validatePricing(add adder) {
	p := c.Pricing
	switch p.UnpricedModels {
	case "deny":
		if len(p.Default) > 0 {
			add("pricing.default", "is used only with pricing.unpriced_models: default (it is deny)")
		}
	case "default":
		if len(p.Default) == 0 {
			add("pricing.unpriced_models", "default needs prices in pricing.default")
		}
	default:
		add("pricing.unpriced_models", "%q is not deny or default", p.UnpricedModels)
	}
	if p.UnpricedEndpoints != "refuse" && p.UnpricedEndpoints != "free" {
		add("pricing.unpriced_endpoints", "%q is not refuse or free", p.UnpricedEndpoints)
	}
	if p.InputBytesPerToken < 1 || p.InputBytesPerToken > 16 {
		add("pricing.input_bytes_per_token", "%d is not from 1 to 16", p.InputBytesPerToken)
	}
	if d := p.HoldTTL.D(); d < time.Minute || d > 24*time.Hour {
		add("pricing.hold_ttl", "%s is not from 1m to 24h", d)
	}
	checkModels(add, p.Models)
	seen := map[string]int{}
	for i, m := range p.Default {
		field := fmt.Sprintf("pricing.default[%d]", i)
		if j, dup := seen[m.Currency]; dup && money.ValidCurrency(m.Currency) {
			add(field+".currency", "%s has a default price already, in pricing.default[%d]", m.Currency, j)
		}
		seen[m.Currency] = i
		m.parse(add, field)
	}
	for i, r := range c.Routes {
		for _, cur := range slices.Sorted(maps.Keys(r.Price)) {
			field := fmt.Sprintf("routes[%d].price.%s", i, cur)
			if !money.ValidCurrency(cur) {
				checkCurrency(add, field, cur)
			} else if _, err := pricing.ParseFlat(r.Price[cur], cur); err != nil {
				add(field, "%v", err)
			}
		}
	}
}

// checkModels checks each entry, and that each can be the first to match
// some model in its currency.
func checkModels(add adder, models []ModelPrice) {
	type key struct{ match, currency string }
	seen := map[key]int{}
	all := map[string]int{} // currency: the entry matching every model
	for i, m := range models {
		field := fmt.Sprintf("pricing.models[%d]", i)
		if err := pricing.CheckPattern(m.Match); err != nil {
			add(field+".match", "%v", err)
		} else if j, ok := all[m.Currency]; ok {
			add(field+".match", "never used: pricing.models[%d] (*) prices every %s model first", j, m.Currency)
		} else if j, dup := seen[key{m.Match, m.Currency}]; dup {
			add(field+".match", "%q in %s is pricing.models[%d] already", m.Match, m.Currency, j)
		}
		seen[key{m.Match, m.Currency}] = i
		if _, ok := all[m.Currency]; !ok && m.Match == "*" {
			all[m.Currency] = i
		}
		m.parse(add, field)
	}
}

// parse checks m and returns its price in nanos per token.
func (m TokenPrice) parse(add adder, field string) pricing.Price {
	checkCurrency(add, field+".currency", m.Currency)
	var p pricing.Price
	bad := false
	for _, f := range []struct {
		name, value string
		into        *int64
	}{{"input", m.Input, &p.Input}, {"cached_input", m.CachedInput, &p.CachedInput}, {"output", m.Output, &p.Output}} {
		if f.value == "" && f.name == "cached_input" {
			p.CachedInput = p.Input
			continue
		}
		if f.value == "" {
			add(field+"."+f.name, "must be set: a price per 1M tokens like 2.50")
			bad = true
			continue
		}
		n, err := pricing.ParsePerToken(f.value, m.Currency)
		if err != nil {
			add(field+"."+f.name, "%v", err)
			bad = true
		}
		*f.into = n
	}
	if p.CachedInput > p.Input && !bad {
		add(field+".cached_input", "%q is more than input %q", m.CachedInput, m.Input)
	}
	if m.MaxOutput < 1 || m.MaxOutput > maxOutputTokens {
		add(field+".max_output", "%d is not from 1 to %d: the output tokens held for a request that names no cap", m.MaxOutput, maxOutputTokens)
	}
	p.MaxOutput = m.MaxOutput
	return p
}

func checkCurrency(add adder, field, c string) {
	switch {
	case c == "":
		add(field, "must be set, like USD")
	case !money.ValidCurrency(c):
		add(field, "%q is not a currency code like USD", c)
	}
}

// Metered reports whether any price is configured, so calls are charged.
func (c *Config) Metered() bool {
	if len(c.Pricing.Models) > 0 || len(c.Pricing.Default) > 0 {
		return true
	}
	for _, r := range c.Routes {
		if len(r.Price) > 0 {
			return true
		}
	}
	return false
}

// PriceTable builds the price table of a validated configuration; nil when
// nothing is Metered.
func (c *Config) PriceTable() (*pricing.Table, error) {
	if !c.Metered() {
		return nil, nil
	}
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	p := c.Pricing
	o := pricing.Options{UseDefault: p.UnpricedModels == "default", FreeEndpoints: p.UnpricedEndpoints == "free",
		InputBytesPerToken: p.InputBytesPerToken, HoldTTL: p.HoldTTL.D()}
	for i, m := range p.Models {
		o.Models = append(o.Models, pricing.Entry{Match: m.Match, Currency: m.Currency,
			Price: m.parse(add, fmt.Sprintf("pricing.models[%d]", i))})
	}
	if o.UseDefault {
		o.Default = map[string]pricing.Price{}
		for i, m := range p.Default {
			o.Default[m.Currency] = m.parse(add, fmt.Sprintf("pricing.default[%d]", i))
		}
	}
	for i, r := range c.Routes {
		var flat map[string]int64
		for cur, s := range r.Price {
			n, err := pricing.ParseFlat(s, cur)
			if err != nil {
				add(fmt.Sprintf("routes[%d].price.%s", i, cur), "%v", err)
			}
			if flat == nil {
				flat = map[string]int64{}
			}
			flat[cur] = n
		}
		o.Routes = append(o.Routes, flat)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("config: %w", errs[0])
	}
	return pricing.New(o)
}
