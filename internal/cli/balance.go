package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

func runBalance(ctx context.Context, args []string, io IO) error {
	if len(args) == 0 {
		return usagef("%s", groupUsage("balance "))
	}
	switch args[0] {
	case "get":
		return balanceGet(ctx, args[1:], io)
	case "set":
		return balanceSet(ctx, args[1:], io)
	case "add":
		return balanceAdd(ctx, args[1:], io)
	case "help", "-h", "--help":
		fmt.Fprintln(io.Out, groupUsage("balance "))
		return nil
	}
	return usagef("unknown command \"balance %s\"; want get, set or add", args[0])
}

// accountView is an account as the commands print it: amounts in minor
// units and as decimals in major units.
type accountView struct {
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

func printAccount(io IO, a *store.Account, asJSON bool) error {
	v, err := viewAccount(a)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(io.Out, v)
	}
	fmt.Fprintf(io.Out, "%s: %s %s", v.ID, v.BalanceExact, v.Currency)
	var notes []string
	if len(v.Holds) > 0 {
		notes = append(notes, fmt.Sprintf("held %s, available %s %s", v.Held, v.Available, v.Currency))
	}
	if v.LowBalanceThreshold != nil {
		notes = append(notes, fmt.Sprintf("low-balance threshold %s %s", v.LowBalanceThresholdDecimal, v.Currency))
	}
	if len(notes) > 0 {
		fmt.Fprintf(io.Out, " (%s)", strings.Join(notes, "; "))
	}
	fmt.Fprintln(io.Out)
	return nil
}

// viewAccount is a as printed: what is held is the sum of its holds,
// what is available its exact balance minus that.
func viewAccount(a *store.Account) (accountView, error) {
	v := accountView{
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

func balanceGet(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("balance get", flag.ContinueOnError)
	af := addAdminFlags(fs)
	pos, err := parse(fs, args, "ACCT")
	if err != nil {
		return err
	}
	id := pos[0]
	if err := checkAccountID(id); err != nil {
		return err
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	acct, _, err := a.store.Account(ctx, id)
	if err != nil {
		return notFound("account", id, err)
	}
	return printAccount(io, acct, af.json)
}

func balanceSet(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("balance set", flag.ContinueOnError)
	af := addAdminFlags(fs)
	currency := fs.String("currency", "", "ISO 4217 `code` like MXN (default: the account's, or MXN for a new one)")
	threshold := fs.String("low-threshold", "", "low-balance threshold `AMOUNT`, or none to clear it")
	pos, err := parse(fs, args, "ACCT", "AMOUNT")
	if err != nil {
		return err
	}
	id, amount := pos[0], pos[1]
	if err := checkSetArgs(id, amount, *currency, *threshold); err != nil {
		return err
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	acct, err := a.store.UpdateAccount(ctx, id, true, func(acct *store.Account) error {
		return setAccount(acct, amount, *currency, *threshold)
	})
	if err != nil {
		return err
	}
	return printAccount(io, acct, af.json)
}

// checkSetArgs checks what can be checked before the account is read.
func checkSetArgs(id, amount, currency, threshold string) error {
	if err := checkAccountID(id); err != nil {
		return err
	}
	if err := checkAmount("AMOUNT", amount); err != nil {
		return err
	}
	if currency != "" && !money.ValidCurrency(currency) {
		return usagef("--currency: %q is not a 3-letter upper-case code like MXN", currency)
	}
	if threshold == "" || threshold == "none" {
		return nil
	}
	if err := checkAmount("--low-threshold", threshold); err != nil {
		return err
	}
	if threshold[0] == '-' {
		return usagef("--low-threshold: %q must not be negative", threshold)
	}
	return nil
}

// setAccount sets acct's balance to amount, and its currency and threshold
// if given. It refuses to change the currency of a non-zero balance, and
// a change of currency drops a threshold not given anew.
func setAccount(acct *store.Account, amount, currency, threshold string) error {
	if currency != "" && currency != acct.Currency {
		if acct.Exact() != (money.Exact{}) {
			return fmt.Errorf("account %s holds %s %s; set its balance to 0 before changing its currency to %s",
				acct.ID, money.FormatExact(acct.Exact(), acct.Currency), acct.Currency, currency)
		}
		if len(acct.Holds) > 0 {
			// Holds, and what settles them, are in the old currency.
			return fmt.Errorf("account %s has holds of requests in flight in %s; change its currency to %s once they have settled",
				acct.ID, acct.Currency, currency)
		}
		acct.Currency = currency
		acct.LowBalanceThreshold = nil // it was in the old currency's units
	}
	v, err := money.Parse(amount, acct.Currency)
	if err != nil {
		return usagef("AMOUNT: %v", err)
	}
	acct.SetExact(money.Exact{Minor: v}) // an exact balance: no remainder
	switch threshold {
	case "":
	case "none":
		acct.LowBalanceThreshold = nil
	default:
		t, err := money.Parse(threshold, acct.Currency)
		if err != nil {
			return usagef("--low-threshold: %v", err)
		}
		acct.LowBalanceThreshold = &t
	}
	return nil
}

func balanceAdd(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("balance add", flag.ContinueOnError)
	af := addAdminFlags(fs)
	pos, err := parse(fs, args, "ACCT", "AMOUNT")
	if err != nil {
		return err
	}
	id, amount := pos[0], pos[1]
	if err := checkAccountID(id); err != nil {
		return err
	}
	if err := checkAmount("AMOUNT", amount); err != nil {
		return err
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	acct, err := a.store.UpdateAccount(ctx, id, false, func(acct *store.Account) error {
		return addToAccount(acct, amount)
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("account %s not found; create it with keygate balance set %s AMOUNT", id, id)
	}
	if err != nil {
		return err
	}
	return printAccount(io, acct, af.json)
}

func addToAccount(acct *store.Account, amount string) error {
	v, err := money.Parse(amount, acct.Currency)
	if err != nil {
		return usagef("AMOUNT: %v", err)
	}
	// Whole minor units are added; the remainder below one is kept.
	sum, err := money.Add(acct.Balance, v)
	if err == nil && !(money.Exact{Minor: sum, Nanos: acct.BalanceNanos}).Valid() {
		err = errors.New("amount out of range")
	}
	if err != nil {
		return fmt.Errorf("account %s: %s %s %s: %w", acct.ID, money.FormatExact(acct.Exact(), acct.Currency),
			signed(amount), acct.Currency, err)
	}
	acct.Balance = sum
	return nil
}

func signed(amount string) string {
	if amount[0] == '-' {
		return "- " + amount[1:]
	}
	return "+ " + amount
}

func checkAccountID(id string) error {
	if !store.ValidAccountID(id) {
		return usagef("ACCT: %q is not an account id (1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit)", id)
	}
	return nil
}

var decimal = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// checkAmount checks the form of a decimal amount; how many decimal places
// it may have depends on the currency and is checked by money.Parse.
func checkAmount(name, s string) error {
	if !decimal.MatchString(s) {
		return usagef("%s: %q is not a decimal amount like 12.50 or -3.25", name, s)
	}
	return nil
}
