package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// AccountView is an account as the command line and the API show it:
// amounts in minor units and as decimals in major units.
type AccountView struct {
	ID             string `json:"id"`
	Balance        int64  `json:"balance"` // whole minor units: the floor of the exact balance
	BalanceDecimal string `json:"balance_decimal"`
	// BalanceExact is the balance with its remainder finer than a minor
	// unit, when it has one ("12.4999995").
	BalanceExact               string           `json:"balance_exact"`
	Held                       string           `json:"held"`      // the sum of the holds
	Available                  string           `json:"available"` // balance minus held
	Holds                      map[string]int64 `json:"holds"`     // nanos of a minor unit, by keygate id
	Currency                   string           `json:"currency"`
	LowBalanceThreshold        *int64           `json:"low_balance_threshold,omitempty"`
	LowBalanceThresholdDecimal string           `json:"low_balance_threshold_decimal,omitempty"`
	UpdatedAt                  time.Time        `json:"updated_at"`
}

// ViewAccount is a as shown: what is held is the sum of its holds, what
// is available its exact balance minus that.
func ViewAccount(a *store.Account) (AccountView, error) {
	v := AccountView{
		ID:                  a.ID,
		Balance:             a.Balance,
		BalanceDecimal:      money.Format(a.Balance, a.Currency),
		BalanceExact:        money.FormatExact(a.Exact(), a.Currency),
		Holds:               map[string]int64{},
		Currency:            a.Currency,
		LowBalanceThreshold: a.LowBalanceThreshold,
		UpdatedAt:           a.UpdatedAt,
	}
	if t := a.LowBalanceThreshold; t != nil {
		v.LowBalanceThresholdDecimal = money.Format(*t, a.Currency)
	}
	var held money.Exact
	avail := a.Exact()
	for id, h := range a.Holds {
		v.Holds[id] = h.Nanos
		var err, err2 error
		held, err = held.AddNanos(h.Nanos)
		avail, err2 = avail.AddNanos(-h.Nanos)
		if err != nil || err2 != nil {
			return v, fmt.Errorf("account %s: its holds are out of range", a.ID)
		}
	}
	v.Held, v.Available = money.FormatExact(held, a.Currency), money.FormatExact(avail, a.Currency)
	return v, nil
}

// accountNotFound turns store.ErrNotFound into NotFound for account id.
func accountNotFound(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound(CodeAccountNotFound, "account", id, id)
	}
	return err
}

// GetBalance is account id's view.
func (s *Service) GetBalance(ctx context.Context, id string) (AccountView, error) {
	if err := s.checkAccount("account_id", id); err != nil {
		return AccountView{}, err
	}
	a, _, err := s.st.Account(ctx, id)
	if err != nil {
		return AccountView{}, accountNotFound(id, err)
	}
	return ViewAccount(a)
}

// SetBalanceInput is what SetBalance sets.
type SetBalanceInput struct {
	Balance Amount
	// Currency, if set, is the account's new currency: refused while the
	// account holds anything, and it drops a threshold not given anew.
	Currency string
	// LowThreshold: Set with nil clears the threshold.
	LowThreshold Opt[*Amount]
}

// Check checks what can be checked before the account is read.
func (in *SetBalanceInput) Check() error {
	if err := in.Balance.checkForm("balance"); err != nil {
		return err
	}
	if in.Currency != "" && !money.ValidCurrency(in.Currency) {
		return invalid("currency", "%q is not a 3-letter upper-case code like MXN", in.Currency)
	}
	if t := in.LowThreshold.V; in.LowThreshold.Set && t != nil {
		if err := t.checkForm("low_balance_threshold"); err != nil {
			return err
		}
		if t.negative() {
			return invalid("low_balance_threshold", "%s must not be negative", t.shown())
		}
	}
	return nil
}

func (a Amount) shown() string {
	if a.Decimal != "" {
		return fmt.Sprintf("%q", a.Decimal)
	}
	return fmt.Sprint(a.Minor)
}

// SetBalance sets account id's balance to exactly in.Balance (no
// remainder below a minor unit), creating the account if needed; holds
// are kept.
func (s *Service) SetBalance(ctx context.Context, by Actor, id string, in SetBalanceInput) (AccountView, error) {
	if err := s.checkAccount("account_id", id); err != nil {
		return AccountView{}, err
	}
	if err := in.Check(); err != nil {
		return AccountView{}, err
	}
	if err := s.budgetsAllow(ctx, id, in.Currency); err != nil {
		return AccountView{}, err
	}
	var before any
	acct, err := s.st.UpdateAccount(ctx, id, true, func(a *store.Account) error {
		before = nil
		if !a.UpdatedAt.IsZero() {
			before = auditAccount(a)
		}
		return in.apply(a)
	})
	if err != nil {
		return AccountView{}, err
	}
	return s.recorded(ctx, by, ActionBalanceSet, acct, before)
}

