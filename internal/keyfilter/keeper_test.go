package keyfilter_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/keyfilter"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// keeper follows st's keys bucket as a keygate does: every key written
// from now on is added, and the applied revision is the bucket's.
func keeper(t *testing.T, ctx context.Context, st *store.Store) *keyfilter.Keeper {
	t.Helper()
	var applied atomic.Uint64
	k := keyfilter.NewKeeper(keyfilter.Sources{Keys: st.Keys(), Snapshots: st.Filter(),
		Applied: applied.Load, Current: func() bool { return true }}, slog.New(slog.DiscardHandler))
	w, err := st.Keys().WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	if s, err := st.Keys().Status(ctx); err == nil {
		applied.Store(s.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq)
	}
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			if h, ok := store.HashOf(e.Key()); ok && e.Operation() == jetstream.KeyValuePut {
				k.Add(h)
			}
			applied.Store(e.Revision())
		}
	}()
	go k.Run(ctx, 50*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for !k.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the filter did not load")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return k
}

func createKeys(t *testing.T, ctx context.Context, st *store.Store, n int) []string {
	t.Helper()
	var hashes []string
	for range n {
		plain, _ := apikey.DefaultFormat().Mint(apikey.LivePrefix)
		id, _ := apikey.NewID()
		k := &store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: "acme", Env: "live", Scopes: []string{"*"}, CreatedAt: time.Now()}
		if err := st.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, k.Hash)
	}
	return hashes
}

// TestKeeperLoads: the first keeper builds the filter from the bucket's
// key names and writes a snapshot; a later one loads the snapshot and the
// keys written since. Both know every key, and few others.
func TestKeeperLoads(t *testing.T) {
	ns := natstest.Run(t)
	_, js := natstest.Connect(t, ns)
	ctx := natstest.Context(t)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	before := createKeys(t, ctx, st, 300)
	first := keeper(t, ctx, st)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := st.Filter().GetInfo(ctx, keyfilter.SnapshotName); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no snapshot written: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	after := createKeys(t, ctx, st, 50)
	second := keeper(t, ctx, st)
	later := createKeys(t, ctx, st, 20)
	for _, k := range []*keyfilter.Keeper{first, second} {
		for _, h := range append(append(before, after...), later...) {
			deadline := time.Now().Add(5 * time.Second)
			for !k.MayExist(h) {
				if time.Now().After(deadline) {
					t.Fatal("a key in the store is not in the filter")
				}
				time.Sleep(time.Millisecond)
			}
		}
		fp := 0
		for i := range 10_000 {
			if k.MayExist(apikey.Hash(string(rune(i)) + "unknown")) {
				fp++
			}
		}
		if fp > 100 {
			t.Fatalf("%d of 10,000 unknown keys may exist", fp)
		}
	}
}
