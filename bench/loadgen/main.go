// Command loadgen measures keygate's Check over gRPC on loopback next to a
// do-nothing ext_authz server, with the same load generator, in one run:
// throughput, latency percentiles, server CPU per check, and keygate's
// startup time. make bench builds the two servers and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type options struct {
	keygate, noop string
	keys, hot     int
	duration      time.Duration
	warmup        time.Duration
	conns         int
	concurrency   []int
	cpuprofile    string
	rounds        int
}

func run(ctx context.Context) error {
	var o options
	conc := flag.String("concurrency", "1,16,64", "comma-separated concurrency levels")
	flag.StringVar(&o.keygate, "keygate", "bin/keygate", "keygate binary")
	flag.StringVar(&o.noop, "noop", "bin/noop-authz", "do-nothing ext_authz server binary")
	flag.IntVar(&o.keys, "keys", 100_000, "keys in the store")
	flag.IntVar(&o.hot, "hot", 10_000, "keys the requests rotate over")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per server and concurrency")
	flag.IntVar(&o.rounds, "rounds", 10, "alternating rounds the measured time is split into")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before each run")
	flag.IntVar(&o.conns, "conns", 4, "gRPC connections")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "save each server's CPU profile during its last round to this file, with the server's name appended")
	flag.Parse()
	for _, c := range strings.Split(*conc, ",") {
		var n int
		if _, err := fmt.Sscan(c, &n); err != nil || n < 1 {
			return fmt.Errorf("--concurrency: %q is not a positive number", c)
		}
		o.concurrency = append(o.concurrency, n)
	}

	kg, startup, err := startKeygate(ctx, o.keygate)
	if err != nil {
		return err
	}
	defer kg.stop()
	fmt.Printf("keygate startup to ready (embedded NATS, empty cache): %.0f ms\n", ms(startup))
	reqs, err := seed(ctx, kg.natsURL, o.keys, o.hot)
	if err != nil {
		return err
	}
	noop, err := startNoop(ctx, o.noop)
	if err != nil {
		return err
	}
	defer noop.stop()

	for _, p := range []*process{noop, kg} {
		if err := warm(ctx, p, reqs, o.conns); err != nil {
			return err
		}
	}
	const loads = "keygate_store_lookups_total"
	loads0, err := kg.counter(loads)
	if err != nil {
		return err
	}
	var rows []result
	for _, c := range o.concurrency {
		r, err := compare(ctx, []*process{noop, kg}, reqs, c, o)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	loads1, err := kg.counter(loads)
	if err != nil {
		return err
	}
	report(os.Stdout, rows, startup)
	fmt.Printf("keygate store reads while measured: %.0f (the hot keys are cached by a first pass)\n", loads1-loads0)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
