package pricing

// Call is what Rule needs to know of a request.
type Call struct {
	// Method is the request's method, in any case.
	Method string
	// NoBody: the request carries no body (no Content-Length above 0 and
	// no Transfer-Encoding). The zero value, a body, fails closed: a GET
	// with a body is charged like a POST.
	NoBody bool
	// Route is the index, in the configuration's routes, of the route the
	// path reaches; -1 for none.
	Route int
	// Parsed: the route is one whose body keygate reads, so Model and
	// the token counts are known (chat completions, completions,
	// embeddings, responses). A body keygate cannot read on such a route
	// is refused before Rule, never passed as not Parsed: under
	// unpriced_endpoints: free that would make it free.
	Parsed bool
	// Model is the model the body names, when Parsed.
	Model string
	// Currency is the account's currency.
	Currency string
}

// Outcome is what Rule decides. The zero value refuses.
type Outcome uint8

const (
	// RefuseEndpoint: nothing prices the request (unpriced_endpoints:
	// refuse, or a route priced in other currencies only).
	RefuseEndpoint Outcome = iota
	// RefuseModel: the model has no price in the account's currency.
	RefuseModel
	// Free: the request costs nothing.
	Free
	// Metered: the request costs Charge.Flat, plus its tokens at
	// Charge.Price if Charge.Tokens.
	Metered
)

// Charge is how a request is charged.
type Charge struct {
	Outcome Outcome
	Flat    int64 // nanos per request
	Tokens  bool  // the tokens cost Price
	Price   Price
}

// Rule decides how a request is charged, in this order:
//
//  1. A route with a flat price but none in the account's currency
//     refuses (RefuseEndpoint).
//  2. GET, HEAD, DELETE and OPTIONS without a body cost the route's flat
//     price, or nothing.
//  3. Other requests keygate does not read cost the route's flat price;
//     without one they are free under unpriced_endpoints: free and
//     refused under refuse (RefuseEndpoint).
//  4. Requests keygate reads cost the route's flat price (if any) plus
//     their tokens at the model's price: the first matching entry for the
//     currency, else under unpriced_models: default the default price for
//     the currency; else they are refused (RefuseModel).
//
// A nil Table meters nothing: every request is Free. Rule does not
// allocate.
func (t *Table) Rule(c Call) Charge {
	if t == nil {
		return Charge{Outcome: Free}
	}
	flat, priced, ok := t.flat(c.Route, c.Currency)
	if priced && !ok {
		return Charge{Outcome: RefuseEndpoint}
	}
	if noBody := c.NoBody && bodiless(c.Method); noBody || !c.Parsed {
		switch {
		case priced:
			return Charge{Outcome: Metered, Flat: flat}
		case noBody || t.freeEndpoints:
			return Charge{Outcome: Free}
		}
		return Charge{Outcome: RefuseEndpoint}
	}
	p, ok := t.Lookup(c.Model, c.Currency)
	if !ok && t.useDefault {
		p, ok = t.defaults[c.Currency]
	}
	if !ok {
		return Charge{Outcome: RefuseModel}
	}
	return Charge{Outcome: Metered, Flat: flat, Tokens: true, Price: p}
}

// flat returns route's flat price in currency, whether the route has a
// flat price at all, and whether it has one in currency.
func (t *Table) flat(route int, currency string) (nanos int64, priced, ok bool) {
	if route < 0 || route >= len(t.routes) || t.routes[route] == nil {
		return 0, false, false
	}
	nanos, ok = t.routes[route][currency]
	return nanos, true, ok
}

// bodiless reports whether method is GET, HEAD, DELETE or OPTIONS, in
// any case.
func bodiless(method string) bool {
	for _, m := range [...]string{"GET", "HEAD", "DELETE", "OPTIONS"} {
		if equalFold(method, m) {
			return true
		}
	}
	return false
}

// equalFold compares a with the upper-case ASCII word upper, ignoring
// ASCII case only.
func equalFold(a, upper string) bool {
	if len(a) != len(upper) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c != upper[i] && c != upper[i]+'a'-'A' {
			return false
		}
	}
	return true
}

// Estimate is the most the request can cost with inputTokens and
// outputTokens (the request's cap, or Price.MaxOutput when it names
// none): what is held. A refused charge is an error.
func (c Charge) Estimate(inputTokens, outputTokens int64) (int64, error) {
	var tokens int64
	var err error
	if c.Tokens {
		tokens, err = c.Price.Estimate(inputTokens, outputTokens)
	}
	return c.plus(tokens, err)
}

// Cost is what the request cost with usage u. A refused charge is an
// error.
func (c Charge) Cost(u Usage) (int64, error) {
	var tokens int64
	var err error
	if c.Tokens {
		tokens, err = c.Price.Cost(u)
	}
	return c.plus(tokens, err)
}

// plus adds the flat price to what the tokens cost.
func (c Charge) plus(tokens int64, err error) (int64, error) {
	switch {
	case c.Outcome == Free:
		return 0, nil
	case c.Outcome != Metered:
		return 0, ErrRefused
	case err != nil:
		return 0, err
	}
	var s sum
	s.addNanos(c.Flat) // a negative Flat overflows: refused
	s.addNanos(tokens)
	return s.result()
}
