package adminapi

import (
	"encoding/json"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/store"
)

// parseCreateKey reads POST /v1/keys's body.
func parseCreateKey(body []byte) (admin.CreateKeyInput, *apiError) {
	var in admin.CreateKeyInput
	o, e := parseObject(body, false)
	if e != nil {
		return in, e
	}
	for _, f := range []struct {
		name string
		v    any
	}{{"account_id", &in.AccountID}, {"name", &in.Name}, {"env", &in.Env}, {"scopes", &in.Scopes}, {"models", &in.Models},
		{"allow_ips", &in.AllowIPs}} {
		if _, _, e := o.take(f.name, f.v); e != nil {
			return in, e
		}
	}
	var p admin.KeyPatch
	if e := readLimits(o, &p); e != nil {
		return in, e
	}
	in.RateLimit, in.TokenLimit, in.Budget, in.Expiry = p.RateLimit.V, p.TokenLimit.V, p.Budget.V, p.Expiry.V
	return in, o.done()
}

// parsePatch reads PATCH /v1/keys/{id}'s body, a JSON merge patch: a
// member given changes, null removes (rate_limit: back to the default;
// expires_at: never), a member absent stays.
func parsePatch(body []byte) (admin.KeyPatch, *apiError) {
	var p admin.KeyPatch
	o, e := parseObject(body, false)
	if e != nil {
		return p, e
	}
	var name string
	if set, _, e := o.take("name", &name); e != nil {
		return p, e
	} else if set {
		p.Name = admin.Some(name)
	}
	var scopes []string
	if set, null, e := o.take("scopes", &scopes); e != nil {
		return p, e
	} else if null {
		return p, badRequest("invalid_value", "scopes", `scopes: give one scope at least, or ["*"]; null does not remove them`)
	} else if set {
		p.Scopes = admin.Some(scopes)
	}
	for _, f := range []struct {
		name string
		opt  *admin.Opt[[]string]
	}{{"models", &p.Models}, {"allow_ips", &p.AllowIPs}} {
		var list []string
		if set, _, e := o.take(f.name, &list); e != nil {
			return p, e
		} else if set {
			*f.opt = admin.Some(list)
		}
	}
	if e := readLimits(o, &p); e != nil {
		return p, e
	}
	return p, o.done()
}

// rateJSON, tokenJSON and budgetJSON are a key's limits as the API
// takes them: as the key record writes them.
type (
	rateJSON struct {
		Requests *int64 `json:"requests"`
		Window   string `json:"window"`
	}
	tokenJSON struct {
		Tokens *int64 `json:"tokens"`
		Window string `json:"window"`
	}
	budgetJSON struct {
		Amount *int64 `json:"amount"` // minor units of the account's currency
		Period string `json:"period"`
	}
)

// readLimits reads rate_limit, token_limit, budget and expires_at into
// p: set when given, null as removing them.
func readLimits(o object, p *admin.KeyPatch) *apiError {
	if raw, ok := o["rate_limit"]; ok {
		delete(o, "rate_limit")
		rl, e := rateLimit(raw)
		if e != nil {
			return e
		}
		p.RateLimit = admin.Some(rl)
	}
	var tj tokenJSON
	if set, null, e := o.take("token_limit", &tj); e != nil {
		return e
	} else if set {
		var tl *store.TokenLimit
		if !null {
			if tj.Tokens == nil {
				return badRequest("invalid_value", "token_limit", "token_limit: give tokens and window")
			}
			w, e := window("token_limit", tj.Window)
			if e != nil {
				return e
			}
			tl = &store.TokenLimit{Tokens: *tj.Tokens, Window: w}
		}
		p.TokenLimit = admin.Some(tl)
	}
	var bj budgetJSON
	if set, null, e := o.take("budget", &bj); e != nil {
		return e
	} else if set {
		var b *admin.Budget
		if !null {
			if bj.Amount == nil || bj.Period == "" {
				return badRequest("invalid_value", "budget", "budget: give amount (minor units) and period")
			}
			b = &admin.Budget{Amount: admin.Amount{Minor: *bj.Amount}, Period: store.Period(bj.Period)}
		}
		p.Budget = admin.Some(b)
	}
	var at string
	if set, null, e := o.take("expires_at", &at); e != nil {
		return e
	} else if set {
		var x admin.Expiry
		if !null {
			t, err := time.Parse(time.RFC3339, at)
			if err != nil {
				return badRequest("invalid_value", "expires_at", "expires_at: %q is not an RFC 3339 time like 2027-01-31T00:00:00Z", at)
			}
			x.At = &t
		}
		p.Expiry = admin.Some(x)
	}
	return nil
}

// rateLimit reads a rate_limit: {"requests":600,"window":"1m"}, "none"
// (unlimited), or "default" or null (the configured default).
func rateLimit(raw json.RawMessage) (admin.RateLimit, *apiError) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "none":
			return admin.RateLimit{None: true}, nil
		case "default":
			return admin.RateLimit{}, nil
		}
		return admin.RateLimit{}, badRequest("invalid_value", "rate_limit", `rate_limit: give {"requests":N,"window":"1m"}, "none" or "default"`)
	}
	o := object{"rate_limit": raw}
	var rj rateJSON
	set, null, e := o.take("rate_limit", &rj)
	switch {
	case e != nil:
		return admin.RateLimit{}, e
	case null || !set:
		return admin.RateLimit{}, nil
	case rj.Requests == nil:
		return admin.RateLimit{}, badRequest("invalid_value", "rate_limit", "rate_limit: give requests and window")
	}
	w, e := window("rate_limit", rj.Window)
	if e != nil {
		return admin.RateLimit{}, e
	}
	return admin.RateLimit{Limit: &store.RateLimit{Requests: *rj.Requests, Window: w}}, nil
}
