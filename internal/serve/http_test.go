package serve_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// TestHTTPMode: the same decisions over plain HTTP, as Envoy's
// http_service, nginx and Traefik ask for them, each mode reading the
// original request only from its own source: headers a client adds for
// another mode change nothing.
func TestHTTPMode(t *testing.T) {
	ns := natstest.Run(t)
	st := (*store.Store)(nil)
	type request struct {
		method, path string
		headers      map[string]string
	}
	cases := []struct {
		mode, name string
		req        request
		status     int
		code       string
	}{
		{"envoy", "allowed", request{"GET", "/v1/models", nil}, 200, ""},
		{"envoy", "scope from the request line", request{"POST", "/v1/chat/completions", nil}, 403, "insufficient_permissions"},
		{"envoy", "X-Original-* ignored", request{"POST", "/v1/chat/completions", map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/v1/models"}}, 403, "insufficient_permissions"},
		{"envoy", "X-Forwarded-* ignored", request{"POST", "/V1/Chat/Completions", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/v1/models"}}, 403, "insufficient_permissions"},
		{"envoy", "no key", request{"GET", "/v1/models", map[string]string{"Authorization": ""}}, 401, "missing_api_key"},
		{"nginx", "allowed", request{"GET", "/_keygate", map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/v1/models"}}, 200, ""},
		{"nginx", "scope from X-Original-*", request{"GET", "/_keygate", map[string]string{"X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions?stream=true"}}, 403, "insufficient_permissions"},
		{"nginx", "lowercase method", request{"GET", "/_keygate", map[string]string{"X-Original-Method": "post", "X-Original-URI": "/v1/chat/completions"}}, 403, "insufficient_permissions"},
		{"nginx", "X-Forwarded-* ignored", request{"GET", "/_keygate", map[string]string{"X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions", "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/v1/models"}}, 403, "insufficient_permissions"},
		{"nginx", "request line ignored", request{"GET", "/v1/models", map[string]string{"X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions"}}, 403, "insufficient_permissions"},
		{"nginx", "missing X-Original-URI", request{"GET", "/v1/models", map[string]string{"X-Original-Method": "GET"}}, 503, "auth_unavailable"},
		{"traefik", "scope from X-Forwarded-*", request{"GET", "/", map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/v1/chat/completions"}}, 403, "insufficient_permissions"},
		{"traefik", "X-Original-* ignored", request{"GET", "/", map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/v1/chat/completions", "X-Original-Method": "GET", "X-Original-URI": "/v1/models"}}, 403, "insufficient_permissions"},
		{"traefik", "allowed", request{"POST", "/v1/chat/completions", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/v1/models"}}, 200, ""},
		{"traefik", "missing X-Forwarded-Method", request{"GET", "/v1/models", map[string]string{"X-Forwarded-Uri": "/v1/models"}}, 503, "auth_unavailable"},
	}
	urls := map[string]string{}
	var key, id string
	for _, mode := range []string{"envoy", "nginx", "traefik"} {
		cfg := testConfig(t, ns.ClientURL())
		cfg.HTTPAddr, cfg.HTTPMode = "127.0.0.1:0", mode
		cfg.Routes, cfg.DefaultScope = []config.Route{{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"}}, "none"
		e := start(t, cfg)
		urls[mode] = "http://" + e.inst.HTTPAddr.String()
		if st == nil {
			st = openStore(t, e, ns)
			var rec *store.Key
			key, rec = createKey(t, e.ctx, st, "acme")
			if _, err := st.UpdateKey(e.ctx, rec.ID, func(k *store.Key) error { k.Scopes = []string{"models:read"}; return nil }); err != nil {
				t.Fatal(err)
			}
			setBalance(t, e.ctx, st, "acme", 100)
			id = rec.ID
		}
		waitCode(t, e, key, 200)
		defer e.noKeysLogged(t, key)
	}
	for _, c := range cases {
		t.Run(c.mode+"/"+c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.req.method, urls[c.mode]+c.req.path, nil)
			req.Header.Set("Authorization", "Bearer "+key)
			for k, v := range c.req.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if c.status == 200 {
				if resp.Header.Get("X-Keygate-Key-Id") != id || resp.Header.Get("X-Ratelimit-Limit") == "" ||
					resp.Header.Get("X-Envoy-Auth-Headers-To-Remove") != "authorization,x-api-key,x-keygate-reservation-id" {
					t.Fatalf("allow headers: %v", resp.Header)
				}
				return
			}
			var b struct{ Error struct{ Code string } }
			if err := json.Unmarshal(body, &b); err != nil || b.Error.Code != c.code || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("body %s (%v), want code %s", body, err, c.code)
			}
		})
	}
}
