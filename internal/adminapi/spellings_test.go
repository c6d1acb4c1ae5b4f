package adminapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/adminapi"
)

// TestBodySpellings: a body that a reader could take two ways is refused
// at any depth: a member given twice (encoding/json keeps the last, other
// readers the first) or named in another case (encoding/json matches it
// to the member in any case). Nothing is changed.
func TestBodySpellings(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	f.ok(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":1000}`}, http.StatusOK, nil)
	for _, r := range []req{
		{method: "POST", path: "/v1/accounts/acme/balance/credits", token: "balances", body: `{"amount":100,"amount":-100}`},
		{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":0,"balance":100000000}`},
		{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","Budget":{"amount":100,"period":"1d"}}`},
		{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","budget":{"amount":100,"period":"1d","AMOUNT":1000000000}}`},
		{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","rate_limit":{"requests":10,"window":"1m","Requests":1000000}}`},
		{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","token_limit":{"tokens":1000,"window":"1h","TOKENS":1000000000}}`},
		{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","budget":{"Amount":1000000000,"Period":"1d"}}`},
		{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","budget":{"amount":100,"period":"1d","amount":1000000000}}`},
	} {
		if res := f.do(r); res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s %s: %d %s; want 400", r.method, r.path, r.body, res.StatusCode, res.body)
		}
	}
	var a accountOut
	f.ok(req{method: "GET", path: "/v1/accounts/acme/balance", token: "read"}, http.StatusOK, &a)
	if a.Balance != 1000 {
		t.Errorf("balance %d after the refused changes, want 1000", a.Balance)
	}
}

// TestKeyInAccountPath: a key pasted where an account id goes is refused
// and never shown back, as in /v1/keys/{id} (TestPathsAndMethods).
func TestKeyInAccountPath(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	secret := *f.createKey("acme").Key
	for _, r := range []req{
		{method: "GET", path: "/v1/accounts/" + secret + "/balance", token: "read"},
		{method: "GET", path: "/v1/accounts/" + secret + "/usage", token: "read"},
		{method: "POST", path: "/v1/accounts/" + secret + "/balance/credits", token: "balances", body: `{"amount":1}`},
		{method: "PUT", path: "/v1/accounts/" + secret + "/balance", token: "balances", body: `{"balance":1}`},
		{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"` + secret + `"}`},
	} {
		res := f.do(r)
		if res.StatusCode != http.StatusBadRequest || strings.Contains(string(res.body), secret) {
			t.Errorf("%s with the key as account id: %d %s; want a 400 that does not show the key", r.method, res.StatusCode, res.body)
		}
	}
}

// TestCurrencyChangeWithBudgets: a key's budget is an amount in its
// account's currency, so the currency does not change while an active key
// has one (50.00 MXN a day would become 5,000 JPY a day, about twelve
// times the money); without the budget it does.
func TestCurrencyChangeWithBudgets(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	f.ok(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":0}`}, http.StatusOK, nil)
	var k keyOut
	f.ok(req{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","budget":{"amount":5000,"period":"1d"}}`}, http.StatusCreated, &k)
	change := req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":100000,"currency":"JPY"}`}
	if res := f.do(change); res.StatusCode != http.StatusConflict || !strings.Contains(string(res.body), "currency_change_refused") {
		t.Fatalf("currency change with a budgeted key: %d %s; want 409 currency_change_refused", res.StatusCode, res.body)
	}
	f.ok(req{method: "PATCH", path: "/v1/keys/" + k.ID, token: "keys", body: `{"budget":null}`}, http.StatusOK, nil)
	f.ok(change, http.StatusOK, nil)
}
