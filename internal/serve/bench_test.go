package serve_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats.go"

	"github.com/keygate/keygate/authz"
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
// default limit, 600/1m, for each) and 20,000 checks/s in all for 10 s:
// messages and bytes per second each keygate sends and receives.
func BenchmarkFleetTraffic(b *testing.B) {
	const (
		nKeys    = 10_000
		perSec   = 20_000
		duration = 10 * time.Second
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
