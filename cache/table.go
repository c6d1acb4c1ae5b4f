// Package cache keeps records from the key store in memory: recently used
// records (positive entries) and recently missing ones (negative entries,
// short TTL, bounded), in ristretto caches. A miss loads from the store once
// per id however many callers wait on it (single flight). Changes from the
// store's event stream are applied with Apply; an applied change is never
// undone by a load that was in flight when it arrived, and an older
// revision never replaces a newer one.
package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"
)

// ErrNotFound is what a Loader returns for a record that does not exist.
var ErrNotFound = errors.New("not found")

// Loader reads the record with the given id and its store revision.
type Loader[V any] func(ctx context.Context, id string) (V, uint64, error)

// Entry is a cached record, or the fact that it does not exist.
type Entry[V any] struct {
	Value V      // zero when !Found
	Found bool   // false: a negative entry
	Rev   uint64 // store revision this entry reflects
	epoch atomic.Uint64
}

// Options size a Table.
type Options struct {
	MaxEntries  int64         // positive entries
	MaxNegative int64         // negative entries
	NegativeTTL time.Duration // lifetime of a negative entry
	LoadTimeout time.Duration // bound on one load; 2s if zero
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// MayExist, if set, is asked before a load: false means the record
	// does not exist, and it is answered as missing without a load (and
	// without a negative entry, which a flood of such ids would churn).
	MayExist func(id string) bool
	// Settle, if set, is called before a record is answered as missing:
	// it returns once every change written to the store before it was
	// called has been applied, so that a record created just before the
	// call is found. The record is then looked for once more. An error
	// (the store unreachable, or too slow to tell in time) is Get's
	// error: "missing" is never answered without knowing. Its ctx ends
	// early when a change to the record is applied meanwhile: the record
	// is then looked for at once, and Settle called again if it is still
	// missing.
	Settle func(ctx context.Context) error
}

// Table caches one kind of record.
type Table[V any] struct {
	pos    *ristretto.Cache[string, *Entry[V]]
	neg    *ristretto.Cache[string, *Entry[V]]
	load   Loader[V]
	group  singleflight.Group
	negTTL time.Duration
	loadTO time.Duration
	exists func(string) bool
	settle func(context.Context) error
	waits  waits
	stats  Stats

	mu     sync.RWMutex // orders Apply against fills; guards recent
	epoch  atomic.Uint64
	recent *recent[V]
}

