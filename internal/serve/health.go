package serve

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/cache"
)

// storeState tracks whether the key store is reachable and the cache
// current. While it is not, cached answers may be served for maxStaleness;
// after a reconnect the cache counts as current again only once every
// change missed has been applied.
type storeState struct {
	downSince atomic.Int64 // unix nanoseconds; 0 while current
	maxStale  time.Duration
	now       func() time.Time

	mu  sync.Mutex
	gen uint64 // counts down() calls, so a catch-up that raced one is ignored
}

// down records that the cache may no longer be current.
func (s *storeState) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.downSince.CompareAndSwap(0, s.now().UnixNano())
}

// generation is the number of down() calls so far.
func (s *storeState) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// currentSince marks the cache current, unless down() was called after
// generation gen was read: a catch-up that began before it proves nothing.
func (s *storeState) currentSince(gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return false
	}
	s.downSince.Store(0)
	return true
}

// Current reports whether the cache is known to be current.
func (s *storeState) Current() bool { return s.downSince.Load() == 0 }

// Stale reports whether cached answers are too old to serve at now.
func (s *storeState) Stale(now time.Time) bool {
	d := s.downSince.Load()
	return d != 0 && now.UnixNano()-d > int64(s.maxStale)
}

// errUnreachable fails a cache fill fast while NATS is away.
var errUnreachable = errors.New("key store unreachable")

// guard makes load fail at once while connected() is false, instead of
// waiting out its timeout.
func guard[V any](load cache.Loader[V], connected func() bool) cache.Loader[V] {
	return func(ctx context.Context, id string) (V, uint64, error) {
		if !connected() {
			var zero V
			return zero, 0, errUnreachable
		}
		return load(ctx, id)
	}
}
