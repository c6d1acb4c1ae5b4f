package ratelimit

import (
	"context"
	"fmt"
	"os"
	"testing"
	"text/tabwriter"
	"time"
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
