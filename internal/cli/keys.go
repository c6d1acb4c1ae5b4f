package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

func runKeys(ctx context.Context, args []string, io IO) error {
	if len(args) == 0 {
		return usagef("%s", groupUsage("keys "))
	}
	switch args[0] {
	case "create":
		return keysCreate(ctx, args[1:], io)
	case "list":
		return keysList(ctx, args[1:], io)
	case "get":
		return keysGet(ctx, args[1:], io)
	case "revoke":
		return keysRevoke(ctx, args[1:], io)
	case "rotate":
		return keysRotate(ctx, args[1:], io)
	case "usage":
		return keysUsage(ctx, args[1:], io)
	case "update":
		return keysUpdate(ctx, args[1:], io)
	case "help", "-h", "--help":
		fmt.Fprintln(io.Out, groupUsage("keys "))
		return nil
	}
	return usagef("unknown command \"keys %s\"; want create, list, get, update, revoke, rotate or usage", args[0])
}

func keysCreate(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	af := addAdminFlags(fs)
	account := fs.String("account", "", "`ACCT`, the account the key belongs to (required)")
	name := fs.String("name", "", "`NAME`, a label for people")
	env := fs.String("env", store.EnvLive, "environment, `live|test`: test keys skip the balance check")
	scopes := fs.String("scopes", "*", "comma-separated `scopes`; * grants every route")
	rate := fs.String("rate-limit", "", "requests per window, `N/WINDOW` like 600/1m, or none for unlimited (default: the configured default_rate_limit)")
	expires := fs.String("expires-in", "", "lifetime, a Go `duration` like 720h (default: never expires)")
	r := addRestrictionFlags(fs, "")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	in, err := createInput(*account, *name, *env, *scopes, *rate)
	if err != nil {
		return err
	}
	if err := r.check(false); err != nil {
		return err
	}
	r.create(&in)
	lifetime, err := parseExpiresIn(*expires)
	if err != nil {
		return err
	}
	in.Expiry.In = lifetime
	if err := in.Check(time.Now()); err != nil {
		return createRefused(err, *expires)
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	n, err := a.svc.CreateKey(ctx, a.by, in)
	if refused(err) {
		return createRefused(err, *expires)
	}
	a.warnNoAccount(ctx, io, n.Key)
	if af.json {
		return printed(writeJSON(io.Out, n), err)
	}
	fmt.Fprintf(io.Out, "Created key %s for account %s (%s), scopes %s.\n", n.ID, n.AccountID, n.Env, scopesText(n.Scopes))
	printSecret(io, n.Secret)
	return err
}

// createRefused is a refusal of keys create, its expiry named as typed.
func createRefused(err error, expires string) error {
	if e, ok := admin.AsError(err); ok && e.Field == "expires_at" {
		return usagef("--expires-in: %q ends after the year %d", expires, admin.MaxYear)
	}
	return fail(err, nil)
}

// scopesText names a key's scopes for people.
func scopesText(scopes []string) string {
	s := strings.Join(scopes, ",")
	if slices.Contains(scopes, "*") {
		s += " (* = every route)"
	}
	return s
}

// warnNoAccount tells on stderr that a new live key cannot be used yet
// because its account has no balance record.
func (a *session) warnNoAccount(ctx context.Context, io IO, k *store.Key) {
	if k.Env == store.EnvTest {
		return
	}
	if _, _, err := a.store.Account(ctx, k.AccountID); errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(io.Err, "warning: account %s has no balance record: live keys of account %s are denied 402 until `keygate balance set %s AMOUNT`\n",
			k.AccountID, k.AccountID, k.AccountID)
	}
}

// createInput checks the flags of keys create and returns the key they
// describe, without its restrictions and expiry.
func createInput(account, name, env, scopes, rate string) (admin.CreateKeyInput, error) {
	in := admin.CreateKeyInput{AccountID: account, Name: name, Env: env}
	if account == "" {
		return in, usagef("--account is required")
	}
	if err := admin.CheckAccountID("account_id", account); err != nil {
		return in, fail(err, nil)
	}
	var err error
	if in.Scopes, err = parseScopes(scopes); err != nil {
		return in, err
	}
	// The name, env and scopes, as the record takes them.
	if err := in.Check(time.Now()); err != nil {
		return in, fail(err, nil)
	}
	switch rate {
	case "":
	case "none":
		in.RateLimit.None = true
	default:
		if in.RateLimit.Limit, err = store.ParseRateLimit(rate); err != nil {
			return in, usagef("--rate-limit: %v (or none)", err)
		}
	}
	return in, nil
}

