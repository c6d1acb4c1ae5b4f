// Package store reads and writes keygate's records in NATS JetStream
// key-value buckets: key records (by key hash, with an id index) and
// account balances. Every change is a compare-and-set on the entry's
// revision, so concurrent writers never lose an update.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound is returned when a key or account does not exist.
var ErrNotFound = errors.New("not found")

// Entry name prefixes in the keys bucket.
const (
	hashPrefix = "hash."
	idPrefix   = "id."
)

// Options name the buckets and their replication.
type Options struct {
	KeysBucket     string
	AccountsBucket string
	LimitsBucket   string // rate-limit budgets, by key id
	UsageBucket    string // per-key use, by key id
	FilterBucket   string // object store: the key filter's snapshot
	HoldsStream    string // holds of metered requests, by reservation
	LedgerStream   string // settled requests, by account
	TokensBucket   string // admin API tokens, by hash with an id index
	// IdempotencyBucket keeps the admin API's Idempotency-Key claims and
	// results for IdempotencyTTL.
	IdempotencyBucket string
	Replicas          int
	// HoldTTL is how long a hold lives unsettled; its records live an
	// hour longer.
	HoldTTL time.Duration
	// LedgerMaxAge is how long the ledger keeps a settled request.
	LedgerMaxAge time.Duration
}

// DefaultOptions are the bucket names keygate uses unless configured.
func DefaultOptions() Options {
	return Options{KeysBucket: "keygate_keys", AccountsBucket: "keygate_accounts",
		LimitsBucket: "keygate_limits", UsageBucket: "keygate_usage", FilterBucket: "keygate_filter",
		HoldsStream: "keygate_holds", LedgerStream: "keygate_ledger", TokensBucket: "keygate_admin_tokens",
		IdempotencyBucket: "keygate_idempotency", Replicas: 1,
		HoldTTL: time.Hour, LedgerMaxAge: 400 * 24 * time.Hour}
}

// withDefaults fills what o leaves zero from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	for _, f := range []struct{ v, def *string }{{&o.KeysBucket, &d.KeysBucket}, {&o.AccountsBucket, &d.AccountsBucket},
		{&o.LimitsBucket, &d.LimitsBucket}, {&o.UsageBucket, &d.UsageBucket}, {&o.FilterBucket, &d.FilterBucket},
		{&o.HoldsStream, &d.HoldsStream}, {&o.LedgerStream, &d.LedgerStream}, {&o.TokensBucket, &d.TokensBucket},
		{&o.IdempotencyBucket, &d.IdempotencyBucket}} {
		if *f.v == "" {
			*f.v = *f.def
		}
	}
	if o.Replicas == 0 {
		o.Replicas = d.Replicas
	}
	if o.HoldTTL == 0 {
		o.HoldTTL = d.HoldTTL
	}
	if o.LedgerMaxAge == 0 {
		o.LedgerMaxAge = d.LedgerMaxAge
	}
	return o
}

// RecordGrace is how long a hold's records outlive its TTL: a
// settlement or an expiry is still told from a hold never seen.
const RecordGrace = time.Hour

// Store is the key and account store.
type Store struct {
	js          jetstream.JetStream
	keys        jetstream.KeyValue
	accounts    jetstream.KeyValue
	limits      jetstream.KeyValue
	usage       jetstream.KeyValue
	filter      jetstream.ObjectStore
	holdsStream string
	// ledgerStream is the stream of settled requests.
	ledgerStream string
	opts         Options // as opened, defaults filled in
	admin        tokenBuckets

	usageWrites, usageReads atomic.Uint64
}

// Open binds to the buckets, creating any that is missing.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	o = o.withDefaults()
	keys, err := bucket(ctx, js, o.KeysBucket, o.Replicas, "keygate key records")
	if err != nil {
		return nil, err
	}
	accounts, err := bucket(ctx, js, o.AccountsBucket, o.Replicas, "keygate account balances")
	if err != nil {
		return nil, err
	}
	s := &Store{js: js, keys: keys, accounts: accounts, opts: o}
	if s.limits, err = bucket(ctx, js, o.LimitsBucket, o.Replicas, "keygate rate-limit budgets"); err != nil {
		return nil, err
	}
	if s.usage, err = bucket(ctx, js, o.UsageBucket, o.Replicas, "keygate per-key use"); err != nil {
		return nil, err
	}
	if s.filter, err = objectBucket(ctx, js, o.FilterBucket, o.Replicas, "keygate key filter snapshots"); err != nil {
		return nil, err
	}
	if err := s.openMoney(ctx, o); err != nil {
		return nil, err
	}
	return s, nil
}

// attemptTimeout bounds one try at opening a bucket.
const attemptTimeout = 5 * time.Second

func objectBucket(ctx context.Context, js jetstream.JetStream, name string, replicas int, desc string) (jetstream.ObjectStore, error) {
	obs, err := openOrCreate(ctx,
		func(ctx context.Context) (jetstream.ObjectStore, error) { return js.ObjectStore(ctx, name) },
		func(ctx context.Context) (jetstream.ObjectStore, error) {
			return js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: name, Description: desc, Replicas: replicas})
		})
	if err != nil {
		return nil, fmt.Errorf("open object bucket %s: %w", name, err)
	}
	return obs, nil
}

