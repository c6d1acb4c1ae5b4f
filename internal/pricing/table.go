package pricing

import (
	"github.com/keygate/keygate/internal/glob"

	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/money"
)

// Entry prices the models matching Match in Currency. Match is a model
// name with * standing for any run of characters, none included, matched
// case-sensitively; "*" alone matches every model.
type Entry struct {
	Match    string
	Currency string
	Price
}

// Options build a Table. The zero values of the policies fail closed.
type Options struct {
	// Models in order: for a model and a currency, the first entry of
	// that currency whose Match matches wins, whatever entries of other
	// currencies come between.
	Models []Entry
	// UseDefault prices models no entry matches at Default's price for
	// the currency (unpriced_models: default); false refuses them
	// (deny).
	UseDefault bool
	Default    map[string]Price
	// FreeEndpoints lets requests with a body on routes keygate does not
	// read, and without a flat price, through free (unpriced_endpoints:
	// free); false refuses them (refuse).
	FreeEndpoints bool
	// Routes holds the flat price per request of route i (in the
	// configuration's order), in nanos by currency; nil for a route
	// without one.
	Routes []map[string]int64
	// InputBytesPerToken: a prompt of n bytes is held as n divided by
	// this many tokens, rounded up; at least 1.
	InputBytesPerToken int64
	// HoldTTL is how long a hold lives unsettled before it settles at
	// its estimate.
	HoldTTL time.Duration
}

// Table is what calls cost. A nil *Table meters nothing: Lookup finds no
// price and Rule lets every call through free.
type Table struct {
	currencies    []currency // in order of first appearance
	useDefault    bool
	defaults      map[string]Price
	freeEndpoints bool
	routes        []map[string]int64
	bytesPerToken int64
	holdTTL       time.Duration
}

// currency holds one currency's entries in their order.
type currency struct {
	code    string
	entries []entry
}

type entry struct {
	match glob.Pattern
	price Price
}

// New builds the table o describes, or says what is wrong with it.
func New(o Options) (*Table, error) {
	t := &Table{useDefault: o.UseDefault, defaults: o.Default, freeEndpoints: o.FreeEndpoints,
		routes: o.Routes, bytesPerToken: o.InputBytesPerToken, holdTTL: o.HoldTTL}
	var errs []error
	for i, e := range o.Models {
		if err := CheckPattern(e.Match); err != nil {
			errs = append(errs, fmt.Errorf("models[%d]: %w", i, err))
		}
		if err := checkPrice(e.Currency, e.Price); err != nil {
			errs = append(errs, fmt.Errorf("models[%d]: %w", i, err))
		}
		t.add(e)
	}
	for c, p := range o.Default {
		if err := checkPrice(c, p); err != nil {
			errs = append(errs, fmt.Errorf("default %s: %w", c, err))
		}
	}
	for i, r := range o.Routes {
		for c, n := range r {
			if !money.ValidCurrency(c) || n < 0 {
				errs = append(errs, fmt.Errorf("routes[%d]: %s %d is not a price", i, c, n))
			}
		}
	}
	if o.InputBytesPerToken < 1 {
		errs = append(errs, errors.New("input bytes per token must be at least 1"))
	}
	if o.HoldTTL <= 0 {
		errs = append(errs, errors.New("hold TTL must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pricing: %w", err)
	}
	return t, nil
}

func (t *Table) add(e Entry) {
	for i := range t.currencies {
		if c := &t.currencies[i]; c.code == e.Currency {
			c.entries = append(c.entries, entry{glob.Compile(e.Match), e.Price})
			return
		}
	}
	t.currencies = append(t.currencies, currency{code: e.Currency, entries: []entry{{glob.Compile(e.Match), e.Price}}})
}

func checkPrice(c string, p Price) error {
	switch {
	case !money.ValidCurrency(c):
		return fmt.Errorf("%q is not a currency code like USD", c)
	case p.Input < 0 || p.CachedInput < 0 || p.Output < 0:
		return errors.New("a price is negative")
	case p.CachedInput > p.Input:
		return errors.New("the cached input price is more than the input price")
	case p.MaxOutput < 1:
		return errors.New("max output must be at least 1")
	}
	return nil
}

// Lookup returns the price of model in currency: the first entry of that
// currency whose pattern matches. It does not allocate.
func (t *Table) Lookup(model, currency string) (Price, bool) {
	if t == nil {
		return Price{}, false
	}
	for i := range t.currencies {
		c := &t.currencies[i]
		if c.code != currency {
			continue
		}
		for j := range c.entries {
			if c.entries[j].match.Match(model) {
				return c.entries[j].price, true
			}
		}
		break
	}
	return Price{}, false
}

// InputTokens is the input tokens held for a prompt of n bytes: n
// divided by the configured bytes per token, rounded up.
func (t *Table) InputTokens(n int64) int64 {
	if t == nil || n <= 0 {
		return 0
	}
	return n/t.bytesPerToken + min(n%t.bytesPerToken, 1)
}

// HoldTTL is how long a hold lives unsettled before it settles at its
// estimate.
func (t *Table) HoldTTL() time.Duration {
	if t == nil {
		return 0
	}
	return t.holdTTL
}
