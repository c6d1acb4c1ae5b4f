package admin

import (
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// Limits on what people give key records.
const (
	MaxNameLen = 200
	MaxYear    = 9999 // the last year a record's RFC 3339 dates can hold
)

// RateLimit is a key's rate-limit setting. The zero value is the
// configured default_rate_limit.
type RateLimit struct {
	Limit *store.RateLimit // the key's own limit
	None  bool             // unlimited, whatever the default
}

// Amount is an amount of money as given: a decimal in major units of the
// account's currency ("12.50", "-3.25"), or, without one, whole minor
// units.
type Amount struct {
	Decimal string
	Minor   int64
}

// Budget is a key's spend budget as given.
type Budget struct {
	Amount Amount
	Period store.Period
}

// Expiry is when a key expires: at At, In from now, or (zero) never.
type Expiry struct {
	At *time.Time
	In time.Duration
}

// Opt is one field of a patch: Set says it is to change, to V.
type Opt[T any] struct {
	Set bool
	V   T
}

// Some is a field set to v.
func Some[T any](v T) Opt[T] { return Opt[T]{Set: true, V: v} }

// checkName checks a key's or a token's name.
func checkName(name string) error {
	if len(name) > MaxNameLen {
		return invalid("name", "longer than %d bytes", MaxNameLen)
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return invalid("name", "%q has control characters", name)
	}
	return nil
}

// CheckAccountID refuses what cannot name an account.
func CheckAccountID(field, id string) error {
	if !store.ValidAccountID(id) {
		return invalid(field, "%q is not an account id (1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit)", id)
	}
	return nil
}

// checkAccount checks account id as the audit trail will: besides
// CheckAccountID's rule, it must not look like a key of the Service's
// format or hold 64 hex digits in a row (a key's SHA-256). The trail
// refuses to name such a target, so a change to its account could not be
// recorded, and an answer that named it could show a key.
func (s *Service) checkAccount(field, id string) error {
	if err := CheckAccountID(field, id); err != nil {
		return err
	}
	if audit.CheckID(id, s.format) != nil {
		return invalid(field, "looks like an API key or a key's hash, which an account id must not (the audit trail could not name it)")
	}
	return nil
}

func checkEnv(env string) error {
	if env != store.EnvLive && env != store.EnvTest {
		return invalid("env", "%q is not live or test", env)
	}
	return nil
}

// normalScopes checks scopes and drops repeats; it needs one at least.
func normalScopes(scopes []string) ([]string, error) {
	var out []string
	for _, sc := range scopes {
		if !store.ValidScope(sc) {
			return nil, invalid("scopes", "%q must be 1-128 printable ASCII characters without spaces", sc)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, invalid("scopes", "give one scope at least, or * for every route")
	}
	return out, nil
}

func (r RateLimit) check() error {
	switch {
	case r.Limit != nil && r.None:
		return invalid("rate_limit", "a limit and none exclude each other")
	case r.Limit != nil:
		if err := r.Limit.Validate(); err != nil {
			return invalid("rate_limit", "%v", err)
		}
	}
	return nil
}

// apply sets the key's rate limit.
func (r RateLimit) apply(k *store.Key) {
	k.NoRateLimit = r.None
	k.RateLimit = nil
	if r.Limit != nil {
		rl := *r.Limit
		k.RateLimit = &rl
	}
}

func checkModels(models []string) error {
	if len(models) == 0 || len(models) > 64 {
		return invalid("models", "give 1 to 64 models")
	}
	for _, m := range models {
		if !store.ValidModelPattern(m) {
			return invalid("models", "model %q must be 1-128 printable characters without spaces or commas", m)
		}
	}
	return nil
}

func checkTokenLimit(t *store.TokenLimit) error {
	if err := t.Validate(); err != nil {
		return invalid("token_limit", "%v", err)
	}
	return nil
}

var decimal = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// checkForm checks the form of a decimal amount; how many decimal places
// it may have depends on the currency and is checked once that is known.
func (a Amount) checkForm(field string) error {
	if a.Decimal != "" && !decimal.MatchString(a.Decimal) {
		return invalid(field, "%q is not a decimal amount like 12.50 or -3.25", a.Decimal)
	}
	return nil
}

// in is the amount in minor units of currency.
func (a Amount) in(field, currency string) (int64, error) {
	if a.Decimal == "" {
		return a.Minor, nil
	}
	v, err := money.Parse(a.Decimal, currency)
	if err != nil {
		return 0, invalid(field, "%v", err)
	}
	return v, nil
}

// negative reports whether the amount is below zero.
func (a Amount) negative() bool {
	if a.Decimal != "" {
		return a.Decimal[0] == '-'
	}
	return a.Minor < 0
}

func (b *Budget) checkForm() error {
	if err := b.Amount.checkForm("budget"); err != nil {
		return err
	}
	if _, err := b.Period.Duration(); err != nil {
		return invalid("budget", "%v", err)
	}
	return nil
}

// in is the budget with its amount in minor units of currency.
func (b *Budget) in(currency string) (*store.Budget, error) {
	if b.Amount.Decimal != "" {
		sb, err := store.ParseBudget(b.Amount.Decimal+"/"+string(b.Period), currency)
		if err != nil {
			return nil, invalid("budget", "%v", err)
		}
		return sb, nil
	}
	sb := &store.Budget{Amount: b.Amount.Minor, Period: b.Period}
	if err := sb.Validate(); err != nil {
		return nil, invalid("budget", "%v", err)
	}
	return sb, nil
}

// check refuses an expiry that is not after now or not before the year
// 10000.
func (e Expiry) check(now time.Time) error {
	if e.In < 0 || e.In > 0 && e.In < time.Second {
		return invalid("expires_at", "%s must be at least 1s", e.In)
	}
	at := e.at(now)
	switch {
	case at == nil:
	case at.Year() > MaxYear:
		return invalid("expires_at", "%s ends after the year %d", e.shown(), MaxYear)
	case !at.After(now):
		return invalid("expires_at", "%s is not in the future", e.shown())
	}
	return nil
}

func (e Expiry) shown() string {
	if e.At != nil {
		return e.At.UTC().Format(time.RFC3339)
	}
	return e.In.String()
}

// at is when the key expires, from now; nil for never.
func (e Expiry) at(now time.Time) *time.Time {
	switch {
	case e.At != nil:
		t := e.At.UTC()
		return &t
	case e.In > 0:
		t := now.UTC().Add(e.In)
		return &t
	}
	return nil
}

// normalAllowIPs checks a client address list and returns it in
// canonical form (a bare address with its /32 or /128), repeats dropped.
// nil is no list; an empty one is refused, since it would allow nothing
// or everything.
func normalAllowIPs(cidrs []string) ([]string, error) {
	if cidrs == nil {
		return nil, nil
	}
	if len(cidrs) == 0 || len(cidrs) > store.MaxAllowIPs {
		return nil, invalid("allow_ips", "give 1 to %d IP addresses or prefixes, or none for any address", store.MaxAllowIPs)
	}
	out := make([]string, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := store.AllowIP(c)
		if err != nil {
			return nil, invalid("allow_ips", "%v", err)
		}
		if s := p.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// CheckDecimal checks the form of a decimal amount in major units ("12.50",
// "-3.25"); how many decimal places it may have depends on the currency.
func CheckDecimal(field, s string) error {
	if !decimal.MatchString(s) {
		return invalid(field, "%q is not a decimal amount like 12.50 or -3.25", s)
	}
	return nil
}