// parseScopes reads "a,b", dropping blanks; the admin package checks
// each.
func parseScopes(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, usagef("--scopes: %q names no scope; give a comma-separated list like chat:send,models:read, or *", s)
	}
	return out, nil
}

func parseExpiresIn(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, usagef("--expires-in: %q is not a Go duration like 720h", s)
	}
	if d < time.Second {
		return 0, usagef("--expires-in: %q must be at least 1s", s)
	}
	return d, nil
}

func printSecret(io IO, secret string) {
	fmt.Fprintf(io.Out, "API key: %s\n", secret)
	fmt.Fprintln(io.Out, "Store it now: it will not be shown again.")
}

func keysList(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("keys list", flag.ContinueOnError)
	af := addAdminFlags(fs)
	account := fs.String("account", "", "only keys of account `ACCT`")
	all := fs.Bool("all", false, "include revoked and expired keys")
	unusedText := fs.String("unused", "", "only keys not used for `DURATION` (like 90d or 36h), or never")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *account != "" && !store.ValidAccountID(*account) {
		return usagef("--account: %q is not an account id", *account)
	}
	unused, err := admin.ParseAge(*unusedText)
	if err != nil {
		return usagef("--unused: %v", err)
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	lctx, cancel := context.WithTimeout(ctx, openTimeout) // a connection lost mid-list must not hang
	defer cancel()
	f := admin.Filter{Account: *account, Unused: unused}
	if !*all {
		f.Statuses = []string{admin.StatusActive}
	}
	views, err := a.listAll(lctx, f)
	if err != nil {
		return fail(err, nil)
	}
	if af.json {
		return writeJSON(io.Out, views)
	}
	return printKeyTable(io, views, *all)
}

// listAll is every key that matches f, oldest first.
func (a *session) listAll(ctx context.Context, f admin.Filter) ([]admin.KeyView, error) {
	views := []admin.KeyView{}
	cursor := ""
	for {
		p, err := a.svc.ListKeys(ctx, f, cursor, admin.MaxPageSize)
		if err != nil {
			return nil, err
		}
		views = append(views, p.Keys...)
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	slices.SortFunc(views, func(x, y admin.KeyView) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return views, nil
}

func printKeyTable(io IO, views []admin.KeyView, all bool) error {
	if len(views) == 0 {
		if all {
			fmt.Fprintln(io.Out, "no keys")
		} else {
			fmt.Fprintln(io.Out, "no active keys (--all shows revoked and expired ones)")
		}
		return nil
	}
	tw := tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tACCOUNT\tENV\tKEY\tSCOPES\tSTATUS\tCREATED\tEXPIRES\tLAST USED")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			v.ID, orDash(v.Name), v.AccountID, v.Env, v.Masked, strings.Join(v.Scopes, ","),
			v.Status, timeText(v.CreatedAt), optTime(v.ExpiresAt, "-"), lastUsedText(v))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func keysGet(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("keys get", flag.ContinueOnError)
	af := addAdminFlags(fs)
	pos, err := parse(fs, args, "KEY_ID")
	if err != nil {
		return err
	}
	a, id, err := af.openKey(ctx, io, pos[0])
	if err != nil {
		return err
	}
	defer a.close()
	v, err := a.svc.GetKey(ctx, id)
	if err != nil {
		return fail(err, nil)
	}
	return a.printKey(ctx, io, v, af.json)
}

// printKey prints a key's view; for people, with its budget in its
// account's currency.
func (a *session) printKey(ctx context.Context, io IO, v admin.KeyView, asJSON bool) error {
	if asJSON {
		return writeJSON(io.Out, v)
	}
	currency := money.DefaultCurrency
	if v.Budget != nil {
		var err error
		if currency, err = a.svc.Currency(ctx, v.AccountID); err != nil {
			return err
		}
	}
	rate := "default"
	switch {
	case v.RateLimit != nil:
		rate = v.RateLimit.String()
	case v.NoRateLimit:
		rate = "none (unlimited)"
	}
	tw := tabwriter.NewWriter(io.Out, 0, 0, 1, ' ', 0)
	lines := [][2]string{
		{"id", v.ID},
		{"name", orDash(v.Name)},
		{"account", v.AccountID},
		{"env", v.Env},
		{"key", v.Masked},
		{"scopes", strings.Join(v.Scopes, ",")},
		{"rate limit", rate},
		{"models", modelsText(v.Models)},
		{"tokens", tokenLimitText(v.TokenLimit)}, // "token limit" would widen the column
		{"budget", budgetText(v.Budget, currency)},
		{"from", allowIPsText(v.AllowIPs)}, // "allowed ips" would widen the column
		{"status", v.Status},
		{"created", timeText(v.CreatedAt)},
		{"expires", optTime(v.ExpiresAt, "never")},
		{"last used", lastUsedText(v)},
	}
	if v.RevokedAt != nil {
		lines = append(lines, [2]string{"revoked", timeText(*v.RevokedAt)})
	}
	if v.SuccessorID != "" {
		lines = append(lines, [2]string{"successor", v.SuccessorID})
	}
	for _, l := range lines {
		fmt.Fprintf(tw, "%s:\t%s\n", l[0], l[1])
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func keysRevoke(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("keys revoke", flag.ContinueOnError)
	af := addAdminFlags(fs)
	pos, err := parse(fs, args, "KEY_ID")
	if err != nil {
		return err
	}
	a, id, err := af.openKey(ctx, io, pos[0])
	if err != nil {
		return err
	}
	defer a.close()
	v, already, err := a.svc.RevokeKey(ctx, a.by, id)
	if refused(err) {
		return fail(err, nil)
	}
	if af.json {
		return printed(writeJSON(io.Out, v), err)
	}
	if already {
		fmt.Fprintf(io.Out, "Key %s (%s) was already revoked at %s.\n", v.ID, v.Masked, timeText(*v.RevokedAt))
		return nil
	}
	fmt.Fprintf(io.Out, "Revoked key %s (%s) of account %s.\n", v.ID, v.Masked, v.AccountID)
	return err
}

func keysRotate(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	af := addAdminFlags(fs)
	graceText := fs.String("grace", "24h", "how long the old key keeps working, a Go `duration`; 0 ends it now")
	force := fs.Bool("force", false, "rotate a key that already has a successor from an earlier rotate (that successor is kept)")
	pos, err := parse(fs, args, "KEY_ID")
	if err != nil {
		return err
	}
	grace, err := time.ParseDuration(*graceText)
	if err != nil || grace < 0 {
		return usagef("--grace: %q is not a Go duration of 0 or more, like 24h", *graceText)
	}
	a, id, err := af.openKey(ctx, io, pos[0])
	if err != nil {
		return err
	}
	defer a.close()
	n, err := a.svc.RotateKey(ctx, a.by, id, admin.RotateInput{Grace: grace, Force: *force})
	if refused(err) {
		return fail(err, nil)
	}
	return printed(printRotation(io, n, time.Now(), af.json), err)
}

// openKey opens the store and resolves a KEY_ID argument, which may be
// the key itself.
func (f *adminFlags) openKey(ctx context.Context, io IO, arg string) (*session, string, error) {
	a, err := f.open(ctx, io)
	if err != nil {
		return nil, "", err
	}
	id, err := a.svc.ResolveKey(ctx, arg)
	if err != nil {
		a.close()
		return nil, "", fail(err, nil)
	}
	return a, id, nil
}

// printRotation prints the new key once, and when the old one expires.
func printRotation(io IO, n admin.NewKey, now time.Time, asJSON bool) error {
	if asJSON {
		return writeJSON(io.Out, n)
	}
	fmt.Fprintf(io.Out, "Rotated key %s to %s for account %s (%s).\n", n.OldID, n.ID, n.AccountID, n.Env)
	printSecret(io, n.Secret)
	if n.OldExpiresAt.After(now) {
		fmt.Fprintf(io.Out, "Old key %s expires at %s.\n", n.OldID, timeText(*n.OldExpiresAt))
	} else {
		fmt.Fprintf(io.Out, "Old key %s has expired.\n", n.OldID)
	}
	return nil
}

// allowIPsText is a key's client address list for people.
func allowIPsText(ips []string) string {
	if len(ips) == 0 {
		return "any address"
	}
	return strings.Join(ips, ",")
}

func modelsText(models []string) string {
	if len(models) == 0 {
		return "any"
	}
	return strings.Join(models, ",")
}

func tokenLimitText(t *store.TokenLimit) string {
	if t == nil {
		return "none"
	}
	return t.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func optTime(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return timeText(*t)
}
