package authz_test

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/store"
)

// benchCheck measures one in-process decision for req after warming the
// cache with it.
func benchCheck(b *testing.B, f *fixture, req *authv3.CheckRequest) {
	f.clock.live.Store(true) // rate limits follow real time
	for range 3 {
		if _, err := f.srv.Check(f.ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	f.keys.Wait()
	f.accounts.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, _ := f.srv.Check(f.ctx, req)
		authz.Release(resp) // as the gRPC server does once it has marshalled resp
	}
}

func BenchmarkCheckAllowCacheHit(b *testing.B) {
	f := newFixture(b)
	// 10,000,000 a minute: the loop never reaches it, and the numbers in
	// the headers stay in the range a real limit has. (A window as short as
	// a millisecond would make every check pay a share of a lease a
	// millisecond.)
	key, _ := f.createKey(b, keySpec{limit: &store.RateLimit{Requests: 10_000_000, Window: store.Duration(time.Minute)}})
	f.setBalance(b, "acme", 1e12, nil)
	req := request("POST", "/v1/chat/completions", map[string]string{
		"authorization": "Bearer " + key, "content-type": "application/json", "user-agent": "OpenAI/Python 1.0",
		"accept": "application/json", "x-request-id": "abc", "host": "api.example.com",
	})
	benchCheck(b, f, req)
}

// unlimited is a limit no test or benchmark reaches.
var unlimited = &store.RateLimit{Requests: 1e9, Window: store.Duration(time.Second)}

func BenchmarkCheckDenyMalformed(b *testing.B) {
	f := newFixture(b)
	benchCheck(b, f, request("GET", "/v1/models", bearer("sk-not-a-key")))
}

func BenchmarkCheckDenyRevoked(b *testing.B) {
	f := newFixture(b)
	key, _ := f.createKey(b, keySpec{revoked: true})
	benchCheck(b, f, request("GET", "/v1/models", bearer(key)))
}

// BenchmarkCheckAllowNoNATS is the cache-hit allow in a process that holds
// only keygate's caches, as a sidecar with an external NATS cluster does:
// the decision without the embedded server's heap for the collector to scan.
func BenchmarkCheckAllowNoNATS(b *testing.B) { benchAllowKeys(b, 1) }

// BenchmarkCheckAllow10kKeys is the same with requests rotating over
// 10,000 cached keys, so that lookups miss the CPU caches as they do in
// production.
func BenchmarkCheckAllow10kKeys(b *testing.B) { benchAllowKeys(b, 10_000) }

func benchAllowKeys(b *testing.B, n int) {
	// A limit no key reaches here, whose numbers stay in the range real
	// limits have: 10,000,000 a minute for one key used a million times a
	// second; 10,000 per 10s for each of many keys, so that a key's
	// window does not end between two of its requests.
	limit := &store.RateLimit{Requests: 10_000_000, Window: store.Duration(time.Minute)}
	if n > 1 {
		limit.Requests, limit.Window = 10_000, store.Duration(10*time.Second)
	}
	format := apikey.DefaultFormat()
	records := make(map[string]*store.Key, n)
	reqs := make([]*authv3.CheckRequest, n)
	for i := range reqs {
		key, _ := format.Mint(apikey.LivePrefix)
		id, _ := apikey.NewID()
		records[apikey.Hash(key)] = &store.Key{ID: id, Hash: apikey.Hash(key), AccountID: "acme", Env: store.EnvLive,
			Scopes: []string{"*"}, RateLimit: limit}
		reqs[i] = request("POST", "/v1/chat/completions", map[string]string{
			"authorization": "Bearer " + key, "content-type": "application/json", "user-agent": "OpenAI/Python 1.0",
			"accept": "application/json", "x-request-id": "abc", "host": "api.example.com",
		})
	}
	o := cache.Options{MaxEntries: int64(2 * n), MaxNegative: 1000, NegativeTTL: time.Minute}
	keys, _ := cache.New(o, func(_ context.Context, hash string) (*authz.Key, uint64, error) {
		return authz.NewKey(records[hash]), 1, nil
	})
	accounts, _ := cache.New(o, func(context.Context, string) (*authz.Account, uint64, error) {
		return &authz.Account{ID: "acme", Balance: 1e12, Currency: "MXN"}, 1, nil
	})
	b.Cleanup(keys.Close)
	b.Cleanup(accounts.Close)
	srv := authz.New(authz.Options{Format: format, Credentials: config.Default().Credentials,
		Routes: []config.Route{{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"}}}, keys, accounts)
	ctx := context.Background()
	// Sets are asynchronous and may be dropped: pass over the keys until
	// a whole pass finds every one cached.
	for pass := 0; ; pass++ {
		misses := keys.Stats().Misses.Load()
		for _, req := range reqs {
			if resp, _ := srv.Check(ctx, req); resp.GetOkResponse() == nil {
				b.Fatalf("not allowed: %v", resp)
			}
		}
		keys.Wait()
		accounts.Wait()
		if pass > 0 && keys.Stats().Misses.Load() == misses {
			break
		}
		if pass == 10 {
			b.Fatal("keys do not stay cached")
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		resp, _ := srv.Check(ctx, reqs[i%n])
		authz.Release(resp)
		i++
	}
}
