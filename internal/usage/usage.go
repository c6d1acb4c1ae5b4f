// Package usage counts each key's checks by outcome in memory and writes
// them, batched, to the key store, merged with what the other keygates
// wrote (counts per UTC day, and the last use to the minute). A key used
// since its last write is written again once this keygate has not
// written it in the current minute: a key in constant use costs one write
// a minute. Run writes each key from its own offset into the minute on
// (spread over the first 20 s), checking every second, so that a keygate
// with every key in use does not write them all at once, and a new
// last-use minute is written within about 21 s. A key that counted
// nothing for a flush interval is forgotten, what it held written a
// second later: a burst's keys leave memory within two flush intervals,
// and a key used less often than the flush interval costs a write each
// time it goes quiet.
package usage

import (
	"cmp"
	"context"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/shrink"
	"github.com/keygate/keygate/internal/store"
	"github.com/keygate/keygate/internal/tick"
)

// Outcomes are what a check of a known key can end in: "ok" or a deny's
// error code.
var Outcomes = []string{
	"ok", "invalid_api_key", "expired_api_key", "insufficient_permissions",
	"insufficient_balance", "rate_limit_exceeded", "auth_unavailable", "invalid_path",
}

// outcomeIndex maps an outcome to its counter.
var outcomeIndex = func() map[string]int {
	m := map[string]int{}
	for i, o := range Outcomes {
		m[o] = i
	}
	return m
}()

// Writer stores what a flush found: counts by outcome for a key on day,
// and its last use, starting from the key's entry as last written here
// (nil: read it), and returns the entry as written.
type Writer interface {
	AddUsage(ctx context.Context, keyID string, last *store.UsageEntry, day time.Time, counts map[string]int64, used time.Time) (*store.UsageEntry, error)
}

// Recorder counts checks per key and flushes them to a Writer.
type Recorder struct {
	w       Writer
	now     func() time.Time
	log     *slog.Logger
	mu      sync.Mutex // one flush at a time; guards retired
	cmu     sync.Mutex
	counts  map[string]*Counter // by key id
	peak    int                 // for shrink.Map
	retired []*Counter
	writes  atomic.Uint64
	// sharedUntil (unix seconds): until then, every write reads the
	// entry first, as another keygate writes the same keys (see write).
	sharedUntil atomic.Int64
	spread      time.Duration // keys are due from their offset into this much of each minute; set by Run
}

// offsetSeed places keys in the spread, the same way for the process's
// life.
var offsetSeed = maphash.MakeSeed()

// spreadOver is how much of each minute Run spreads the keys' writes
// over: with a check every second, a key first used in a minute is
// written within about 21 s, well inside the 30 s in which its last use
// must show.
const spreadOver = 20 * time.Second

// sharedFor is how long, after a write found another keygate's in its
// way, this keygate reads each entry before writing it: in a fleet behind
// one balancer every key is in use everywhere, and a read and a write
// cost less than a refused write, a read and a write. The mode lapses
// without conflicts: a lone keygate writes without reading.
const sharedFor = 10 * time.Minute

// readFirst marks an entry to be read before it is written.
var readFirst = &store.UsageEntry{Shared: true}

// Writes returns how many writes flushes have made.
func (r *Recorder) Writes() uint64 { return r.writes.Load() }

// New returns a Recorder writing to w; now is the clock (time.Now if nil).
func New(w Writer, now func() time.Time, log *slog.Logger) *Recorder {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{w: w, now: now, log: log, counts: map[string]*Counter{}}
}

// Counter is one key's counts since the last flush.
type Counter struct {
	key     string
	hash    uint32               // places the key's offset into the minute
	n       [8]atomic.Int64      // by Outcomes
	taken   int64                // counts taken for writes so far; the flusher's
	seen    int64                // counted() at the last flush that retires; the flusher's
	written int64                // unix minute of the last write here; the flusher's
	last    *store.UsageEntry    // the key's entry as last written here; the flusher's
	dead    atomic.Bool          // dropped from the Recorder: count in a new Counter
	slot    atomic.Pointer[Slot] // the Slot last given c
}