func bucket(ctx context.Context, js jetstream.JetStream, name string, replicas int, desc string) (jetstream.KeyValue, error) {
	return bucketWith(ctx, js, jetstream.KeyValueConfig{Bucket: name, Description: desc, Replicas: replicas})
}

// OpenBucket opens the bucket cfg names, creating it with cfg if it is
// missing. An existing bucket is used as it is: keygates that start
// together send no update of it (an update racing another keygate's new
// watch on the bucket's stream is a data race inside nats-server).
func OpenBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return bucketWith(ctx, js, cfg)
}

func bucketWith(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	name := cfg.Bucket
	kv, err := openOrCreate(ctx,
		func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, name) },
		func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, cfg) })
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	}
	return kv, nil
}

// openOrCreate opens a bucket, creating it if missing (and opening it if
// another keygate created it first), with attemptTimeout per try, tried
// again as retrying says: a JetStream API request lost in a cluster (a
// leader moving) is sent again rather than waited for until ctx's
// deadline, and a bucket the cluster cannot place yet is tried again for
// placementWait.
func openOrCreate[T any](ctx context.Context, open, create func(context.Context) (T, error)) (T, error) {
	var v T
	err := retrying(ctx, func() (err error) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		v, err = open(actx)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			v, err = create(actx)
			if errors.Is(err, jetstream.ErrBucketExists) {
				v, err = open(actx)
			}
		}
		return err
	})
	return v, err
}

// JetStream is the JetStream the buckets are bound through, for watchers.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// Keys is the keys bucket, for watchers.
func (s *Store) Keys() jetstream.KeyValue { return s.keys }

// Accounts is the accounts bucket, for watchers.
func (s *Store) Accounts() jetstream.KeyValue { return s.accounts }

// Limits is the rate-limit budgets bucket.
func (s *Store) Limits() jetstream.KeyValue { return s.limits }

// Usage is the per-key use bucket.
func (s *Store) Usage() jetstream.KeyValue { return s.usage }

// Filter is the object bucket of the key filter's snapshot.
func (s *Store) Filter() jetstream.ObjectStore { return s.filter }

// LastRevision is the last revision written to a bucket: one store query.
func LastRevision(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("status of %s: %w", kv.Bucket(), err)
	}
	js, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, fmt.Errorf("status of %s: no stream info", kv.Bucket())
	}
	return js.StreamInfo().State.LastSeq, nil
}

// HashEntry is the entry name of the key record with the given hash.
func HashEntry(hash string) string { return hashPrefix + hash }

// HashOf returns the hash named by a keys-bucket entry, if it is a record.
func HashOf(entry string) (string, bool) { return strings.CutPrefix(entry, hashPrefix) }

// HashFilter matches every key record in the keys bucket.
const HashFilter = hashPrefix + "*"

// KeyByHash returns the key record with the given hash and its revision.
func (s *Store) KeyByHash(ctx context.Context, hash string) (*Key, uint64, error) {
	e, err := get(ctx, s.keys, HashEntry(hash))
	if err != nil {
		return nil, 0, err
	}
	k, err := DecodeKey(e.Value())
	if err != nil {
		return nil, 0, err
	}
	if k.Hash != hash {
		return nil, 0, fmt.Errorf("%w: key %s is stored under another hash", ErrInvalidRecord, k.ID)
	}
	return k, e.Revision(), nil
}

