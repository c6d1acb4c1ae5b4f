package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Token is an admin API token's record, stored as JSON under
// "hash.<sha256 hex of the token>" in the tokens bucket, with the id
// index "id.<id>" ({"hash":"..."}), as keys are. The token itself is
// never stored.
type Token struct {
	ID         string     `json:"id"`
	Hash       string     `json:"hash"`
	Name       string     `json:"name,omitempty"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// Admin token scopes: read allows every read; keys allows key changes,
// balances balance changes, and each every read too.
const (
	TokenScopeRead     = "read"
	TokenScopeKeys     = "keys"
	TokenScopeBalances = "balances"
)

// ValidTokenScope reports whether s is an admin token scope.
func ValidTokenScope(s string) bool {
	return s == TokenScopeRead || s == TokenScopeKeys || s == TokenScopeBalances
}

// tokenIDPattern matches admin token ids: "tok_" and base62.
var tokenIDPattern = regexp.MustCompile(`^tok_[A-Za-z0-9]{1,60}$`)

// ValidTokenID reports whether id can name an admin token.
func ValidTokenID(id string) bool { return tokenIDPattern.MatchString(id) }

// Validate checks a token record.
func (t *Token) Validate() error {
	switch {
	case !ValidTokenID(t.ID):
		return fmt.Errorf("token id %q is not valid", t.ID)
	case !hashPattern.MatchString(t.Hash):
		return fmt.Errorf("token %s: hash is not 64 lowercase hex characters", t.ID)
	case len(t.Scopes) == 0:
		return fmt.Errorf("token %s: no scopes", t.ID)
	}
	return nil
}

// Tokens is the bucket of admin API tokens.
type Tokens struct{ kv jetstream.KeyValue }

// tokenBuckets opens the tokens and idempotency buckets once, when first
// asked for: keygates that serve no admin API never create them.
type tokenBuckets struct {
	mu          sync.Mutex
	tokens      *Tokens
	idempotency jetstream.KeyValue
}

// Tokens opens the admin tokens bucket, creating it if missing.
func (s *Store) Tokens(ctx context.Context) (*Tokens, error) {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	if s.admin.tokens == nil {
		kv, err := bucket(ctx, s.js, s.opts.TokensBucket, s.opts.Replicas, "keygate admin API tokens")
		if err != nil {
			return nil, err
		}
		s.admin.tokens = &Tokens{kv: kv}
	}
	return s.admin.tokens, nil
}

// IdempotencyTTL is how long the admin API remembers an Idempotency-Key.
const IdempotencyTTL = 24 * time.Hour

// Idempotency opens the bucket of the admin API's Idempotency-Key claims
// and results, whose entries live IdempotencyTTL after their last write.
func (s *Store) Idempotency(ctx context.Context) (jetstream.KeyValue, error) {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	if s.admin.idempotency == nil {
		kv, err := bucketWith(ctx, s.js, jetstream.KeyValueConfig{Bucket: s.opts.IdempotencyBucket,
			Description: "keygate admin API idempotency keys", Replicas: s.opts.Replicas, TTL: IdempotencyTTL})
		if err != nil {
			return nil, err
		}
		s.admin.idempotency = kv
	}
	return s.admin.idempotency, nil
}

// Create stores a new token record and its id index entry.
func (t *Tokens) Create(ctx context.Context, tok *Token) error {
	if err := tok.Validate(); err != nil {
		return err
	}
	idx, _ := json.Marshal(map[string]string{"hash": tok.Hash})
	if _, err := t.kv.Create(ctx, idPrefix+tok.ID, idx); err != nil {
		return fmt.Errorf("create token %s index: %w", tok.ID, err)
	}
	b, _ := json.Marshal(tok)
	if _, err := t.kv.Create(ctx, HashEntry(tok.Hash), b); err != nil {
		return fmt.Errorf("create token %s: %w", tok.ID, err)
	}
	return nil
}

// Ensure stores tok unless a record with its hash exists, and returns
// the record stored and whether this call stored it. Of several calls at
// once with the same token (the same id and hash), one stores it and the
// others get it back. An id index entry left by a call that stopped
// before its record was written is completed.
func (t *Tokens) Ensure(ctx context.Context, tok *Token) (*Token, bool, error) {
	if err := tok.Validate(); err != nil {
		return nil, false, err
	}
	if got, _, err := t.ByHash(ctx, tok.Hash); !errors.Is(err, ErrNotFound) {
		return got, false, err
	}
	idx, _ := json.Marshal(map[string]string{"hash": tok.Hash})
	if _, err := t.kv.Create(ctx, idPrefix+tok.ID, idx); isConflict(err) {
		if err := t.indexNames(ctx, tok); err != nil {
			return nil, false, err
		}
	} else if err != nil {
		return nil, false, fmt.Errorf("create token %s index: %w", tok.ID, err)
	}
	b, _ := json.Marshal(tok)
	if _, err := t.kv.Create(ctx, HashEntry(tok.Hash), b); isConflict(err) {
		got, _, err := t.ByHash(ctx, tok.Hash)
		return got, false, err
	} else if err != nil {
		return nil, false, fmt.Errorf("create token %s: %w", tok.ID, err)
	}
	return tok, true, nil
}

// indexNames checks that the id index entry of tok names tok's hash.
func (t *Tokens) indexNames(ctx context.Context, tok *Token) error {
	e, err := get(ctx, t.kv, idPrefix+tok.ID)
	if err != nil {
		return fmt.Errorf("token %s index: %w", tok.ID, err)
	}
	var idx struct {
		Hash string `json:"hash"`
	}
	if json.Unmarshal(e.Value(), &idx) != nil || idx.Hash != tok.Hash {
		return fmt.Errorf("token id %s is taken by another token", tok.ID)
	}
	return nil
}

// ByHash returns the token record with the given hash and its revision.
func (t *Tokens) ByHash(ctx context.Context, hash string) (*Token, uint64, error) {
	if !hashPattern.MatchString(hash) {
		return nil, 0, ErrNotFound
	}
	e, err := get(ctx, t.kv, HashEntry(hash))
	if err != nil {
		return nil, 0, err
	}
	tok, err := decodeToken(e.Value())
	if err != nil {
		return nil, 0, err
	}
	if tok.Hash != hash {
		return nil, 0, fmt.Errorf("%w: token %s is stored under another hash", ErrInvalidRecord, tok.ID)
	}
	return tok, e.Revision(), nil
}

// ByID returns the token record with the given id and its revision.
func (t *Tokens) ByID(ctx context.Context, id string) (*Token, uint64, error) {
	if !ValidTokenID(id) {
		return nil, 0, fmt.Errorf("token %q: %w", id, ErrNotFound)
	}
	e, err := get(ctx, t.kv, idPrefix+id)
	if err != nil {
		return nil, 0, fmt.Errorf("token %s: %w", id, err)
	}
	var idx struct {
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal(e.Value(), &idx); err != nil || !hashPattern.MatchString(idx.Hash) {
		return nil, 0, fmt.Errorf("token %s: bad id index entry", id)
	}
	return t.ByHash(ctx, idx.Hash)
}

// Update applies change to token id and stores the result by
// compare-and-set, retrying if another writer got there first.
func (t *Tokens) Update(ctx context.Context, id string, change func(*Token) error) (*Token, error) {
	for {
		tok, rev, err := t.ByID(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(tok); err != nil {
			return nil, err
		}
		b, _ := json.Marshal(tok)
		_, err = t.kv.Update(ctx, HashEntry(tok.Hash), b, rev)
		if !isConflict(err) {
			return tok, wrap(err, "update token "+id)
		}
	}
}

// Touch sets the last use of tok, read at revision rev, to at by one
// compare-and-set. It reports false, and writes nothing, if another
// writer changed the record since.
func (t *Tokens) Touch(ctx context.Context, tok *Token, rev uint64, at time.Time) (bool, error) {
	next := *tok
	at = at.UTC()
	next.LastUsedAt = &at
	b, _ := json.Marshal(&next)
	_, err := t.kv.Update(ctx, HashEntry(tok.Hash), b, rev)
	if isConflict(err) {
		return false, nil
	}
	return err == nil, wrap(err, "record use of token "+tok.ID)
}

// List returns every token record, in no particular order.
func (t *Tokens) List(ctx context.Context) ([]*Token, error) {
	w, err := t.kv.Watch(ctx, HashFilter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer w.Stop() //nolint:errcheck // nothing to do about a failed unsubscribe
	var out []*Token
	for e := range w.Updates() {
		if e == nil {
			return out, nil
		}
		if tok, err := decodeToken(e.Value()); err == nil {
			out = append(out, tok)
		}
	}
	return nil, fmt.Errorf("list tokens: %w", ctx.Err())
}

func decodeToken(b []byte) (*Token, error) {
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%w: token: %w", ErrInvalidRecord, err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	return &t, nil
}
