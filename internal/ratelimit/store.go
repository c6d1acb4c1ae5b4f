package ratelimit

import (
	"context"
	"maps"
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

// budget is what a Store keeps per key: its limit, and the requests
// leased in its latest two windows (the current one and the next, which
// keygates lease a little of before it starts), by window index.
type budget struct {
	Limit   int64           `json:"limit"`
	Window  int64           `json:"window_ns"`
	Granted map[int64]int64 `json:"granted"`
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
	return got, b.Granted[index], nil
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

// lease takes up to want requests from b for window index under limit.
// A window two or more behind b's newest is over and grants nothing; a
// new one drops the windows that are not its neighbours. A budget for
// another limit is replaced whole.
func (b budget) lease(limit Limit, index, want int64) (budget, int64) {
	if !b.holds(limit) {
		b = budget{Limit: limit.Requests, Window: int64(limit.Window)}
	}
	granted, ok := b.Granted[index]
	if !ok {
		for i := range b.Granted {
			if index < i-1 {
				return b, 0
			}
		}
		g := map[int64]int64{index: 0}
		for i, n := range b.Granted {
			if i >= index-1 && i <= index+1 {
				g[i] = n
			}
		}
		b.Granted = g
	}
	got := min(want, b.Limit-granted)
	if got <= 0 {
		return b, 0
	}
	b.Granted = maps.Clone(b.Granted)
	b.Granted[index] = granted + got
	return b, got
}

// giveBack returns n requests to b if it still holds window index.
func (b budget) giveBack(limit Limit, index, n int64) (budget, bool) {
	granted, ok := b.Granted[index]
	if !b.holds(limit) || !ok || n <= 0 {
		return b, false
	}
	b.Granted = maps.Clone(b.Granted)
	b.Granted[index] = max(granted-n, 0)
	return b, true
}

func (b budget) holds(limit Limit) bool {
	return b.Limit == limit.Requests && b.Window == int64(limit.Window)
}