// KeyByID returns the key record with the given id and its revision.
func (s *Store) KeyByID(ctx context.Context, id string) (*Key, uint64, error) {
	if !idPattern.MatchString(id) {
		return nil, 0, fmt.Errorf("key %q: %w", id, ErrNotFound)
	}
	e, err := get(ctx, s.keys, idPrefix+id)
	if err != nil {
		return nil, 0, fmt.Errorf("key %s: %w", id, err)
	}
	var idx struct {
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal(e.Value(), &idx); err != nil || !hashPattern.MatchString(idx.Hash) {
		return nil, 0, fmt.Errorf("key %s: bad id index entry", id)
	}
	return s.KeyByHash(ctx, idx.Hash)
}

// CreateKey stores a new key record and its id index entry.
func (s *Store) CreateKey(ctx context.Context, k *Key) error {
	if err := k.Validate(); err != nil {
		return err
	}
	idx, _ := json.Marshal(map[string]string{"hash": k.Hash})
	if _, err := s.keys.Create(ctx, idPrefix+k.ID, idx); err != nil {
		return fmt.Errorf("create key %s index: %w", k.ID, err)
	}
	b, _ := json.Marshal(k)
	if _, err := s.keys.Create(ctx, HashEntry(k.Hash), b); err != nil {
		return fmt.Errorf("create key %s: %w", k.ID, err)
	}
	return nil
}

// UpdateKey applies change to the key with the given id and stores the
// result, retrying if another writer got there first.
func (s *Store) UpdateKey(ctx context.Context, id string, change func(*Key) error) (*Key, error) {
	for {
		k, rev, err := s.KeyByID(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(k); err != nil {
			return nil, err
		}
		b, _ := json.Marshal(k)
		_, err = s.keys.Update(ctx, HashEntry(k.Hash), b, rev)
		if !isConflict(err) {
			return k, wrap(err, "update key "+id)
		}
	}
}

// RotateKey makes next the successor of key id. First, in one
// compare-and-set on id's record, it checks the record with check, sets
// its successor_id to next's id and moves its expiry to until if that is
// sooner; then it stores next. A check that refuses a key with a
// successor makes rotations of one key exclusive: of any number of
// concurrent ones, only one stores a successor. If next cannot be stored,
// id gets back its successor and expiry, unless another rotation has
// changed them since. A successor without id's allow_ips, which would
// work from where id does not, is refused. It returns id's record as
// rotated.
func (s *Store) RotateKey(ctx context.Context, id string, next *Key, until time.Time, check func(*Key) error) (*Key, error) {
	if err := next.Validate(); err != nil {
		return nil, err
	}
	var succ string
	var exp *time.Time
	old, err := s.UpdateKey(ctx, id, func(k *Key) error {
		if err := check(k); err != nil {
			return err
		}
		if !slices.Equal(k.AllowIPs, next.AllowIPs) {
			return fmt.Errorf("key %s has allow_ips %s: its successor must have the same", k.ID, orNone(k.AllowIPs))
		}
		succ, exp = k.SuccessorID, k.ExpiresAt
		k.SuccessorID = next.ID
		if k.ExpiresAt == nil || until.Before(*k.ExpiresAt) {
			k.ExpiresAt = &until
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.CreateKey(ctx, next); err != nil {
		_, undo := s.UpdateKey(ctx, id, func(k *Key) error {
			if k.SuccessorID != next.ID {
				return errChanged
			}
			k.SuccessorID, k.ExpiresAt = succ, exp
			return nil
		})
		if undo != nil && !errors.Is(undo, errChanged) {
			return nil, fmt.Errorf("%w; key %s keeps successor_id %s and expires_at %s: %w", err, id, next.ID, until.Format(time.RFC3339), undo)
		}
		return nil, err
	}
	return old, nil
}

// orNone writes a list comma-separated, or "none".
func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ",")
}

// errChanged: another writer changed the record since.
var errChanged = errors.New("changed since")

// ListKeys returns every key record, in no particular order.
func (s *Store) ListKeys(ctx context.Context) ([]*Key, error) {
	w, err := s.keys.Watch(ctx, HashFilter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer w.Stop() //nolint:errcheck // nothing to do about a failed unsubscribe
	var out []*Key
	for e := range w.Updates() {
		if e == nil {
			return out, nil
		}
		if k, err := DecodeKey(e.Value()); err == nil {
			out = append(out, k)
		}
	}
	return nil, fmt.Errorf("list keys: %w", ctx.Err())
}

// Account returns the account with the given id and its revision.
func (s *Store) Account(ctx context.Context, id string) (*Account, uint64, error) {
	if !ValidAccountID(id) {
		return nil, 0, fmt.Errorf("account %q: %w", id, ErrNotFound)
	}
	e, err := get(ctx, s.accounts, id)
	if err != nil {
		return nil, 0, fmt.Errorf("account %s: %w", id, err)
	}
	a, err := DecodeAccount(id, e.Value())
	if err != nil {
		return nil, 0, err
	}
	return a, e.Revision(), nil
}

// UpdateAccount applies change to the account with the given id and stores
// the result, retrying on conflicts. With create, a missing account starts
// at zero in the default currency; without it, a missing account is
// ErrNotFound.
func (s *Store) UpdateAccount(ctx context.Context, id string, create bool, change func(*Account) error) (*Account, error) {
	if !ValidAccountID(id) {
		return nil, fmt.Errorf("account id %q must be 1-64 of [A-Za-z0-9_-]", id)
	}
	for {
		a, rev, err := s.Account(ctx, id)
		if errors.Is(err, ErrNotFound) && create {
			a, rev, err = &Account{ID: id, Currency: money.DefaultCurrency}, 0, nil
		}
		if err != nil {
			return nil, err
		}
		if err := change(a); err != nil {
			return nil, err
		}
		a.UpdatedAt = time.Now().UTC()
		b, _ := json.Marshal(a)
		if rev == 0 {
			_, err = s.accounts.Create(ctx, id, b)
		} else {
			_, err = s.accounts.Update(ctx, id, b, rev)
		}
		if !isConflict(err) {
			return a, wrap(err, "update account "+id)
		}
	}
}

func get(ctx context.Context, kv jetstream.KeyValue, name string) (jetstream.KeyValueEntry, error) {
	e, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", kv.Bucket(), err)
	}
	return e, nil
}

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
