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

// TestHTTPMode: the same decisions over plain HTTP, as nginx auth_request,
// Traefik forwardAuth and Envoy's http_service ask for them.
func TestHTTPMode(t *testing.T) {
	ns := natstest.Run(t)
	cfg := testConfig(t, ns.ClientURL())
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Routes = []config.Route{{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"}}
	e := start(t, cfg)
	st := openStore(t, e, ns)
	key, rec := createKey(t, e.ctx, st, "acme")
	if _, err := st.UpdateKey(e.ctx, rec.ID, func(k *store.Key) error { k.Scopes = []string{"models:read"}; return nil }); err != nil {
		t.Fatal(err)
	}
	setBalance(t, e.ctx, st, "acme", 100)
	url := "http://" + e.inst.HTTPAddr.String()

	cases := []struct {
		name    string
		path    string
		headers map[string]string
		status  int
		code    string
	}{
		{"envoy, allowed", "/v1/models", map[string]string{"Authorization": "Bearer " + key}, 200, ""},
		{"no key", "/v1/models", nil, 401, "missing_api_key"},
		{"nginx, scope from X-Original-URI", "/auth", map[string]string{"X-Api-Key": key, "X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions"}, 403, "insufficient_permissions"},
		{"traefik, scope from X-Forwarded-Uri", "/", map[string]string{"Authorization": "Bearer " + key, "X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/v1/chat/completions?stream=true"}, 403, "insufficient_permissions"},
		{"two keys", "/v1/models", map[string]string{"Authorization": "Bearer " + key, "X-Api-Key": key[:len(key)-1] + "x"}, 401, "invalid_api_key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", url+c.path, nil)
			for k, v := range c.headers {
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
				if resp.Header.Get("X-Keygate-Key-Id") != rec.ID || resp.Header.Get("X-Ratelimit-Limit") == "" ||
					resp.Header.Get("X-Envoy-Auth-Headers-To-Remove") != "authorization,x-api-key" {
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
	e.noKeysLogged(t, key)
}
