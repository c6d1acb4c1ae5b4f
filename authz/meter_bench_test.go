package authz_test

import (
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/funds"
	"github.com/keygate/keygate/internal/pricing"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/store"
)

// chatBody4K is a 4 KB chat completion body.
var chatBody4K = `{"model":"gpt-4o-mini","max_tokens":256,"stream":true,"messages":[` +
	strings.Repeat(`{"role":"user","content":"The quick brown fox jumps over the lazy dog, again and again, and then once more."},`, 38) +
	`{"role":"user","content":"end"}]}`

// meteredServer is the fixture's decisions with prices, funds and a
// settler on its store.
func meteredServer(b *testing.B, f *fixture) *authz.Server {
	prices, err := pricing.New(pricing.Options{Models: []pricing.Entry{{Match: "gpt-4o*", Currency: "MXN",
		Price: pricing.Price{Input: 1000, CachedInput: 500, Output: 4000, MaxOutput: 1000}}}, InputBytesPerToken: 1, HoldTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	fu := funds.New(f.st, funds.Options{ID: "kgbench"})
	se := settle.New(settle.Options{ID: "kgbench", Store: f.st, Funds: fu})
	go func() { _ = se.Run(f.ctx) }()
	return authz.New(authz.Options{Format: apikey.DefaultFormat(), Credentials: config.Default().Credentials,
		Prices: prices, Funds: fu, Settler: se, ID: "kgbench", Now: f.clock.now}, f.keys, f.accounts)
}

// BenchmarkCheckModelList4K is an allow of a 4 KB chat completion for a
// key limited to some models: the body is read for its model.
func BenchmarkCheckModelList4K(b *testing.B) {
	f := newFixture(b)
	key, k := f.createKey(b, keySpec{limit: unlimited})
	if _, err := f.st.UpdateKey(f.ctx, k.ID, func(k *store.Key) error { k.V, k.Models = 2, []string{"gpt-4o*"}; return nil }); err != nil {
		b.Fatal(err)
	}
	f.setBalance(b, "acme", 1e12, nil)
	benchCheck(b, f, chatRequest(key))
}

// BenchmarkCheckMetered4K is an allow of a 4 KB chat completion that a
// live key pays for: the body read, the estimate held of the balance
// (from this keygate's lease) and reserved for its settlement.
func BenchmarkCheckMetered4K(b *testing.B) {
	f := newFixture(b)
	key, _ := f.createKey(b, keySpec{limit: unlimited})
	f.setBalance(b, "acme", 1e12, nil)
	f.srv = meteredServer(b, f)
	benchCheck(b, f, chatRequest(key))
}

func chatRequest(key string) *authv3.CheckRequest {
	r := request("POST", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + key, "content-type": "application/json"})
	r.Attributes.Request.Http.RawBody = []byte(chatBody4K)
	return r
}
