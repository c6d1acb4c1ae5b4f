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
	// Seen, if set, is told of every entry after it is handled: its bucket
	// and when it was written.
	Seen func(bucket string, written time.Time)
}

// Watcher follows the buckets until Stop.
type Watcher struct {
	buckets []*bucket
	wg      sync.WaitGroup
	log     *slog.Logger
}

// bucket is one watched bucket and the last revision applied from it.
type bucket struct {
	kv    jetstream.KeyValue
	watch jetstream.KeyWatcher
	rev   atomic.Uint64
}

// Start begins watching for changes made from now on. When it returns, no
// later change can be missed: load records only after Start. The watches
// last until ctx ends or Stop.
func Start(ctx context.Context, st *store.Store, h Handlers, log *slog.Logger) (*Watcher, error) {
	w := &Watcher{log: log}
	// Whole buckets, not just key records, so that every revision passes
	// through and CatchUp can compare with the bucket's last one.
	seen := h.Seen
	if seen == nil {
		seen = func(string, time.Time) {}
	}
	keys, err := w.watch(ctx, st.Keys(), func(e jetstream.KeyValueEntry) { w.key(e, h.Key) }, seen)
	if err != nil {
		return nil, err
	}
	accounts, err := w.watch(ctx, st.Accounts(), func(e jetstream.KeyValueEntry) { w.account(e, h.Account) }, seen)
	if err != nil {
		_ = keys.watch.Stop()
		return nil, err
	}
	w.buckets = []*bucket{keys, accounts}
	for _, b := range w.buckets {
		last, err := lastRevision(ctx, b.kv)
		if err != nil {
			w.Stop()
			return nil, err
		}
		b.advance(last) // changes before the watch began are read on demand
	}
	return w, nil
}

func (w *Watcher) watch(ctx context.Context, kv jetstream.KeyValue, apply func(jetstream.KeyValueEntry), seen func(string, time.Time)) (*bucket, error) {
	kw, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	b := &bucket{kv: kv, watch: kw}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for e := range kw.Updates() {
			if e != nil {
				apply(e)
				b.advance(e.Revision())
				seen(e.Bucket(), e.Created())
			}
		}
	}()
	return b, nil
}

func (b *bucket) advance(rev uint64) {
	for {
		cur := b.rev.Load()
		if rev <= cur || b.rev.CompareAndSwap(cur, rev) {
			return
		}
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

// CatchUp returns once every change made to the buckets before it was
// called has been applied, polling every interval.
func (w *Watcher) CatchUp(ctx context.Context, interval time.Duration) error {
	for _, b := range w.buckets {
		last, err := lastRevision(ctx, b.kv)
		if err != nil {
			return err
		}
		t := time.NewTicker(interval)
		for b.rev.Load() < last {
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("catch up on %s: %w", b.kv.Bucket(), ctx.Err())
			case <-t.C:
			}
		}
		t.Stop()
	}
	return nil
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

// Stop ends the watches and waits for handlers to return.
func (w *Watcher) Stop() {
	for _, b := range w.buckets {
		_ = b.watch.Stop()
	}
	w.wg.Wait()
}
