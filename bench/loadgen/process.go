package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/natstoken"
)

// process is a server under test, run as its own process so that its CPU
// time can be read apart from the load generator's.
type process struct {
	name      string
	cmd       *exec.Cmd
	grpcAddr  string
	adminAddr string
	natsURL   string
	natsToken string // the embedded server's
	tokenDir  string // where the embedded server's certificate is, for its clients
	// next is the request the next round starts at: each round goes on
	// where the last one stopped, so that the requests rotate over every
	// key at any concurrency.
	next int
}

// stop ends the process; it may be called again.
func (p *process) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
}

// cpu returns the process's user+system CPU time so far.
func (p *process) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startKeygate runs keygate with an embedded NATS server and returns once
// /readyz answers, with the time that took.
func startKeygate(ctx context.Context, bin string, args ...string) (*process, time.Duration, error) {
	addrs := make([]string, 3)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, 0, err
		}
		addrs[i] = a
	}
	dir, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"serve", "--grpc-addr", addrs[0], "--admin-addr", addrs[1],
		"--nats-listen", addrs[2], "--data-dir", dir}, args...)...)
	// The embedded server's certificate goes there, for its clients (the
	// seeder, the sidecar), and not to the user's directory.
	tokenDir := filepath.Join(dir, "clients")
	token := natstoken.New()
	// The default rate limit (600/1m), which no key reaches here: every
	// check goes through the fleet-wide limiter and is counted for usage,
	// as in production, and the sidecar shares the keys' budgets.
	cmd.Env = append(os.Environ(), "KEYGATE_LOG_LEVEL=warn", "KEYGATE_PPROF=true",
		"KEYGATE_SHUTDOWN_DELAY=0s", "KEYGATE_NATS_TOKEN="+token, "KEYGATE_NATS_TOKEN_DIR="+tokenDir)
	cmd.Stderr = os.Stderr
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{name: "keygate", cmd: cmd, grpcAddr: addrs[0], adminAddr: addrs[1], natsURL: "nats://" + addrs[2], natsToken: token, tokenDir: tokenDir}
	for {
		resp, err := http.Get("http://" + addrs[1] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, time.Since(begin), nil
			}
		}
		if time.Since(begin) > 30*time.Second {
			p.stop()
			return nil, 0, fmt.Errorf("keygate not ready after 30s")
		}
		time.Sleep(time.Millisecond)
	}
}

// counter returns the sum of the server's metric samples named name.
func (p *process) counter(name string) (float64, error) {
	resp, err := http.Get("http://" + p.adminAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, name); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum, nil
}

// profile saves the server's CPU profile over d to file.
func (p *process) profile(d time.Duration, file string) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.adminAddr, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// startOPA runs the OPA server with the keys' hashes as its data.
func startOPA(ctx context.Context, bin string, hashes []string) (*process, error) {
	keys := make(map[string]struct{}, len(hashes))
	for _, h := range hashes {
		keys[h] = struct{}{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp("", "opa-data-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name()) // read at startup
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return startServer(ctx, "opa", bin, []string{"-data", f.Name()})
}

// startServer runs a server that takes -addr and -pprof, and returns once
// it accepts connections.
func startServer(ctx context.Context, name, bin string, args []string) (*process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"-addr", addr, "-pprof", admin}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{name: name, cmd: cmd, grpcAddr: addr, adminAddr: admin}
	for begin := time.Now(); ; time.Sleep(time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p, nil
		}
		if time.Since(begin) > time.Minute {
			p.stop()
			return nil, fmt.Errorf("%s server did not start", name)
		}
	}
}

// fleetOps are a keygate's NATS KV operations on per-key state.
type fleetOps struct{ limitWrites, limitReads, usageWrites, usageReads float64 }

func (p *process) fleetOps() fleetOps {
	lw, _ := p.counter(`keygate_fleet_writes_total{bucket="limits"}`)
	lr, _ := p.counter(`keygate_fleet_reads_total{bucket="limits"}`)
	uw, _ := p.counter(`keygate_fleet_writes_total{bucket="usage"}`)
	ur, _ := p.counter(`keygate_fleet_reads_total{bucket="usage"}`)
	return fleetOps{lw, lr, uw, ur}
}

func (o fleetOps) minus(b fleetOps) fleetOps {
	return fleetOps{o.limitWrites - b.limitWrites, o.limitReads - b.limitReads, o.usageWrites - b.usageWrites, o.usageReads - b.usageReads}
}

func (o fleetOps) plus(b fleetOps) fleetOps {
	return fleetOps{o.limitWrites + b.limitWrites, o.limitReads + b.limitReads, o.usageWrites + b.usageWrites, o.usageReads + b.usageReads}
}

func (o fleetOps) per(seconds float64) string {
	return fmt.Sprintf("rate-limit writes %.0f, reads %.0f; usage writes %.0f, reads %.0f", o.limitWrites/seconds, o.limitReads/seconds, o.usageWrites/seconds, o.usageReads/seconds)
}
