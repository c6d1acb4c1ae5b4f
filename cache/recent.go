package cache

import "time"

// recent remembers the changes applied in the last one to two ttls, in two
// generations of maps: lookups read both, and the older generation is
// dropped when the newer one is ttl old. The ttl needs to outlast only a
// load in flight and ristretto's buffered writes.
type recent[V any] struct {
	now      func() time.Time
	ttl      time.Duration
	cur, old map[string]*Entry[V]
	started  time.Time
}

func newRecent[V any](now func() time.Time, ttl time.Duration) *recent[V] {
	return &recent[V]{now: now, ttl: ttl, cur: map[string]*Entry[V]{}, started: now()}
}

func (r *recent[V]) get(id string) (*Entry[V], bool) {
	if e, ok := r.cur[id]; ok {
		return e, true
	}
	e, ok := r.old[id]
	return e, ok
}

func (r *recent[V]) put(id string, e *Entry[V]) {
	r.rotate()
	r.cur[id] = e
}

// rotate drops the older generation once the newer one is ttl old.
func (r *recent[V]) rotate() {
	now := r.now()
	if now.Sub(r.started) < r.ttl {
		return
	}
	if len(r.cur) == 0 {
		r.old = nil // nothing for a whole ttl: both generations are done
	} else {
		r.old, r.cur = r.cur, map[string]*Entry[V]{}
	}
	r.started = now
}
