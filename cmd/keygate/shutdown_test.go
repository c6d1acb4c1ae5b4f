package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
// token and TLS with its certificate, both of which the same user's admin
// commands find with no flag (in $XDG_CONFIG_HOME/keygate); another user's
// do not, and are told where they are missing. A wrong token is reported
// with the file it came from, or KEYGATE_NATS_TOKEN, and where the right
// one is, by the admin commands and keygate serve --nats-url alike.
func TestEmbeddedNATSToken(t *testing.T) {
	natsAddr := freeAddr(t)
	config := t.TempDir()
	home := []string{"XDG_CONFIG_HOME=" + config}
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
	port := natsAddr[strings.LastIndexByte(natsAddr, ':')+1:]
	tokenFile := filepath.Join(config, "keygate", "nats-"+port+".token")

	other := t.TempDir()
	r = keygateEnv(t, []string{"XDG_CONFIG_HOME=" + other}, "keys", "create", "--account", "acme", "--nats-url", url)
	if want := filepath.Join(other, "keygate", "nats-"+port+".crt"); r.code != 1 || !strings.Contains(r.err, want) || !strings.Contains(r.err, "TLS only") {
		t.Errorf("another user's keys create: exit %d %q, want it to name %s", r.code, r.err, want)
	}

	wrongEnv := append(home, "KEYGATE_NATS_TOKEN=wrong-token")
	r = keygateEnv(t, wrongEnv, "keys", "list", "--nats-url", url)
	wantNamed(t, "wrong KEYGATE_NATS_TOKEN", r, "KEYGATE_NATS_TOKEN", tokenFile)
	r = keygateEnv(t, wrongEnv, "serve", "--grpc-addr", freeAddr(t), "--admin-addr", freeAddr(t), "--nats-url", url)
	wantNamed(t, "keygate serve --nats-url with a wrong KEYGATE_NATS_TOKEN", r, "KEYGATE_NATS_TOKEN", tokenFile)

	// The user's certificate with a token file that is not the server's.
	stale := t.TempDir()
	if err := os.MkdirAll(filepath.Join(stale, "keygate"), 0o700); err != nil {
		t.Fatal(err)
	}
	crt, err := os.ReadFile(filepath.Join(config, "keygate", "nats-"+port+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	staleToken := filepath.Join(stale, "keygate", "nats-"+port+".token")
	for f, b := range map[string][]byte{staleToken: []byte("wrong-token\n"), filepath.Join(stale, "keygate", "nats-"+port+".crt"): crt} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r = keygateEnv(t, []string{"XDG_CONFIG_HOME=" + stale}, "keys", "list", "--nats-url", url)
	wantNamed(t, "a token file with a wrong token", r, "KEYGATE_NATS_TOKEN", staleToken)
}

// wantNamed fails unless r is a one-line exit 1 about an authorization
// violation that names every string in names, and not the token.
func wantNamed(t *testing.T, what string, r result, names ...string) {
	t.Helper()
	last := lastLine(r.err)
	ok := r.code == 1 && strings.Contains(strings.ToLower(last), "authorization violation") && !strings.Contains(r.err, "wrong-token")
	for _, n := range names {
		ok = ok && strings.Contains(last, n)
	}
	if !ok {
		t.Errorf("%s: exit %d %q, want one line naming %q", what, r.code, r.err, names)
	}
}
