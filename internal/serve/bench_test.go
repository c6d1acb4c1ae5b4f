package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/keyfilter"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// BenchmarkPropagation measures revocation propagation: from the start of
// the KV write to the moment both of two running sidecars deny the key,
// over 1,000 revocations of keys both had cached. It reports p50, p99 and
// max in milliseconds.
func BenchmarkPropagation(b *testing.B) {
	const n = 1000
	ns := natstest.Run(b)
	cfg := testConfig(b, ns.ClientURL())
	cfg.DefaultRateLimit = "none"
	sidecars := []*env{start(b, cfg), start(b, cfg)}
	st := openStore(b, sidecars[0], ns)
	ctx := natstest.Context(b)
	keys := make([]string, n)
	recs := make([]*store.Key, n)
	for i := range n {
		keys[i], recs[i] = createKey(b, ctx, st, "acme")
	}
	if _, err := st.UpdateAccount(ctx, "acme", true, func(a *store.Account) error { a.Balance = 1e9; return nil }); err != nil {
		b.Fatal(err)
	}
	for _, s := range sidecars {
		for _, k := range keys {
			if got := s.code(b, k); got != 200 {
				b.Fatalf("warm-up check: %d", got)
			}
		}
	}
	b.ResetTimer()
	var lat []time.Duration
	for range b.N {
		lat = lat[:0]
		for i, rec := range recs {
			begin := time.Now()
			if _, err := st.UpdateKey(ctx, rec.ID, func(k *store.Key) error { now := time.Now(); k.RevokedAt = &now; return nil }); err != nil {
				b.Fatal(err)
			}
			for _, s := range sidecars {
				for s.code(b, keys[i]) != 401 {
					if time.Since(begin) > 10*time.Second {
						b.Fatal("revocation never enforced")
					}
				}
			}
			lat = append(lat, time.Since(begin))
		}
		b.StopTimer()
		for _, rec := range recs { // un-revoke for the next round
			if _, err := st.UpdateKey(ctx, rec.ID, func(k *store.Key) error { k.RevokedAt = nil; return nil }); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkFleetTraffic measures the NATS traffic of each of two keygates
// sharing rate limits and recording use, with 10,000 keys in use (the
// default limit, 600/1m, for each) and 20,000 checks/s in all for a
// minute (usage is written once a minute per key in constant use):
// messages and bytes per second each keygate sends and receives.
func BenchmarkFleetTraffic(b *testing.B) {
	const (
		nKeys    = 10_000
		perSec   = 20_000
		duration = time.Minute
	)
	ns := natstest.Run(b)
	cfg := testConfig(b, ns.ClientURL())
	sidecars := []*env{start(b, cfg), start(b, cfg)}
	st := openStore(b, sidecars[0], ns)
	ctx := natstest.Context(b)
	setBalance(b, ctx, st, "acme", 1e12)
	reqs := make([]*authv3.CheckRequest, nKeys)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < nKeys; i += 8 {
				key, _ := createKey(b, ctx, st, "acme")
				reqs[i] = &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
					Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Headers: map[string]string{"authorization": "Bearer " + key}},
				}}}
			}
		})
	}
	wg.Wait()
	// load checks every key on every keygate, 20,000 a second in all,
	// each keygate from 8 goroutines, as gRPC would, for d.
	load := func(d time.Duration) (checks int64, secs float64) {
		var n atomic.Int64
		begin := time.Now()
		for si, s := range sidecars {
			for g := range 8 {
				wg.Go(func() {
					// Every 10ms, each goroutine checks its share of 1% of a second's load.
					batch := perSec / 100 / len(sidecars) / 8
					next, i := time.Now(), si+g*len(sidecars)
					for time.Since(begin) < d {
						for range batch {
							resp, _ := s.inst.Authorization().Check(ctx, reqs[i%nKeys])
							authz.Release(resp)
							i += 8 * len(sidecars)
						}
						n.Add(int64(batch))
						next = next.Add(10 * time.Millisecond)
						time.Sleep(time.Until(next))
					}
				})
			}
		}
		wg.Wait()
		return n.Load(), time.Since(begin).Seconds()
	}
	load(5 * time.Second) // every key cached and leased on both keygates
	b.ResetTimer()
	for range b.N {
		before := []nats.Statistics{sidecars[0].inst.NATSStats(), sidecars[1].inst.NATSStats()}
		checks, secs := load(duration)
		b.ReportMetric(float64(checks)/secs, "checks/s")
		for i, s := range sidecars {
			after := s.inst.NATSStats()
			b.ReportMetric(float64(after.OutMsgs-before[i].OutMsgs)/secs, fmt.Sprintf("k%d-out-msgs/s", i+1))
			b.ReportMetric(float64(after.OutBytes-before[i].OutBytes)/secs, fmt.Sprintf("k%d-out-B/s", i+1))
			b.ReportMetric(float64(after.InMsgs-before[i].InMsgs)/secs, fmt.Sprintf("k%d-in-msgs/s", i+1))
			b.ReportMetric(float64(after.InBytes-before[i].InBytes)/secs, fmt.Sprintf("k%d-in-B/s", i+1))
		}
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkKeyFilter measures the key filter with 1,000,000 keys in the
// store (created in bulk in the bucket): the start-up of a keygate that
// finds no snapshot and of one that loads it, the filter's bytes per key,
// the store lookups a flood of 1,000,000 unique unknown keys with valid
// checksums causes, the p99 of valid keys' checks without and during the
// flood, RSS, and how soon a key created with the CLI's code path is
// allowed by two running keygates.
func BenchmarkKeyFilter(b *testing.B) {
	const nKeys, nFlood, floodWorkers = 1_000_000, 1_000_000, 256
	ns := natstest.Run(b)
	ctx := natstest.Context(b)
	_, js := natstest.Connect(b, ns)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	setBalance(b, ctx, st, "acme", 1e12)
	valid := bulkKeys(b, js, nKeys)
	flood := make([]*authv3.CheckRequest, nFlood)
	for i := range flood {
		k, _ := apikey.DefaultFormat().Mint(apikey.LivePrefix)
		flood[i] = checkRequest(k)
	}
	cfg := testConfig(b, ns.ClientURL())
	cfg.DefaultRateLimit = "none"
	b.ResetTimer()
	for range b.N {
		first, ready1, filter1 := startTimed(b, cfg)
		begin := time.Now()
		for { // the first writes the snapshot just after its filter is loaded
			if _, err := st.Filter().GetInfo(ctx, keyfilter.SnapshotName); err == nil {
				break
			} else if time.Since(begin) > time.Minute {
				b.Fatal("no snapshot written")
			}
			time.Sleep(10 * time.Millisecond)
		}
		second, ready2, filter2 := startTimed(b, cfg)
		b.ReportMetric(ms(ready1), "no-snapshot-ready-ms")
		b.ReportMetric(ms(filter1), "no-snapshot-filter-ms")
		b.ReportMetric(ms(ready2), "snapshot-ready-ms")
		b.ReportMetric(ms(filter2), "snapshot-filter-ms")
		f := second.inst.KeyFilter()
		b.ReportMetric(float64(f.Bytes())/nKeys, "filter-B/key")

		check := second.inst.Authorization()
		for _, r := range valid {
			if resp, _ := check.Check(ctx, r); resp.GetOkResponse() == nil {
				b.Fatalf("a key in the store is denied: %v", resp.GetDeniedResponse().GetBody())
			}
		}
		quiet := validP99(ctx, check, valid, 3*time.Second, nil)
		lookups, settles := second.lookups(), second.inst.SettleQueries()
		var flooded atomic.Int64
		floodBegin := time.Now()
		during := validP99(ctx, check, valid, 0, func(stop <-chan struct{}) {
			// Each unknown key waits for a settle round (up to 100 ms), so
			// the flood comes from many goroutines, as from many clients.
			var wg sync.WaitGroup
			for w := range floodWorkers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < nFlood; i += floodWorkers {
						select {
						case <-stop:
							return
						default:
						}
						resp, _ := check.Check(ctx, flood[i])
						if resp.GetOkResponse() != nil {
							b.Error("an unknown key was allowed")
						}
						flooded.Add(1)
					}
				}()
			}
			wg.Wait()
		})
		b.ReportMetric(float64(flooded.Load()), "flood-keys")
		b.ReportMetric(float64(flooded.Load())/time.Since(floodBegin).Seconds(), "flood-keys/s")
		b.ReportMetric(float64(second.lookups()-lookups), "flood-lookups")
		b.ReportMetric(float64(second.inst.SettleQueries()-settles), "flood-settle-queries")
		b.ReportMetric(us(quiet), "valid-p99-us")
		b.ReportMetric(us(during), "valid-p99-flood-us")
		b.ReportMetric(during.Seconds()/quiet.Seconds(), "p99-ratio")
		b.ReportMetric(float64(rssBytes())/(1<<20), "RSS-MiB")
		b.ReportMetric(ms(createToAllow(b, ctx, st, first, second, 200)), "create-to-allow-p99-ms")
	}
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
func us(d time.Duration) float64 { return float64(d) / 1e3 }

