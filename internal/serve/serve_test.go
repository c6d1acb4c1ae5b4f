package serve_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/serve"
	"github.com/keygate/keygate/internal/store"
)

type env struct {
	logs   *syncBuffer
	inst   *serve.Instance
	client authv3.AuthorizationClient
	conn   *grpc.ClientConn
	ctx    context.Context
}

func start(t testing.TB, cfg config.Config) *env {
	t.Helper()
	ctx := natstest.Context(t)
	logs := &syncBuffer{}
	inst, err := serve.Start(ctx, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Shutdown() })
	cc, err := grpc.NewClient(inst.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &env{logs: logs, inst: inst, client: authv3.NewAuthorizationClient(cc), conn: cc, ctx: ctx}
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// noKeysLogged fails if any key appears in the logs.
func (e *env) noKeysLogged(t testing.TB, keys ...string) {
	t.Helper()
	logs := e.logs.String()
	for _, k := range keys {
		if strings.Contains(logs, k) || strings.Contains(logs, k[len(k)-16:]) {
			t.Fatalf("a key appears in the logs:\n%s", logs)
		}
	}
}

func testConfig(t testing.TB, natsURL string) config.Config {
	cfg := config.Default()
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownDelay = 0
	cfg.NATS.URL = natsURL
	if natsURL == "" {
		cfg.NATS.Listen, cfg.NATS.DataDir, cfg.NATS.TokenDir = "127.0.0.1:-1", t.TempDir(), t.TempDir()
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (e *env) code(t testing.TB, key string) int {
	t.Helper()
	code, err := e.tryCode(key)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// tryCode is code for any goroutine: it returns the call's error.
func (e *env) tryCode(key string) (int, error) {
	resp, err := e.client.Check(e.ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Headers: map[string]string{"authorization": "Bearer " + key}},
	}}})
	if err != nil {
		return 0, err
	}
	if resp.GetOkResponse() != nil {
		return 200, nil
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), nil
}

