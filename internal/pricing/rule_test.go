package pricing

import (
	"errors"
	"math"
	"testing"
)

func TestRule(t *testing.T) {
	const (
		chat   = 0 // a route keygate reads, with no flat price
		images = 1 // a route keygate does not read, priced in USD and MXN
		files  = 2 // a route without a price
		fee    = 3 // a route keygate reads, with a flat fee in USD only
	)
	o := Options{
		Models:  []Entry{{Match: "gpt-4o-mini*", Currency: "USD", Price: mini}},
		Default: map[string]Price{"MXN": price(9)},
		Routes:  []map[string]int64{nil, {"USD": 4e9, "MXN": 80e9}, nil, {"USD": 7}},
	}
	deny := newTable(t, o)
	o.UseDefault, o.FreeEndpoints = true, true
	lenient := newTable(t, o)

	post := func(route int) Call { return Call{Method: "POST", Route: route, Currency: "USD"} }
	with := func(c Call, f func(*Call)) Call { f(&c); return c }
	read := func(c *Call) { c.Parsed, c.Model = true, "gpt-4o-mini" }
	tests := []struct {
		name          string
		call          Call
		deny, lenient Charge
	}{
		{"a priced model", with(post(chat), read),
			Charge{Outcome: Metered, Tokens: true, Price: mini}, Charge{Outcome: Metered, Tokens: true, Price: mini}},
		{"an unpriced model", with(post(chat), func(c *Call) { read(c); c.Model = "o1" }),
			Charge{Outcome: RefuseModel}, Charge{Outcome: RefuseModel}}, // no USD default
		{"an unpriced model, MXN", with(post(chat), func(c *Call) { read(c); c.Currency = "MXN" }),
			Charge{Outcome: RefuseModel}, Charge{Outcome: Metered, Tokens: true, Price: price(9)}},
		{"no model in the body", with(post(chat), func(c *Call) { read(c); c.Model = "" }),
			Charge{Outcome: RefuseModel}, Charge{Outcome: RefuseModel}},
		{"a flat fee and tokens", with(post(fee), read),
			Charge{Outcome: Metered, Flat: 7, Tokens: true, Price: mini}, Charge{Outcome: Metered, Flat: 7, Tokens: true, Price: mini}},
		{"a flat fee not in the currency", with(post(fee), func(c *Call) { read(c); c.Currency = "MXN" }),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: RefuseEndpoint}},
		{"an unread route with a price", post(images),
			Charge{Outcome: Metered, Flat: 4e9}, Charge{Outcome: Metered, Flat: 4e9}},
		{"an unread route with a price, MXN", with(post(images), func(c *Call) { c.Currency = "MXN" }),
			Charge{Outcome: Metered, Flat: 80e9}, Charge{Outcome: Metered, Flat: 80e9}},
		{"an unread route priced in other currencies", with(post(images), func(c *Call) { c.Currency = "JPY" }),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: RefuseEndpoint}},
		{"an unread route without a price", post(files),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: Free}},
		{"no route", post(-1),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: Free}},
		{"a route index out of range", post(99),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: Free}},
		{"PUT", with(post(files), func(c *Call) { c.Method = "PUT" }),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: Free}},
		{"POST without a body", with(post(files), func(c *Call) { c.NoBody = true }),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: Free}},
		{"GET", with(post(files), func(c *Call) { c.Method, c.NoBody = "GET", true }),
			Charge{Outcome: Free}, Charge{Outcome: Free}},
		{"get, in any case", with(post(files), func(c *Call) { c.Method, c.NoBody = "gEt", true }),
			Charge{Outcome: Free}, Charge{Outcome: Free}},
		{"HEAD", with(post(-1), func(c *Call) { c.Method, c.NoBody = "HEAD", true }),
			Charge{Outcome: Free}, Charge{Outcome: Free}},
		{"DELETE", with(post(files), func(c *Call) { c.Method, c.NoBody = "DELETE", true }),
			Charge{Outcome: Free}, Charge{Outcome: Free}},
		{"OPTIONS", with(post(files), func(c *Call) { c.Method, c.NoBody = "OPTIONS", true }),
			Charge{Outcome: Free}, Charge{Outcome: Free}},
		{"GET on a parsed route", with(post(chat), func(c *Call) { read(c); c.Method, c.NoBody, c.Model = "GET", true, "o1" }),
			Charge{Outcome: Free}, Charge{Outcome: Free}},
		{"GET with a body", with(post(files), func(c *Call) { c.Method = "GET" }),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: Free}},
		{"GET with a body on a parsed route", with(post(chat), func(c *Call) { read(c); c.Method = "GET" }),
			Charge{Outcome: Metered, Tokens: true, Price: mini}, Charge{Outcome: Metered, Tokens: true, Price: mini}},
		{"GET on a priced route", with(post(images), func(c *Call) { c.Method, c.NoBody = "GET", true }),
			Charge{Outcome: Metered, Flat: 4e9}, Charge{Outcome: Metered, Flat: 4e9}},
		{"GET on a route priced in other currencies", with(post(images), func(c *Call) { c.Method, c.NoBody, c.Currency = "GET", true, "JPY" }),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: RefuseEndpoint}},
		{"a method of another spelling", with(post(files), func(c *Call) { c.Method, c.NoBody = "GETS", true }),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: Free}},
		{"no method", with(post(files), func(c *Call) { c.Method, c.NoBody = "", true }),
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: Free}},
		{"the zero Call", Call{},
			Charge{Outcome: RefuseEndpoint}, Charge{Outcome: Free}}, // route 0: chat, not parsed
	}
	for _, tc := range tests {
		if got := deny.Rule(tc.call); got != tc.deny {
			t.Errorf("%s, deny and refuse: Rule(%+v) = %+v, want %+v", tc.name, tc.call, got, tc.deny)
		}
		if got := lenient.Rule(tc.call); got != tc.lenient {
			t.Errorf("%s, default and free: Rule(%+v) = %+v, want %+v", tc.name, tc.call, got, tc.lenient)
		}
	}
	var none *Table
	if got := none.Rule(post(chat)); got != (Charge{Outcome: Free}) {
		t.Errorf("nil table: Rule = %+v, want Free", got)
	}
}

