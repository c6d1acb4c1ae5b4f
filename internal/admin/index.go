package admin

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/store"
)

// keyIndex is every key id in order, with what a listing filters on
// before it reads records: the account (a key never changes it) and the
// status (a hint; the record read decides). A live index follows the
// keys bucket; a snapshot is the bucket read once, with its records.
type keyIndex struct {
	mu      sync.Mutex
	entries map[string]indexEntry // by key id
	sorted  []string              // ids in order; may name ids no longer in entries
	added   []string              // ids not yet in sorted
	records map[string]*store.Key // a snapshot's records, by id; nil when live
	used    map[string]int64      // keys' last uses, Unix nanoseconds, by key id
	ready   chan struct{}         // closed once the buckets have been read through
	err     error                 // why the watch ended early, once ready
	accts   map[string]string     // account ids, each kept once
}

// indexEntry is what the index keeps of a key: about 100 bytes with its
// id and the map's own.
type indexEntry struct {
	hash    [32]byte
	account string
	expires int64 // Unix nanoseconds; 0: never
	revoked bool
}

func newKeyIndex(snapshot bool) *keyIndex {
	x := &keyIndex{entries: map[string]indexEntry{}, used: map[string]int64{}, ready: make(chan struct{}), accts: map[string]string{}}
	if snapshot {
		x.records = map[string]*store.Key{}
	}
	return x
}

// snapshotIndex reads every key record and every key's last use once.
func snapshotIndex(ctx context.Context, st *store.Store) (*keyIndex, error) {
	x := newKeyIndex(true)
	for _, src := range x.sources(st) {
		if err := readOnce(ctx, src); err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
	}
	close(x.ready)
	return x, nil
}

// source is a bucket the index reads, and what it does with an entry.
type source struct {
	kv     jetstream.KeyValue
	filter string
	apply  func(jetstream.KeyValueEntry)
}

// sources are the key records and the keys' uses.
func (x *keyIndex) sources(st *store.Store) []source {
	return []source{
		{st.Keys(), store.HashFilter, func(e jetstream.KeyValueEntry) { x.add(e.Value()) }},
		{st.Usage(), ">", func(e jetstream.KeyValueEntry) { x.use(e.Key(), e.Value()) }},
	}
}

// readOnce reads src's entries as they are now.
func readOnce(ctx context.Context, src source) error {
	w, err := src.kv.Watch(ctx, src.filter, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop() //nolint:errcheck // nothing to do about a failed unsubscribe
	for e := range w.Updates() {
		if e == nil {
			return nil
		}
		src.apply(e)
	}
	return ctx.Err()
}

// follow keeps x current with the keys and usage buckets until ctx
// ends; x is ready once both have been read through.
func (x *keyIndex) follow(ctx context.Context, st *store.Store) error {
	srcs := x.sources(st)
	var pending sync.WaitGroup
	pending.Add(len(srcs))
	for _, src := range srcs {
		w, err := src.kv.Watch(ctx, src.filter, jetstream.IgnoreDeletes())
		if err != nil {
			return fmt.Errorf("follow keys: %w", err)
		}
		go followBucket(ctx, src, w, pending.Done)
	}
	go func() {
		pending.Wait()
		if ctx.Err() != nil {
			x.err = fmt.Errorf("follow keys: %w", ctx.Err())
		}
		close(x.ready)
	}()
	return nil
}

// followBucket applies w's entries until ctx ends, calling synced once it
// has read the bucket through (or ctx has ended). A watch that ends
// early (its connection closed) is started again, reading the bucket
// anew, after a pause.
func followBucket(ctx context.Context, src source, w jetstream.KeyWatcher, synced func()) {
	var once sync.Once
	defer once.Do(synced)
	for {
		for e := range w.Updates() {
			if e == nil {
				once.Do(synced)
				continue
			}
			src.apply(e)
		}
		_ = w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			var err error
			if w, err = src.kv.Watch(ctx, src.filter, jetstream.IgnoreDeletes()); err == nil {
				break
			}
		}
	}
}

