package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/store"
)

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
	p, err := readUpdate(fs, r, *name, *scopes, *rate, *expires)
	if err != nil {
		return err
	}
	a, id, err := af.openKey(ctx, io, pos[0])
	if err != nil {
		return err
	}
	defer a.close()
	v, err := a.svc.UpdateKey(ctx, a.by, id, p)
	if refused(err) {
		return fail(err, nil)
	}
	if !af.json {
		fmt.Fprintf(io.Out, "Updated key %s (%s) of account %s.\n", v.ID, v.Masked, v.AccountID)
	}
	return printed(a.printKey(ctx, io, v, af.json), err)
}

// readUpdate checks the flags given to keys update and returns the patch
// they make: only the flags given change.
func readUpdate(fs *flag.FlagSet, r *restrictions, name, scopes, rate, expires string) (admin.KeyPatch, error) {
	var p admin.KeyPatch
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	delete(set, "nats-url")
	delete(set, "config")
	delete(set, "json")
	if len(set) == 0 {
		return p, usagef("keys update: give what to change: --name, --scopes, --rate-limit, --models, --token-limit, --budget, --allow-ips or --expires-in")
	}
	if set["name"] {
		p.Name = admin.Some(name)
	}
	if err := p.Check(time.Now()); err != nil {
		return p, fail(err, nil)
	}
	for _, f := range []struct{ name, v string }{{"models", r.models}, {"token-limit", r.tokenLimit}, {"budget", r.budget}, {"allow-ips", r.allowIPs}, {"rate-limit", rate}} {
		if set[f.name] && f.v == "" {
			return p, usagef("--%s: give a value, or none", f.name)
		}
	}
	if set["scopes"] {
		sc, err := parseScopes(scopes)
		if err != nil {
			return p, err
		}
		p.Scopes = admin.Some(sc)
		if err := p.Check(time.Now()); err != nil {
			return p, fail(err, nil)
		}
	}
	if set["rate-limit"] {
		var rl admin.RateLimit
		switch rate {
		case "default":
		case "none":
			rl.None = true
		default:
			var err error
			if rl.Limit, err = store.ParseRateLimit(rate); err != nil {
				return p, usagef("--rate-limit: %v (or none, or default)", err)
			}
		}
		p.RateLimit = admin.Some(rl)
	}
	if set["expires-in"] {
		var e admin.Expiry
		if expires != "never" {
			lifetime, err := parseExpiresIn(expires)
			if err != nil {
				return p, usagef("%v (or never)", err)
			}
			if lifetime == 0 {
				return p, usagef("--expires-in: give a Go duration like 720h, or never")
			}
			e.In = lifetime
		}
		p.Expiry = admin.Some(e)
	}
	if err := r.check(true); err != nil {
		return p, err
	}
	r.patch(&p)
	if err := p.Check(time.Now()); err != nil {
		return p, fail(err, nil)
	}
	return p, nil
}
