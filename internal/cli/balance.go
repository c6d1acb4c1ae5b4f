package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/keygate/keygate/internal/admin"
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

func printAccount(io IO, v admin.AccountView, asJSON bool) error {
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

// acctNames are the balance commands' names of the admin package's
// fields.
var acctNames = map[string]string{"account_id": "ACCT"}

func balanceGet(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("balance get", flag.ContinueOnError)
	af := addAdminFlags(fs)
	pos, err := parse(fs, args, "ACCT")
	if err != nil {
		return err
	}
	id := pos[0]
	if err := admin.CheckAccountID("account_id", id); err != nil {
		return fail(err, acctNames)
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	v, err := a.svc.GetBalance(ctx, id)
	if err != nil {
		return fail(err, acctNames)
	}
	return printAccount(io, v, af.json)
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
	id := pos[0]
	in := admin.SetBalanceInput{Balance: admin.Amount{Decimal: pos[1]}, Currency: *currency}
	switch *threshold {
	case "":
	case "none":
		in.LowThreshold = admin.Some[*admin.Amount](nil)
	default:
		in.LowThreshold = admin.Some(&admin.Amount{Decimal: *threshold})
	}
	if err := checkSetArgs(id, in); err != nil {
		return err
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	v, err := a.svc.SetBalance(ctx, a.by, id, in)
	if refused(err) {
		return fail(err, acctNames)
	}
	return printed(printAccount(io, v, af.json), err)
}

// checkSetArgs checks what can be checked before the account is read.
func checkSetArgs(id string, in admin.SetBalanceInput) error {
	if err := admin.CheckAccountID("account_id", id); err != nil {
		return fail(err, acctNames)
	}
	if err := checkAmount("AMOUNT", in.Balance.Decimal); err != nil {
		return err
	}
	if err := in.Check(); err != nil {
		return fail(err, acctNames)
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
	id, amount := pos[0], admin.Amount{Decimal: pos[1]}
	if err := admin.CheckAccountID("account_id", id); err != nil {
		return fail(err, acctNames)
	}
	if err := checkAmount("AMOUNT", amount.Decimal); err != nil {
		return err
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	v, err := a.svc.AddBalance(ctx, a.by, id, amount)
	if e, ok := admin.AsError(err); ok && e.Code == admin.CodeAccountNotFound {
		return fmt.Errorf("account %s not found; create it with keygate balance set %s AMOUNT", id, id)
	}
	if refused(err) {
		return fail(err, acctNames)
	}
	return printed(printAccount(io, v, af.json), err)
}

// checkAmount checks the form of a decimal amount; how many decimal places
// it may have depends on the currency and is checked once that is known.
func checkAmount(name, s string) error {
	if e, ok := admin.AsError(admin.CheckDecimal("", s)); ok {
		return usagef("%s: %s", name, e.Msg)
	}
	return nil
}
