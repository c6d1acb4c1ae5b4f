package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Targets printed beside the measurements.
const (
	targetThroughput = 0.90 // keygate / do-nothing at concurrency 64, at least
	targetP99        = 1.2  // keygate / do-nothing at concurrency 64, at most
	targetStartup    = 300 * time.Millisecond
)

func report(w io.Writer, rows []result, startup time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tconc\tchecks/s\tp50 µs\tp99 µs\tp999 µs\tCPU µs/check\terrors\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%d\t\n", r.server, r.concurrency, r.rps,
			us(r.p50), us(r.p99), us(r.p999), us(r.cpuPerCheck), r.errors)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "keygate / do-nothing\tconc\tthroughput\tp99\ttarget")
	for i := 0; i+1 < len(rows); i += 2 {
		noop, kg := rows[i], rows[i+1]
		target := ""
		if kg.concurrency == 64 {
			target = fmt.Sprintf("throughput >= %.2f, p99 <= %.1f", targetThroughput, targetP99)
		}
		fmt.Fprintf(tw, "\t%d\t%.2f\t%.2f\t%s\n", kg.concurrency, kg.rps/noop.rps, float64(kg.p99)/float64(noop.p99), target)
	}
	fmt.Fprintf(tw, "startup to ready\t\t%.0f ms\t\ttarget < %.0f ms\n", ms(startup), ms(targetStartup))
	tw.Flush()
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }
