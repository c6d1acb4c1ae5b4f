package serve

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/cache"
)

// storeState tracks whether the key store is reachable and the cache
// current. While NATS is away, cached answers may be served for
// maxStaleness; after a reconnect the cache counts as current again only
// once every change missed has been applied.
type storeState struct {
	downSince atomic.Int64 // unix nanoseconds; 0 while current
	maxStale  time.Duration
	now       func() time.Time
}

func (s *storeState) down() {
	s.downSince.CompareAndSwap(0, s.now().UnixNano())
}

func (s *storeState) current() { s.downSince.Store(0) }

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
