package cli

import (
	"flag"
	"fmt"
	"strings"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// restrictions are a key's restriction flags as typed: "" not given,
// "none" to remove one (keys update only).
type restrictions struct {
	models, tokenLimit, budget, allowIPs string

	modelList []string
	tokens    *store.TokenLimit
	ipList    []string
}

// addRestrictionFlags adds --models, --token-limit, --budget and
// --allow-ips to fs;
// none ends their help.
func addRestrictionFlags(fs *flag.FlagSet, none string) *restrictions {
	r := &restrictions{}
	fs.StringVar(&r.models, "models", "", "comma-separated model `LIST` the key may call, * matching any run of characters, like 'gpt-4o*,text-embedding-3-small' (default: any model)"+none)
	fs.StringVar(&r.tokenLimit, "token-limit", "", "input plus output tokens per window, `N/WINDOW` like 100000/1m, shared by every keygate (default: no limit)"+none)
	fs.StringVar(&r.budget, "budget", "", "spend per period, `AMOUNT/PERIOD` like 50.00/1mo: AMOUNT in major units of the account's currency (MXN for an account not yet made), PERIOD 1d, 1w (from Monday) or 1mo, calendar periods in UTC, or a Go duration like 12h (default: no budget)"+none)
	fs.StringVar(&r.allowIPs, "allow-ips", "", "comma-separated client `ADDRESSES` the key may be used from, IP addresses or prefixes like 10.0.0.0/8,2001:db8::/32 (default: any address)"+none)
	return r
}

// check parses the flags that can be parsed before the account is read,
// and the form of --budget. none says whether "none" is accepted.
func (r *restrictions) check(none bool) error {
	for _, f := range []struct{ name, v string }{{"--models", r.models}, {"--token-limit", r.tokenLimit}, {"--budget", r.budget}, {"--allow-ips", r.allowIPs}} {
		if f.v == "none" && !none {
			return usagef("%s: none removes a restriction with keys update; a new key has none unless given one", f.name)
		}
	}
	var err error
	if r.models != "" && r.models != "none" {
		if r.modelList, err = store.ParseModels(r.models); err != nil {
			return usagef("--models: %v", err)
		}
	}
	if r.tokenLimit != "" && r.tokenLimit != "none" {
		if r.tokens, err = store.ParseTokenLimit(r.tokenLimit); err != nil {
			return usagef("--token-limit: %v", err)
		}
	}
	if r.allowIPs != "" && r.allowIPs != "none" {
		if r.ipList, err = store.ParseAllowIPs(r.allowIPs); err != nil {
			return usagef("--allow-ips: %v", err)
		}
	}
	if r.budget != "" && r.budget != "none" {
		// The amount's decimal places depend on the account's currency:
		// parsed in full once it is read.
		amount, period, ok := strings.Cut(r.budget, "/")
		if !ok {
			return usagef("--budget: %q is not AMOUNT/PERIOD, like 50.00/1mo", r.budget)
		}
		if err := checkAmount("--budget", amount); err != nil {
			return err
		}
		if _, err := store.Period(period).Duration(); err != nil {
			return usagef("--budget: %v", err)
		}
	}
	return nil
}

// budget is --budget as the admin package takes it; nil unless given.
func (r *restrictions) budgetInput() *admin.Budget {
	amount, period, _ := strings.Cut(r.budget, "/")
	return &admin.Budget{Amount: admin.Amount{Decimal: amount}, Period: store.Period(period)}
}

// create sets the restrictions given on a new key.
func (r *restrictions) create(in *admin.CreateKeyInput) {
	in.Models, in.TokenLimit, in.AllowIPs = r.modelList, r.tokens, r.ipList
	if r.budget != "" {
		in.Budget = r.budgetInput()
	}
}

// patch sets or removes the restrictions given on p.
func (r *restrictions) patch(p *admin.KeyPatch) {
	switch r.models {
	case "":
	case "none":
		p.Models = admin.Some[[]string](nil)
	default:
		p.Models = admin.Some(r.modelList)
	}
	switch r.tokenLimit {
	case "":
	case "none":
		p.TokenLimit = admin.Some[*store.TokenLimit](nil)
	default:
		p.TokenLimit = admin.Some(r.tokens)
	}
	switch r.budget {
	case "":
	case "none":
		p.Budget = admin.Some[*admin.Budget](nil)
	default:
		p.Budget = admin.Some(r.budgetInput())
	}
	switch r.allowIPs {
	case "":
	case "none":
		p.AllowIPs = admin.Some[[]string](nil)
	default:
		p.AllowIPs = admin.Some(r.ipList)
	}
}

// budgetText is a key's budget for people: "50.00 MXN/1mo".
func budgetText(b *store.Budget, currency string) string {
	if b == nil {
		return "none"
	}
	return fmt.Sprintf("%s %s/%s", money.Format(b.Amount, currency), currency, b.Period)
}