// openStore opens the store on ns with a client of the test's own.
func openStore(t testing.TB, e *env, ns *server.Server) *store.Store {
	t.Helper()
	_, js := natstest.Connect(t, ns)
	st, err := store.Open(e.ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func createKey(t testing.TB, ctx context.Context, st *store.Store, account string) (string, *store.Key) {
	t.Helper()
	plain, k, err := tryCreateKey(ctx, st, account)
	if err != nil {
		t.Fatal(err)
	}
	return plain, k
}

// editKey makes key id's record what edit makes it.
func editKey(t testing.TB, ctx context.Context, st *store.Store, id string, edit func(*store.Key)) {
	t.Helper()
	if _, err := st.UpdateKey(ctx, id, func(k *store.Key) error { edit(k); return nil }); err != nil {
		t.Fatal(err)
	}
}

// tryCreateKey is createKey for any goroutine: it returns the error.
func tryCreateKey(ctx context.Context, st *store.Store, account string) (string, *store.Key, error) {
	f := apikey.DefaultFormat()
	plain, _ := f.Mint(apikey.LivePrefix)
	id, _ := apikey.NewID()
	k := &store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: account, Env: "live", Scopes: []string{"*"}, Masked: f.Mask(plain), CreatedAt: time.Now()}
	return plain, k, st.CreateKey(ctx, k)
}

func setBalance(t testing.TB, ctx context.Context, st *store.Store, account string, minor int64) {
	t.Helper()
	if _, err := st.UpdateAccount(ctx, account, true, func(a *store.Account) error { a.Balance = minor; return nil }); err != nil {
		t.Fatal(err)
	}
}

func waitCode(t testing.TB, e *env, key string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.code(t, key) != want {
		if time.Now().After(deadline) {
			t.Fatalf("check never answered %d (answers %d)\n%s", want, e.code(t, key), e.logs.String())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestChangesReachRunningServer: revocation, balance change and key
// creation take effect without restart.
func TestChangesReachRunningServer(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, rec := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 100)
	waitCode(t, e, key, 200) // a key is denied until its creation reaches the key filter

	setBalance(t, e.ctx, st, "acme", 0)
	waitCode(t, e, key, 402)
	setBalance(t, e.ctx, st, "acme", 500)
	waitCode(t, e, key, 200)

	if _, err := st.UpdateKey(e.ctx, rec.ID, func(k *store.Key) error { now := time.Now(); k.RevokedAt = &now; return nil }); err != nil {
		t.Fatal(err)
	}
	waitCode(t, e, key, 401)

	// A key that was denied (and cached as missing) works once created.
	f := apikey.DefaultFormat()
	plain, _ := f.Mint(apikey.LivePrefix)
	if got := e.code(t, plain); got != 401 {
		t.Fatalf("unknown key: %d", got)
	}
	id, _ := apikey.NewID()
	k := &store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: "acme", Env: "live", Scopes: []string{"*"}, Masked: f.Mask(plain), CreatedAt: time.Now()}
	if err := st.CreateKey(e.ctx, k); err != nil {
		t.Fatal(err)
	}
	waitCode(t, e, plain, 200)
	e.noKeysLogged(t, key, plain)
}

func TestEmbeddedNATSAndAdminEndpoints(t *testing.T) {
	e := start(t, testConfig(t, ""))
	admin := "http://" + e.inst.AdminAddr.String()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		if path == "/metrics" {
			e.code(t, "nope")
			for _, m := range []string{"keygate_checks_total", "keygate_cache_requests_total", "keygate_store_lookups_total", "keygate_nats_connected",
				"keygate_cache_entries", "keygate_event_lag_seconds", "keygate_catchup_duration_seconds", "keygate_check_duration_seconds",
				"keygate_observe_streams_total", "keygate_observe_settlements_total", "keygate_observe_errors_total"} {
				if !strings.Contains(string(body), m) {
					t.Errorf("/metrics lacks %s", m)
				}
			}
		}
	}
	h, err := healthpb.NewHealthClient(e.conn).Check(e.ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc health: %v %v", h, err)
	}
	if got := e.code(t, "nope"); got != 401 {
		t.Fatalf("malformed key: %d", got)
	}
	if err := e.inst.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(admin + "/healthz"); err == nil {
		t.Fatal("admin still serving after shutdown")
	}
}

// TestEmbeddedNATSRequiresToken: the embedded server refuses clients
// without its token, and clients that do not speak TLS with it first; it
// keeps its token and certificate in files of the user's, where a second
// keygate on the same machine pointed at it finds them.
func TestEmbeddedNATSRequiresToken(t *testing.T) {
	cfg := testConfig(t, "")
	e := start(t, cfg)
	port := e.inst.NATSAddr.(*net.TCPAddr).Port
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	for _, ext := range []string{"token", "crt"} {
		file := filepath.Join(cfg.NATS.TokenDir, fmt.Sprintf("nats-%d.%s", port, ext))
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", file, fi, err)
		}
	}
	token, _ := os.ReadFile(filepath.Join(cfg.NATS.TokenDir, fmt.Sprintf("nats-%d.token", port)))
	for _, opts := range [][]nats.Option{nil, {nats.Token(strings.TrimSpace(string(token)))}} {
		if nc, err := nats.Connect(url, append(opts, nats.Timeout(500*time.Millisecond))...); err == nil {
			nc.Close()
			t.Fatal("the embedded NATS server accepted a plaintext client")
		}
	}

	second := testConfig(t, url)
	second.NATS.TokenDir = cfg.NATS.TokenDir
	e2 := start(t, second)
	if got := e2.code(t, "nope"); got != 401 {
		t.Fatalf("second keygate answers %d", got)
	}
	other := testConfig(t, url)
	other.NATS.TokenDir = t.TempDir() // another user: no token, no certificate
	if inst, err := serve.Start(e.ctx, other, slog.New(slog.DiscardHandler)); err == nil {
		_ = inst.Shutdown()
		t.Fatal("keygate without the token connected")
	}
}