// Slot remembers a key's Counter, so that a caller holding one per key
// (next to its cached record) skips the lookup by key. Retiring a
// Counter empties its Slot, so that it goes even while the caller keeps
// the Slot. The Slot also keeps the minute the key was last written, so
// that a key back in use in that minute waits for the next, as if its
// Counter had stayed.
type Slot struct {
	c       atomic.Pointer[Counter]
	written atomic.Int64 // unix minute
}

// Count records one check of key id that ended in outcome; outcomes not
// in Outcomes are not counted.
func (r *Recorder) Count(slot *Slot, id, outcome string) {
	i, ok := outcomeIndex[outcome]
	if !ok {
		return
	}
	c := slot.c.Load()
	if c == nil || c.dead.Load() {
		c = r.counter(id, slot)
		slot.c.Store(c)
		c.slot.Store(slot)
		if c.dead.Load() { // retired meanwhile, maybe before it saw slot
			slot.c.CompareAndSwap(c, nil)
		}
	}
	c.n[i].Add(1)
}

func (r *Recorder) counter(id string, slot *Slot) *Counter {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	c, ok := r.counts[id]
	if !ok {
		c = &Counter{key: id, hash: uint32(maphash.String(offsetSeed, id)), written: slot.written.Load()}
		r.counts[id] = c
	}
	return c
}

// all returns every live Counter.
func (r *Recorder) all() []*Counter {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	return slices.Collect(maps.Values(r.counts))
}

// retire drops c: a check that finds it dead counts in a new Counter.
func (r *Recorder) retire(c *Counter) {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	c.dead.Store(true)
	if slot := c.slot.Load(); slot != nil {
		slot.c.CompareAndSwap(c, nil)
	}
	if r.counts[c.key] == c {
		delete(r.counts, c.key)
		r.counts = shrink.Map(r.counts, &r.peak)
	}
}

// Run flushes until ctx ends: every second (at most every interval) the
// keys due, each from its offset into the minute (spreadOver), and every
// interval also retires the keys that counted nothing since.
func (r *Recorder) Run(ctx context.Context, interval time.Duration) {
	step := min(interval, time.Second)
	r.mu.Lock()
	r.spread = spreadOver
	r.mu.Unlock()
	var since time.Duration
	tick.Every(ctx, step, func() {
		since += step
		retire := since >= interval
		if retire {
			since = 0
		}
		// Bounded, so that a NATS outage delays the next flush at most
		// this long; what was not written is written later.
		fctx, cancel := context.WithTimeout(ctx, max(interval, 5*time.Second))
		defer cancel()
		if err := r.flush(fctx, false, retire); err != nil {
			r.log.Warn("recording key usage", "err", err)
		}
		if !retire {
			return
		}
		// The counters just retired go a moment later rather than at the
		// next flush: a sidecar's memory falls back soon after a burst.
		if interval <= retireGrace || !r.retiring() {
			return // the next flush is as soon, or there is nothing to drop
		}
		select {
		case <-time.After(retireGrace):
		case <-ctx.Done():
			return
		}
		if err := r.flushRetired(fctx); err != nil {
			r.log.Warn("recording key usage", "err", err)
		}
	})
}

// retireGrace is how long a retired Counter is kept for a check that
// found it just before it was retired and counts in it after: that check
// is between two instructions, so a second is ample (a count later still
// would be lost).
const retireGrace = time.Second

// retiring reports whether counters retired at the last flush wait to go.
func (r *Recorder) retiring() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.retired) > 0
}

// flushRetired writes what was counted in the Counters retired at the
// last flush since, and drops them.
func (r *Recorder) flushRetired(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	due := r.retired
	r.retired = nil
	return r.writeAll(ctx, due, r.now())
}

// writers is how many writes a flush has in flight at once.
const writers = 8

// Flush writes every count gathered and not yet written, one write per
// key (writers at a time), and forgets keys that counted nothing since
// the last flush (what they hold is written a moment later, see Run).
// Counts that fail to be written are kept for the next flush.
func (r *Recorder) Flush(ctx context.Context) error { return r.flush(ctx, true, true) }

// FlushDue is Flush for the keys not yet written in this minute (from
// their offset into it on, under Run); the others wait for a flush in a
// later minute.
func (r *Recorder) FlushDue(ctx context.Context) error { return r.flush(ctx, false, true) }