func TestChargeTotals(t *testing.T) {
	u := Usage{Input: 1000, CachedInput: 200, Output: 500}
	tests := []struct {
		name      string
		c         Charge
		est, cost int64
		err       error
	}{
		{"free", Charge{Outcome: Free}, 0, 0, nil},
		{"refused endpoint", Charge{Outcome: RefuseEndpoint}, 0, 0, ErrRefused},
		{"refused model", Charge{Outcome: RefuseModel, Tokens: true, Price: mini}, 0, 0, ErrRefused},
		{"flat", Charge{Outcome: Metered, Flat: 4e9}, 4e9, 4e9, nil},
		{"tokens", Charge{Outcome: Metered, Tokens: true, Price: mini}, 1000*15_000 + 100*60_000, 43_500_000, nil},
		{"flat and tokens", Charge{Outcome: Metered, Flat: 7, Tokens: true, Price: mini}, 7 + 1000*15_000 + 100*60_000, 7 + 43_500_000, nil},
		{"flat overflows with tokens", Charge{Outcome: Metered, Flat: math.MaxInt64, Tokens: true, Price: mini}, 0, 0, ErrOverflow},
		{"negative flat", Charge{Outcome: Metered, Flat: -1}, 0, 0, ErrOverflow},
	}
	for _, tc := range tests {
		est, err := tc.c.Estimate(1000, 100)
		if est != tc.est || !errors.Is(err, tc.err) {
			t.Errorf("%s: Estimate = %d, %v; want %d, %v", tc.name, est, err, tc.est, tc.err)
		}
		cost, err := tc.c.Cost(u)
		if tc.name == "tokens" || tc.name == "flat and tokens" {
			est, _ = tc.c.Estimate(1000, 500) // the usage's own output
		}
		if cost != tc.cost || !errors.Is(err, tc.err) {
			t.Errorf("%s: Cost = %d, %v; want %d, %v", tc.name, cost, err, tc.cost, tc.err)
		}
		if cost > est {
			t.Errorf("%s: Cost %d over Estimate %d", tc.name, cost, est)
		}
	}
	// A token error reaches the caller.
	if _, err := (Charge{Outcome: Metered, Tokens: true, Price: mini}).Cost(Usage{Input: -1}); !errors.Is(err, ErrNegative) {
		t.Errorf("Cost of negative usage = %v, want ErrNegative", err)
	}
}
