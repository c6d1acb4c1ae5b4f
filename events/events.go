// Package events follows the key store's JetStream change streams (key
// records and account balances) and hands every change, in revision order,
// to the cache.
package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/store"
)

// Handlers receive changes. A nil record means the entry was deleted or
// cannot be read, and must be treated as missing.
type Handlers struct {
	Key     func(hash string, rev uint64, k *store.Key)
	Account func(id string, rev uint64, a *store.Account)
}

// Watcher follows the buckets until Stop.
type Watcher struct {
	watchers []jetstream.KeyWatcher
	wg       sync.WaitGroup
	log      *slog.Logger
}

// Start begins watching for changes made from now on. When it returns, no
// later change can be missed: load records only after Start. The watches
// last until ctx ends or Stop.
func Start(ctx context.Context, st *store.Store, h Handlers, log *slog.Logger) (*Watcher, error) {
	w := &Watcher{log: log}
	keys, err := st.Keys().Watch(ctx, store.HashFilter, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("watch keys: %w", err)
	}
	accounts, err := st.Accounts().WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		_ = keys.Stop()
		return nil, fmt.Errorf("watch accounts: %w", err)
	}
	w.watchers = []jetstream.KeyWatcher{keys, accounts}
	w.follow(keys, func(e jetstream.KeyValueEntry) { w.key(e, h.Key) })
	w.follow(accounts, func(e jetstream.KeyValueEntry) { w.account(e, h.Account) })
	return w, nil
}

func (w *Watcher) follow(kw jetstream.KeyWatcher, apply func(jetstream.KeyValueEntry)) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for e := range kw.Updates() {
			if e != nil {
				apply(e)
			}
		}
	}()
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
	for _, kw := range w.watchers {
		_ = kw.Stop()
	}
	w.wg.Wait()
}