// flush writes the keys due (all of them, if all) and, if retire, drops
// those that counted nothing since the last flush that retired.
func (r *Recorder) flush(ctx context.Context, all, retire bool) error {
	r.mu.Lock() // one flush at a time
	defer r.mu.Unlock()
	now := r.now()
	minute := now.Unix() / 60
	// Counters retired at the last flush: a check that found one just
	// before it was retired may have counted in it since.
	due := r.retired
	r.retired = nil
	var live []*Counter
	for _, c := range r.all() {
		switch {
		case retire && c.counted() == c.seen: // nothing counted since the last flush
			// The key is idle, or went quiet with counts this minute's
			// write left: they are written with what a late check adds
			// (at once by Flush, at shutdown).
			r.retire(c)
			if c.total() == 0 {
				c.last = nil // the entry goes now; a late count reads it afresh
			}
			if all {
				due = append(due, c)
			} else {
				r.retired = append(r.retired, c)
			}
		case all || c.written != minute && c.total() > 0 && now.Sub(now.Truncate(time.Minute)) >= r.offset(c):
			due = append(due, c)
			live = append(live, c)
		default:
			live = append(live, c)
		}
	}
	err := r.writeAll(ctx, due, now)
	if retire {
		for _, c := range live {
			c.seen = c.counted()
		}
	}
	return err
}

// offset is how far into each minute c is due: its place in the spread.
func (r *Recorder) offset(c *Counter) time.Duration {
	return time.Duration(uint64(c.hash)*uint64(r.spread/time.Millisecond)>>32) * time.Millisecond
}

// writeAll writes the counts of due, writers at a time; the caller holds
// r.mu. A retired Counter whose counts could not be written, or that
// counted since, is kept for the next flush.
func (r *Recorder) writeAll(ctx context.Context, due []*Counter, now time.Time) error {
	minute := now.Unix() / 60
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		errMu    sync.Mutex
		firstErr error
	)
	for range min(writers, len(due)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(due)); i = next.Add(1) - 1 {
				c := due[i]
				counts := c.take()
				if len(counts) == 0 {
					continue
				}
				r.writes.Add(1)
				c.written = minute
				last, err := r.add(ctx, c, now, counts)
				c.last = last // nil after an error: read afresh next time
				if slot := c.slot.Load(); err == nil && slot != nil {
					slot.written.Store(minute)
				}
				if err != nil {
					c.give(counts)
					c.written = 0 // due at the next flush
					errMu.Lock()
					firstErr = cmp.Or(firstErr, err)
					errMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, c := range due {
		if c.dead.Load() && c.total() > 0 {
			r.retired = append(r.retired, c)
		}
	}
	return firstErr
}

// add adds counts to c's entry, read first while the fleet shares keys.
func (r *Recorder) add(ctx context.Context, c *Counter, now time.Time, counts map[string]int64) (*store.UsageEntry, error) {
	last := c.last
	optimistic := last == nil || !last.Shared
	if optimistic && now.Unix() < r.sharedUntil.Load() {
		last, optimistic = readFirst, false
	}
	e, err := r.w.AddUsage(ctx, c.key, last, now, counts, now.Truncate(time.Minute))
	if optimistic && e != nil && e.Shared { // another keygate's write was in the way
		r.sharedUntil.Store(now.Add(sharedFor).Unix())
	}
	return e, err
}

// take empties c and returns its counts by outcome; the flusher's.
func (c *Counter) take() map[string]int64 {
	var out map[string]int64
	for i := range c.n {
		if n := c.n[i].Swap(0); n > 0 {
			if out == nil {
				out = map[string]int64{}
			}
			out[Outcomes[i]] = n
			c.taken += n
		}
	}
	return out
}

// give puts counts back after a failed write; the flusher's.
func (c *Counter) give(counts map[string]int64) {
	for o, n := range counts {
		c.n[outcomeIndex[o]].Add(n)
		c.taken -= n
	}
}

// counted is how many checks c has counted, written or not: it grows
// while the key is in use; the flusher's.
func (c *Counter) counted() int64 { return c.taken + c.total() }

func (c *Counter) total() int64 {
	var t int64
	for i := range c.n {
		t += c.n[i].Load()
	}
	return t
}
