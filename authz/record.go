package authz

import (
	"context"
	"errors"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// Key is the cached form of a key record: what a decision needs, with the
// upstream headers and metadata of an allow built once.
type Key struct {
	ID        string
	AccountID string
	Env       string
	Scopes    []string
	Limit     *ratelimit.Limit // nil: the configured default
	ExpiresAt time.Time        // zero: never
	Revoked   bool

	upstream []*corev3.HeaderValueOption
	metadata *structpb.Struct
}

// NewKey builds the cached form of a key record.
func NewKey(k *store.Key) *Key {
	c := &Key{ID: k.ID, AccountID: k.AccountID, Env: k.Env, Scopes: k.Scopes, Revoked: k.Revoked()}
	if k.ExpiresAt != nil {
		c.ExpiresAt = *k.ExpiresAt
	}
	if k.RateLimit != nil {
		c.Limit = &ratelimit.Limit{Requests: k.RateLimit.Requests, Window: time.Duration(k.RateLimit.Window)}
	}
	scopes := strings.Join(k.Scopes, ",")
	c.upstream = []*corev3.HeaderValueOption{
		header("x-keygate-key-id", k.ID),
		header("x-keygate-account-id", k.AccountID),
		header("x-keygate-scopes", scopes),
		header("x-keygate-env", k.Env),
	}
	c.metadata = &structpb.Struct{Fields: map[string]*structpb.Value{
		"key_id":     structpb.NewStringValue(k.ID),
		"account_id": structpb.NewStringValue(k.AccountID),
		"scopes":     structpb.NewStringValue(scopes),
		"env":        structpb.NewStringValue(k.Env),
	}}
	return c
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
