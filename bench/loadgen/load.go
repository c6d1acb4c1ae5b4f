package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// result is one server at one concurrency.
type result struct {
	server         string
	concurrency    int
	checks, errors int
	rps            float64
	p50, p99, p999 time.Duration
	cpuPerCheck    time.Duration
}

// load sends reqs in turn to p from c goroutines over o.conns connections,
// for o.warmup unmeasured and then o.duration measured.
func load(ctx context.Context, p *process, reqs []*authv3.CheckRequest, c int, o options) (result, error) {
	clients := make([]authv3.AuthorizationClient, o.conns)
	for i := range clients {
		cc, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return result{}, err
		}
		defer cc.Close()
		clients[i] = authv3.NewAuthorizationClient(cc)
	}
	drive(ctx, clients, reqs, c, time.Now().Add(o.warmup))
	cpu0, err := p.cpu()
	if err != nil {
		return result{}, err
	}
	profiled := make(chan error, 1)
	if o.cpuprofile != "" && p.adminAddr != "" && c == o.concurrency[len(o.concurrency)-1] {
		go func() { profiled <- p.profile(o.duration, o.cpuprofile) }()
	} else {
		profiled <- nil
	}
	begin := time.Now()
	lat, errs := drive(ctx, clients, reqs, c, begin.Add(o.duration))
	elapsed := time.Since(begin)
	cpu1, err := p.cpu()
	if err != nil {
		return result{}, err
	}
	if err := <-profiled; err != nil {
		return result{}, fmt.Errorf("profile: %w", err)
	}
	if len(lat) == 0 {
		return result{}, fmt.Errorf("%s: no check answered", p.name)
	}
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[min(int(q*float64(len(lat))), len(lat)-1)] }
	return result{
		server: p.name, concurrency: c, checks: len(lat), errors: errs,
		rps: float64(len(lat)) / elapsed.Seconds(),
		p50: pct(0.50), p99: pct(0.99), p999: pct(0.999),
		cpuPerCheck: (cpu1 - cpu0) / time.Duration(len(lat)),
	}, nil
}

// drive runs c workers until deadline and returns every latency and the
// number of failed calls.
func drive(ctx context.Context, clients []authv3.AuthorizationClient, reqs []*authv3.CheckRequest, c int, deadline time.Time) ([]time.Duration, int) {
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			client := clients[w%len(clients)]
			lat := make([]time.Duration, 0, 1<<16)
			failed := 0
			for i := w; time.Now().Before(deadline) && ctx.Err() == nil; i += c {
				begin := time.Now()
				if _, err := client.Check(ctx, reqs[i%len(reqs)]); err != nil {
					failed++
					continue
				}
				lat = append(lat, time.Since(begin))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += failed
			mu.Unlock()
		})
	}
	wg.Wait()
	return all, errs
}