// wait waits until the index has read the buckets through.
func (x *keyIndex) wait(ctx context.Context) error {
	select {
	case <-x.ready:
		return x.err
	case <-ctx.Done():
		return fmt.Errorf("list keys: %w", ctx.Err())
	}
}

// add indexes a key record as stored; one it cannot read is left out.
func (x *keyIndex) add(b []byte) {
	k, err := store.DecodeKey(b)
	if err != nil {
		return
	}
	x.put(k)
}

// put indexes k.
func (x *keyIndex) put(k *store.Key) {
	var e indexEntry
	if _, err := hex.Decode(e.hash[:], []byte(k.Hash)); err != nil {
		return
	}
	if k.ExpiresAt != nil {
		e.expires = k.ExpiresAt.UnixNano()
	}
	e.revoked = k.Revoked()
	x.mu.Lock()
	defer x.mu.Unlock()
	acct, ok := x.accts[k.AccountID]
	if !ok {
		acct = k.AccountID
		x.accts[acct] = acct
	}
	e.account = acct
	if _, known := x.entries[k.ID]; !known {
		x.added = append(x.added, k.ID)
	}
	x.entries[k.ID] = e
	if x.records != nil {
		x.records[k.ID] = k
	}
}

// use notes key id's last use from its usage record as stored.
func (x *keyIndex) use(id string, b []byte) {
	var u struct {
		LastUsedAt *time.Time `json:"last_used_at"`
	}
	if json.Unmarshal(b, &u) != nil || u.LastUsedAt == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if t := u.LastUsedAt.UnixNano(); t > x.used[id] {
		x.used[id] = t
	}
}

// drop forgets key id, whose record is gone.
func (x *keyIndex) drop(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.entries, id)
}

// candidate is a key a listing reads.
type candidate struct {
	id   string
	hash string
	rec  *store.Key // a snapshot's record; nil when live
	used int64      // its last use, Unix nanoseconds; 0: never
}

// next returns up to n keys after the id after, in order, whose entries
// match f at now, and whether any key after the last of them matches.
func (x *keyIndex) next(after string, f *Filter, now time.Time, n int) ([]candidate, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.merge()
	i, _ := slices.BinarySearch(x.sorted, after)
	if i < len(x.sorted) && x.sorted[i] == after {
		i++
	}
	var out []candidate
	for ; i < len(x.sorted); i++ {
		id := x.sorted[i]
		e, ok := x.entries[id]
		if !ok || !f.hint(e, now) {
			continue
		}
		if len(out) == n {
			return out, true
		}
		c := candidate{id: id, hash: hex.EncodeToString(e.hash[:]), used: x.used[id]}
		if x.records != nil {
			c.rec = x.records[id]
		}
		out = append(out, c)
	}
	return out, false
}

// merge sorts the ids added since the last listing into the others.
func (x *keyIndex) merge() {
	if len(x.added) == 0 {
		return
	}
	slices.Sort(x.added)
	merged := make([]string, 0, len(x.sorted)+len(x.added))
	i, j := 0, 0
	for i < len(x.sorted) || j < len(x.added) {
		switch {
		case j == len(x.added) || i < len(x.sorted) && x.sorted[i] < x.added[j]:
			if _, ok := x.entries[x.sorted[i]]; ok {
				merged = append(merged, x.sorted[i])
			}
			i++
		case i == len(x.sorted) || x.added[j] < x.sorted[i]:
			merged = append(merged, x.added[j])
			j++
		default: // the same id in both
			merged = append(merged, x.added[j])
			i++
			j++
		}
	}
	x.sorted, x.added = merged, x.added[:0]
}

// accountIDs are the ids of account's keys, in order.
func (x *keyIndex) accountIDs(account string) []string {
	f := &Filter{Account: account}
	var ids []string
	after := ""
	for {
		cs, more := x.next(after, f, time.Time{}, 1000)
		for _, c := range cs {
			ids = append(ids, c.id)
			after = c.id
		}
		if !more {
			return ids
		}
	}
}
