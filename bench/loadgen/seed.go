package main

import (
	"context"
	"fmt"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/sync/errgroup"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/broker"
	"github.com/keygate/keygate/internal/store"
)

// seed creates keys in keygate's store, funds their account, and returns
// the requests to send (hot of the keys in turn, with every 20th request,
// 5%, carrying an unknown key or none) and the hashes of all the keys.
func seed(ctx context.Context, kg *process, keys, hot int, limit *store.RateLimit, models ...string) ([]*authv3.CheckRequest, []string, error) {
	begin := time.Now()
	// As the admin commands do: TLS with the embedded server's certificate.
	conn, err := broker.Connect(broker.Options{URL: kg.natsURL, Token: kg.natsToken, TokenDir: kg.tokenDir, Name: "loadgen"})
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	st, err := store.Open(ctx, conn.JS, store.DefaultOptions())
	if err != nil {
		return nil, nil, err
	}
	if _, err := st.UpdateAccount(ctx, "bench", true, func(a *store.Account) error { a.Balance = 1 << 50; return nil }); err != nil {
		return nil, nil, err
	}
	plain := make([]string, keys)
	hashes := make([]string, keys)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	format := apikey.DefaultFormat()
	for i := range plain {
		g.Go(func() error {
			k, err := format.Mint(apikey.LivePrefix)
			if err != nil {
				return err
			}
			id, err := apikey.NewID()
			if err != nil {
				return err
			}
			plain[i], hashes[i] = k, apikey.Hash(k)
			rec := &store.Key{ID: id, Hash: hashes[i], AccountID: "bench", Env: store.EnvLive,
				Scopes: []string{"*"}, RateLimit: limit, Masked: format.Mask(k), CreatedAt: time.Now(), Models: models}
			if len(models) > 0 {
				rec.V = 2
			}
			return st.CreateKey(gctx, rec)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, fmt.Errorf("seed keys: %w", err)
	}
	fmt.Printf("seeded %d keys in %.1f s\n", keys, time.Since(begin).Seconds())
	var reqs []*authv3.CheckRequest
	for i := range hot {
		switch {
		case i%40 == 19:
			unknown, _ := format.Mint(apikey.LivePrefix)
			reqs = append(reqs, request(unknown))
		case i%40 == 39:
			reqs = append(reqs, request(""))
		default:
			reqs = append(reqs, request(plain[i]))
		}
	}
	return reqs, hashes, nil
}

// request is a Check as Envoy sends it for a chat completion.
func request(key string) *authv3.CheckRequest {
	headers := map[string]string{
		":authority": "api.example.com", ":method": "POST", ":path": "/v1/chat/completions", ":scheme": "https",
		"content-type": "application/json", "user-agent": "OpenAI/Python 1.54.0", "x-request-id": "9f0c1b7e-3d5a-4c1e-8f2b-6a7d9e0c1b2a",
	}
	if key != "" {
		headers["authorization"] = "Bearer " + key
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/v1/chat/completions", Host: "api.example.com", Headers: headers},
	}}}
}
