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
	// Idle: settled after start-up's work, of which the longest is loading
	// the key filter (reading the key names written since its snapshot,
	// all of them right after a bulk import).
	ready := time.Now()
	if err := p.waitFilter(ctx); err != nil {
		return err
	}
	loaded := time.Since(ready)
	time.Sleep(10 * time.Second)
	idle, err := p.rss()
	if err != nil {
		return err
	}
	if f := os.Getenv("LOADGEN_HEAP"); f != "" {
		p.saveHeap(f + ".idle")
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
	after, err := p.rss()
	if err != nil {
		return err
	}
	if f := os.Getenv("LOADGEN_HEAP"); f != "" {
		p.saveHeap(f + ".after")
	}

	r, err := t.result(64)
	if err != nil {
		return err
	}
	time.Sleep(30 * time.Second)
	later, err := p.rss()
	if err != nil {
		return err
	}
	if f := os.Getenv("LOADGEN_HEAP"); f != "" { // for profiling: the heap 30 s after the load
		p.saveHeap(f)
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	fmt.Printf("\n== sidecar memory: external NATS, default config, gRPC load at c=64 over %d hot keys for %s (%.0f checks/s)\n", o.hot, o.duration, r.rps)
	fmt.Printf("%-36s %8s  %-6s  %s\n", "", "RSS MiB", "target", "of which anonymous, file-backed (the binary's pages)")
	row := func(name string, m rss, now int64, target string) {
		fmt.Printf("%-36s %8.1f  %-6s  %.1f, %.1f\n", name, mib(now), target, mib(m.anon), mib(m.file))
	}
	row(fmt.Sprintf("idle (10 s after start-up, %.1f s)", loaded.Seconds()), idle, idle.now, "<= 32")
	fmt.Printf("%-36s %8.1f  %s\n", "peak during the load", mib(after.peak), "<= 64")
	row("right after the load", after, after.now, "")
	row("30 s after the load", later, later.now, "<= 40")
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
	cmd.Env = append(os.Environ(), "KEYGATE_NATS_TOKEN="+store.natsToken, "KEYGATE_NATS_TOKEN_DIR="+store.tokenDir, "KEYGATE_LOG_LEVEL=warn", "KEYGATE_SHUTDOWN_DELAY=0s", "KEYGATE_PPROF=true")
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

// rss is a process's resident set size now, its peak so far, and what
// of it is anonymous memory (the heap, stacks) and file-backed (the
// binary's pages it has touched).
type rss struct{ now, peak, anon, file int64 }

func (p *process) rss() (m rss, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.now = kb << 10
		case "VmHWM:":
			m.peak = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		case "RssFile:":
			m.file = kb << 10
		}
	}
	return m, nil
}

// saveHeap saves p's heap profile, metrics and memory map to files named
// f and f with .metrics and .smaps appended, for profiling.
func (p *process) saveHeap(f string) {
	for suffix, u := range map[string]string{"": "/debug/pprof/heap", ".metrics": "/metrics"} {
		resp, err := http.Get("http://" + p.adminAddr + u)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = os.WriteFile(f+suffix, b, 0o644)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", p.cmd.Process.Pid)); err == nil {
		_ = os.WriteFile(f+".smaps", b, 0o644)
	}
}

// waitFilter waits until p has loaded its key filter.
func (p *process) waitFilter(ctx context.Context) error {
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		if n, err := p.counter("keygate_key_filter_bytes"); err != nil || n > 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: the key filter is not loaded after 2 minutes", p.name)
}