func checkRequest(key string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Headers: map[string]string{"authorization": "Bearer " + key}},
	}}}
}

// bulkKeys writes n key records straight into the keys bucket, as an
// import would, and returns checks for 1,000 of them.
func bulkKeys(b *testing.B, js jetstream.JetStream, n int) []*authv3.CheckRequest {
	var valid []*authv3.CheckRequest
	format := apikey.DefaultFormat()
	for i := range n {
		plain, _ := format.Mint(apikey.LivePrefix)
		id := fmt.Sprintf("key_bulk%012d", i)
		rec, _ := json.Marshal(&store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: "acme", Env: store.EnvLive,
			Scopes: []string{"*"}, Masked: format.Mask(plain), CreatedAt: time.Now()})
		if _, err := js.PublishAsync("$KV.keygate_keys."+store.HashEntry(apikey.Hash(plain)), rec); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 0 {
			valid = append(valid, checkRequest(plain))
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("bulk key creation did not finish")
	}
	return valid
}

// startTimed starts a keygate and returns it with the time until it was
// ready and until its key filter was loaded.
func startTimed(b *testing.B, cfg config.Config) (*env, time.Duration, time.Duration) {
	begin := time.Now()
	e := start(b, cfg)
	ready := time.Since(begin)
	for !e.inst.KeyFilter().Ready() {
		time.Sleep(time.Millisecond)
	}
	return e, ready, time.Since(begin)
}

