package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// result is one server at one concurrency.
type result struct {
	server         string
	concurrency    int
	checks, errors int
	rps            float64
	p50, p99, p999 time.Duration
	cpuPerCheck    time.Duration
	// others is the other servers' CPU while this one was loaded, in
	// cores: their background work (and NATS, in the embedded keygate).
	others float64
	// ops is a keygate's NATS KV operations per second of its rounds.
	ops string
}

// target is a server under load: its connections and what was measured.
type target struct {
	p       *process
	conns   []*grpc.ClientConn
	clients []authv3.AuthorizationClient
	lat     []time.Duration
	errs    int
	elapsed time.Duration
	cpu     time.Duration
	others  time.Duration // the other servers' CPU during the rounds
	wall    time.Duration // the rounds' time, warm-up included
	ops     fleetOps      // a keygate's NATS KV operations during its rounds
}

func newTarget(p *process, conns int) (*target, func(), error) {
	t := &target{p: p}
	var closers []func() error
	for range conns {
		cc, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dialEnvoy))
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, cc.Close)
		t.conns = append(t.conns, cc)
		t.clients = append(t.clients, authv3.NewAuthorizationClient(cc))
	}
	return t, func() {
		for _, c := range closers {
			_ = c()
		}
	}, nil
}

// round warms up t at concurrency c, then measures it for d.
func (t *target) round(ctx context.Context, reqs [][]byte, c int, warmup, d time.Duration) error {
	_, _, sent := drive(ctx, t.conns, reqs, t.p.next, c, time.Now().Add(warmup))
	t.p.next = (t.p.next + sent) % len(reqs)
	cpu0, err := t.p.cpu()
	if err != nil {
		return err
	}
	begin := time.Now()
	lat, errs, sent := drive(ctx, t.conns, reqs, t.p.next, c, begin.Add(d))
	t.p.next = (t.p.next + sent) % len(reqs)
	t.elapsed += time.Since(begin)
	cpu1, err := t.p.cpu()
	if err != nil {
		return err
	}
	t.lat, t.errs, t.cpu = append(t.lat, lat...), t.errs+errs, t.cpu+cpu1-cpu0
	return nil
}

func (t *target) result(c int) (result, error) {
	if len(t.lat) == 0 {
		return result{}, fmt.Errorf("%s: no check answered", t.p.name)
	}
	lat := t.lat
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[min(int(q*float64(len(lat))), len(lat)-1)] }
	return result{
		server: t.p.name, concurrency: c, checks: len(lat), errors: t.errs,
		rps: float64(len(lat)) / t.elapsed.Seconds(),
		p50: pct(0.50), p99: pct(0.99), p999: pct(0.999),
		cpuPerCheck: t.cpu / time.Duration(len(lat)),
		others:      t.others.Seconds() / t.wall.Seconds(),
		ops:         t.ops.per(t.wall.Seconds()),
	}, nil
}