// budgetsAllow refuses to change account id's currency to cur while one
// of its active keys has a budget: a budget is an amount in the account's
// currency, and would be another amount of money in the new one.
func (s *Service) budgetsAllow(ctx context.Context, id, cur string) error {
	if cur == "" {
		return nil
	}
	a, _, err := s.st.Account(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && cur == a.Currency {
		return nil
	}
	if err != nil {
		return err
	}
	f := Filter{Account: id, Statuses: []string{StatusActive}}
	for cursor := ""; ; {
		p, err := s.ListKeys(ctx, f, cursor, MaxPageSize)
		if err != nil {
			return err
		}
		for _, k := range p.Keys {
			if k.Budget != nil {
				return conflict(CodeCurrencyLocked, id, "key %s has a budget in %s; remove it before changing account %s's currency to %s, then set it anew",
					k.ID, a.Currency, id, cur)
			}
		}
		if cursor = p.Next; cursor == "" {
			return nil
		}
	}
}

// apply sets a's balance, and its currency and threshold if given. It
// refuses to change the currency of a balance that is not zero or has
// holds.
func (in *SetBalanceInput) apply(a *store.Account) error {
	if in.Currency != "" && in.Currency != a.Currency {
		if a.Exact() != (money.Exact{}) {
			return conflict(CodeCurrencyLocked, a.ID, "account %s holds %s %s; set its balance to 0 before changing its currency to %s",
				a.ID, money.FormatExact(a.Exact(), a.Currency), a.Currency, in.Currency)
		}
		if len(a.Holds) > 0 {
			// Holds, and what settles them, are in the old currency.
			return conflict(CodeCurrencyLocked, a.ID, "account %s has holds of requests in flight in %s; change its currency to %s once they have settled",
				a.ID, a.Currency, in.Currency)
		}
		a.Currency = in.Currency
		a.LowBalanceThreshold = nil // it was in the old currency's units
	}
	v, err := in.Balance.in("balance", a.Currency)
	if err != nil {
		return err
	}
	if !(money.Exact{Minor: v}).Valid() {
		return invalid("balance", "%s is out of range", in.Balance.shown())
	}
	a.SetExact(money.Exact{Minor: v}) // an exact balance: no remainder
	if in.LowThreshold.Set {
		a.LowBalanceThreshold = nil
		if t := in.LowThreshold.V; t != nil {
			n, err := t.in("low_balance_threshold", a.Currency)
			if err != nil {
				return err
			}
			a.LowBalanceThreshold = &n
		}
	}
	return nil
}

// AddBalance adds amount (negative: a debit) in whole minor units to
// account id's balance, keeping its remainder and its holds.
func (s *Service) AddBalance(ctx context.Context, by Actor, id string, amount Amount) (AccountView, error) {
	if err := s.checkAccount("account_id", id); err != nil {
		return AccountView{}, err
	}
	if err := amount.checkForm("amount"); err != nil {
		return AccountView{}, err
	}
	var before any
	acct, err := s.st.UpdateAccount(ctx, id, false, func(a *store.Account) error {
		before = auditAccount(a)
		return addTo(a, amount)
	})
	if err != nil {
		return AccountView{}, accountNotFound(id, err)
	}
	return s.recorded(ctx, by, ActionBalanceAdd, acct, before)
}

func addTo(a *store.Account, amount Amount) error {
	v, err := amount.in("amount", a.Currency)
	if err != nil {
		return err
	}
	// Whole minor units are added; the remainder below one is kept.
	sum, err := money.Add(a.Balance, v)
	if err == nil && !(money.Exact{Minor: sum, Nanos: a.BalanceNanos}).Valid() {
		err = errors.New("amount out of range")
	}
	if err != nil {
		shown := amount.Decimal
		if shown == "" {
			shown = money.Format(v, a.Currency)
		}
		return conflict(CodeBalanceOutOfRange, a.ID, "account %s: %s %s %s: %v", a.ID, money.FormatExact(a.Exact(), a.Currency),
			signed(shown), a.Currency, err)
	}
	a.Balance = sum
	return nil
}

func signed(amount string) string {
	if amount[0] == '-' {
		return "- " + amount[1:]
	}
	return "+ " + amount
}

// recorded is acct's view, once its change is recorded.
func (s *Service) recorded(ctx context.Context, by Actor, action string, acct *store.Account, before any) (AccountView, error) {
	v, err := ViewAccount(acct)
	if err != nil {
		return AccountView{}, err
	}
	return v, s.record(ctx, Change{Actor: by, Action: action, TargetKind: "account", TargetID: acct.ID,
		Before: before, After: auditAccount(acct)})
}

// auditAccount is the account's view as JSON.
func auditAccount(a *store.Account) json.RawMessage {
	v, err := ViewAccount(a)
	if err != nil {
		return nil
	}
	b, _ := json.Marshal(v)
	return b
}
