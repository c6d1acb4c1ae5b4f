package ratelimit

import (
	"context"
	"sync"
)

// Store holds every key's budget for its current window, shared by the
// keygates that lease from it.
type Store interface {
	// Lease takes up to want requests of key's budget for window index
	// under limit. It returns how many it took (0 once the budget is spent)
	// and how many the fleet has taken in the window, these included.
	Lease(ctx context.Context, key string, limit Limit, index, want int64) (got, granted int64, err error)
	// Return gives back n requests leased in window index and not used.
	Return(ctx context.Context, key string, limit Limit, index, n int64) error
}

// LocalStore keeps budgets in memory, for a keygate that shares them with
// no other.
type LocalStore struct {
	mu      sync.Mutex
	budgets map[string]budget
}

// budget is what a Store keeps per key.
type budget struct {
	Limit   int64 `json:"limit"`
	Window  int64 `json:"window_ns"`
	Index   int64 `json:"index"`
	Granted int64 `json:"granted"`
}

// NewLocalStore returns an empty LocalStore.
func NewLocalStore() *LocalStore { return &LocalStore{budgets: map[string]budget{}} }

var _ Store = (*LocalStore)(nil)

// Lease implements Store.
func (s *LocalStore) Lease(_ context.Context, key string, limit Limit, index, want int64) (int64, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, got := s.budgets[key].lease(limit, index, want)
	s.budgets[key] = b
	return got, b.Granted, nil
}

// Return implements Store.
func (s *LocalStore) Return(_ context.Context, key string, limit Limit, index, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.budgets[key].giveBack(limit, index, n); ok {
		s.budgets[key] = b
	}
	return nil
}

// lease takes up to want requests from b for window index under limit,
// starting the window's budget if b holds an older one (or another limit).
// A b ahead of index (a keygate whose clock is behind) grants nothing.
func (b budget) lease(limit Limit, index, want int64) (budget, int64) {
	if !b.holds(limit) || b.Index < index {
		b = budget{Limit: limit.Requests, Window: int64(limit.Window), Index: index}
	}
	if b.Index > index {
		return b, 0
	}
	got := min(want, b.Limit-b.Granted)
	if got <= 0 {
		return b, 0
	}
	b.Granted += got
	return b, got
}

// giveBack returns n requests to b if it still holds window index.
func (b budget) giveBack(limit Limit, index, n int64) (budget, bool) {
	if !b.holds(limit) || b.Index != index || n <= 0 {
		return b, false
	}
	b.Granted = max(b.Granted-n, 0)
	return b, true
}

func (b budget) holds(limit Limit) bool {
	return b.Limit == limit.Requests && b.Window == int64(limit.Window)
}
