package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestNginxAllowIPs: behind the shipped nginx config, keygate in each
// http_mode sees the address nginx accepted the connection from
// (127.0.0.1 here) and nothing a client says about it: a key limited to
// 10.0.0.0/8 is refused whatever X-Keygate-Client-IP or X-Forwarded-For
// the client sends, in any spelling or number; a key limited to loopback
// passes.
func TestNginxAllowIPs(t *testing.T) {
	nginxBinary(t)
	for _, mode := range []string{"nginx", "envoy", "traefik"} {
		t.Run(mode, func(t *testing.T) {
			kg := startKeygate(t, mode)
			be := startBackend(t)
			ng := startNginx(t, kg.inst.HTTPAddr.String(), be.addr())
			kg.setAccount(t, "acme", 100000, nil)
			loopback, _ := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"*"}, allowIPs: []string{"127.0.0.0/8", "::1/128"}})
			private, _ := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"*"}, allowIPs: []string{"10.0.0.0/8"}})
			anywhere, _ := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"*"}})
			spoof := [][2]string{
				{"X-Keygate-Client-IP", "10.1.2.3"}, {"x-keygate-client-ip", "10.1.2.4"},
				{"X-Forwarded-For", "10.1.2.3"}, {"X-Forwarded-For", "10.1.2.3, 10.1.2.4"}, {"X-Real-IP", "10.1.2.3"},
				{"Forwarded", "for=10.1.2.3"},
			}
			for _, c := range []struct {
				name, key string
				status    int
			}{
				{"loopback key", loopback, 200},
				{"key without allow_ips", anywhere, 200},
				{"private key from loopback", private, 403},
			} {
				call := mode + "-" + strings.ReplaceAll(c.name, " ", "-")
				req, _ := http.NewRequest("GET", ng.base+"/v1/models", nil)
				req.Header.Set("Authorization", "Bearer "+c.key)
				req.Header.Set("X-E2E-Call", call)
				for _, h := range spoof {
					req.Header[h[0]] = append(req.Header[h[0]], h[1]) // as sent: case and repeats kept
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Fatalf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.status, body)
				}
				reached := len(be.requests(call))
				if c.status == 200 {
					if reached != 1 {
						t.Fatalf("%s: the backend got %d requests", c.name, reached)
					}
					continue
				}
				var b struct {
					Error struct{ Message, Type, Code string }
				}
				if err := json.Unmarshal(body, &b); err != nil || b.Error.Code != "ip_not_allowed" || b.Error.Type != "permission_error" ||
					!strings.Contains(b.Error.Message, "cannot be used from 127.0.0.1:") || strings.Contains(string(body), c.key) {
					t.Fatalf("%s: body %s, want ip_not_allowed naming 127.0.0.1 and not the key", c.name, body)
				}
				if reached != 0 {
					t.Fatalf("%s: a denied request reached the backend", c.name)
				}
			}
		})
	}
}
