// Package events follows the key store's JetStream change streams (key
// records and account balances) and hands every change, in revision order,
// to the cache. Each stream is read by a consumer of its own that sends
// heartbeats while the bucket is quiet: a consumer that falls silent, skips
// a change or is deleted is replaced, and a watch that stays silent while
// NATS answers is reported stuck.
package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/store"
)

// Handlers receive changes. A nil record means the entry was deleted or
// cannot be read, and must be treated as missing.
type Handlers struct {
	Key     func(hash string, rev uint64, k *store.Key)
	Account func(id string, rev uint64, a *store.Account)
	// Seen, if set, is told of every entry after it is handled: when it
	// was written.
	Seen func(written time.Time)
	// Stalled, if set, is told when a watch has fallen behind its bucket
	// and made no progress, its consumer fell silent, skipped a change or
	// was deleted, or the buckets cannot be read: the cache may no longer
	// be current, and Resume should be called.
	Stalled func()
}

// Options time the watches; zero fields take the defaults.
type Options struct {
	// Heartbeat is how often a quiet bucket's consumer says it is there
	// (default 2s; NATS takes 100ms at least). A watch silent for three
	// heartbeats is replaced.
	Heartbeat time.Duration
	// StuckAfter is how long a watch may stay silent, while NATS is
	// connected and its bucket readable, before Stuck reports it (default
	// 30s): long enough for several replacements to have failed.
	StuckAfter time.Duration
	// Interval is how often the watchdog looks (default 500ms).
	Interval time.Duration
	Now      func() time.Time
	Log      *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.StuckAfter <= 0 {
		o.StuckAfter = 30 * time.Second
	}
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Watcher follows the buckets until Stop.
type Watcher struct {
	buckets []*bucket
	nc      *nats.Conn
	opts    Options
	log     *slog.Logger
	ctx     context.Context // the watches' lifetime
	stopped atomic.Bool
}

// bucket is one watched bucket. Its watch delivers every revision after
// rev; Resume replaces it with a new one starting where it left off.
type bucket struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	prefix string // of its keys' subjects
	apply  func(entry)
	seen   func(time.Time)
	dead   func(reason string) // the watch can go no further

	mu     sync.Mutex // serialises resume and stop
	closed bool       // stopped for good
	watch  *watch
	rev    atomic.Uint64 // last revision applied
	// heard is when the current watch last showed it was alive (a change,
	// a heartbeat) or NATS was last unavailable, when silence is expected;
	// started, when the current watch began (unix nanoseconds).
	heard, started atomic.Int64
}

// Start begins watching for changes made from now on, with the default
// Options and log. When it returns, no later change can be missed: load
// records only after Start. The watches last until ctx ends or Stop.
func Start(ctx context.Context, st *store.Store, h Handlers, log *slog.Logger) (*Watcher, error) {
	return StartWith(ctx, st, h, Options{Log: log})
}

// StartWith is Start with o.
func StartWith(ctx context.Context, st *store.Store, h Handlers, o Options) (*Watcher, error) {
	o = o.withDefaults()
	seen, stalled := h.Seen, h.Stalled
	if seen == nil {
		seen = func(time.Time) {}
	}
	if stalled == nil {
		stalled = func() {}
	}
	w := &Watcher{log: o.Log, ctx: ctx, opts: o}
	newBucket := func(kv jetstream.KeyValue, apply func(entry)) *bucket {
		b := &bucket{js: st.JetStream(), kv: kv, prefix: "$KV." + kv.Bucket() + ".", apply: apply, seen: seen}
		b.dead = func(reason string) {
			w.log.Warn("change stream lost", "bucket", kv.Bucket(), "reason", reason)
			stalled()
		}
		return b
	}
	w.buckets = []*bucket{
		newBucket(st.Keys(), func(e entry) { w.key(e, h.Key) }),
		newBucket(st.Accounts(), func(e entry) { w.account(e, h.Account) }),
	}
	w.nc = st.JetStream().Conn()
	now := o.Now().UnixNano()
	for _, b := range w.buckets {
		b.heard.Store(now)
		last, err := lastRevision(ctx, b.kv)
		if err == nil {
			b.rev.Store(last) // what came before is read on demand
			err = b.start(ctx, o)
		}
		if err != nil {
			w.Stop()
			return nil, err
		}
	}
	go w.watchdog(stalled)
	return w, nil
}

// Resume restarts every watch from the last revision it applied and
// returns once the changes missed meanwhile are applied, or ctx ends. Call
// it after a reconnect: a watch whose consumer lived on a lost server
// stalls.
func (w *Watcher) Resume(ctx context.Context) error {
	for _, b := range w.buckets {
		if err := b.resume(ctx, w.opts); err != nil {
			return err
		}
	}
	return nil
}

// resume restarts b's watch and waits for its backlog.
func (b *bucket) resume(ctx context.Context, o Options) error {
	last, err := lastRevision(ctx, b.kv)
	if err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("watch %s: stopped", b.kv.Bucket())
	}
	b.stop()
	err = b.start(ctx, o)
	var synced <-chan struct{}
	if err == nil {
		synced = b.watch.synced
	}
	b.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-synced:
		// Everything up to last is applied, even if the last revisions
		// are gone from the stream (purged deletes) and never arrived.
		b.advance(last)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("catch up on %s: %w", b.kv.Bucket(), ctx.Err())
	}
}

// advance raises the applied revision to rev.
func (b *bucket) advance(rev uint64) {
	for cur := b.rev.Load(); rev > cur && !b.rev.CompareAndSwap(cur, rev); cur = b.rev.Load() {
	}
}

func lastRevision(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("status of %s: %w", kv.Bucket(), err)
	}
	js, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, fmt.Errorf("status of %s: no stream info", kv.Bucket())
	}
	return js.StreamInfo().State.LastSeq, nil
}

func (w *Watcher) key(e entry, h func(string, uint64, *store.Key)) {
	hash, ok := store.HashOf(e.key)
	if !ok {
		return
	}
	var k *store.Key
	if !e.deleted {
		var err error
		if k, err = store.DecodeKey(e.value); err != nil {
			w.log.Warn("unreadable key record treated as missing", "entry_revision", e.rev, "err", err)
			k = nil
		} else if k.Hash != hash {
			w.log.Warn("key record stored under another hash treated as missing", "key_id", k.ID)
			k = nil
		}
	}
	h(hash, e.rev, k)
}

func (w *Watcher) account(e entry, h func(string, uint64, *store.Account)) {
	if !store.ValidAccountID(e.key) {
		return // a settlement entry beside the accounts (s.<account>.<reservation>)
	}
	var a *store.Account
	if !e.deleted {
		var err error
		if a, err = store.DecodeAccount(e.key, e.value); err != nil {
			w.log.Warn("unreadable account record treated as missing", "account", e.key, "err", err)
			a = nil
		}
	}
	h(e.key, e.rev, a)
}

// KeysRevision is the last keys-bucket revision applied: every change up
// to it has been handed to the Key handler.
func (w *Watcher) KeysRevision() uint64 { return w.buckets[0].rev.Load() }

// Stop ends the watches and waits for handlers to return.
func (w *Watcher) Stop() {
	w.stopped.Store(true)
	for _, b := range w.buckets {
		b.mu.Lock()
		b.closed = true
		b.stop()
		b.mu.Unlock()
	}
}
