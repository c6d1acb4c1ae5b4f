package authz_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// clock is a settable test clock; a live one reads the real time.
type clock struct {
	live atomic.Bool
	mu   sync.Mutex
	t    time.Time
}

func (c *clock) now() time.Time {
	if c.live.Load() {
		return time.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a real NATS server, the store on it, a keygate authz server
// on a loopback gRPC port and a client.
type fixture struct {
	st       *store.Store
	client   authv3.AuthorizationClient
	clock    *clock
	keys     *cache.Table[*authz.Key]
	accounts *cache.Table[*authz.Account]
	ctx      context.Context
	nats     *server.Server
	srv      *authz.Server
	revoked  sync.Map // hash -> struct{}, once a revocation has been applied
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := natstest.Context(t)
	ns := natstest.Run(t)
	nc, js := natstest.Connect(t, ns)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, ctx: ctx, nats: ns}
	o := cache.Options{MaxEntries: 1000, MaxNegative: 1000, NegativeTTL: time.Minute, LoadTimeout: 500 * time.Millisecond}
	if f.keys, err = cache.New(o, authz.KeyLoader(st)); err != nil {
		t.Fatal(err)
	}
	if f.accounts, err = cache.New(o, authz.AccountLoader(st)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.keys.Close)
	t.Cleanup(f.accounts.Close)
	w, err := events.Start(ctx, st, events.Handlers{
		Key: func(hash string, rev uint64, k *store.Key) {
			f.keys.Apply(hash, authz.KeyEntry(rev, k))
			if k != nil && k.Revoked() {
				f.revoked.Store(hash, struct{}{})
			}
		},
		Account: func(id string, rev uint64, a *store.Account) {
			f.accounts.Apply(id, authz.AccountEntry(rev, a))
		},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	t.Cleanup(nc.Close) // before w.Stop: unsubscribing from a dead server waits

	srv := authz.New(authz.Options{
		Format:      apikey.DefaultFormat(),
		Credentials: config.Default().Credentials,
		Routes: []config.Route{
			{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"},
			{Method: "GET", PathPrefix: "/v1/models", Scope: "models:read"},
		},
		DefaultLimit: &ratelimit.Limit{Units: 100, Window: time.Minute},
		LowBalance:   "10.00",
		Now:          f.clock.now,
	}, f.keys, f.accounts)
	f.srv = srv
	f.client = serveGRPC(t, srv)
	return f
}

func serveGRPC(t testing.TB, srv authv3.AuthorizationServer) authv3.AuthorizationClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return authv3.NewAuthorizationClient(cc)
}

// closeStore stops the NATS server.
func (f *fixture) closeStore(t *testing.T) {
	t.Helper()
	f.nats.Shutdown()
	f.nats.WaitForShutdown()
}

// keySpec describes a key to create.
type keySpec struct {
	account   string
	env       string
	scopes    []string
	limit     *store.RateLimit
	expiresIn time.Duration
	revoked   bool
}

// createKey stores a key and returns its plaintext and record.
func (f *fixture) createKey(t testing.TB, s keySpec) (string, *store.Key) {
	t.Helper()
	if s.env == "" {
		s.env = store.EnvLive
	}
	if s.account == "" {
		s.account = "acme"
	}
	if s.scopes == nil {
		s.scopes = []string{"*"}
	}
	format := apikey.DefaultFormat()
	prefix := apikey.LivePrefix
	if s.env == store.EnvTest {
		prefix = apikey.TestPrefix
	}
	plain, err := format.Mint(prefix)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := apikey.NewID()
	k := &store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: s.account, Env: s.env, Scopes: s.scopes,
		RateLimit: s.limit, Masked: format.Mask(plain), CreatedAt: f.clock.now()}
	if s.expiresIn != 0 {
		at := f.clock.now().Add(s.expiresIn)
		k.ExpiresAt = &at
	}
	if s.revoked {
		at := f.clock.now()
		k.RevokedAt = &at
	}
	if err := f.st.CreateKey(f.ctx, k); err != nil {
		t.Fatal(err)
	}
	return plain, k
}

// setBalance sets an account's balance in minor units.
func (f *fixture) setBalance(t testing.TB, account string, minor int64, threshold *int64) {
	t.Helper()
	_, err := f.st.UpdateAccount(f.ctx, account, true, func(a *store.Account) error {
		a.Balance, a.LowBalanceThreshold = minor, threshold
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// request builds a CheckRequest with headers in the map form.
func request(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: headers},
	}}}
}

// rawRequest builds a CheckRequest with headers in header_map, raw bytes.
func rawRequest(method, path string, kv ...string) *authv3.CheckRequest {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, HeaderMap: hm},
	}}}
}

func (f *fixture) check(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := f.client.Check(f.ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func bearer(key string) map[string]string { return map[string]string{"authorization": "Bearer " + key} }

// headersOf flattens header options into a map.
func headersOf(hs []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return m
}
