// Command loadgen measures keygate's Check over gRPC on loopback next to a
// do-nothing ext_authz server (and, with -opa, an OPA one), with the same
// load generator, in one run: throughput, latency percentiles, server CPU
// per check, and keygate's startup time. It loads two keygates: one with
// its NATS embedded, and a sidecar with the default configuration on that
// NATS, both at the default rate limit, so that they share the keys'
// budgets. Their first minute, when every key takes its first leases, is
// measured and reported apart (-settle). make bench builds the servers
// and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
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
	opa           string
	keys, hot     int
	duration      time.Duration
	warmup        time.Duration
	settle        time.Duration
	conns         int
	concurrency   []int
	cpuprofile    string
	rounds        int
	compare       bool
	memory        bool
	floor         string
	bodies        bool
}

func run(ctx context.Context) error {
	var o options
	conc := flag.String("concurrency", "1,16,64", "comma-separated concurrency levels")
	flag.StringVar(&o.keygate, "keygate", "bin/keygate", "keygate binary")
	flag.StringVar(&o.noop, "noop", "bin/noop-authz", "do-nothing ext_authz server binary")
	flag.StringVar(&o.opa, "opa", "", "OPA ext_authz server binary (bench/opa); none if empty")
	flag.IntVar(&o.keys, "keys", 100_000, "keys in the store")
	flag.IntVar(&o.hot, "hot", 10_000, "keys the requests rotate over")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per server and concurrency")
	flag.IntVar(&o.rounds, "rounds", 10, "alternating rounds the measured time is split into")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before each run")
	flag.DurationVar(&o.settle, "settle", 70*time.Second, "load at concurrency 64 before the comparison, reported apart: the keys' first rate-limit window on new keygates")
	flag.IntVar(&o.conns, "conns", 4, "gRPC connections")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "save each server's CPU profile during its last round to this file, with the server's name appended (and the other servers' meanwhile, with .during-<server>)")
	flag.BoolVar(&o.compare, "compare", true, "compare keygate with the do-nothing server (and OPA)")
	flag.BoolVar(&o.memory, "memory", true, "measure a sidecar keygate's memory with an external NATS")
	flag.StringVar(&o.floor, "floor", "", "the floor ext_authz server binary (bench/floor): compare an embedded keygate with it and exit")
	flag.BoolVar(&o.bodies, "bodies", false, "compare metered checks with 4 KB chat bodies against the same checks without bodies (and, with -floor, the floor with and without them) and exit")
	flag.Parse()
	for _, c := range strings.Split(*conc, ",") {
		var n int
		if _, err := fmt.Sscan(c, &n); err != nil || n < 1 {
			return fmt.Errorf("--concurrency: %q is not a positive number", c)
		}
		o.concurrency = append(o.concurrency, n)
	}

	if o.bodies {
		return bodiesComparison(ctx, o)
	}
	if o.floor != "" {
		return floorComparison(ctx, o)
	}
	kg, startup, err := startKeygate(ctx, o.keygate)
	if err != nil {
		return err
	}
	defer kg.stop()
	fmt.Printf("keygate startup to ready (embedded NATS, empty cache): %.0f ms\n", ms(startup))
	reqs, hashes, err := seed(ctx, kg, o.keys, o.hot, nil)
	if err != nil {
		return err
	}
	frames, err := encode(reqs)
	if err != nil {
		return err
	}
	if o.compare {
		if err := comparison(ctx, kg, reqs, frames, hashes, startup, o); err != nil {
			return err
		}
	}
	if o.memory {
		return memory(ctx, o.keygate, kg, reqs, frames, o)
	}
	return nil
}

// comparison runs keygate beside the do-nothing server (and OPA) and
// prints the tables.
func comparison(ctx context.Context, kg *process, reqs []*authv3.CheckRequest, frames [][]byte, hashes []string, startup time.Duration, o options) error {
	noop, err := startServer(ctx, "do-nothing", o.noop, nil)
	if err != nil {
		return err
	}
	defer noop.stop()
	sidecar, err := startSidecar(ctx, o.keygate, kg)
	if err != nil {
		return err
	}
	defer sidecar.stop()
	for _, p := range []*process{noop, kg, sidecar} {
		if err := warm(ctx, p, reqs, o.conns); err != nil {
			return err
		}
	}

	if err := settle(ctx, []*process{noop, kg, sidecar}, frames, o); err != nil {
		return err
	}
	const loads = "keygate_store_lookups_total"
	loads0, err := kg.counter(loads)
	if err != nil {
		return err
	}
	begin := time.Now()
	kgOps0, scOps0 := kg.fleetOps(), sidecar.fleetOps()
	rows, err := compareAll(ctx, []*process{noop, kg, sidecar}, frames, o)
	if err != nil {
		return err
	}
	elapsed := time.Since(begin).Seconds()
	kgOps, scOps := kg.fleetOps().minus(kgOps0), sidecar.fleetOps().minus(scOps0)
	sidecar.stop()
	loads1, err := kg.counter(loads)
	if err != nil {
		return err
	}
	report(os.Stdout, rows, startup)
	fmt.Printf("keygate store reads while measured: %.0f (the hot keys are cached by a first pass)\n", loads1-loads0)
	fmt.Println("NATS KV operations per second while measured (each server loaded a third of the time):")
	fmt.Printf("  keygate: %s\n  sidecar: %s\n", kgOps.per(elapsed), scOps.per(elapsed))
	fmt.Println("the same per second of each keygate's own rounds:")
	for _, r := range rows {
		if r.server != "do-nothing" {
			fmt.Printf("  %s, concurrency %d: %s\n", r.server, r.concurrency, r.ops)
		}
	}
	if o.opa == "" {
		return nil
	}
	noop.stop() // started after, so that idle servers are not beside the main comparison
	opa, err := startOPA(ctx, o.opa, hashes)
	if err != nil {
		return err
	}
	defer opa.stop()
	if err := warm(ctx, opa, reqs, o.conns); err != nil {
		return err
	}
	fmt.Println("\n== keygate beside OPA (opa-envoy-plugin's evaluation, the key hashes as data), rounds of their own")
	rows, err = compareAll(ctx, []*process{kg, opa}, frames, o)
	if err != nil {
		return err
	}
	reportOPA(os.Stdout, rows)
	return nil
}

// settle loads the servers for o.settle at concurrency 64, in rounds as
// the comparison does, and prints what it measured: new keygates' first
// minute, when every key takes its first rate-limit leases (its first
// window costs a few, later windows about one per keygate).
func settle(ctx context.Context, servers []*process, frames [][]byte, o options) error {
	if o.settle <= 0 {
		return nil
	}
	so := o
	so.duration = o.settle / time.Duration(len(servers)) // each server is loaded in turn
	so.rounds, so.warmup, so.cpuprofile = max(int(so.duration/(2*time.Second)), 1), 0, ""
	rows, err := compare(ctx, servers, frames, 64, so)
	if err != nil {
		return err
	}
	fmt.Printf("== the keygates' first %s (every key's first rate-limit windows here), not in the comparison below\n", o.settle)
	printRows(os.Stdout, rows)
	noop := find(rows, "do-nothing", 64)
	for _, name := range []string{"keygate", "sidecar"} {
		fmt.Printf("%s / do-nothing: throughput %.2f\n", name, find(rows, name, 64).rps/noop.rps)
	}
	fmt.Println()
	return nil
}

// compareAll runs compare at each concurrency.
func compareAll(ctx context.Context, servers []*process, reqs [][]byte, o options) ([]result, error) {
	var rows []result
	for _, c := range o.concurrency {
		r, err := compare(ctx, servers, reqs, c, o)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
