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

// report prints each keygate (embedded NATS, and the sidecar on an
// external NATS) beside the do-nothing server, with the targets.
func report(w io.Writer, rows []result, startup time.Duration) {
	printRows(w, rows)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "/ do-nothing\tconc\tthroughput\tp99\ttarget")
	for _, name := range []string{"keygate", "sidecar"} {
		for _, c := range concurrencies(rows) {
			noop, kg := find(rows, "do-nothing", c), find(rows, name, c)
			target := ""
			if c == 64 {
				target = fmt.Sprintf("throughput >= %.2f, p99 <= %.1f", targetThroughput, targetP99)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%s\n", name, c, kg.rps/noop.rps, float64(kg.p99)/float64(noop.p99), target)
		}
	}
	fmt.Fprintf(tw, "startup to ready\t\t%.0f ms\t\ttarget < %.0f ms\n", ms(startup), ms(targetStartup))
	tw.Flush()
}

// reportOPA prints keygate beside the OPA server, measured in rounds of
// their own.
func reportOPA(w io.Writer, rows []result) {
	printRows(w, rows)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "keygate / opa\tconc\tthroughput\tp99\tCPU per check")
	for _, c := range concurrencies(rows) {
		opa, kg := find(rows, "opa", c), find(rows, "keygate", c)
		fmt.Fprintf(tw, "\t%d\t%.2f\t%.2f\t%.2f\n", c, kg.rps/opa.rps, float64(kg.p99)/float64(opa.p99), float64(kg.cpuPerCheck)/float64(opa.cpuPerCheck))
	}
	tw.Flush()
}

func printRows(w io.Writer, rows []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tconc\tchecks/s\tp50 µs\tp99 µs\tp999 µs\tCPU µs/check\tothers' CPU\terrors\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.0f %%\t%d\t\n", r.server, r.concurrency, r.rps,
			us(r.p50), us(r.p99), us(r.p999), us(r.cpuPerCheck), 100*r.others, r.errors)
	}
	tw.Flush()
}

// concurrencies lists the concurrency levels in rows, in order.
func concurrencies(rows []result) []int {
	var cs []int
	for _, r := range rows {
		if len(cs) == 0 || cs[len(cs)-1] != r.concurrency {
			cs = append(cs, r.concurrency)
		}
	}
	return cs
}

// find returns the row of server at concurrency c, or a zero result.
func find(rows []result, server string, c int) result {
	for _, r := range rows {
		if r.server == server && r.concurrency == c {
			return r
		}
	}
	return result{}
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }
