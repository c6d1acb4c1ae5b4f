package authz_test

import (
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

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
