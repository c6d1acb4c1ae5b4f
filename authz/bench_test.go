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
		_, _ = f.srv.Check(f.ctx, req)
	}
}

func BenchmarkCheckAllowCacheHit(b *testing.B) {
	f := newFixture(b)
	// 10,000 per millisecond: the loop never reaches it, and the numbers in
	// the headers stay in the range a real limit has.
	key, _ := f.createKey(b, keySpec{limit: &store.RateLimit{Requests: 10_000, Window: store.Duration(time.Millisecond)}})
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
func BenchmarkCheckAllowNoNATS(b *testing.B) {
	format := apikey.DefaultFormat()
	key, _ := format.Mint(apikey.LivePrefix)
	rec := &store.Key{ID: "key_0123456789abcdefghij", Hash: apikey.Hash(key), AccountID: "acme", Env: store.EnvLive,
		Scopes: []string{"*"}, RateLimit: &store.RateLimit{Requests: 10_000, Window: store.Duration(time.Millisecond)}}
	o := cache.Options{MaxEntries: 1000, MaxNegative: 1000, NegativeTTL: time.Minute}
	keys, _ := cache.New(o, func(context.Context, string) (*authz.Key, uint64, error) { return authz.NewKey(rec), 1, nil })
	accounts, _ := cache.New(o, func(context.Context, string) (*authz.Account, uint64, error) {
		return &authz.Account{ID: "acme", Balance: 1e12, Currency: "MXN"}, 1, nil
	})
	b.Cleanup(keys.Close)
	b.Cleanup(accounts.Close)
	srv := authz.New(authz.Options{Format: format, Credentials: config.Default().Credentials,
		Routes: []config.Route{{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"}}}, keys, accounts)
	req := request("POST", "/v1/chat/completions", map[string]string{
		"authorization": "Bearer " + key, "content-type": "application/json", "user-agent": "OpenAI/Python 1.0",
		"accept": "application/json", "x-request-id": "abc", "host": "api.example.com",
	})
	ctx := context.Background()
	for range 3 {
		_, _ = srv.Check(ctx, req)
	}
	keys.Wait()
	accounts.Wait()
	if resp, _ := srv.Check(ctx, req); resp.GetOkResponse() == nil {
		b.Fatalf("not allowed: %v", resp)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = srv.Check(ctx, req)
	}
}
