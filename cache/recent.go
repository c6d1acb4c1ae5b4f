package cache

import "time"

// recentTTL is how long an applied change is remembered. It needs to
// outlast only a load in flight and ristretto's buffered writes.
const recentTTL = time.Minute

// recent remembers the changes applied in the last one to two recentTTLs,
// in two generations of maps: lookups read both, and the older generation
// is dropped when the newer one is recentTTL old.
type recent[V any] struct {
	now      func() time.Time
	cur, old map[string]*Entry[V]
	started  time.Time
}

func newRecent[V any](now func() time.Time) *recent[V] {
	return &recent[V]{now: now, cur: map[string]*Entry[V]{}, started: now()}
}

func (r *recent[V]) get(id string) (*Entry[V], bool) {
	if e, ok := r.cur[id]; ok {
		return e, true
	}
	e, ok := r.old[id]
	return e, ok
}

func (r *recent[V]) put(id string, e *Entry[V]) {
	if now := r.now(); now.Sub(r.started) >= recentTTL {
		r.old, r.cur, r.started = r.cur, map[string]*Entry[V]{}, now
	}
	r.cur[id] = e
}
