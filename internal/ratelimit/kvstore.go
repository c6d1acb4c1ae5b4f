package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
)

// KVStore keeps budget entries in a NATS KV bucket, one per budget (named
// by its id), as JSON (see Entry).
type KVStore struct {
	kv            jetstream.KeyValue
	writes, reads atomic.Uint64
}

var _ Store = (*KVStore)(nil)

// NewKVStore returns a Store on kv.
func NewKVStore(kv jetstream.KeyValue) *KVStore { return &KVStore{kv: kv} }

// Stats returns how many writes (refused ones included) and reads this
// store has sent to the bucket.
func (s *KVStore) Stats() (writes, reads uint64) { return s.writes.Load(), s.reads.Load() }

// Get implements Store.
func (s *KVStore) Get(ctx context.Context, id string) (Entry, uint64, error) {
	s.reads.Add(1)
	kve, err := s.kv.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		if kve != nil {
			return Entry{}, kve.Revision(), nil // deleted: write after the marker
		}
		return Entry{}, 0, nil
	case err != nil:
		return Entry{}, 0, fmt.Errorf("budget %s: %w", id, err)
	}
	e, err := decodeEntry(kve.Value())
	if err != nil {
		return Entry{}, 0, fmt.Errorf("budget %s: %w", id, err)
	}
	return e, kve.Revision(), nil
}

// Put implements Store.
func (s *KVStore) Put(ctx context.Context, id string, e Entry, rev uint64) (uint64, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	s.writes.Add(1)
	if rev == 0 {
		rev, err = s.kv.Create(ctx, id, data)
	} else {
		rev, err = s.kv.Update(ctx, id, data, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, ErrConflict
	case err != nil:
		return 0, fmt.Errorf("budget %s: %w", id, err)
	}
	return rev, nil
}
