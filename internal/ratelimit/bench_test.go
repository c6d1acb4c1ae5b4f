package ratelimit

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/keygate/keygate/internal/natstest"
)

// BenchmarkFleetLimits prints, for 2, 3 and 5 keygates on one NATS, with
// traffic balanced, skewed (90 % onto one keygate) or all on one, and
// limits from 10/1m to 1000/1s, the requests allowed in each of three
// whole windows when the traffic asks for twice the limit, against the
// tolerances (limit + max(1 %, 2) at most, limit - max(2 %, 2) at least).
// Run it with -benchtime=1x; it takes about a minute and a half.
func BenchmarkFleetLimits(b *testing.B) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "keygates\ttraffic\tlimit\tallowed per window\tmin allowed\tmax allowed\tok\t")
	failed := 0
	for b.Loop() {
		for _, n := range []int{2, 3, 5} {
			for _, tr := range []traffic{balanced, skewed, oneOnly} {
				for _, c := range []struct {
					limit Limit
					scale float64
				}{{Limit{10, time.Minute}, 60}, {Limit{100, time.Second}, 1}, {Limit{1000, time.Second}, 1}} {
					f := newFleet(b, n, c.scale, nil)
					got := f.windowCounts(fmt.Sprintf("key_%d_%s", n, tr.name), c.limit, tr, 2, 3, c.scale)
					lo, hi := bounds(c.limit.Requests)
					ok := "yes"
					for _, v := range got {
						if v < lo || v > hi {
							ok, failed = "NO", failed+1
						}
					}
					fmt.Fprintf(tw, "%d\t%s\t%d/%s\t%v\t%d\t%d\t%s\t\n", n, tr.name, c.limit.Requests, c.limit.Window, got, lo, hi, ok)
					for _, l := range f.limiters {
						l.Close(context.Background())
					}
				}
			}
		}
	}
	tw.Flush()
	if failed > 0 {
		b.Errorf("%d windows outside the tolerances", failed)
	}
}

// BenchmarkLeaseWrites measures the CPU a lease's KV write costs, the
// client and an in-process NATS server (over TCP) together, when leases
// go one at a time and when they go together, as the workers gather
// them: cpu-µs/lease is the process's CPU time per lease.
func BenchmarkLeaseWrites(b *testing.B) {
	for _, together := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("together=%d", together), func(b *testing.B) {
			ns := natstest.Run(b)
			ctx := natstest.Context(b)
			_, js := natstest.Connect(b, ns)
			kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "limits"})
			if err != nil {
				b.Fatal(err)
			}
			st := NewKVStore(kv)
			lim := Limit{1_000_000_000, time.Hour}
			keys := make([]string, together)
			for i := range keys {
				keys[i] = fmt.Sprintf("key_%d", i)
				if _, _, err := st.Lease(ctx, keys[i], lim, 1, 1); err != nil {
					b.Fatal(err)
				}
			}
			cpu0 := cpuTime()
			for b.Loop() {
				var g errgroup.Group
				for _, k := range keys {
					g.Go(func() error { _, _, err := st.Lease(ctx, k, lim, 1, 1); return err })
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*together)/1e3, "cpu-µs/lease")
		})
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
