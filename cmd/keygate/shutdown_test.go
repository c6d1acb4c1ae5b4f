package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/internal/natstest"

	"github.com/keygate/keygate/internal/poll"
)

// TestSIGTERMKeepsAnswering sends checks without pause through a SIGTERM:
// keygate reports not ready at once, answers every check for the whole
// shutdown delay, and only then stops and exits 0.
func TestSIGTERMKeepsAnswering(t *testing.T) {
	const delay = 2 * time.Second
	url := natstest.Run(t).ClientURL()
	key := createTestKey(t, url)
	grpcAddr, adminAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(binary, "serve", "--grpc-addr", grpcAddr, "--admin-addr", adminAddr)
	cmd.Env = append(cleanEnv(), "KEYGATE_NATS_URL="+url, "KEYGATE_SHUTDOWN_DELAY="+delay.String(), "KEYGATE_LOG_LEVEL=warn", "KEYGATE_DEFAULT_RATE_LIMIT=none")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	poll.Until(t, 30*time.Second, "ready", func() bool { return ready(adminAddr) == http.StatusOK })

	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := authv3.NewAuthorizationClient(cc)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Headers: map[string]string{"authorization": "Bearer " + key}},
	}}}
	var (
		mu                                sync.Mutex
		sigAt                             time.Time
		beforeOK, duringOK, duringRefused int
		stop                              = make(chan struct{})
		loaders                           sync.WaitGroup
	)
	for range 4 {
		loaders.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				begin := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				resp, err := client.Check(ctx, req)
				cancel()
				ok := err == nil && resp.GetOkResponse() != nil
				mu.Lock()
				switch {
				case sigAt.IsZero():
					if ok {
						beforeOK++
					}
				case begin.After(sigAt) && begin.Before(sigAt.Add(delay)):
					if ok {
						duringOK++
					} else {
						duringRefused++
						t.Errorf("check %v after SIGTERM refused: %v", begin.Sub(sigAt), err)
					}
				}
				mu.Unlock()
			}
		})
	}
	poll.Until(t, 30*time.Second, "over 100 checks allowed before the signal", func() bool { mu.Lock(); defer mu.Unlock(); return beforeOK > 100 })
	mu.Lock()
	sigAt = time.Now()
	mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "not ready", func() bool { return ready(adminAddr) == http.StatusServiceUnavailable })
	h, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health during the delay: %v %v, want NOT_SERVING", h, err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("keygate exited with %v", err)
		}
	case <-time.After(delay + 20*time.Second):
		t.Fatal("keygate did not exit")
	}
	exitedAt := time.Since(sigAt)
	close(stop)
	loaders.Wait()
	t.Logf("checks in the %s after SIGTERM: %d answered, %d refused; exited %s after SIGTERM", delay, duringOK, duringRefused, exitedAt.Round(time.Millisecond))
	if duringOK == 0 || duringRefused != 0 {
		t.Fatalf("during the delay: %d answered, %d refused", duringOK, duringRefused)
	}
	if exitedAt < delay {
		t.Fatalf("exited %s after SIGTERM, before the %s delay", exitedAt, delay)
	}
}

// createTestKey creates an account with a balance and a key for it.
func createTestKey(t *testing.T, url string) string {
	t.Helper()
	if r := keygate(t, url, "balance", "set", "acme", "100"); r.code != 0 {
		t.Fatalf("balance set: %s", r.err)
	}
	r := keygate(t, url, "keys", "create", "--account", "acme", "--json")
	var created struct{ Key string }
	if err := json.Unmarshal([]byte(r.out), &created); err != nil || r.code != 0 {
		t.Fatalf("keys create: exit %d %s %v", r.code, r.err, err)
	}
	return created.Key
}

// cleanEnv is the environment without KEYGATE_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ready returns the status of /readyz, or 0 if it does not answer.
func ready(adminAddr string) int {
	resp, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestEmbeddedNATSToken: keygate serve's embedded NATS server requires a
// token, which the same user's admin commands find with no flag (in
// $XDG_CONFIG_HOME/keygate); another user's do not.
func TestEmbeddedNATSToken(t *testing.T) {
	natsAddr := freeAddr(t)
	home := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	cmd := exec.Command(binary, "serve", "--grpc-addr", freeAddr(t), "--admin-addr", freeAddr(t),
		"--nats-listen", natsAddr, "--data-dir", t.TempDir())
	cmd.Env = append(cleanEnv(), append(home, "KEYGATE_SHUTDOWN_DELAY=0s")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	url := "nats://" + natsAddr
	var r result
	poll.Until(t, 30*time.Second, "balance set through the embedded NATS", func() bool {
		r = keygateEnv(t, home, "balance", "set", "acme", "1", "--nats-url", url)
		return r.code == 0
	})
	if r = keygateEnv(t, home, "keys", "create", "--account", "acme", "--nats-url", url); r.code != 0 {
		t.Fatalf("keys create with the user's token: exit %d %s", r.code, r.err)
	}
	other := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	r = keygateEnv(t, other, "keys", "create", "--account", "acme", "--nats-url", url)
	if r.code != 1 || !strings.Contains(strings.ToLower(r.err), "authorization") {
		t.Fatalf("keys create without the token: exit %d %q", r.code, r.err)
	}
}