// New returns a Table that loads misses with load.
func New[V any](o Options, load Loader[V]) (*Table[V], error) {
	pos, err := newRistretto[V](o.MaxEntries)
	if err != nil {
		return nil, err
	}
	neg, err := newRistretto[V](o.MaxNegative)
	if err != nil {
		pos.Close()
		return nil, err
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	loadTO := o.LoadTimeout
	if loadTO == 0 {
		loadTO = 2 * time.Second
	}
	return &Table[V]{pos: pos, neg: neg, load: load, negTTL: o.NegativeTTL, loadTO: loadTO, exists: o.MayExist, settle: o.Settle,
		recent: newRecent[V](now, 2*loadTO+time.Second)}, nil
}

// newRistretto returns a cache of size entries. Its admission counters
// (about 4 bytes each, all touched as keys hash over them, so all
// resident) number one per entry, not ristretto's suggested ten: that
// costs some hit ratio only when the cache is full, and keeps a cache
// sized for a million keys at 4 MB of counters instead of 40.
func newRistretto[V any](size int64) (*ristretto.Cache[string, *Entry[V]], error) {
	c, err := ristretto.NewCache(&ristretto.Config[string, *Entry[V]]{
		NumCounters:        max(size, 1024),
		MaxCost:            size,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return c, nil
}

// Close releases the caches.
func (t *Table[V]) Close() {
	t.pos.Close()
	t.neg.Close()
}

// Get returns the entry for id from memory, or loads it. A load error is
// returned as is; a missing record is a negative entry, not an error.
// With Settle set, a missing record is looked for again once the changes
// written before Get was called are applied: the answer "missing" is
// never older than the call. A change to id applied meanwhile ends the
// wait early if it makes the record found.
//
// A hit keeps no reference to id, and everything else works on a copy:
// id may live in a buffer the caller reuses once Get returns.
func (t *Table[V]) Get(ctx context.Context, id string) (*Entry[V], error) {
	e, hit := t.cached(id)
	if hit && e.Found {
		return e, nil
	}
	id = strings.Clone(id)
	var err error
	if !hit {
		e, err = t.fetch(ctx, id)
	}
	return t.settled(ctx, id, e, err)
}

// settled is Get's answer once a lookup gave e and err: with Settle set,
// a missing record is looked for again (see Get).
func (t *Table[V]) settled(ctx context.Context, id string, e *Entry[V], err error) (*Entry[V], error) {
	if err != nil || e.Found || t.settle == nil {
		return e, err
	}
	t.stats.Settles.Add(1)
	wctx, done := t.waits.join(ctx, id)
	err = t.settle(wctx)
	switch woken := done(); {
	case err == nil:
		return t.get(ctx, id)
	case !woken:
		return e, err
	}
	// Woken by a change to id before Settle was done: a found record is
	// as current as the change stream, a missing one is not known yet.
	if e, err = t.get(ctx, id); err != nil || e.Found {
		return e, err
	}
	if err := t.settle(ctx); err != nil {
		return e, err
	}
	return t.get(ctx, id)
}

func (t *Table[V]) get(ctx context.Context, id string) (*Entry[V], error) {
	if e, ok := t.cached(id); ok {
		return e, nil
	}
	return t.fetch(ctx, id)
}

// cached returns id's entry if the positive cache holds it, counted as a
// hit; it keeps no reference to id.
func (t *Table[V]) cached(id string) (*Entry[V], bool) {
	e, ok := t.pos.Get(id)
	if !ok {
		return nil, false
	}
	t.stats.Hits.Add(1)
	return t.current(id, e), true
}

// fetch is get for an id the positive cache does not hold: the negative
// cache's entry, or a load.
func (t *Table[V]) fetch(ctx context.Context, id string) (*Entry[V], error) {
	if e, ok := t.neg.Get(id); ok {
		t.stats.NegativeHits.Add(1)
		return t.current(id, e), nil
	}
	t.stats.Misses.Add(1)
	if t.exists != nil && !t.exists(id) {
		t.stats.Filtered.Add(1)
		return t.current(id, missing[V]()), nil
	}
	ch := t.group.DoChan(id, func() (any, error) { return t.fill(ctx, id) })
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-ctx.Done(): // the shared fill goes on for the others
		return nil, ctx.Err()
	}
	if r.Err != nil {
		return nil, r.Err
	}
	v := r.Val
	// A change applied after the shared fill read the store, but before
	// this call joined it, must still be seen.
	return t.current(id, v.(*Entry[V])), nil
}

// current returns e, or the newer entry an applied event left for id.
func (t *Table[V]) current(id string, e *Entry[V]) *Entry[V] {
	epoch := t.epoch.Load()
	if e.epoch.Load() == epoch {
		return e
	}
	t.mu.RLock()
	r, ok := t.recent.get(id)
	t.mu.RUnlock()
	if ok && r.Rev > e.Rev {
		return r
	}
	e.epoch.Store(epoch)
	return e
}

// fill loads id. Callers share it, so it does not end with the first
// caller's context.
func (t *Table[V]) fill(ctx context.Context, id string) (*Entry[V], error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.loadTO)
	defer cancel()
	t.stats.Loads.Add(1)
	v, rev, err := t.load(ctx, id)
	found := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.stats.LoadErrors.Add(1)
		return nil, err
	}
	e := &Entry[V]{Value: v, Found: found, Rev: rev}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recent.rotate()
	if r, ok := t.recent.get(id); ok && r.Rev >= e.Rev {
		e = r
	}
	t.store(id, e)
	return e, nil
}

// store caches e; the caller holds t.mu.
func (t *Table[V]) store(id string, e *Entry[V]) {
	e.epoch.Store(t.epoch.Load())
	if e.Found {
		t.pos.Set(id, e, 1)
	} else {
		t.neg.SetWithTTL(id, e, 1, t.negTTL)
	}
}

// Apply records a change from the store: the record id is now e (a
// negative entry for a deletion). Changes older than one already applied
// are ignored. It reports whether e was applied.
func (t *Table[V]) Apply(id string, e *Entry[V]) bool {
	defer t.waits.applied(id) // after the unlock: what a Get finds is e or newer
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.recent.get(id); ok && r.Rev >= e.Rev {
		return false
	}
	cur, cached := t.pos.Get(id)
	if !cached {
		cur, _ = t.neg.Get(id)
	}
	if cur != nil && cur.Rev >= e.Rev { // a fill already read this or newer
		return false
	}
	t.recent.put(id, e)
	t.epoch.Add(1)
	t.pos.Del(id)
	t.neg.Del(id)
	if cached && e.Found {
		t.store(id, e)
	}
	return true
}

// Wait blocks until buffered writes are applied; for tests and benchmarks.
func (t *Table[V]) Wait() {
	t.pos.Wait()
	t.neg.Wait()
}

// Len returns the number of positive and negative entries held.
func (t *Table[V]) Len() (positive, negative int64) {
	return t.pos.MaxCost() - t.pos.RemainingCost(), t.neg.MaxCost() - t.neg.RemainingCost()
}

// Stats returns the table's counters.
func (t *Table[V]) Stats() *Stats { return &t.stats }

// missing is the entry for a record MayExist says does not exist: its
// revision 0 is older than any change, so one applied since wins.
func missing[V any]() *Entry[V] { return &Entry[V]{} }

// Stats counts cache outcomes.
type Stats struct {
	Hits, NegativeHits, Misses atomic.Uint64
	Loads, LoadErrors          atomic.Uint64 // store lookups and their failures
	Filtered                   atomic.Uint64 // misses MayExist answered without a lookup
	Settles                    atomic.Uint64 // missing records looked for again after Settle
}
