package authz

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// Key is the cached form of a key record: what a decision needs, kept
// small (a million of them fit in a few hundred megabytes). Strings shared
// by many keys (account ids, scope lists) are interned.
type Key struct {
	ID        string
	AccountID string
	Env       string
	Scopes    []string
	Limit     *ratelimit.Limit // nil: the configured default
	ExpiresAt time.Time        // zero: never
	Revoked   bool
	scopes    string // Scopes joined with ",", as headers carry them
}

// NewKey builds the cached form of a key record.
func NewKey(k *store.Key) *Key {
	joined := intern(strings.Join(k.Scopes, ","))
	c := &Key{ID: k.ID, AccountID: intern(k.AccountID), Env: intern(k.Env), Scopes: internScopes(joined, k.Scopes),
		Revoked: k.Revoked(), scopes: joined}
	if k.ExpiresAt != nil {
		c.ExpiresAt = *k.ExpiresAt
	}
	if k.RateLimit != nil {
		c.Limit = &ratelimit.Limit{Requests: k.RateLimit.Requests, Window: time.Duration(k.RateLimit.Window)}
	}
	return c
}

// interned holds strings that many keys share; it grows with the number
// of distinct accounts and scope lists, which only operators create.
var (
	interned   sync.Map // string -> string
	scopeLists sync.Map // joined scopes -> []string
)

func intern(s string) string {
	if v, ok := interned.Load(s); ok {
		return v.(string)
	}
	v, _ := interned.LoadOrStore(s, s)
	return v.(string)
}

func internScopes(joined string, scopes []string) []string {
	if v, ok := scopeLists.Load(joined); ok {
		return v.([]string)
	}
	v, _ := scopeLists.LoadOrStore(joined, slices.Clone(scopes))
	return v.([]string)
}

func (k *Key) expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// Account is the cached form of an account record.
type Account = store.Account

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
