package serve_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// TestClusterNodeLoss: with a 3-node NATS cluster and R3 buckets, killing
// the node keygate is connected to costs not a single check, and changes
// made afterwards still arrive.
func TestClusterNodeLoss(t *testing.T) {
	for _, c := range []struct {
		name      string
		connected bool
	}{{"connected node", true}, {"another node", false}} {
		t.Run(c.name, func(t *testing.T) { testNodeLoss(t, c.connected) })
	}
}

func testNodeLoss(t *testing.T, connected bool) {
	nodes, st := r3Cluster(t)
	ctx := natstest.Context(t)

	cfg := testConfig(t, natstest.URLs(nodes))
	cfg.NATS.Replicas = 3
	cfg.DefaultRateLimit = "none" // the loop below checks as fast as it can
	e := start(t, cfg)
	key, rec := createKey(t, ctx, st, "acme")
	retry(t, "set balance", func() error {
		_, err := st.UpdateAccount(ctx, "acme", true, func(a *store.Account) error { a.Balance = 100; return nil })
		return err
	})
	waitCode(t, e, key, 200) // a new cluster may answer 503 while it settles
	e.waitCached(t, key)

	// Check continuously while the node goes away.
	var failed, done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if e.code(t, key) != 200 {
				failed.Add(1)
			}
			done.Add(1)
		}
	}()

	victim := connectedNode(t, nodes)
	if !connected {
		victim = otherNode(nodes, victim)
	}
	before := done.Load()
	victim.Shutdown()
	victim.WaitForShutdown()
	waitReady(t, e, 200) // reconnected to another node and caught up
	for done.Load() < before+100 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d checks failed across the node loss\n%s", n, done.Load(), e.logs.String())
	}

	// A change made after the loss, through a surviving node, arrives.
	survivor := otherNode(nodes, victim)
	_, js2 := natstest.Connect(t, survivor)
	var st2 *store.Store
	retry(t, "reopen buckets", func() (err error) { st2, err = store.Open(ctx, js2, r3Options()); return err })
	retry(t, "revoke", func() error {
		_, err := st2.UpdateKey(ctx, rec.ID, func(k *store.Key) error { now := time.Now(); k.RevokedAt = &now; return nil })
		return err
	})
	waitCode(t, e, key, 401)
}

// connectedNode returns the node holding keygate's NATS connection.
func connectedNode(t *testing.T, nodes []*server.Server) *server.Server {
	t.Helper()
	for _, n := range nodes {
		cz, err := n.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cz.Conns {
			if c.Name == "keygate" {
				return n
			}
		}
	}
	t.Fatal("keygate is connected to no node")
	return nil
}

// otherNode returns a node that is not n.
func otherNode(nodes []*server.Server, n *server.Server) *server.Server {
	for _, o := range nodes {
		if o != n {
			return o
		}
	}
	return nil
}

// retry calls f until it succeeds, for up to 30s: a cluster needs a moment
// to elect leaders after it starts or loses a node.
func retry(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, errors.Unwrap(err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// r3Cluster runs a 3-node NATS cluster and opens the store on it with R3
// buckets, once every bucket has a leader, so that keygates started on
// it do not time out opening them.
func r3Cluster(t *testing.T) ([]*server.Server, *store.Store) {
	t.Helper()
	nodes := natstest.RunCluster(t, 3)
	_, js := natstest.Connect(t, nodes[0])
	var st *store.Store
	retry(t, "create R3 buckets", func() (err error) { st, err = store.Open(t.Context(), js, r3Options()); return err })
	retry(t, "bucket leaders", func() error {
		for _, kv := range []jetstream.KeyValue{st.Keys(), st.Accounts(), st.Limits(), st.Usage()} {
			if _, err := kv.Status(t.Context()); err != nil {
				return err
			}
		}
		return nil
	})
	return nodes, st
}

// r3Options are the store's options with R3 buckets.
func r3Options() store.Options {
	o := store.DefaultOptions()
	o.Replicas = 3
	return o
}
