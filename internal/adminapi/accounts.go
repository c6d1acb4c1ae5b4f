package adminapi

import (
	"encoding/json"
	"net/http"

	"github.com/keygate/keygate/internal/admin"
)

// GET /v1/accounts/{id}/balance
func (a *api) getBalance(w http.ResponseWriter, r *http.Request, c *call) {
	if e := noQuery(r); e != nil {
		writeError(w, e)
		return
	}
	v, err := a.admin.GetBalance(r.Context(), c.id)
	a.writeView(w, v, err)
}

// PUT /v1/accounts/{id}/balance
func (a *api) setBalance(w http.ResponseWriter, r *http.Request, c *call) {
	body, e := readBody(w, r)
	if e == nil {
		var in admin.SetBalanceInput
		if in, e = parseSetBalance(body); e == nil {
			a.once(w, r, c.tok.ID, body, func() (*result, error) {
				v, err := a.admin.SetBalance(r.Context(), c.by, c.id, in)
				return accountResult(v, a.changed(err))
			})
			return
		}
	}
	writeError(w, e)
}

// parseSetBalance reads {"balance":10000,"currency":"MXN","low_balance_threshold":2000}:
// amounts in minor units; balance required; a threshold of null clears it.
func parseSetBalance(body []byte) (admin.SetBalanceInput, *apiError) {
	var in admin.SetBalanceInput
	o, e := parseObject(body, false)
	if e != nil {
		return in, e
	}
	var balance int64
	if set, null, e := o.take("balance", &balance); e != nil {
		return in, e
	} else if !set || null {
		return in, badRequest("invalid_value", "balance", "balance: give the new balance in minor units of the currency")
	}
	in.Balance = admin.Amount{Minor: balance}
	if _, _, e := o.take("currency", &in.Currency); e != nil {
		return in, e
	}
	var threshold int64
	if set, null, e := o.take("low_balance_threshold", &threshold); e != nil {
		return in, e
	} else if set {
		in.LowThreshold = admin.Some[*admin.Amount](nil)
		if !null {
			in.LowThreshold.V = &admin.Amount{Minor: threshold}
		}
	}
	return in, o.done()
}

// POST /v1/accounts/{id}/balance/credits
func (a *api) addCredits(w http.ResponseWriter, r *http.Request, c *call) {
	body, e := readBody(w, r)
	if e == nil {
		var amount int64
		if amount, e = parseCredit(body); e == nil {
			a.once(w, r, c.tok.ID, body, func() (*result, error) {
				v, err := a.admin.AddBalance(r.Context(), c.by, c.id, admin.Amount{Minor: amount})
				if ae, ok := admin.AsError(err); ok && ae.Code == admin.CodeAccountNotFound {
					ae.Msg += "; create it with PUT /v1/accounts/" + c.id + "/balance"
				}
				return accountResult(v, a.changed(err))
			})
			return
		}
	}
	writeError(w, e)
}

// parseCredit reads {"amount":500}: minor units, negative for a debit.
func parseCredit(body []byte) (int64, *apiError) {
	o, e := parseObject(body, false)
	if e != nil {
		return 0, e
	}
	var amount int64
	if set, null, e := o.take("amount", &amount); e != nil {
		return 0, e
	} else if !set || null {
		return 0, badRequest("invalid_value", "amount", "amount: give the credit in minor units of the account's currency (negative for a debit)")
	}
	return amount, o.done()
}

func accountResult(v admin.AccountView, err error) (*result, error) {
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &result{status: http.StatusOK, body: b}, nil
}

// GET /v1/accounts/{id}/usage
func (a *api) accountUsage(w http.ResponseWriter, r *http.Request, c *call) {
	days, e := daysQuery(r)
	if e != nil {
		writeError(w, e)
		return
	}
	v, err := a.admin.AccountUsage(r.Context(), c.id, days)
	a.writeView(w, v, err)
}
