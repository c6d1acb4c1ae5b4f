package authz

import (
	"bytes"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// TestAppendAllow: an allow is written in as many bytes as proto
// marshalling writes, and reads back as the response it was, for keys
// with and without scopes, with and without rate limits and low-balance
// headers; anything else is left to marshalling.
func TestAppendAllow(t *testing.T) {
	s := &Server{remove: []string{"authorization", "x-api-key", "api-key"}, lowBalance2: 1000}
	for _, c := range []struct {
		name    string
		key     *store.Key
		balance int64
		rl      *ratelimit.Result
	}{
		{"plain", &store.Key{ID: "key_a", AccountID: "acme", Env: "live", Scopes: []string{"chat:send", "models:read"}}, 1e6, nil},
		{"no scopes", &store.Key{ID: "key_b", AccountID: "acme", Env: "test", Scopes: nil}, 1e6, nil},
		{"rate limited, low balance", &store.Key{ID: "key_c", AccountID: "lowbal", Env: "live", Scopes: []string{"*"}}, 999,
			&ratelimit.Result{Allowed: true, Limit: 600, Remaining: 599, Reset: 59_500_000_000}},
		{"long values", &store.Key{ID: "key_" + string(bytes.Repeat([]byte("x"), 300)), AccountID: string(bytes.Repeat([]byte("y"), 200)), Env: "live",
			Scopes: []string{string(bytes.Repeat([]byte("z"), 200))}}, 1e6, &ratelimit.Result{Allowed: true, Limit: 1 << 40, Remaining: 1 << 39, Reset: 1}},
		{"metered", &store.Key{ID: "key_d", AccountID: "acme", Env: "live", Scopes: []string{"*"}}, 1e6,
			&ratelimit.Result{Allowed: true, Limit: 600, Remaining: 599, Reset: 59_500_000_000}},
	} {
		k := NewKey(c.key)
		h := &holding{}
		res := ""
		if c.name == "metered" {
			h.tokens = &ratelimit.Result{Allowed: true, Limit: 100_000, Remaining: 90_000, Reset: 30e9}
			res = "res_kg1_0_0_acme"
		}
		resp := s.allow(k, &Account{ID: c.key.AccountID, Balance: c.balance, Currency: "MXN"}, c.rl, h, res)
		got, ok := AppendAllow(nil, resp)
		var back authv3.CheckResponse
		if err := proto.Unmarshal(got, &back); !ok || err != nil || !proto.Equal(&back, resp) {
			t.Errorf("%s: AppendAllow wrote %x (%v), which reads back as %v, want %v", c.name, got, err, &back, resp)
		}
		if want := proto.Size(resp); len(got) != want {
			t.Errorf("%s: %d bytes, proto.Size says %d", c.name, len(got), want)
		}
		Release(resp)
	}
	deny := denyScope.response("no")
	if b, ok := AppendAllow(nil, deny); ok || len(b) != 0 {
		t.Error("a deny was written as an allow")
	}
	if _, ok := AppendAllow(nil, &authv3.CheckResponse{}); ok {
		t.Error("a response built elsewhere was written as an allow")
	}
}

func BenchmarkAppendAllow(b *testing.B) {
	s := &Server{remove: []string{"authorization", "x-api-key", "api-key"}, lowBalance2: 1000}
	k := NewKey(&store.Key{ID: "key_0123456789abcdef0123456789", AccountID: "acme", Env: "live", Scopes: []string{"*"}})
	rl := &ratelimit.Result{Allowed: true, Limit: 600, Remaining: 599, Reset: 59_500_000_000}
	resp := s.allow(k, &Account{ID: "acme", Balance: 1e6, Currency: "MXN"}, rl, &holding{}, "")
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendAllow(buf[:0], resp)
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}
