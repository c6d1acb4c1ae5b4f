package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/keygate/keygate/internal/store"
)

// Floor comparison: an embedded keygate with 1,000 keys, each limited to
// 10,000,000 a minute (every check goes through the fleet limiter and is
// counted for usage, and none is denied), against the floor server, at
// concurrency 64 over 4 connections, in alternating rounds of 100,000
// checks of the keys in turn.
const (
	floorKeys        = 1000
	floorConcurrency = 64
	floorConns       = 4
	floorChecks      = 100_000
	floorRounds      = 3
)

// floorComparison prints, for each round and as medians, keygate's
// throughput and p99 against the floor's.
func floorComparison(ctx context.Context, o options) error {
	kg, _, err := startKeygate(ctx, o.keygate)
	if err != nil {
		return err
	}
	defer kg.stop()
	mixed, _, err := seed(ctx, kg, floorKeys, floorKeys, &store.RateLimit{Requests: 10_000_000, Window: store.Duration(time.Minute)})
	if err != nil {
		return err
	}
	var reqs []*authv3.CheckRequest // allowed checks only: the decision path
	for i, r := range mixed {
		if i%40 != 19 && i%40 != 39 {
			reqs = append(reqs, r)
		}
	}
	frames, err := encode(reqs)
	if err != nil {
		return err
	}
	floor, err := startServer(ctx, "floor", o.floor, nil)
	if err != nil {
		return err
	}
	defer floor.stop()
	for _, p := range []*process{floor, kg} {
		if err := warm(ctx, p, reqs, floorConns); err != nil {
			return err
		}
	}
	var rps, p99 [2][]float64 // floor, keygate
	for r := range floorRounds {
		for i, p := range []*process{floor, kg} {
			t, closeConns, err := newTarget(p, floorConns)
			if err != nil {
				return err
			}
			driveN(ctx, t.conns, frames, floorConcurrency, floorChecks/10) // warm the connections
			cpu0, err := p.cpu()
			if err != nil {
				return err
			}
			leases0, _ := p.counter("keygate_ratelimit_leases_total") // 0 for the floor
			begin := time.Now()
			lat := driveN(ctx, t.conns, frames, floorConcurrency, floorChecks)
			elapsed := time.Since(begin)
			cpu1, err := p.cpu()
			if err != nil {
				return err
			}
			leases1, _ := p.counter("keygate_ratelimit_leases_total")
			closeConns()
			slices.Sort(lat)
			rps[i] = append(rps[i], float64(len(lat))/elapsed.Seconds())
			p99[i] = append(p99[i], float64(lat[len(lat)*99/100]))
			fmt.Printf("round %d %-8s %8.0f checks/s  p99 %6.3f ms  server CPU %5.1f µs/check  leases %5.0f\n", r+1, p.name, rps[i][r], p99[i][r]/1e6,
				float64((cpu1-cpu0)/time.Nanosecond)/1e3/float64(len(lat)), leases1-leases0)
		}
	}
	if o.cpuprofile != "" { // one round more, each server profiled through it
		for _, p := range []*process{floor, kg} {
			t, closeConns, err := newTarget(p, floorConns)
			if err != nil {
				return err
			}
			done := make(chan error, 1)
			go func() { done <- p.profile(8*time.Second, o.cpuprofile+"."+p.name) }()
			driveN(ctx, t.conns, frames, floorConcurrency, 12*floorChecks)
			closeConns()
			if err := <-done; err != nil {
				return err
			}
		}
	}
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	fmt.Printf("keygate / floor, medians of %d rounds: throughput %.2f (target >= 0.92), p99 %.2f (target <= 1.2)\n",
		floorRounds, median(rps[1])/median(rps[0]), median(p99[1])/median(p99[0]))
	return nil
}

// driveN sends n checks over conns from c workers, and returns their
// latencies.
func driveN(ctx context.Context, conns []*grpc.ClientConn, reqs [][]byte, c, n int) []time.Duration {
	var left atomic.Int64
	left.Store(int64(n))
	var mu sync.Mutex
	all := make([]time.Duration, 0, n)
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			conn := conns[w%len(conns)]
			lat := make([]time.Duration, 0, n/c+1)
			var answer frame
			for i := w; left.Add(-1) >= 0 && ctx.Err() == nil; i += c {
				begin := time.Now()
				req := frame(reqs[i%len(reqs)])
				if err := conn.Invoke(ctx, checkMethod, &req, &answer, grpc.ForceCodecV2(frameCodec{})); err == nil {
					lat = append(lat, time.Since(begin))
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}
