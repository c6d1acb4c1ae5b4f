package serve_test

import (
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// waitFilter waits until e's key filter is loaded.
func waitFilter(t testing.TB, e *env) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the key filter loaded", e.inst.KeyFilter().Ready)
}

// lookups is how many times e has read the key store for a key.
func (e *env) lookups() uint64 { return e.inst.KeyLookups() }

// TestFloodCostsNoLookups: unknown keys with a valid checksum are denied
// without store lookups (a few false positives aside), while keys in the
// store, old and new, are allowed and a revoked one stays denied.
func TestFloodCostsNoLookups(t *testing.T) {
	for _, checksum := range []bool{true, false} {
		t.Run(map[bool]string{true: "checksum", false: "no checksum"}[checksum], func(t *testing.T) {
			ns := natstest.Run(t)
			cfg := testConfig(t, ns.ClientURL())
			cfg.Keys.Checksum = checksum
			cfg.DefaultRateLimit = "none"
			e := start(t, cfg)
			st := openStore(t, e, ns)
			setBalance(t, e.ctx, st, "acme", 1e6)
			var keys []string
			for range 200 {
				k, _ := createKey(t, e.ctx, st, "acme")
				keys = append(keys, k)
			}
			waitFilter(t, e)
			const flood = 5000
			if n := floodCost(t, e, flood, checksum); n > flood/100 {
				t.Fatalf("%d store lookups and queries for %d unknown keys", n, flood)
			}
			for _, k := range keys {
				if got := e.code(t, k); got != 200 {
					t.Fatalf("a key in the store answered %d", got)
				}
			}
			fresh, rec := createKey(t, e.ctx, st, "acme")
			waitCode(t, e, fresh, 200)
			if _, err := st.UpdateKey(e.ctx, rec.ID, func(k *store.Key) error { now := time.Now(); k.RevokedAt = &now; return nil }); err != nil {
				t.Fatal(err)
			}
			waitCode(t, e, fresh, 401)
		})
	}
}

// floodKey is a random key of the default format: with a valid checksum,
// or (for keys.checksum: false) any 32 characters.
func floodKey(checksum bool) string {
	if checksum {
		k, _ := apikey.DefaultFormat().Mint(apikey.LivePrefix)
		return k
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return apikey.LivePrefix + string(b)
}

// TestFilterFallsBack: while the filter is not known to be current (NATS
// away from keygate), unknown keys are looked up as before (and answered
// 503 as the store cannot be reached), never turned away as unknown; a
// key created meanwhile works once keygate has caught up.
func TestFilterFallsBack(t *testing.T) {
	ns := natstest.Run(t)
	p := newProxy(t, ns.Addr().String())
	cfg := testConfig(t, p.url())
	cfg.Cache.MaxStaleness = config.Duration(time.Hour)
	e := start(t, cfg)
	st := openStore(t, e, ns)
	setBalance(t, e.ctx, st, "acme", 1e6)
	waitFilter(t, e)
	p.setCut(true)
	poll.Until(t, 10*time.Second, "not ready", func() bool { return !e.inst.Ready() })
	if got := e.code(t, floodKey(true)); got != 503 {
		t.Fatalf("unknown key during the outage: %d, want 503 (looked up, store unreachable)", got)
	}
	fresh, _ := createKey(t, e.ctx, st, "acme") // created while keygate cannot see it
	p.setCut(false)
	poll.Until(t, 10*time.Second, "ready", e.inst.Ready)
	waitCode(t, e, fresh, 200)
}

// floodCost checks n unknown keys on e from many goroutines at once, as a
// flood comes (in-process: the flood's cost to the store is the point),
// and returns the store reads it cost: key lookups and the queries made
// before answering that keys are unknown.
func floodCost(t *testing.T, e *env, n int, checksum bool) uint64 {
	t.Helper()
	before := e.lookups() + e.inst.SettleQueries()
	if err := flood(e, n, checksum, 250, nil); err != nil {
		t.Fatal(err)
	}
	return e.lookups() + e.inst.SettleQueries() - before
}

// flood checks n unknown keys on e in-process from workers goroutines,
// or until stop closes. Each must be denied: 401, or 503 when keygate
// cannot confirm in time that the key was not just created (a machine too
// starved for the barrier's round trip); anything else is an error.
func flood(e *env, n int, checksum bool, workers int, stop <-chan struct{}) error {
	check := e.inst.Authorization()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				select {
				case <-stop:
					return
				default:
				}
				resp, _ := check.Check(e.ctx, checkRequest(floodKey(checksum)))
				if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 401 && got != 503 {
					errs <- fmt.Errorf("an unknown key answered %d", got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// TestNewKeysOnFirstRequest: the flood of unknown keys on each of three
// keygates costs the store at most 1 % of its checks; then, with a flood
// beside, each of 1,000 keys works on its first request through every
// keygate the moment its creation returns. The first requests are made
// in-process, so that they come before the creation's change reaches the
// keygates (through gRPC the change is usually faster).
func TestNewKeysOnFirstRequest(t *testing.T) {
	ns := natstest.Run(t)
	var fleet []*env
	for range 3 {
		cfg := testConfig(t, ns.ClientURL())
		cfg.DefaultRateLimit = "none"
		fleet = append(fleet, start(t, cfg))
	}
	st := openStore(t, fleet[0], ns)
	setBalance(t, fleet[0].ctx, st, "acme", 1e6)
	for _, e := range fleet {
		waitFilter(t, e)
	}
	const n = 10000
	costs := make([]uint64, len(fleet))
	var wg sync.WaitGroup
	for i, e := range fleet {
		wg.Add(1)
		go func() { defer wg.Done(); costs[i] = floodCost(t, e, n, true) }()
	}
	wg.Wait()
	for i, c := range costs {
		t.Logf("keygate %d: %d store reads for a flood of %d unknown keys (%.2f %%)", i, c, n, 100*float64(c)/n)
		if c > n/100 {
			t.Errorf("keygate %d: %d store reads for a flood of %d unknown keys, want at most 1 %%", i, c, n)
		}
	}

	stop := make(chan struct{})
	for _, e := range fleet { // a flood beside the new keys, from fewer clients than above
		wg.Add(1) // (250 each starve the three in-process keygates' own work on a loaded machine)
		go func() { defer wg.Done(); _ = flood(e, 1<<30, true, 25, stop) }()
	}
	const keys, workers = 1000, 20
	var denied atomic.Int64
	var creators sync.WaitGroup
	for range workers {
		creators.Add(1)
		go func() {
			defer creators.Done()
			for range keys / workers {
				key, _, err := tryCreateKey(fleet[0].ctx, st, "acme")
				if err != nil {
					t.Error(err)
					return
				}
				var each sync.WaitGroup
				for i, e := range fleet { // at once, the moment the creation returned
					each.Add(1)
					go func() {
						defer each.Done()
						resp, _ := e.inst.Authorization().Check(e.ctx, checkRequest(key))
						if resp.GetOkResponse() == nil {
							denied.Add(1)
							t.Errorf("keygate %d: a key's first request answered %d", i, resp.GetDeniedResponse().GetStatus().GetCode())
						}
					}()
				}
				each.Wait()
			}
		}()
	}
	creators.Wait()
	close(stop)
	wg.Wait()
	t.Logf("%d keys, each on its first request through 3 keygates: %d denied", keys, denied.Load())
}