// warm sends every request once to p, so that keygate's cache holds the
// hot keys before anything is measured, and checks that p allows the
// requests that carry a valid key (all but one in twenty) and denies the
// others (a 503 is sent again, as clients do); the do-nothing server
// allows everything.
func warm(ctx context.Context, p *process, reqs []*authv3.CheckRequest, conns int) error {
	t, closeConns, err := newTarget(p, conns)
	if err != nil {
		return err
	}
	defer closeConns()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	var allowed atomic.Int64
	var mu sync.Mutex
	denied := map[int32]int{} // HTTP status of the answers that were not allows
	for i, r := range reqs {
		g.Go(func() error {
			resp, err := check(ctx, t.clients[i%len(t.clients)], r)
			if resp.GetOkResponse() != nil {
				allowed.Add(1)
			} else if err == nil {
				mu.Lock()
				denied[int32(resp.GetDeniedResponse().GetStatus().GetCode())]++
				mu.Unlock()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("warm %s: %w", p.name, err)
	}
	want := int64(len(reqs) - len(reqs)/20)
	if p.name == "do-nothing" || p.name == "floor" || allValid(reqs) {
		want = int64(len(reqs))
	}
	if n := allowed.Load(); n != want {
		return fmt.Errorf("%s allowed %d of %d requests, want %d (denials by HTTP status: %v)", p.name, n, len(reqs), want, denied)
	}
	return nil
}

// check sends r, again after a pause while the answer is a 503 (keygate
// could not lease the key's first units in time on a loaded machine), a
// few times at most, as the OpenAI SDKs do.
func check(ctx context.Context, c authv3.AuthorizationClient, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	for attempt := 1; ; attempt++ {
		resp, err := c.Check(ctx, r)
		if err != nil || attempt == 4 || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// allValid reports whether every request carries a key that seed made:
// none without a credential (seed's requests of unknown keys are 1 in 40
// as well, so one without a credential means the mix).
func allValid(reqs []*authv3.CheckRequest) bool {
	for _, r := range reqs {
		if r.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"] == "" {
			return false
		}
	}
	return true
}

// compare loads the servers in turn at concurrency c, in o.rounds
// alternating rounds so that both see the same machine, and returns a
// result for each.
func compare(ctx context.Context, servers []*process, reqs [][]byte, c int, o options) ([]result, error) {
	var targets []*target
	for _, p := range servers {
		t, closeConns, err := newTarget(p, o.conns)
		if err != nil {
			return nil, err
		}
		defer closeConns()
		targets = append(targets, t)
	}
	each := o.duration / time.Duration(o.rounds)
	for r := range o.rounds {
		for _, t := range targets {
			profile := o.cpuprofile != "" && t.p.adminAddr != "" && r == o.rounds-1 && c == o.concurrency[len(o.concurrency)-1]
			profiled := make(chan error, len(targets))
			for _, pt := range targets {
				switch {
				case !profile || pt.p.adminAddr == "":
					profiled <- nil
				case pt == t:
					go func() { profiled <- t.p.profile(each, o.cpuprofile+"."+t.p.name) }()
				default: // what the others do meanwhile
					go func() { profiled <- pt.p.profile(each, o.cpuprofile+"."+pt.p.name+".during-"+t.p.name) }()
				}
			}
			begin := time.Now()
			ops0 := t.p.fleetOps()
			before, err := othersCPU(targets, t)
			if err != nil {
				return nil, err
			}
			if err := t.round(ctx, reqs, c, o.warmup/time.Duration(o.rounds), each); err != nil {
				return nil, err
			}
			after, err := othersCPU(targets, t)
			if err != nil {
				return nil, err
			}
			t.others, t.wall = t.others+after-before, t.wall+time.Since(begin)
			t.ops = t.ops.plus(t.p.fleetOps().minus(ops0))
			for range targets {
				if err := <-profiled; err != nil {
					return nil, fmt.Errorf("profile: %w", err)
				}
			}
		}
	}
	var out []result
	for _, t := range targets {
		r, err := t.result(c)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// othersCPU is the CPU time used so far by the servers other than t.
func othersCPU(targets []*target, t *target) (time.Duration, error) {
	var sum time.Duration
	for _, o := range targets {
		if o == t {
			continue
		}
		c, err := o.p.cpu()
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

// drive runs c workers until deadline, sending reqs in turn from start,
// and returns every latency, the number of failed calls and the number of
// requests sent. Requests are sent encoded already and answers are not
// decoded (see frameCodec), so that the generator's own work per check
// is the same whatever the server answers.
func drive(ctx context.Context, conns []*grpc.ClientConn, reqs [][]byte, start, c int, deadline time.Time) ([]time.Duration, int, int) {
	var mu sync.Mutex
	var all []time.Duration
	errs, sent := 0, 0
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			conn := conns[w%len(conns)]
			lat := make([]time.Duration, 0, 1<<16)
			failed, n := 0, 0
			var answer frame
			for i := start + w; time.Now().Before(deadline) && ctx.Err() == nil; i += c {
				n++
				begin := time.Now()
				req := frame(reqs[i%len(reqs)])
				if err := conn.Invoke(ctx, checkMethod, &req, &answer, grpc.ForceCodecV2(frameCodec{})); err != nil {
					failed++
					continue
				}
				lat = append(lat, time.Since(begin))
			}
			mu.Lock()
			all = append(all, lat...)
			errs, sent = errs+failed, sent+n
			mu.Unlock()
		})
	}
	wg.Wait()
	return all, errs, sent
}

// checkMethod is ext_authz's Check.
const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// frame is a message as it goes over the wire.
type frame []byte

// frameCodec sends frames as they are and keeps answers undecoded.
type frameCodec struct{}

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*frame))}, nil
}

func (frameCodec) Unmarshal(mem.BufferSlice, any) error { return nil }

func (frameCodec) Name() string { return "proto" }

// encode returns reqs in their wire form.
func encode(reqs []*authv3.CheckRequest) ([][]byte, error) {
	out := make([][]byte, len(reqs))
	for i, r := range reqs {
		b, err := proto.Marshal(r)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}
