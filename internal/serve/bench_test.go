package serve_test

import (
	"slices"
	"testing"
	"time"

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
