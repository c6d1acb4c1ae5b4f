package serve_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// fleetConfig is a keygate that syncs and records use quickly, and waits
// for leases as long as a loaded test machine may need.
func fleetConfig(t testing.TB, url string) config.Config {
	cfg := testConfig(t, url)
	cfg.Fleet.SyncInterval = config.Duration(20 * time.Millisecond)
	cfg.Fleet.LeaseTimeout = config.Duration(2 * time.Second)
	cfg.Fleet.UsageFlushInterval = config.Duration(100 * time.Millisecond)
	return cfg
}

// check sends one request with key to e and returns the answer.
func (e *env) check(t testing.TB, key string) *authv3.CheckResponse {
	t.Helper()
	resp, err := e.client.Check(e.ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Headers: map[string]string{"authorization": "Bearer " + key}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// limitedFleet starts n keygates on one NATS and creates a key under
// lim, of an account with money.
func limitedFleet(t *testing.T, n int, lim ratelimit.Limit) ([]*env, *server.Server, string, *store.Key) {
	t.Helper()
	ns := natstest.Run(t)
	var fleet []*env
	for range n {
		fleet = append(fleet, start(t, fleetConfig(t, ns.ClientURL())))
	}
	st := openStore(t, fleet[0], ns)
	key, rec := createKey(t, fleet[0].ctx, st, "acme")
	if _, err := st.UpdateKey(fleet[0].ctx, rec.ID, func(k *store.Key) error {
		k.RateLimit = &store.RateLimit{Requests: lim.Requests, Window: store.Duration(lim.Window)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	setBalance(t, fleet[0].ctx, st, "acme", 1e6)
	return fleet, ns, key, rec
}

// TestFleetRateLimit: three keygates on one NATS share each key's limit:
// with balanced traffic asking for twice the limit, every whole window
// allows the limit within the tolerances, and one keygate's remaining
// count includes what the others allowed.
func TestFleetRateLimit(t *testing.T) {
	lim := ratelimit.Limit{Requests: 60, Window: time.Second}
	fleet, _, key, rec := limitedFleet(t, 3, lim)
	for _, e := range fleet {
		waitCode(t, e, key, 200) // cached, with the limit
	}

	// Remaining is the fleet's: after 10 allows on one keygate (in a
	// fresh window), another's count shows them once they have synced.
	_, end := ratelimit.Window(rec.ID, lim, time.Now())
	time.Sleep(time.Until(end))
	for range 10 {
		fleet[0].check(t, key)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h := headersOf(fleet[1].check(t, key).GetOkResponse().GetResponseHeadersToAdd())
		rem, _ := strconv.Atoi(h["x-ratelimit-remaining"])
		if rem <= int(lim.Requests)-12 { // 10 there and the 1-2 here
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("x-ratelimit-remaining %d after 10 requests elsewhere", rem)
		}
		time.Sleep(20 * time.Millisecond)
	}

	assertFleetLimit(t, fleet, key, rec.ID, lim)
}

// TestFleetRateLimitCluster: the same with a 3-node NATS cluster, R3
// buckets, and each keygate on a node of its own.
func TestFleetRateLimitCluster(t *testing.T) {
	nodes, st := r3Cluster(t)
	ctx := natstest.Context(t)
	var fleet []*env
	for _, n := range nodes {
		cfg := fleetConfig(t, n.ClientURL())
		cfg.NATS.Replicas = 3
		fleet = append(fleet, start(t, cfg))
	}
	lim := ratelimit.Limit{Requests: 60, Window: time.Second}
	key, rec := createKey(t, ctx, st, "acme")
	retry(t, "set the limit", func() error {
		_, err := st.UpdateKey(ctx, rec.ID, func(k *store.Key) error {
			k.RateLimit = &store.RateLimit{Requests: lim.Requests, Window: store.Duration(lim.Window)}
			return nil
		})
		return err
	})
	retry(t, "set balance", func() error {
		_, err := st.UpdateAccount(ctx, "acme", true, func(a *store.Account) error { a.Balance = 1e6; return nil })
		return err
	})
	for _, e := range fleet {
		waitCode(t, e, key, 200)
	}
	assertFleetLimit(t, fleet, key, rec.ID, lim)
}

// assertFleetLimit sends twice key's limit, balanced over fleet, for
// three whole windows, and checks that each allowed the limit ± 2.
func assertFleetLimit(t *testing.T, fleet []*env, key, id string, lim ratelimit.Limit) {
	t.Helper()
	idx, end := ratelimit.Window(id, lim, time.Now())
	first, stop := idx+1, end.Add(3*lim.Window)
	counts := map[int64]*atomic.Int64{first: {}, first + 1: {}, first + 2: {}}
	var ambiguous atomic.Int64
	var wg sync.WaitGroup
	for _, e := range fleet {
		for range 2 {
			wg.Go(func() {
				// 2 goroutines a keygate: twice each keygate's share.
				gap := lim.Window / time.Duration(lim.Requests/int64(len(fleet)))
				for next := time.Now(); time.Now().Before(stop); next = next.Add(gap) {
					time.Sleep(time.Until(next))
					sent := time.Now()
					ok := e.check(t, key).GetOkResponse() != nil
					i, _ := ratelimit.Window(id, lim, sent)
					if j, _ := ratelimit.Window(id, lim, time.Now()); j != i {
						ambiguous.Add(1) // decided in either window
					}
					if ok && counts[i] != nil {
						counts[i].Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	slack := ambiguous.Load() // requests that crossed a window's end while in flight
	for i := first; i < first+3; i++ {
		if n := counts[i].Load(); n < lim.Requests-2-slack || n > lim.Requests+2+slack {
			t.Errorf("window %d allowed %d, want %d±%d", i-first, n, lim.Requests, 2+slack)
		}
	}
}

// TestFleetUsage: each keygate records its checks; keys get and keys
// usage read them from one record, and a keygate that stops flushes what
// it has not yet written.
func TestFleetUsage(t *testing.T) {
	ns := natstest.Run(t)
	var fleet []*env
	for range 3 {
		fleet = append(fleet, start(t, fleetConfig(t, ns.ClientURL())))
	}
	st := openStore(t, fleet[0], ns)
	key, rec := createKey(t, fleet[0].ctx, st, "acme")
	setBalance(t, fleet[0].ctx, st, "acme", 1e6)
	for i, e := range fleet {
		for range i + 1 {
			waitCode(t, e, key, 200)
		}
	}
	waitUsage(t, st, rec.ID, 6)
	u, _ := st.KeyUsage(fleet[0].ctx, rec.ID)
	if u.LastUsedAt == nil || time.Since(*u.LastUsedAt) > 2*time.Minute {
		t.Fatalf("last used %v", u.LastUsedAt)
	}
	// A keygate shut down at once still writes its counts.
	slow := testConfig(t, ns.ClientURL())
	slow.Fleet.UsageFlushInterval = config.Duration(30 * time.Second)
	e := start(t, slow)
	waitCode(t, e, key, 200)
	if err := e.inst.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitUsage(t, st, rec.ID, 7)
}

// waitUsage waits until key id's record counts n allowed checks today:
// within a minute and a flush interval, since a keygate writes a key at
// most once a minute (a check just after its write in a minute is
// written in the next one).
func waitUsage(t *testing.T, st *store.Store, id string, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute + 10*time.Second)
	for {
		u, err := st.KeyUsage(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		got := u.Days[time.Now().UTC().Format(store.DayFormat)]["ok"]
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("usage of %s: %d ok today, want %d", id, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// headersOf flattens header options into a map.
func headersOf(hs []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return m
}

// TestFleetOutageShare: when NATS goes away, each of three keygates
// allows a third of a key's limit per window, so that the fleet stays
// within it.
func TestFleetOutageShare(t *testing.T) {
	lim := ratelimit.Limit{Requests: 30, Window: time.Hour}
	fleet, ns, key, _ := limitedFleet(t, 3, lim)
	poll.Until(t, 10*time.Second, "every keygate knowing the other two", func() bool { // every keygate knows of the other two
		for _, e := range fleet {
			if e.inst.Peers() != 3 {
				return false
			}
		}
		return true
	})
	for _, e := range fleet {
		if e.check(t, key).GetOkResponse() == nil { // cached, with a lease taken
			t.Fatal("denied")
		}
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	// Each keygate allows its share in all: the request before and
	// what it leased, then the rest of the share from memory.
	total := 0
	for _, e := range fleet {
		poll.Until(t, 10*time.Second, "not ready", func() bool { return !e.inst.Ready() })
		n := 1
		for range 30 {
			if e.check(t, key).GetOkResponse() != nil {
				n++
			}
		}
		if n != int(lim.Requests)/3 {
			t.Errorf("a keygate allowed %d, want its share of %d", n, lim.Requests/3)
		}
		total += n
	}
	if total > int(lim.Requests) {
		t.Fatalf("the fleet allowed %d, over the limit of %d", total, lim.Requests)
	}
}