// validP99 checks valid keys in turn, 2,000 a second, for d (or, with
// load, for as long as load runs beside them) and returns the p99.
func validP99(ctx context.Context, check authv3.AuthorizationServer, valid []*authv3.CheckRequest, d time.Duration, load func(stop <-chan struct{})) time.Duration {
	stop := make(chan struct{})
	done := make(chan struct{})
	if load != nil {
		go func() { load(stop); close(done) }()
	} else {
		go func() { time.Sleep(d); close(done) }()
	}
	var lat []time.Duration
	next := time.Now()
	for i := 0; ; i++ {
		select {
		case <-done:
			close(stop)
			slices.Sort(lat)
			return lat[len(lat)*99/100]
		default:
		}
		begin := time.Now()
		resp, _ := check.Check(ctx, valid[i%len(valid)])
		lat = append(lat, time.Since(begin))
		authz.Release(resp)
		next = next.Add(500 * time.Microsecond)
		time.Sleep(time.Until(next))
	}
}

// createToAllow creates n keys one by one as keygate keys create does and
// returns the p99 of the time from the write's end until both keygates
// allow the key.
func createToAllow(b *testing.B, ctx context.Context, st *store.Store, a, c *env, n int) time.Duration {
	var lat []time.Duration
	for range n {
		key, _ := createKey(b, ctx, st, "acme")
		written := time.Now()
		req := checkRequest(key)
		for _, e := range []*env{a, c} {
			for {
				resp, _ := e.inst.Authorization().Check(ctx, req)
				if resp.GetOkResponse() != nil {
					authz.Release(resp)
					break
				}
				if time.Since(written) > 10*time.Second {
					b.Fatal("a new key was never allowed")
				}
			}
		}
		lat = append(lat, time.Since(written))
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}

// rssBytes is the process's resident set size.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
