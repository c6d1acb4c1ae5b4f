package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/exactjson"
	"github.com/keygate/keygate/internal/money"
)

// Key is a key record, stored as JSON under "hash.<sha256 hex>" in the keys
// bucket. The plaintext key is never stored.
type Key struct {
	// V is the record's format: absent or 1, or 2 when it carries
	// models, token_limit, budget or allow_ips.
	V         int      `json:"v,omitempty"`
	ID        string   `json:"id"`
	Hash      string   `json:"hash"`
	AccountID string   `json:"account_id"`
	Name      string   `json:"name,omitempty"`
	Env       string   `json:"env"`
	Scopes    []string `json:"scopes"`
	// RateLimit is the key's own limit; without it the configured
	// default applies, unless NoRateLimit.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	// NoRateLimit makes the key unlimited whatever the default. A reader
	// that does not know the field applies the default: a stricter
	// reading, never a looser one.
	NoRateLimit bool       `json:"no_rate_limit,omitempty"`
	Masked      string     `json:"masked"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// SuccessorID is the key that keys rotate made to replace this one.
	SuccessorID string `json:"successor_id,omitempty"`
	// BudgetID names the budgets the key spends (requests, tokens,
	// spend): those of the key it was rotated from, so that the two share
	// them during the grace period; empty for the key's own (its id).
	BudgetID string `json:"budget_id,omitempty"`
	// Models, if set, are the only models the key may call (patterns
	// with "*").
	Models []string `json:"models,omitempty"`
	// TokenLimit caps input plus output tokens per window.
	TokenLimit *TokenLimit `json:"token_limit,omitempty"`
	// Budget caps spend per period.
	Budget *Budget `json:"budget,omitempty"`
	// AllowIPs, if set, are the only networks the key may be used from:
	// IPv4 and IPv6 prefixes, a bare address being one host (AllowIP).
	AllowIPs []string `json:"allow_ips,omitempty"`

	unknown map[string]json.RawMessage // members this keygate does not know, kept as read
}

// LimitID names the budgets the key spends (requests, tokens, spend): its
// own id, or that of the key it was rotated from.
func (k *Key) LimitID() string {
	if k.BudgetID != "" {
		return k.BudgetID
	}
	return k.ID
}

// Environments of a key.
const (
	EnvLive = "live"
	EnvTest = "test"
)

// RateLimit allows Requests per Window.
type RateLimit struct {
	Requests int64    `json:"requests"`
	Window   Duration `json:"window"`
}

// Account is an account record, stored as JSON under its id in the
// accounts bucket. Amounts are integer minor units of Currency.
type Account struct {
	ID      string `json:"id"`
	Balance int64  `json:"balance"`
	// BalanceNanos is the balance's remainder below one minor unit, in
	// billionths of one (0 to 999,999,999): the exact balance is Balance
	// + BalanceNanos/1e9, and Balance alone is its floor.
	BalanceNanos        int64     `json:"balance_nanos,omitempty"`
	Currency            string    `json:"currency"`
	LowBalanceThreshold *int64    `json:"low_balance_threshold,omitempty"`
	UpdatedAt           time.Time `json:"updated_at"`
	// Holds are the funds each keygate holds for requests in flight,
	// by keygate id: what is available to hold is the balance minus
	// their sum.
	Holds map[string]Hold `json:"holds,omitempty"`

	unknown map[string]json.RawMessage // members this keygate does not know, kept as read
}

// Hold is what one keygate holds of an account's funds, in nanos (1e-9
// minor units), and when it last wrote it.
type Hold struct {
	Nanos int64     `json:"nanos"`
	At    time.Time `json:"at"`
}

// Exact is the account's balance with its remainder.
func (a *Account) Exact() money.Exact { return money.Exact{Minor: a.Balance, Nanos: a.BalanceNanos} }

// SetExact sets the balance and its remainder.
func (a *Account) SetExact(e money.Exact) { a.Balance, a.BalanceNanos = e.Minor, e.Nanos }

// Held is the sum of the holds, in nanos.
func (a *Account) Held() int64 {
	var n int64
	for _, h := range a.Holds {
		n += max(h.Nanos, 0)
	}
	return n
}

// Revoked reports whether the key has been revoked.
func (k *Key) Revoked() bool { return k.RevokedAt != nil }

// Expired reports whether the key has expired at now.
func (k *Key) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)
}

// Status is "active", "revoked" or "expired".
func (k *Key) Status(now time.Time) string {
	switch {
	case k.Revoked():
		return "revoked"
	case k.Expired(now):
		return "expired"
	}
	return "active"
}

var (
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidAccountID reports whether id can name an account: 1 to 64 of
// [A-Za-z0-9_-], starting with a letter or digit.
func ValidAccountID(id string) bool { return idPattern.MatchString(id) }

// Validate checks a key record read from the bucket.
func (k *Key) Validate() error {
	switch {
	case !idPattern.MatchString(k.ID):
		return fmt.Errorf("id %q is not valid", k.ID)
	case !hashPattern.MatchString(k.Hash):
		return fmt.Errorf("key %s: hash is not 64 lowercase hex characters", k.ID)
	case !ValidAccountID(k.AccountID):
		return fmt.Errorf("key %s: account_id %q is not valid", k.ID, k.AccountID)
	case k.Env != EnvLive && k.Env != EnvTest:
		return fmt.Errorf("key %s: env %q is not live or test", k.ID, k.Env)
	case k.RateLimit != nil && k.RateLimit.Validate() != nil:
		return fmt.Errorf("key %s: rate_limit: %w", k.ID, k.RateLimit.Validate())
	case k.RateLimit != nil && k.NoRateLimit:
		return fmt.Errorf("key %s: rate_limit and no_rate_limit: true exclude each other", k.ID)
	case k.SuccessorID != "" && !idPattern.MatchString(k.SuccessorID):
		return fmt.Errorf("key %s: successor_id %q is not valid", k.ID, k.SuccessorID)
	case k.BudgetID != "" && !idPattern.MatchString(k.BudgetID):
		return fmt.Errorf("key %s: budget_id %q is not valid", k.ID, k.BudgetID)
	case k.V < 0:
		return fmt.Errorf("key %s: v %d is not a format", k.ID, k.V)
	}
	if err := k.validateRestrictions(); err != nil {
		return err
	}
	for _, sc := range k.Scopes {
		if !ValidScope(sc) {
			return fmt.Errorf("key %s: scope %q must be 1-128 printable characters without spaces or commas", k.ID, sc)
		}
	}
	return nil
}

// ValidScope reports whether s can name a scope: it travels in a
// comma-separated header, so 1 to 128 printable ASCII characters other
// than space and comma.
func ValidScope(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ',' {
			return false
		}
	}
	return true
}

// Validate checks an account record read from the bucket.
func (a *Account) Validate() error {
	if !ValidAccountID(a.ID) {
		return fmt.Errorf("account id %q is not valid", a.ID)
	}
	if !money.ValidCurrency(a.Currency) {
		return fmt.Errorf("account %s: currency %q is not a 3-letter upper-case code", a.ID, a.Currency)
	}
	if !a.Exact().Valid() {
		return fmt.Errorf("account %s: balance_nanos %d is not from 0 to 999999999, or balance is out of range", a.ID, a.BalanceNanos)
	}
	var held int64
	for id, h := range a.Holds {
		if h.Nanos < 0 || h.Nanos > maxHold || !idPattern.MatchString(id) {
			return fmt.Errorf("account %s: hold of %q is not valid", a.ID, id)
		}
		if h.Nanos > maxHold-held { // held <= maxHold: no overflow
			return fmt.Errorf("account %s: holds sum past %d nanos", a.ID, int64(maxHold))
		}
		held += h.Nanos
	}
	return nil
}

// ErrInvalidRecord wraps every error about a record that cannot be read.
var ErrInvalidRecord = errors.New("invalid record")

// DecodeKey parses and validates a key record. A record that gives a
// member twice, at any depth, is refused: readers differ on which counts.
func DecodeKey(b []byte) (*Key, error) {
	var k Key
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%w: key: %w", ErrInvalidRecord, err)
	}
	if err := exactjson.Unique(b); err != nil {
		return nil, fmt.Errorf("%w: key: %w", ErrInvalidRecord, err)
	}
	if err := readUnknown(b, knownKeyFields, &k.unknown); err != nil {
		return nil, fmt.Errorf("%w: key: %w", ErrInvalidRecord, err)
	}
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	return &k, nil
}

// DecodeAccount parses and validates the account record stored under id.
// A record that gives a member twice, at any depth, or names another
// account than the entry it is stored under is refused.
func DecodeAccount(id string, b []byte) (*Account, error) {
	var a Account
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%w: account: %w", ErrInvalidRecord, err)
	}
	if err := exactjson.Unique(b); err != nil {
		return nil, fmt.Errorf("%w: account: %w", ErrInvalidRecord, err)
	}
	if a.ID != id {
		return nil, fmt.Errorf("%w: the account record stored under %s names another account", ErrInvalidRecord, id)
	}
	if err := readUnknown(b, knownAccountFields, &a.unknown); err != nil {
		return nil, fmt.Errorf("%w: account: %w", ErrInvalidRecord, err)
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	return &a, nil
}

// Duration is a time.Duration written in JSON as a Go duration string ("1m0s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseRateLimit reads "N/WINDOW", N requests per Go duration WINDOW
// ("600/1m").
func ParseRateLimit(s string) (*RateLimit, error) {
	ns, ws, ok := strings.Cut(s, "/")
	if !ok {
		return nil, fmt.Errorf("%q is not N/WINDOW, like 600/1m", s)
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || n < 1 || n > maxRequests {
		return nil, fmt.Errorf("%q: N must be a whole number from 1 to %d", s, int64(maxRequests))
	}
	w, err := time.ParseDuration(ws)
	if err != nil || w <= 0 {
		return nil, fmt.Errorf("%q: WINDOW must be a positive Go duration like 1s, 1m or 1h", s)
	}
	r := &RateLimit{Requests: n, Window: Duration(w)}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	return r, nil
}

// Bounds of a rate limit.
const (
	maxRequests = 1e12
	maxWindow   = 366 * 24 * time.Hour
)

// Validate checks the limit's bounds.
func (r *RateLimit) Validate() error {
	switch {
	case r.Requests < 1 || r.Requests > maxRequests:
		return fmt.Errorf("requests must be from 1 to %d", int64(maxRequests))
	case r.Window <= 0 || time.Duration(r.Window) > maxWindow:
		return fmt.Errorf("window must be positive and at most %s", maxWindow)
	case r.Requests > int64(r.Window):
		return fmt.Errorf("at most one request per nanosecond of window")
	}
	return nil
}

// String writes the limit as N/WINDOW.
func (r *RateLimit) String() string {
	return strconv.FormatInt(r.Requests, 10) + "/" + time.Duration(r.Window).String()
}
