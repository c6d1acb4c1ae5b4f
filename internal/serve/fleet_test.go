package serve_test

import (
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
		k.RateLimit = &store.RateLimit{Requests: lim.Units, Window: store.Duration(lim.Window)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	setBalance(t, fleet[0].ctx, st, "acme", 1e6)
	return fleet, ns, key, rec
}

// TestFleetRateLimit: three keygates on one NATS share each key's
// limit: concurrent checks through all of them allow exactly the limit,
// and a keygate's remaining count includes what the others leased.
func TestFleetRateLimit(t *testing.T) {
	lim := ratelimit.Limit{Units: 60, Window: time.Hour}
	fleet, _, key, _ := limitedFleet(t, 3, lim)
	for _, e := range fleet {
		waitCode(t, e, key, 200) // cached, with the limit
	}
	assertFleetLimit(t, fleet, key, lim, 3)
	h := headersOf(fleet[1].check(t, key).GetDeniedResponse().GetHeaders())
	if h["x-ratelimit-remaining"] != "0" || h["x-ratelimit-limit"] != "60" {
		t.Fatalf("a spent budget's headers: %v", h)
	}
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
	lim := ratelimit.Limit{Units: 60, Window: time.Hour}
	key, rec := createKey(t, ctx, st, "acme")
	retry(t, "set the limit", func() error {
		_, err := st.UpdateKey(ctx, rec.ID, func(k *store.Key) error {
			k.RateLimit = &store.RateLimit{Requests: lim.Units, Window: store.Duration(lim.Window)}
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
	assertFleetLimit(t, fleet, key, lim, 3)
}

// assertFleetLimit sends four times key's limit through fleet at once,
// 4 goroutines a keygate, and checks that exactly the limit is allowed
// (less the before checks already made).
func assertFleetLimit(t *testing.T, fleet []*env, key string, lim ratelimit.Limit, before int64) {
	t.Helper()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	per := 4 * lim.Units / int64(len(fleet)) / 4
	for _, e := range fleet {
		for range 4 {
			wg.Go(func() {
				for range per {
					if resp, err := e.client.Check(e.ctx, checkRequest(key)); err == nil && resp.GetOkResponse() != nil {
						allowed.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	if n := allowed.Load() + before; n != lim.Units {
		t.Fatalf("the fleet allowed %d of a limit of %d", n, lim.Units)
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
// allows, under the outage rule, its share of what the fleet had not
// leased when it last saw the budget: the fleet stays within the limit.
func TestFleetOutageShare(t *testing.T) {
	lim := ratelimit.Limit{Units: 30, Window: time.Hour}
	fleet, ns, key, _ := limitedFleet(t, 3, lim)
	poll.Until(t, 10*time.Second, "every keygate knowing the other two", func() bool {
		for _, e := range fleet {
			if e.inst.Peers() != 3 {
				return false
			}
		}
		return true
	})
	total := 0
	for _, e := range fleet {
		if e.check(t, key).GetOkResponse() == nil { // cached, with a lease taken
			t.Fatal("denied")
		}
		total++
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	for _, e := range fleet {
		poll.Until(t, 10*time.Second, "not ready", func() bool { return !e.inst.Ready() })
		n := 0
		for range 30 {
			if e.check(t, key).GetOkResponse() != nil {
				n++
			}
		}
		if n < 9 || n > 10 { // (30 - 1..3) / 3, and what it held
			t.Errorf("a keygate allowed %d under the outage rule, want (30 - what it saw granted) / 3", n)
		}
		total += n
	}
	if total > int(lim.Units) {
		t.Fatalf("the fleet allowed %d, over the limit of %d", total, lim.Units)
	}
}
