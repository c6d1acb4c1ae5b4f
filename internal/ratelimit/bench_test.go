package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/natstest"
)

// BenchmarkLeaseStore compares a lease written as the budget entry's
// compare-and-set (what keygate does) with a fetch-and-add on a NATS
// counter stream (AllowMsgCounter, nats-server 2.12 and later), alone and
// with 3 writers racing one budget, on one in-process server. Each
// operation is one lease; conflicts/op counts the compare-and-sets that
// had to read the entry and write again.
func BenchmarkLeaseStore(b *testing.B) {
	ns := natstest.Run(b)
	ctx := context.Background()
	for _, writers := range []int{1, 3} {
		b.Run(fmt.Sprintf("kv-cas/writers=%d", writers), func(b *testing.B) {
			stores := make([]*KVStore, writers)
			for i := range stores {
				_, js := natstest.Connect(b, ns)
				kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench_limits"})
				if err != nil {
					b.Fatal(err)
				}
				stores[i] = NewKVStore(kv)
			}
			lim := Limit{Units: 1 << 40, Window: 1 << 50}
			var conflicts, ops int64
			var mu sync.Mutex
			b.ResetTimer()
			var wg sync.WaitGroup
			for w, s := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					seen := seenEntry{}
					var c, n int64
					for i := w; i < b.N; i += writers {
						for {
							e, _, _ := seen.e.lease(fmt.Sprint("key_bench_", b.N), lim, 1, 1, 1)
							rev, err := s.Put(ctx, fmt.Sprint("key_bench_", b.N), e, seen.rev)
							if err == nil {
								seen = seenEntry{e, rev}
								break
							}
							c++
							e2, rev2, gerr := s.Get(ctx, fmt.Sprint("key_bench_", b.N))
							if gerr != nil {
								b.Error(gerr)
								return
							}
							seen = seenEntry{e2, rev2}
						}
						n++
					}
					mu.Lock()
					conflicts, ops = conflicts+c, ops+n
					mu.Unlock()
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(conflicts)/float64(max(ops, 1)), "conflicts/op")
		})
		b.Run(fmt.Sprintf("counter/writers=%d", writers), func(b *testing.B) {
			var conns []*nats.Conn
			for range writers {
				nc, js := natstest.Connect(b, ns)
				if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "bench_counters", Subjects: []string{"bench.counters.>"},
					AllowMsgCounter: true, AllowDirect: true, MaxMsgsPerSubject: 1}); err != nil {
					b.Fatal(err)
				}
				conns = append(conns, nc)
			}
			subject := fmt.Sprint("bench.counters.", b.N)
			b.ResetTimer()
			var wg sync.WaitGroup
			for w, nc := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					msg := nats.NewMsg(subject)
					msg.Header.Set("Nats-Incr", "+1")
					for i := w; i < b.N; i += writers {
						resp, err := nc.RequestMsg(msg, 5*time.Second)
						if err != nil {
							b.Error(err)
							return
						}
						var ack struct {
							Val string `json:"val"`
						}
						if err := json.Unmarshal(resp.Data, &ack); err != nil {
							b.Error(err)
							return
						}
						if _, err := strconv.ParseInt(ack.Val, 10, 64); err != nil {
							b.Errorf("counter ack %s", resp.Data)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkFleetLimits plays the full matrix at the shipped lease timeout
// and outage delay: 3 and 5 keygates, balanced and skewed traffic, limits
// from 10/1m to 1000/1s, then each fault, mixed terms and skewed clocks
// on a fleet of 3 and of 5; twice the demand of the bound, four windows
// each. It prints every window as allowed/bound ("*": a fault was on) and
// fails on any window over its bound, or, without a fault, under it by
// more than max(2 %, 2).
func BenchmarkFleetLimits(b *testing.B) {
	var matrix []scenario
	for _, n := range []int{3, 5} {
		weights := map[string][]float64{"balanced": balanced3, "skewed": skewed3}
		if n == 5 {
			weights = map[string][]float64{"balanced": balanced5, "skewed": skewed5}
		}
		for _, traffic := range []string{"balanced", "skewed"} {
			for _, lim := range []Limit{{Units: 10, Window: time.Minute}, {Units: 100, Window: time.Minute}, {Units: 600, Window: time.Minute}, {Units: 100, Window: 10 * time.Second}, {Units: 1000, Window: time.Second}} {
				matrix = append(matrix, scenario{name: fmt.Sprintf("%d %s %d/%s", n, traffic, lim.Units, lim.Window),
					terms: same(n, lim), weights: weights[traffic]})
			}
		}
		for _, fault := range []string{"stall", "slow", "unwritable", "cut"} {
			matrix = append(matrix, scenario{name: fmt.Sprintf("%d skewed 100/1m %s", n, fault), terms: same(n, Limit{Units: 100, Window: time.Minute}),
				weights: weights["skewed"], fault: fault})
		}
		mixed := []Limit{{Units: 100, Window: 10 * time.Second}, {Units: 100, Window: 20 * time.Second}}
		rolling := []Limit{{Units: 600, Window: time.Minute}, {Units: 10, Window: time.Second}}
		for name, pair := range map[string][]Limit{"mixed 100/10s 100/20s": mixed, "mixed 600/1m 10/1s": rolling} {
			terms := make([]Limit, n)
			for i := range terms {
				terms[i] = pair[i%2]
			}
			matrix = append(matrix, scenario{name: fmt.Sprintf("%d balanced %s", n, name), terms: terms, weights: weights["balanced"]})
		}
		for _, skew := range []time.Duration{5 * time.Second, -5 * time.Second} {
			skews := make([]time.Duration, n)
			skews[0] = skew
			matrix = append(matrix, scenario{name: fmt.Sprintf("%d skewed 100/10s clock %+v", n, skew), terms: same(n, Limit{Units: 100, Window: 10 * time.Second}),
				weights: weights["skewed"], skews: skews})
		}
	}
	for range b.N {
		bad := 0
		fmt.Printf("%-36s  windows: allowed/bound (* a fault was on)\n", "fleet, traffic, limit, fault")
		for _, sc := range matrix {
			rs, _ := play(b, sc)
			verdict := "ok"
			for _, r := range rs {
				if !r.within {
					verdict, bad = "VIOLATED", bad+1
				}
			}
			fmt.Printf("%-36s %s  %s\n", sc.name, results(rs), verdict)
		}
		if bad > 0 {
			b.Fatalf("%d windows out of their bounds", bad)
		}
	}
	b.ReportMetric(float64(len(matrix)), "scenarios")
	b.ReportMetric(0, "ns/op")
}
