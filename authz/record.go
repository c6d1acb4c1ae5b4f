package authz

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/glob"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
	"github.com/keygate/keygate/internal/usage"
)

// Key is the cached form of a key record: what a decision needs, kept
// small (a million of them fit in a few hundred megabytes). What many keys
// share (account ids, and scopes, limit and environment) is interned.
type Key struct {
	ID        string
	AccountID string
	budget    string // the rate-limit budget it spends: its id, or its predecessor's
	policy    *policy
	rate      ratelimit.Slot // where the limiter keeps this key's state
	use       usage.Slot     // where its checks are counted
	expiresAt int64          // unix milliseconds; never: math.MaxInt64
	revoked   bool
	// unsupported names what of its record this keygate cannot enforce
	// (members it does not know, a newer format): the key is denied.
	unsupported string
}

// policy is what a key may do: its scopes, rate limit and environment,
// with the header and metadata values they become.
type policy struct {
	scopes       []string
	joined       string                    // scopes joined with ","
	scopesHeader *corev3.HeaderValueOption // x-keygate-scopes
	env          string
	envHeader    *corev3.HeaderValueOption // x-keygate-env
	limit        *ratelimit.Limit          // nil: the configured default, unless unlimited
	unlimited    bool                      // no limit, whatever the default
	models       []glob.Pattern            // the models it may call; nil: any
	tokens       *ratelimit.Limit          // its token limit, if any
	spend        *ratelimit.Limit          // its spend budget in nanos, if any
	ips          []netip.Prefix            // the networks it may be used from; nil: any
}

// test reports whether keys with this policy skip the balance check.
func (p *policy) test() bool { return p.env == store.EnvTest }

// NewKey builds the cached form of a key record.
func NewKey(k *store.Key) *Key {
	c := &Key{ID: k.ID, AccountID: intern(k.AccountID), budget: k.LimitID(), policy: internPolicy(k), revoked: k.Revoked(), expiresAt: math.MaxInt64,
		unsupported: strings.Join(k.Unsupported(), ", ")}
	if k.ExpiresAt != nil {
		// Milliseconds hold every date JSON can carry (years 0-9999)
		// without overflow, unlike UnixNano (1678-2262).
		c.expiresAt = k.ExpiresAt.UnixMilli()
	}
	return c
}

func (k *Key) expired(now time.Time) bool { return now.UnixMilli() >= k.expiresAt }

// expiry is when the key expires.
func (k *Key) expiry() time.Time { return time.UnixMilli(k.expiresAt).UTC() }

// interned holds values that many keys share; it grows with the number of
// distinct accounts and policies, which only operators create.
var (
	internedStrings  sync.Map // string -> string
	internedPolicies sync.Map // policyKey -> *policy
)

func intern(s string) string {
	if v, ok := internedStrings.Load(s); ok {
		return v.(string)
	}
	v, _ := internedStrings.LoadOrStore(s, s)
	return v.(string)
}

// policyKey identifies a policy.
type policyKey struct {
	scopes string // joined with NUL: unambiguous, whatever the scopes hold
	test   bool
	limit  ratelimit.Limit
	own    bool // the key has a limit of its own (else limit is zero)
	none   bool // the key is unlimited
	models string
	tokens ratelimit.Limit
	spend  ratelimit.Limit
	ips    string
	ipList bool // the key has allow_ips (and so no address passes an empty one)
}

func internPolicy(k *store.Key) *policy {
	pk := policyKey{scopes: strings.Join(k.Scopes, "\x00"), test: k.Env == store.EnvTest, none: k.NoRateLimit, models: strings.Join(k.Models, "\x00"),
		ips: strings.Join(k.AllowIPs, ","), ipList: k.AllowIPs != nil}
	if k.RateLimit != nil {
		pk.own, pk.limit = true, ratelimit.Limit{Units: k.RateLimit.Requests, Window: time.Duration(k.RateLimit.Window)}
	}
	if t := k.TokenLimit; t != nil {
		pk.tokens = ratelimit.Limit{Units: t.Tokens, Window: time.Duration(t.Window)}
	}
	if b := k.Budget; b != nil {
		pk.spend = spendLimit(b)
	}
	if v, ok := internedPolicies.Load(pk); ok {
		return v.(*policy)
	}
	joined := strings.Join(k.Scopes, ",")
	p := &policy{scopes: slices.Clone(k.Scopes), joined: joined, scopesHeader: header("x-keygate-scopes", joined),
		env: store.EnvLive, envHeader: liveHeader}
	if pk.test {
		p.env, p.envHeader = store.EnvTest, testHeader
	}
	if pk.own {
		limit := pk.limit
		p.limit = &limit
	}
	p.unlimited = pk.none
	for _, m := range k.Models {
		p.models = append(p.models, glob.Compile(m))
	}
	if pk.tokens.Units > 0 {
		tokens := pk.tokens
		p.tokens = &tokens
	}
	if pk.spend.Units > 0 {
		spend := pk.spend
		p.spend = &spend
	}
	if pk.ipList {
		p.ips = make([]netip.Prefix, 0, len(k.AllowIPs))
	}
	for _, e := range k.AllowIPs {
		ip, _ := store.AllowIP(e) // validated with the record; an invalid prefix contains nothing
		p.ips = append(p.ips, ip)
	}
	v, _ := internedPolicies.LoadOrStore(pk, p)
	return v.(*policy)
}

// spendLimit is a budget as a limit of the fleet engine, in nanos.
func spendLimit(b *store.Budget) ratelimit.Limit {
	d, _ := b.Period.Duration() // validated with the record
	l := ratelimit.Limit{Units: b.Amount * money.NanosPerMinor, Window: d}
	switch b.Period {
	case store.Day:
		l.Calendar = ratelimit.Day
	case store.Week:
		l.Calendar = ratelimit.Week
	case store.Month:
		l.Calendar = ratelimit.Month
	}
	return l
}

// The x-keygate-env headers.
var (
	liveHeader = header("x-keygate-env", store.EnvLive)
	testHeader = header("x-keygate-env", store.EnvTest)
)

// Account is the cached form of an account record.
type Account = store.Account

// KeyEntry is the cache entry for a key record at revision rev; a nil
// record (deleted or unreadable) is a negative entry.
func KeyEntry(rev uint64, k *store.Key) *cache.Entry[*Key] {
	e := &cache.Entry[*Key]{Rev: rev}
	if k != nil {
		e.Value, e.Found = NewKey(k), true
	}
	return e
}

// AccountEntry is the cache entry for an account record at revision rev.
func AccountEntry(rev uint64, a *store.Account) *cache.Entry[*Account] {
	return &cache.Entry[*Account]{Value: a, Found: a != nil, Rev: rev}
}

// KeyLoader loads key records by hash for the cache. A record that cannot
// be read counts as missing: the key is denied, never allowed.
func KeyLoader(st *store.Store) cache.Loader[*Key] {
	return func(ctx context.Context, hash string) (*Key, uint64, error) {
		k, rev, err := st.KeyByHash(ctx, hash)
		if err != nil {
			return nil, 0, notFound(err)
		}
		return NewKey(k), rev, nil
	}
}

// AccountLoader loads accounts by id for the cache.
func AccountLoader(st *store.Store) cache.Loader[*Account] {
	return func(ctx context.Context, id string) (*Account, uint64, error) {
		a, rev, err := st.Account(ctx, id)
		if err != nil {
			return nil, 0, notFound(err)
		}
		return a, rev, nil
	}
}

func notFound(err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalidRecord) {
		return cache.ErrNotFound
	}
	return err
}
