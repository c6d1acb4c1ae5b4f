package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/shrink"
)

// KVStore keeps budgets in a NATS KV bucket, one entry per key (named by
// the key id) holding the requests leased in its latest two windows, by
// window index, as JSON:
// {"limit":600,"window_ns":60000000000,"granted":{"29876543":250,"29876544":20}},
// changed only by compare-and-set.
type KVStore struct {
	kv   jetstream.KeyValue
	mu   sync.Mutex
	last map[string]revision // each key's entry as this keygate last wrote or read it
	peak int                 // for shrink.Map

	writes, reads atomic.Uint64
}

// Stats returns how many writes (leases and hand-backs, conflicts
// included) and reads this store has sent to the bucket.
func (s *KVStore) Stats() (writes, reads uint64) { return s.writes.Load(), s.reads.Load() }

type revision struct {
	rev uint64
	b   budget
}

// NewKVStore returns a Store on kv.
func NewKVStore(kv jetstream.KeyValue) *KVStore {
	return &KVStore{kv: kv, last: map[string]revision{}}
}

func (s *KVStore) remember(key string, r revision) {
	s.mu.Lock()
	s.last[key] = r
	s.mu.Unlock()
}

var _ Store = (*KVStore)(nil)

// Lease implements Store.
func (s *KVStore) Lease(ctx context.Context, key string, limit Limit, index, want int64) (int64, int64, error) {
	var got int64
	b, err := s.update(ctx, key, func(b budget) (budget, bool) {
		b, got = b.lease(limit, index, want)
		return b, got > 0
	})
	g, _ := b.granted(index)
	return got, g, err
}

var (
	_ sharer  = (*KVStore)(nil)
	_ granter = (*KVStore)(nil)
)

// Granted implements granter, from the entry seen last.
func (s *KVStore) Granted(key string, limit Limit, index int64) (int64, bool) {
	_, b, ok := s.Seen(key)
	if !ok {
		return 0, false
	}
	return b.grantedUnder(limit, index)
}

// Seen implements sharer.
func (s *KVStore) Seen(key string) (uint64, budget, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.last[key]
	return r.rev, r.b, ok
}

// Learn implements sharer.
func (s *KVStore) Learn(key string, rev uint64, b budget) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.last[key]; !ok || r.rev < rev {
		s.last[key] = revision{rev, b}
	}
}

// Forget drops what the store remembers of key's entry; the next lease
// reads it afresh.
func (s *KVStore) Forget(key string) {
	s.mu.Lock()
	delete(s.last, key)
	s.last = shrink.Map(s.last, &s.peak)
	s.mu.Unlock()
}

// Return implements Store.
func (s *KVStore) Return(ctx context.Context, key string, limit Limit, index, n int64) error {
	_, err := s.update(ctx, key, func(b budget) (budget, bool) { return b.giveBack(limit, index, n) })
	return err
}

// update applies change to key's budget with compare-and-set, starting
// from the entry as last seen here and reading it afresh on a conflict.
// A change that writes nothing is checked against a fresh read too, since
// the entry seen last may be out of date.
func (s *KVStore) update(ctx context.Context, key string, change func(budget) (budget, bool)) (budget, error) {
	s.mu.Lock()
	r, cached := s.last[key]
	s.mu.Unlock()
	fresh := !cached
	for {
		if fresh {
			var err error
			if r, err = s.read(ctx, key); err != nil {
				return budget{}, err
			}
		}
		b, write := change(r.b)
		if !write {
			if fresh {
				s.remember(key, r)
				return b, nil
			}
			fresh = true
			continue
		}
		data, _ := json.Marshal(b)
		s.writes.Add(1)
		var rev uint64
		var err error
		if r.rev == 0 {
			rev, err = s.kv.Create(ctx, key, data)
		} else {
			rev, err = s.kv.Update(ctx, key, data, r.rev)
		}
		switch {
		case err == nil:
			s.remember(key, revision{rev, b})
			return b, nil
		case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			fresh = true // another keygate wrote first
		default:
			return budget{}, fmt.Errorf("rate-limit budget of %s: %w", key, err)
		}
	}
}

func (s *KVStore) read(ctx context.Context, key string) (revision, error) {
	s.reads.Add(1)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		if e != nil {
			return revision{rev: e.Revision()}, nil // deleted: update after the delete marker
		}
		return revision{}, nil
	}
	if err != nil {
		return revision{}, fmt.Errorf("rate-limit budget of %s: %w", key, err)
	}
	var b budget
	if json.Unmarshal(e.Value(), &b) != nil {
		b = budget{} // unreadable: start afresh, as for a new key
	}
	return revision{e.Revision(), b}, nil
}
