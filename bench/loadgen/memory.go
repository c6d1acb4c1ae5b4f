package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// memory measures a keygate as a sidecar uses it: against an external
// NATS (the embedded one of store, a keygate of its own), with the default
// configuration. It prints RSS idle, the peak during gRPC load at
// concurrency 64 over the hot keys, RSS right after, and 30 s later.
func memory(ctx context.Context, bin string, store *process, reqs []*authv3.CheckRequest, frames [][]byte, o options) error {
	p, err := startSidecar(ctx, bin, store)
	if err != nil {
		return err
	}
	defer p.stop()
	time.Sleep(10 * time.Second) // settled after start
	idle, _, err := p.rss()
	if err != nil {
		return err
	}
	if err := warm(ctx, p, reqs, o.conns); err != nil {
		return err
	}
	t, closeConns, err := newTarget(p, o.conns)
	if err != nil {
		return err
	}
	defer closeConns()
	if err := t.round(ctx, frames, 64, time.Second, o.duration); err != nil {
		return err
	}
	after, peak, err := p.rss()
	if err != nil {
		return err
	}

	r, err := t.result(64)
	if err != nil {
		return err
	}
	time.Sleep(30 * time.Second)
	later, _, err := p.rss()
	if err != nil {
		return err
	}
	if f := os.Getenv("LOADGEN_HEAP"); f != "" { // for profiling: the heap 30 s after the load
		resp, err := http.Get("http://" + p.adminAddr + "/debug/pprof/heap")
		if err == nil {
			out, _ := os.Create(f)
			_, _ = io.Copy(out, resp.Body)
			out.Close()
			resp.Body.Close()
		}
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	fmt.Printf("\n== sidecar memory: external NATS, default config, gRPC load at c=64 over %d hot keys for %s (%.0f checks/s)\n", o.hot, o.duration, r.rps)
	fmt.Printf("%-34s %8s  %s\n", "", "RSS MiB", "target")
	fmt.Printf("%-34s %8.1f  %s\n", "idle (10 s after ready)", mib(idle), "<= 32")
	fmt.Printf("%-34s %8.1f  %s\n", "peak during the load", mib(peak), "<= 64")
	fmt.Printf("%-34s %8.1f\n", "right after the load", mib(after))
	fmt.Printf("%-34s %8.1f  %s\n", "30 s after the load", mib(later), "<= 40")
	return nil
}

// startSidecar runs keygate with store's NATS and its default settings
// (rate limits, fleet sync and usage included).
func startSidecar(ctx context.Context, bin string, store *process) (*process, error) {
	addrs := make([]string, 2)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	cmd := exec.CommandContext(ctx, bin, "serve", "--grpc-addr", addrs[0], "--admin-addr", addrs[1], "--nats-url", store.natsURL)
	cmd.Env = append(os.Environ(), "KEYGATE_NATS_TOKEN="+store.natsToken, "KEYGATE_LOG_LEVEL=warn", "KEYGATE_SHUTDOWN_DELAY=0s", "KEYGATE_PPROF=true")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{name: "sidecar", cmd: cmd, grpcAddr: addrs[0], adminAddr: addrs[1]}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addrs[1] + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("sidecar keygate not ready after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rss returns the process's resident set size now and its peak so far.
func (p *process) rss() (now, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			now = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return now, peak, nil
}
