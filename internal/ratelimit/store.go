package ratelimit

import (
	"context"
	"errors"
	"sync"
)

// Store keeps budget entries, each changed only by compare-and-set.
type Store interface {
	// Get returns id's entry and its revision; revision 0 when there is
	// none.
	Get(ctx context.Context, id string) (Entry, uint64, error)
	// Put writes e as id's entry if its revision is still rev (0: if it
	// has none) and returns the new revision, or ErrConflict.
	Put(ctx context.Context, id string, e Entry, rev uint64) (uint64, error)
}

// ErrConflict is a Put whose entry another keygate changed first.
var ErrConflict = errors.New("budget entry changed meanwhile")

// MemStore keeps entries in memory, for a keygate that shares its
// budgets with no other.
type MemStore struct {
	mu      sync.Mutex
	entries map[string]memEntry
}

type memEntry struct {
	e   Entry
	rev uint64
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{entries: map[string]memEntry{}} }

// Get implements Store.
func (s *MemStore) Get(_ context.Context, id string) (Entry, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.entries[id]
	return m.e, m.rev, nil
}

// Put implements Store.
func (s *MemStore) Put(_ context.Context, id string, e Entry, rev uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries[id].rev != rev {
		return 0, ErrConflict
	}
	s.entries[id] = memEntry{e, rev + 1}
	return rev + 1, nil
}
