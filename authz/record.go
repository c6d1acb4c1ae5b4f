package authz

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// Key is the cached form of a key record: what a decision needs, kept
// small (a million of them fit in a few hundred megabytes). What many keys
// share (account ids, scope lists, limits) is interned.
type Key struct {
	ID        string
	AccountID string
	scopes    *scopeSet
	limit     *ratelimit.Limit // nil: the configured default
	rate      ratelimit.Slot   // where the limiter keeps this key's state
	expiresAt int64            // unix nanoseconds; 0: never
	revoked   bool
	test      bool // env test: no balance check
}

// scopeSet is a key's scopes, and the same joined with "," as headers and
// metadata carry them.
type scopeSet struct {
	list   []string
	joined string
	header *corev3.HeaderValueOption // x-keygate-scopes
}

// NewKey builds the cached form of a key record.
func NewKey(k *store.Key) *Key {
	c := &Key{ID: k.ID, AccountID: intern(k.AccountID), scopes: internScopes(k.Scopes),
		revoked: k.Revoked(), test: k.Env == store.EnvTest}
	if k.ExpiresAt != nil {
		c.expiresAt = k.ExpiresAt.UnixNano()
	}
	if k.RateLimit != nil {
		c.limit = internLimit(ratelimit.Limit{Requests: k.RateLimit.Requests, Window: time.Duration(k.RateLimit.Window)})
	}
	return c
}

// env is the key's environment, "live" or "test".
func (k *Key) env() string {
	if k.test {
		return store.EnvTest
	}
	return store.EnvLive
}

// The x-keygate-env headers.
var (
	liveHeader = header("x-keygate-env", store.EnvLive)
	testHeader = header("x-keygate-env", store.EnvTest)
)

func (k *Key) envHeader() *corev3.HeaderValueOption {
	if k.test {
		return testHeader
	}
	return liveHeader
}

func (k *Key) expired(now time.Time) bool {
	return k.expiresAt != 0 && now.UnixNano() >= k.expiresAt
}

// interned holds values that many keys share; it grows with the number of
// distinct accounts, scope lists and limits, which only operators create.
var (
	internedStrings sync.Map // string -> string
	internedScopes  sync.Map // scopes joined with NUL -> *scopeSet
	internedLimits  sync.Map // ratelimit.Limit -> *ratelimit.Limit
)

func intern(s string) string {
	if v, ok := internedStrings.Load(s); ok {
		return v.(string)
	}
	v, _ := internedStrings.LoadOrStore(s, s)
	return v.(string)
}

func internScopes(scopes []string) *scopeSet {
	k := strings.Join(scopes, "\x00") // unambiguous, whatever the scopes hold
	if v, ok := internedScopes.Load(k); ok {
		return v.(*scopeSet)
	}
	joined := strings.Join(scopes, ",")
	set := &scopeSet{list: slices.Clone(scopes), joined: joined, header: header("x-keygate-scopes", joined)}
	v, _ := internedScopes.LoadOrStore(k, set)
	return v.(*scopeSet)
}

func internLimit(l ratelimit.Limit) *ratelimit.Limit {
	if v, ok := internedLimits.Load(l); ok {
		return v.(*ratelimit.Limit)
	}
	v, _ := internedLimits.LoadOrStore(l, &l)
	return v.(*ratelimit.Limit)
}

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
