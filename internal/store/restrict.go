package store

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/money"
)

// TokenLimit allows Tokens (input plus output) per Window.
type TokenLimit struct {
	Tokens int64    `json:"tokens"`
	Window Duration `json:"window"`
}

// Budget caps what a key spends per Period, in minor units of its
// account's currency.
type Budget struct {
	Amount int64  `json:"amount"`
	Period Period `json:"period"`
}

// Period is a budget's period: a calendar period in UTC ("1d", "1w"
// from Monday, "1mo") or a Go duration ("12h").
type Period string

// Calendar periods.
const (
	Day   Period = "1d"
	Week  Period = "1w"
	Month Period = "1mo"
)

// Duration is the period's length: a calendar period's nominal one (a
// month: 30 days).
func (p Period) Duration() (time.Duration, error) {
	switch p {
	case Day:
		return 24 * time.Hour, nil
	case Week:
		return 7 * 24 * time.Hour, nil
	case Month:
		return 30 * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(string(p))
	if err != nil || d < time.Second || d > maxWindow {
		return 0, fmt.Errorf("period %q is not 1d, 1w, 1mo or a Go duration from 1s to %s", string(p), maxWindow)
	}
	return d, nil
}

// Calendar reports whether p is a calendar period.
func (p Period) Calendar() bool { return p == Day || p == Week || p == Month }

// maxModels bounds a key's model list.
const maxModels = 64

// ValidModelPattern reports whether s can be a model pattern: 1 to 128
// printable ASCII characters without spaces or commas, "*" matching any
// run of characters.
func ValidModelPattern(s string) bool { return ValidScope(s) }

// ParseModels reads a comma-separated model list ("gpt-4o*,o3").
func ParseModels(s string) ([]string, error) {
	var out []string
	for _, m := range strings.Split(s, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if !ValidModelPattern(m) {
			return nil, fmt.Errorf("model %q must be 1-128 printable characters without spaces or commas", m)
		}
		out = append(out, m)
	}
	if len(out) == 0 || len(out) > maxModels {
		return nil, fmt.Errorf("give 1 to %d models", maxModels)
	}
	return out, nil
}

// ParseTokenLimit reads "N/WINDOW", N tokens per Go duration WINDOW
// ("100000/1m").
func ParseTokenLimit(s string) (*TokenLimit, error) {
	r, err := ParseRateLimit(s)
	if err != nil {
		return nil, err
	}
	return &TokenLimit{Tokens: r.Requests, Window: r.Window}, nil
}

// Validate checks the limit's bounds.
func (t *TokenLimit) Validate() error {
	return (&RateLimit{Requests: t.Tokens, Window: t.Window}).Validate()
}

// String writes the limit as N/WINDOW.
func (t *TokenLimit) String() string {
	return strconv.FormatInt(t.Tokens, 10) + "/" + time.Duration(t.Window).String()
}

// maxBudget bounds a budget, in minor units.
const maxBudget = 1e9

// ParseBudget reads "AMOUNT/PERIOD": AMOUNT a decimal in major units of
// currency ("50.00"), PERIOD 1d, 1w or 1mo (calendar periods in UTC) or a
// Go duration from 1s ("12h").
func ParseBudget(s, currency string) (*Budget, error) {
	as, ps, ok := strings.Cut(s, "/")
	if !ok {
		return nil, fmt.Errorf("%q is not AMOUNT/PERIOD, like 50.00/1mo", s)
	}
	amount, err := money.Parse(as, currency)
	if err != nil {
		return nil, fmt.Errorf("AMOUNT: %w", err)
	}
	if amount < 1 || amount > maxBudget {
		return nil, fmt.Errorf("AMOUNT %q must be from %s to %s %s", as, money.Format(1, currency), money.Format(maxBudget, currency), currency)
	}
	b := &Budget{Amount: amount, Period: Period(ps)}
	if _, err := b.Period.Duration(); err != nil {
		return nil, err
	}
	return b, nil
}

// Validate checks the budget's amount and period.
func (b *Budget) Validate() error {
	if b.Amount < 1 || b.Amount > maxBudget {
		return fmt.Errorf("amount must be from 1 to %d minor units", int64(maxBudget))
	}
	_, err := b.Period.Duration()
	return err
}

// validateRestrictions checks the key's models, token limit, budget and
// allow_ips.
func (k *Key) validateRestrictions() error {
	if k.Models != nil && len(k.Models) == 0 || len(k.Models) > maxModels {
		// An empty list allowing no model or every model is not a record
		// keygate guesses at.
		return fmt.Errorf("key %s: models: give 1 to %d patterns, or leave it out", k.ID, maxModels)
	}
	for _, m := range k.Models {
		if !ValidModelPattern(m) {
			return fmt.Errorf("key %s: model %q must be 1-128 printable characters without spaces or commas", k.ID, m)
		}
	}
	if k.TokenLimit != nil {
		if err := k.TokenLimit.Validate(); err != nil {
			return fmt.Errorf("key %s: token_limit: %w", k.ID, err)
		}
	}
	if k.Budget != nil {
		if err := k.Budget.Validate(); err != nil {
			return fmt.Errorf("key %s: budget: %w", k.ID, err)
		}
	}
	return k.validateAllowIPs()
}

// Restricted reports whether the key carries any of the restrictions of
// format 2: a reader of format 1 would ignore them, so such a record says
// "v":2.
func (k *Key) Restricted() bool {
	return len(k.Models) > 0 || k.TokenLimit != nil || k.Budget != nil || len(k.AllowIPs) > 0
}

// restrictedVersion is the format of a record with restrictions.
const restrictedVersion = 2

// SetVersion sets V to the format the record needs: 2 when it carries a
// restriction, else absent (format 1). A format newer than this keygate
// knows is kept: lowering it could make an older keygate enforce members
// it reads differently.
func (k *Key) SetVersion() {
	switch {
	case k.V > KeyVersion:
	case k.Restricted():
		k.V = restrictedVersion
	default:
		k.V = 0
	}
}
