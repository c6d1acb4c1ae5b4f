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
	"unicode"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// Limits on what people type into key records.
const (
	maxNameLen = 200
	maxYear    = 9999 // the last year a record's RFC 3339 dates can hold
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

// keyView is a key record as the commands print it.
type keyView struct {
	*store.Key
	Status     string     `json:"status"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"` // to the minute; absent if never used
	Unused     bool       `json:"unused"`                 // not used for unusedAfter, or never
}

// newKeyView is a freshly minted key: the only output that carries the
// plaintext key.
type newKeyView struct {
	keyView
	Secret       string     `json:"key"`
	OldID        string     `json:"old_id,omitempty"`
	OldExpiresAt *time.Time `json:"old_expires_at,omitempty"`
}

// viewOf is k as the commands print it, with its use u (nil: never
// used). Every command's view of a key is made here, so they agree.
func viewOf(k *store.Key, u *store.Usage, now time.Time) keyView {
	v := keyView{Key: k, Status: k.Status(now)}
	if u != nil {
		v.LastUsedAt = u.LastUsedAt
	}
	v.Unused = v.LastUsedAt == nil || now.Sub(*v.LastUsedAt) >= unusedAfter
	return v
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
	k, err := keyFromFlags(*account, *name, *env, *scopes, *rate)
	if err != nil {
		return err
	}
	if err := r.check(false); err != nil {
		return err
	}
	lifetime, err := parseExpiresIn(*expires)
	if err != nil {
		return err
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	currency := money.DefaultCurrency
	if r.needsCurrency() {
		if currency, err = a.currency(ctx, k.AccountID); err != nil {
			return err
		}
	}
	if err := r.apply(k, currency); err != nil {
		return err
	}
	now := time.Now().UTC()
	k.CreatedAt = now
	if lifetime > 0 {
		t := now.Add(lifetime)
		if t.Year() > maxYear {
			return usagef("--expires-in: %q ends after the year %d", *expires, maxYear)
		}
		k.ExpiresAt = &t
	}
	secret, err := a.mint(k)
	if err != nil {
		return err
	}
	if err := a.store.CreateKey(ctx, k); err != nil {
		return err
	}
	a.warnNoAccount(ctx, io, k)
	if af.json {
		return writeJSON(io.Out, newKeyView{keyView: viewOf(k, nil, now), Secret: secret})
	}
	fmt.Fprintf(io.Out, "Created key %s for account %s (%s), scopes %s.\n", k.ID, k.AccountID, k.Env, scopesText(k.Scopes))
	printSecret(io, secret)
	return nil
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
func (a *admin) warnNoAccount(ctx context.Context, io IO, k *store.Key) {
	if k.Env == store.EnvTest {
		return
	}
	if _, _, err := a.store.Account(ctx, k.AccountID); errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(io.Err, "warning: account %s has no balance record: live keys of account %s are denied 402 until `keygate balance set %s AMOUNT`\n",
			k.AccountID, k.AccountID, k.AccountID)
	}
}

// currency is the currency of account id: the default for an account not
// yet made.
func (a *admin) currency(ctx context.Context, id string) (string, error) {
	acct, _, err := a.store.Account(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return money.DefaultCurrency, nil
	case err != nil:
		return "", err
	}
	return acct.Currency, nil
}

// keyFromFlags checks the flags of keys create and returns the record
// they describe, without id, hash or times.
func keyFromFlags(account, name, env, scopes, rate string) (*store.Key, error) {
	if account == "" {
		return nil, usagef("--account is required")
	}
	if !store.ValidAccountID(account) {
		return nil, usagef("--account: %q is not an account id (1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit)", account)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if env != store.EnvLive && env != store.EnvTest {
		return nil, usagef("--env: %q is not live or test", env)
	}
	sc, err := parseScopes(scopes)
	if err != nil {
		return nil, err
	}
	k := &store.Key{AccountID: account, Name: name, Env: env, Scopes: sc}
	switch rate {
	case "":
	case "none":
		k.NoRateLimit = true
	default:
		if k.RateLimit, err = store.ParseRateLimit(rate); err != nil {
			return nil, usagef("--rate-limit: %v (or none)", err)
		}
	}
	return k, nil
}

func checkName(name string) error {
	if len(name) > maxNameLen {
		return usagef("--name: longer than %d bytes", maxNameLen)
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return usagef("--name: %q has control characters", name)
	}
	return nil
}

// parseScopes reads "a,b", dropping blanks and repeats.
func parseScopes(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			continue
		case !store.ValidScope(p):
			return nil, usagef("--scopes: %q must be 1-128 printable ASCII characters without spaces", p)
		}
		if !slices.Contains(out, p) {
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

// mint makes a new key for k's env, fills in k's id, hash and masked form
// and returns the plaintext key; it does not store k.
func (a *admin) mint(k *store.Key) (string, error) {
	format := a.cfg.Keys.Format()
	secret, err := format.Mint(a.cfg.Keys.Prefix(k.Env))
	if err != nil {
		return "", fmt.Errorf("mint key: %w", err)
	}
	if k.ID, err = apikey.NewID(); err != nil {
		return "", fmt.Errorf("mint key id: %w", err)
	}
	k.Hash = apikey.Hash(secret)
	k.Masked = format.Mask(secret)
	return secret, nil
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
	unused, err := parseDays(*unusedText)
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
	keys, err := a.store.ListKeys(lctx)
	if err != nil {
		return err
	}
	uses, err := a.store.ListUsage(lctx)
	if err != nil {
		return err
	}
	views := selectKeys(keys, uses, *account, *all, time.Now())
	if unused > 0 {
		now := time.Now()
		views = slices.DeleteFunc(views, func(v keyView) bool { return v.LastUsedAt != nil && now.Sub(*v.LastUsedAt) < unused })
	}
	if af.json {
		return writeJSON(io.Out, views)
	}
	return printKeyTable(io, views, *all)
}

// selectKeys filters keys by account and, unless all, to active ones, and
// orders them oldest first, each with its use from uses.
func selectKeys(keys []*store.Key, uses map[string]*store.Usage, account string, all bool, now time.Time) []keyView {
	views := make([]keyView, 0, len(keys))
	for _, k := range keys {
		v := viewOf(k, uses[k.ID], now)
		if (account == "" || k.AccountID == account) && (all || v.Status == "active") {
			views = append(views, v)
		}
	}
	slices.SortFunc(views, func(x, y keyView) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return views
}

func printKeyTable(io IO, views []keyView, all bool) error {
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
	k, _, err := a.store.KeyByID(ctx, id)
	if err != nil {
		return notFound("key", id, err)
	}
	u, err := a.store.KeyUsage(ctx, id)
	if err != nil {
		return err
	}
	return a.printKey(ctx, io, viewOf(k, u, time.Now()), af.json)
}

// printKey prints a key's view; for people, with its budget in its
// account's currency.
func (a *admin) printKey(ctx context.Context, io IO, v keyView, asJSON bool) error {
	if asJSON {
		return writeJSON(io.Out, v)
	}
	currency := money.DefaultCurrency
	if v.Budget != nil {
		var err error
		if currency, err = a.currency(ctx, v.AccountID); err != nil {
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

var errAlreadyRevoked = errors.New("already revoked")

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
	var already *store.Key
	k, err := a.store.UpdateKey(ctx, id, func(k *store.Key) error {
		if k.Revoked() {
			already = k
			return errAlreadyRevoked
		}
		t := time.Now().UTC()
		k.RevokedAt = &t
		return nil
	})
	if already != nil {
		k = already
	} else if err != nil {
		return notFound("key", id, err)
	}
	if af.json {
		u, err := a.store.KeyUsage(ctx, id)
		if err != nil {
			return err
		}
		return writeJSON(io.Out, viewOf(k, u, time.Now()))
	}
	if already != nil {
		fmt.Fprintf(io.Out, "Key %s (%s) was already revoked at %s.\n", k.ID, k.Masked, timeText(*k.RevokedAt))
		return nil
	}
	fmt.Fprintf(io.Out, "Revoked key %s (%s) of account %s.\n", k.ID, k.Masked, k.AccountID)
	return nil
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
	return a.rotate(ctx, io, id, grace, *force, af.json)
}

// openKey opens the store and resolves a KEY_ID argument with keyID.
func (f *adminFlags) openKey(ctx context.Context, io IO, arg string) (*admin, string, error) {
	a, err := f.open(ctx, io)
	if err != nil {
		return nil, "", err
	}
	id, err := a.keyID(ctx, arg)
	if err != nil {
		a.close()
		return nil, "", err
	}
	return a, id, nil
}

// keyID accepts a key id, or the key itself (people paste leaked keys to
// revoke them): a key is looked up by its hash and never printed whole.
func (a *admin) keyID(ctx context.Context, arg string) (string, error) {
	f := a.cfg.Keys.Format()
	if !f.HasPrefix(arg) {
		return arg, nil
	}
	k, _, err := a.store.KeyByHash(ctx, apikey.Hash(arg))
	if err != nil {
		return "", notFound("key", f.Mask(arg), err)
	}
	return k.ID, nil
}

// rotate mints a successor of key id and shortens the old key's life to
// the grace period. A key that already has a successor is refused unless
// force; the store's compare-and-set makes concurrent rotations of one
// key refuse all but one.
func (a *admin) rotate(ctx context.Context, io IO, id string, grace time.Duration, force, asJSON bool) error {
	old, _, err := a.store.KeyByID(ctx, id)
	if err != nil {
		return notFound("key", id, err)
	}
	now := time.Now().UTC()
	check := func(k *store.Key) error { return rotatable(k, now, force) }
	if err := check(old); err != nil {
		return err
	}
	k := successor(old, now)
	secret, err := a.mint(k)
	if err != nil {
		return err
	}
	updated, err := a.store.RotateKey(ctx, id, k, now.Add(grace), check)
	if err != nil {
		return notFound("key", id, err)
	}
	return printRotation(io, k, secret, id, updated, now, asJSON)
}

// rotatable refuses to rotate a key that is not active, or that already
// has a successor unless force.
func rotatable(k *store.Key, now time.Time, force bool) error {
	if st := k.Status(now); st != "active" {
		return fmt.Errorf("key %s is %s; use keys create for a new key", k.ID, st)
	}
	if u := k.Unsupported(); len(u) > 0 {
		// A successor would be made without what this keygate cannot
		// read, looser than the key it replaces.
		return fmt.Errorf("key %s has members this keygate does not know (%s); rotate it with a keygate that does", k.ID, strings.Join(u, ", "))
	}
	if k.SuccessorID != "" && !force {
		return fmt.Errorf("key %s was already rotated: its successor is %s and it expires at %s; --force makes another successor",
			k.ID, k.SuccessorID, optTime(k.ExpiresAt, "never"))
	}
	return nil
}

// successor is a new key record with old's account, env, name, scopes,
// rate limit and restrictions, and no expiry.
func successor(old *store.Key, now time.Time) *store.Key {
	k := &store.Key{
		AccountID: old.AccountID,
		Name:      old.Name,
		Env:       old.Env,
		Scopes:    slices.Clone(old.Scopes),
		CreatedAt: now,
		// no_rate_limit is kept: a successor is never stricter, nor looser.
		NoRateLimit: old.NoRateLimit,
		// The two share one rate-limit budget while both work.
		BudgetID: old.LimitID(),
	}
	if old.RateLimit != nil {
		rl := *old.RateLimit
		k.RateLimit = &rl
	}
	// The two share the token limit and the budget (BudgetID) too.
	k.Models = slices.Clone(old.Models)
	if old.TokenLimit != nil {
		tl := *old.TokenLimit
		k.TokenLimit = &tl
	}
	if old.Budget != nil {
		b := *old.Budget
		k.Budget = &b
	}
	k.SetVersion()
	return k
}

// printRotation prints the new key once, and when the old one expires.
func printRotation(io IO, k *store.Key, secret, oldID string, old *store.Key, now time.Time, asJSON bool) error {
	if asJSON {
		return writeJSON(io.Out, newKeyView{keyView: viewOf(k, nil, now), Secret: secret, OldID: oldID, OldExpiresAt: old.ExpiresAt})
	}
	fmt.Fprintf(io.Out, "Rotated key %s to %s for account %s (%s).\n", oldID, k.ID, k.AccountID, k.Env)
	printSecret(io, secret)
	if old.ExpiresAt.After(now) {
		fmt.Fprintf(io.Out, "Old key %s expires at %s.\n", oldID, timeText(*old.ExpiresAt))
	} else {
		fmt.Fprintf(io.Out, "Old key %s has expired.\n", oldID)
	}
	return nil
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
