package events_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// fast times the watches for tests: heartbeats every 100ms (NATS's
// least), a watch silent for 300ms replaced, stuck after 1s.
var fast = events.Options{Heartbeat: 100 * time.Millisecond, StuckAfter: time.Second, Interval: 20 * time.Millisecond}

// recorder collects what the handlers are told.
type recorder struct {
	mu      sync.Mutex
	keys    map[string]*store.Key
	revs    []uint64
	stalled atomic.Int32
}

func (r *recorder) handlers() events.Handlers {
	return events.Handlers{
		Key: func(hash string, rev uint64, k *store.Key) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.keys[hash] = k
			r.revs = append(r.revs, rev)
		},
		Account: func(string, uint64, *store.Account) {},
		Stalled: func() { r.stalled.Add(1) },
	}
}

// has reports whether the Key handler's last word on hash is a record
// (want true) or none (false).
func (r *recorder) has(hash string, want bool) func() bool {
	return func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		k, ok := r.keys[hash]
		return ok && (k != nil) == want
	}
}

// connect opens a client that reconnects quickly for ever.
func connect(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, *store.Store) {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(natstest.Context(t), js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return nc, st
}

func watch(t *testing.T, st *store.Store, o events.Options) (*events.Watcher, *recorder) {
	t.Helper()
	r := &recorder{keys: map[string]*store.Key{}}
	w, err := events.StartWith(natstest.Context(t), st, r.handlers(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w, r
}

func createKey(t *testing.T, st *store.Store) *store.Key {
	t.Helper()
	id, _ := apikey.NewID()
	key, _ := apikey.DefaultFormat().Mint(apikey.LivePrefix)
	k := &store.Key{ID: id, Hash: apikey.Hash(key), AccountID: "acme", Env: store.EnvLive, CreatedAt: time.Now()}
	if err := st.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestChangesInRevisionOrder: every change after Start reaches the Key
// handler once, in revision order; a revocation and a deletion too.
func TestChangesInRevisionOrder(t *testing.T) {
	ns := natstest.Run(t)
	_, st := connect(t, ns.ClientURL())
	w, r := watch(t, st, fast)
	var keys []*store.Key
	for range 20 {
		keys = append(keys, createKey(t, st))
	}
	for _, k := range keys {
		poll.Until(t, 10*time.Second, "key applied", r.has(k.Hash, true))
	}
	if err := st.Keys().Delete(context.Background(), "hash."+keys[0].Hash); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "deletion applied", r.has(keys[0].Hash, false))
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i < len(r.revs); i++ {
		if r.revs[i] <= r.revs[i-1] {
			t.Fatalf("revisions out of order: %v", r.revs)
		}
	}
	if w.KeysRevision() != r.revs[len(r.revs)-1] {
		t.Fatalf("KeysRevision %d, last handled %d", w.KeysRevision(), r.revs[len(r.revs)-1])
	}
}

// TestQuietBucketIsNotStuck: with nothing written for many heartbeats, no
// watch is replaced or reported stuck.
func TestQuietBucketIsNotStuck(t *testing.T) {
	ns := natstest.Run(t)
	_, st := connect(t, ns.ClientURL())
	// Heartbeats far enough apart that a loaded machine does not delay one
	// past three (when the watch would be replaced).
	o := events.Options{Heartbeat: 250 * time.Millisecond, StuckAfter: 2 * time.Second, Interval: 250 * time.Millisecond}
	w, r := watch(t, st, o)
	// Twice StuckAfter, sixteen heartbeats: a property over time, not a
	// wait for something to happen.
	for end := time.Now().Add(2 * o.StuckAfter); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if err := w.Stuck(); err != nil {
			t.Fatalf("quiet bucket: %v", err)
		}
	}
	if n := r.stalled.Load(); n != 0 {
		t.Fatalf("quiet bucket: stalled %d times", n)
	}
}

// deleteConsumers deletes every consumer of the keys bucket's stream, as a
// server that lost them would.
func deleteConsumers(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, "KV_"+store.DefaultOptions().KeysBucket)
	if err != nil {
		t.Fatal(err)
	}
	names := s.ConsumerNames(ctx)
	n := 0
	for name := range names.Name() {
		if err := s.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no consumer to delete")
	}
}

// resume calls Resume until it succeeds, as keygate does after Stalled.
func resume(t *testing.T, w *events.Watcher) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return w.Resume(ctx) == nil
	}
}

