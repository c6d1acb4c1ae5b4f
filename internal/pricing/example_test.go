package pricing_test

import (
	"fmt"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/pricing"
)

// The examples of docs/pricing.md: gpt-4o-mini in USD and MXN.
func Example() {
	for _, m := range []struct{ currency, input, cached, output, balance string }{
		{"USD", "0.15", "0.075", "0.60", "10.00"},
		{"MXN", "3.00", "1.50", "12.00", "100.00"},
	} {
		var p pricing.Price
		p.Input, _ = pricing.ParsePerToken(m.input, m.currency)
		p.CachedInput, _ = pricing.ParsePerToken(m.cached, m.currency)
		p.Output, _ = pricing.ParsePerToken(m.output, m.currency)
		hold, _ := p.Estimate(4800, 500) // a 4,800-byte prompt at 1 byte per token, max_tokens 500
		cost, _ := p.Cost(pricing.Usage{Input: 1200, CachedInput: 1000, Output: 350})
		minor, _ := money.Parse(m.balance, m.currency)
		balance, _ := money.Exact{Minor: minor}.AddNanos(-cost)
		fmt.Printf("%s: %d/%d/%d nanos per token, hold %d, cost %d, %s %s left\n", m.currency,
			p.Input, p.CachedInput, p.Output, hold, cost, money.FormatExact(balance, m.currency), m.currency)
	}
	// Output:
	// USD: 15000/7500/60000 nanos per token, hold 102000000, cost 31500000, 9.999685 USD left
	// MXN: 300000/150000/1200000 nanos per token, hold 2040000000, cost 630000000, 99.9937 MXN left
}
