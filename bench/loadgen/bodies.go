package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/store"
)

// Bodies comparison, with the floor comparison's settings (1,000 keys,
// c=64, 4 connections, alternating rounds of 100,000 checks, medians):
//
//   - no body: chat completion checks without a body, as without
//     with_request_body;
//   - model list: the same with a 4 KB body, for keys limited to some
//     models (the body is read and its model checked);
//   - metered: the same for live keys with prices, on a keygate of its
//     own: the body read, the estimate held of the balance and reserved.
//     Nothing settles here, so reservations pile up as they would if no
//     response ever came back.
func bodiesComparison(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "keygate-bodies-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "metered.yaml")
	if err := os.WriteFile(cfg, []byte(pricedConfig), 0o600); err != nil {
		return err
	}
	plain, _, err := startKeygate(ctx, o.keygate)
	if err != nil {
		return err
	}
	defer plain.stop()
	metered, _, err := startKeygate(ctx, o.keygate, "--config", cfg)
	if err != nil {
		return err
	}
	defer metered.stop()
	limit := &store.RateLimit{Requests: 10_000_000, Window: store.Duration(time.Minute)}
	runs := []struct {
		name   string
		p      *process
		body   bool
		models []string
	}{
		{"no body", plain, false, nil},
		{"4 KB, model list", plain, true, []string{"gpt-4o*"}},
		{"4 KB, metered", metered, true, nil},
	}
	frames := make([][][]byte, len(runs))
	for i, run := range runs {
		mixed, _, err := seed(ctx, run.p, floorKeys, floorKeys, limit, run.models...)
		if err != nil {
			return err
		}
		var reqs []*authv3.CheckRequest
		for j, r := range mixed {
			if j%40 == 19 || j%40 == 39 {
				continue
			}
			if run.body {
				r.Attributes.Request.Http.RawBody = []byte(chatBody4K)
				r.Attributes.Request.Http.Headers["content-length"] = fmt.Sprint(len(chatBody4K))
			}
			reqs = append(reqs, r)
		}
		if err := warm(ctx, run.p, reqs, floorConns); err != nil {
			return err
		}
		if frames[i], err = encode(reqs); err != nil {
			return err
		}
	}
	// The floor (an ext_authz server that never decodes) with the same
	// frames, with and without bodies: what the bodies cost the transport
	// alone.
	if o.floor != "" {
		floor, err := startServer(ctx, "floor", o.floor, nil)
		if err != nil {
			return err
		}
		defer floor.stop()
		runs = append(runs, struct {
			name   string
			p      *process
			body   bool
			models []string
		}{"floor, no body", floor, false, nil}, struct {
			name   string
			p      *process
			body   bool
			models []string
		}{"floor, 4 KB", floor, true, nil})
		frames = append(frames, frames[0], frames[1])
	}
	rps := make([][]float64, len(runs))
	genCPU, serverCPU := make([][]float64, len(runs)), make([][]float64, len(runs))
	for r := range floorRounds {
		for i, run := range runs {
			t, closeConns, err := newTarget(run.p, floorConns)
			if err != nil {
				return err
			}
			driveN(ctx, t.conns, frames[i], floorConcurrency, floorChecks/10)
			gen0, server0, err := cpus(run.p)
			if err != nil {
				return err
			}
			begin := time.Now()
			lat := driveN(ctx, t.conns, frames[i], floorConcurrency, floorChecks)
			elapsed := time.Since(begin)
			gen1, server1, err := cpus(run.p)
			if err != nil {
				return err
			}
			closeConns()
			slices.Sort(lat)
			n := float64(len(lat))
			rps[i] = append(rps[i], n/elapsed.Seconds())
			genCPU[i] = append(genCPU[i], float64((gen1-gen0).Microseconds())/n)
			serverCPU[i] = append(serverCPU[i], float64((server1-server0).Microseconds())/n)
			fmt.Printf("round %d %-18s %8.0f checks/s  p99 %6.3f ms  CPU per check: generator %4.1f µs, server %4.1f µs\n",
				r+1, run.name, rps[i][r], float64(lat[len(lat)*99/100])/1e6, genCPU[i][r], serverCPU[i][r])
		}
	}
	if o.cpuprofile != "" { // one round more for each run, its keygate profiled through it
		for i, run := range runs {
			t, closeConns, err := newTarget(run.p, floorConns)
			if err != nil {
				return err
			}
			done := make(chan error, 1)
			go func() { done <- run.p.profile(5*time.Second, fmt.Sprintf("%s.%d", o.cpuprofile, i)) }()
			driveN(ctx, t.conns, frames[i], floorConcurrency, 6*floorChecks)
			closeConns()
			if err := <-done; err != nil {
				return err
			}
		}
	}
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	fmt.Printf("throughput / no body, medians of %d rounds: 4 KB with a model list %.2f (target >= 0.8), 4 KB metered %.2f\n",
		floorRounds, median(rps[1])/median(rps[0]), median(rps[2])/median(rps[0]))
	if o.floor != "" {
		fmt.Printf("the floor's own: 4 KB / no body %.2f (what moving the bodies costs any ext_authz server)\n", median(rps[4])/median(rps[3]))
	}
	fmt.Println("CPU per check, medians (the generator shares the machine's cores, so its CPU counts against every server's throughput):")
	for i, run := range runs {
		fmt.Printf("  %-18s generator %4.1f µs, server %4.1f µs\n", run.name, median(genCPU[i]), median(serverCPU[i]))
	}
	added := func(i, j int) float64 { return median(serverCPU[j]) - median(serverCPU[i]) }
	fmt.Printf("a 4 KB body adds per check: generator %.1f µs, keygate with a model list %.1f µs", median(genCPU[1])-median(genCPU[0]), added(0, 1))
	if o.floor != "" {
		fmt.Printf(", the floor %.1f µs", added(3, 4))
	}
	fmt.Println()
	return nil
}

// cpus returns the CPU time used so far by this generator and by p.
func cpus(p *process) (gen, server time.Duration, err error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, err
	}
	server, err = p.cpu()
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), server, err
}

// pricedConfig prices gpt-4o* for the seeded account's currency (MXN).
const pricedConfig = `pricing:
  models:
    - match: "gpt-4o*"
      currency: MXN
      input: "2.50"
      output: "10.00"
      max_output: 4096
`

// chatBody4K is a 4 KB chat completion.
var chatBody4K = `{"model":"gpt-4o-mini","max_tokens":256,"stream":true,"messages":[` +
	strings.Repeat(`{"role":"user","content":"The quick brown fox jumps over the lazy dog, again and again, and then once more."},`, 38) +
	`{"role":"user","content":"end"}]}`