// TestLostConsumerIsReplaced: a consumer deleted on the server is noticed
// from its missing heartbeats, on a quiet bucket; after Resume, changes
// arrive again and the watch is not stuck.
func TestLostConsumerIsReplaced(t *testing.T) {
	ns := natstest.Run(t)
	_, st := connect(t, ns.ClientURL())
	_, admin := natstest.Connect(t, ns)
	w, r := watch(t, st, fast)
	deleteConsumers(t, admin)
	poll.Until(t, 10*time.Second, "the lost consumer noticed", func() bool { return r.stalled.Load() > 0 })
	poll.Until(t, 10*time.Second, "resumed", resume(t, w))
	k := createKey(t, st)
	poll.Until(t, 10*time.Second, "a change after the replacement applied", r.has(k.Hash, true))
	if err := w.Stuck(); err != nil {
		t.Fatal(err)
	}
}

// TestStuckWatchIsReported: a watch whose consumer is gone and cannot be
// made again (the stream takes no more consumers), while NATS answers, is
// reported stuck after StuckAfter; once a consumer can be made again,
// Resume brings it back and it is not stuck.
func TestStuckWatchIsReported(t *testing.T) {
	ns := natstest.Run(t)
	_, st := connect(t, ns.ClientURL())
	_, admin := natstest.Connect(t, ns)
	w, r := watch(t, st, fast)
	release := takeLastConsumer(t, admin)
	poll.Until(t, 10*time.Second, "the lost consumer noticed", func() bool { return r.stalled.Load() > 0 })
	if resume(t, w)() {
		t.Fatal("Resume made a consumer the stream has no room for")
	}
	poll.Until(t, 10*time.Second, "reported stuck", func() bool { return w.Stuck() != nil })
	t.Log(w.Stuck())

	release()
	poll.Until(t, 10*time.Second, "resumed", resume(t, w))
	poll.Until(t, 10*time.Second, "no longer stuck", func() bool { return w.Stuck() == nil })
	k := createKey(t, st)
	poll.Until(t, 10*time.Second, "a change applied", r.has(k.Hash, true))
}

// takeLastConsumer leaves the keys bucket's stream room for one consumer
// and gives it to another client than the watcher: it adds a consumer of
// its own, limits the stream to one, and deletes the watcher's. It
// returns what gives the room back.
func takeLastConsumer(t *testing.T, js jetstream.JetStream) (release func()) {
	t.Helper()
	ctx := context.Background()
	name := "KV_" + store.DefaultOptions().KeysBucket
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "squatter", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	limit := func(n int) {
		cfg := s.CachedInfo().Config
		cfg.MaxConsumers = n
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	limit(1)
	watchers := 0
	for c := range s.ConsumerNames(ctx).Name() {
		if c != "squatter" {
			if err := s.DeleteConsumer(ctx, c); err != nil {
				t.Fatal(err)
			}
			watchers++
		}
	}
	if watchers == 0 {
		t.Fatal("no consumer of the watcher's")
	}
	return func() { limit(-1) }
}

// TestOutageIsNotStuck: while the server is away, however long, no watch
// is reported stuck; when it is back, Resume brings the watches back, and
// changes made meanwhile arrive.
func TestOutageIsNotStuck(t *testing.T) {
	addr := natstest.FreeAddr(t)
	opts := func() *server.Options {
		o := &server.Options{Host: "127.0.0.1", StoreDir: t.TempDir()}
		fmt.Sscanf(addr, "127.0.0.1:%d", &o.Port)
		return o
	}()
	ns := natstest.RunWith(t, opts)
	nc, st := connect(t, "nats://"+addr)
	w, r := watch(t, st, fast)
	ns.Shutdown()
	ns.WaitForShutdown()
	for end := time.Now().Add(3 * fast.StuckAfter); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if err := w.Stuck(); err != nil {
			t.Fatalf("during the outage: %v", err)
		}
	}
	natstest.RunWith(t, opts)
	poll.Until(t, 10*time.Second, "reconnected", nc.IsConnected)
	k := createKey(t, st)
	poll.Until(t, 10*time.Second, "resumed", resume(t, w))
	poll.Until(t, 10*time.Second, "a change made on reconnect applied", r.has(k.Hash, true))
	for end := time.Now().Add(fast.StuckAfter); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if err := w.Stuck(); err != nil {
			t.Fatalf("after the outage: %v", err)
		}
	}
}
