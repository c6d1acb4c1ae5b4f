// Package events follows the key store's JetStream change streams (key
// records and account balances) and hands every change, in revision order,
// to the cache.
package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
	// and made no progress, or the buckets cannot be read: the cache may no
	// longer be current, and Resume should be called.
	Stalled func()
}

// Watcher follows the buckets until Stop.
type Watcher struct {
	buckets []*bucket
	log     *slog.Logger
	ctx     context.Context // the watches' lifetime
}

// bucket is one watched bucket. Its watch delivers every revision after
// rev; Resume replaces it with a new one starting where it left off.
type bucket struct {
	kv    jetstream.KeyValue
	apply func(jetstream.KeyValueEntry)
	seen  func(time.Time)

	mu     sync.Mutex // serialises resume and stop
	closed bool       // stopped for good
	watch  jetstream.KeyWatcher
	done   chan struct{} // closed when the watch's goroutine ends
	synced chan struct{} // closed when the watch has delivered the backlog
	rev    atomic.Uint64 // last revision applied
}

// Start begins watching for changes made from now on. When it returns, no
// later change can be missed: load records only after Start. The watches
// last until ctx ends or Stop.
func Start(ctx context.Context, st *store.Store, h Handlers, log *slog.Logger) (*Watcher, error) {
	seen, stalled := h.Seen, h.Stalled
	if seen == nil {
		seen = func(time.Time) {}
	}
	if stalled == nil {
		stalled = func() {}
	}
	w := &Watcher{log: log, ctx: ctx}
	w.buckets = []*bucket{
		{kv: st.Keys(), apply: func(e jetstream.KeyValueEntry) { w.key(e, h.Key) }, seen: seen},
		{kv: st.Accounts(), apply: func(e jetstream.KeyValueEntry) { w.account(e, h.Account) }, seen: seen},
	}
	for _, b := range w.buckets {
		last, err := lastRevision(ctx, b.kv)
		if err == nil {
			b.rev.Store(last) // what came before is read on demand
			err = b.start(ctx)
		}
		if err != nil {
			w.Stop()
			return nil, err
		}
	}
	go w.watchdog(watchdogInterval, stalled)
	return w, nil
}

// watchdogInterval is how often the watcher compares what it applied with
// what the buckets hold.
const watchdogInterval = 500 * time.Millisecond

// start watches the whole bucket, not just key records, from b.rev+1, so
// that every revision passes through in order.
func (b *bucket) start(ctx context.Context) error {
	kw, err := b.kv.WatchAll(ctx, jetstream.ResumeFromRevision(b.rev.Load()+1))
	if err != nil {
		return fmt.Errorf("watch %s: %w", b.kv.Bucket(), err)
	}
	b.watch, b.done, b.synced = kw, make(chan struct{}), make(chan struct{})
	go b.follow(kw, b.done, b.synced)
	return nil
}

func (b *bucket) follow(kw jetstream.KeyWatcher, done, synced chan struct{}) {
	defer close(done)
	for e := range kw.Updates() {
		if e == nil { // the backlog is delivered
			close(synced)
			continue
		}
		b.apply(e)
		b.advance(e.Revision())
		b.seen(e.Created())
	}
}

// advance raises the applied revision to rev.
func (b *bucket) advance(rev uint64) {
	for cur := b.rev.Load(); rev > cur && !b.rev.CompareAndSwap(cur, rev); cur = b.rev.Load() {
	}
}

// stop ends the current watch and waits for its goroutine.
func (b *bucket) stop() {
	if b.watch != nil {
		_ = b.watch.Stop()
		<-b.done
		b.watch = nil
	}
}

// Resume restarts every watch from the last revision it applied and
// returns once the changes missed meanwhile are applied, or ctx ends. Call
// it after a reconnect: a watch whose consumer lived on a lost server
// stalls.
func (w *Watcher) Resume(ctx context.Context) error {
	for _, b := range w.buckets {
		if err := b.resume(ctx, w.ctx); err != nil {
			return err
		}
	}
	return nil
}

// resume restarts b's watch, to live for life, and waits for its backlog.
func (b *bucket) resume(ctx, life context.Context) error {
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
	err = b.start(life)
	synced, done := b.synced, b.done
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
	case <-done:
		return fmt.Errorf("watch %s ended while catching up", b.kv.Bucket())
	case <-ctx.Done():
		return fmt.Errorf("catch up on %s: %w", b.kv.Bucket(), ctx.Err())
	}
}

// watchdog reports a watch that has fallen behind its bucket and made no
// progress for a whole interval (its consumer was on a server that went
// away while the connection stayed up), or buckets that cannot be read
// for three intervals.
func (w *Watcher) watchdog(interval time.Duration, stalled func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	behind := make([]uint64, len(w.buckets)) // rev seen behind at the last tick; 0: not behind
	failures := 0
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		stall := false
		for i, b := range w.buckets {
			rev, last, err := w.progress(b, interval)
			switch {
			case err != nil:
				failures++
				stall = stall || failures == 3
			case rev >= last:
				behind[i], failures = 0, 0
			case rev == behind[i]:
				w.log.Warn("change stream stalled", "bucket", b.kv.Bucket(), "applied", rev, "last", last)
				behind[i], stall = 0, true
			default:
				behind[i] = rev
			}
		}
		if stall {
			stalled()
		}
	}
}

// progress returns the revision b has applied and the bucket's last one.
func (w *Watcher) progress(b *bucket, timeout time.Duration) (rev, last uint64, err error) {
	ctx, cancel := context.WithTimeout(w.ctx, timeout)
	defer cancel()
	last, err = lastRevision(ctx, b.kv)
	return b.rev.Load(), last, err
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

func (w *Watcher) key(e jetstream.KeyValueEntry, h func(string, uint64, *store.Key)) {
	hash, ok := store.HashOf(e.Key())
	if !ok {
		return
	}
	var k *store.Key
	if e.Operation() == jetstream.KeyValuePut {
		var err error
		if k, err = store.DecodeKey(e.Value()); err != nil {
			w.log.Warn("unreadable key record treated as missing", "entry_revision", e.Revision(), "err", err)
			k = nil
		} else if k.Hash != hash {
			w.log.Warn("key record stored under another hash treated as missing", "key_id", k.ID)
			k = nil
		}
	}
	h(hash, e.Revision(), k)
}

func (w *Watcher) account(e jetstream.KeyValueEntry, h func(string, uint64, *store.Account)) {
	var a *store.Account
	if e.Operation() == jetstream.KeyValuePut {
		var err error
		if a, err = store.DecodeAccount(e.Value()); err != nil {
			w.log.Warn("unreadable account record treated as missing", "account", e.Key(), "err", err)
			a = nil
		}
	}
	h(e.Key(), e.Revision(), a)
}

// KeysRevision is the last keys-bucket revision applied: every change up
// to it has been handed to the Key handler.
func (w *Watcher) KeysRevision() uint64 { return w.buckets[0].rev.Load() }

// Stop ends the watches and waits for handlers to return.
func (w *Watcher) Stop() {
	for _, b := range w.buckets {
		b.mu.Lock()
		b.closed = true
		b.stop()
		b.mu.Unlock()
	}
}
