package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// keyUpdate is what keys update changes: only the flags given.
type keyUpdate struct {
	set      map[string]bool // flags given, by name
	name     string
	scopes   []string
	rate     *store.RateLimit // with noRate: the flag's reading
	noRate   bool
	limits   *restrictions
	lifetime time.Duration // 0 with --expires-in never
}

func keysUpdate(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("keys update", flag.ContinueOnError)
	af := addAdminFlags(fs)
	name := fs.String("name", "", "new `NAME`; an empty one removes it")
	scopes := fs.String("scopes", "", "comma-separated `scopes` that replace the key's; * grants every route")
	rate := fs.String("rate-limit", "", "requests per window, `N/WINDOW` like 600/1m; none for unlimited; default for the configured default_rate_limit")
	expires := fs.String("expires-in", "", "new lifetime from now, a Go `duration` like 720h; never for no expiry")
	r := addRestrictionFlags(fs, "; none removes it")
	pos, err := parse(fs, args, "KEY_ID")
	if err != nil {
		return err
	}
	u, err := readUpdate(fs, r, *name, *scopes, *rate, *expires)
	if err != nil {
		return err
	}
	a, id, err := af.openKey(ctx, io, pos[0])
	if err != nil {
		return err
	}
	defer a.close()
	k, err := a.updateKey(ctx, id, u)
	if err != nil {
		return err
	}
	now := time.Now()
	use, err := a.store.KeyUsage(ctx, id)
	if err != nil {
		return err
	}
	if !af.json {
		fmt.Fprintf(io.Out, "Updated key %s (%s) of account %s.\n", k.ID, k.Masked, k.AccountID)
	}
	return a.printKey(ctx, io, viewOf(k, use, now), af.json)
}

// readUpdate checks the flags given to keys update.
func readUpdate(fs *flag.FlagSet, r *restrictions, name, scopes, rate, expires string) (*keyUpdate, error) {
	u := &keyUpdate{set: map[string]bool{}, name: name, limits: r}
	fs.Visit(func(f *flag.Flag) { u.set[f.Name] = true })
	delete(u.set, "nats-url")
	delete(u.set, "config")
	delete(u.set, "json")
	if len(u.set) == 0 {
		return nil, usagef("keys update: give what to change: --name, --scopes, --rate-limit, --models, --token-limit, --budget or --expires-in")
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"models", r.models}, {"token-limit", r.tokenLimit}, {"budget", r.budget}, {"rate-limit", rate}} {
		if u.set[f.name] && f.v == "" {
			return nil, usagef("--%s: give a value, or none", f.name)
		}
	}
	var err error
	if u.set["scopes"] {
		if u.scopes, err = parseScopes(scopes); err != nil {
			return nil, err
		}
	}
	switch {
	case !u.set["rate-limit"], rate == "default":
	case rate == "none":
		u.noRate = true
	default:
		if u.rate, err = store.ParseRateLimit(rate); err != nil {
			return nil, usagef("--rate-limit: %v (or none, or default)", err)
		}
	}
	if u.set["expires-in"] && expires != "never" {
		if u.lifetime, err = parseExpiresIn(expires); err != nil {
			return nil, usagef("%v (or never)", err)
		}
		if u.lifetime == 0 {
			return nil, usagef("--expires-in: give a Go duration like 720h, or never")
		}
	}
	return u, r.check(true)
}

var errRevoked = errors.New("revoked")

// updateKey applies u to key id by compare-and-set, keeping what it does
// not change (members this keygate does not know included). It refuses
// a revoked key.
func (a *admin) updateKey(ctx context.Context, id string, u *keyUpdate) (*store.Key, error) {
	old, _, err := a.store.KeyByID(ctx, id)
	if err != nil {
		return nil, notFound("key", id, err)
	}
	currency := money.DefaultCurrency
	if u.limits.needsCurrency() {
		if currency, err = a.currency(ctx, old.AccountID); err != nil {
			return nil, err
		}
	}
	now := time.Now().UTC()
	var expiresAt *time.Time
	if u.lifetime > 0 {
		t := now.Add(u.lifetime)
		if t.Year() > maxYear {
			return nil, usagef("--expires-in: %s ends after the year %d", u.lifetime, maxYear)
		}
		expiresAt = &t
	}
	var revokedAt time.Time
	k, err := a.store.UpdateKey(ctx, id, func(k *store.Key) error {
		if k.Revoked() {
			revokedAt = *k.RevokedAt
			return errRevoked
		}
		u.apply(k, expiresAt)
		return u.limits.apply(k, currency)
	})
	if errors.Is(err, errRevoked) {
		return nil, fmt.Errorf("key %s was revoked at %s; a revoked key is not changed", id, timeText(revokedAt))
	}
	if err != nil {
		return nil, notFound("key", id, err)
	}
	return k, nil
}

// apply sets on k what u gives but its restrictions.
func (u *keyUpdate) apply(k *store.Key, expiresAt *time.Time) {
	if u.set["name"] {
		k.Name = u.name
	}
	if u.set["scopes"] {
		k.Scopes = u.scopes
	}
	if u.set["rate-limit"] {
		k.RateLimit, k.NoRateLimit = u.rate, u.noRate
	}
	if u.set["expires-in"] {
		k.ExpiresAt = expiresAt
	}
}
