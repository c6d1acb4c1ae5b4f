package e2e

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/config"
)

// TestNginxUnremovedCredential: keygate reads keys from a header that
// keygate.conf does not remove before the backend. Every request keygate
// allows is then answered 503 auth_unavailable, whichever header carried
// its key, and nginx's error log names the header (never the key).
func TestNginxUnremovedCredential(t *testing.T) {
	nginxBinary(t)
	kg := startKeygate(t, "nginx", withCredentials(slices.Concat(credentials, []config.Credential{{Header: "x-custom-key"}})...))
	be := startBackend(t)
	ng := startNginx(t, kg.inst.HTTPAddr.String(), be.addr())
	kg.setAccount(t, "acme", 100000, nil)
	key, _ := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"models:read"}})
	for _, header := range []string{"X-Custom-Key", "Authorization"} {
		t.Run(header, func(t *testing.T) {
			call := "unremoved-" + header
			req, _ := http.NewRequest(http.MethodGet, ng.base+"/v1/models", nil)
			req.Header.Set("X-E2E-Call", call)
			if header == "Authorization" {
				req.Header.Set(header, "Bearer "+key)
			} else {
				req.Header.Set(header, key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || !jsonError.Match(body) {
				t.Errorf("answer %d %s, want 503 auth_unavailable", resp.StatusCode, body)
			}
			if n := len(be.requests(call)); n != 0 {
				t.Errorf("the backend got %d requests", n)
			}
		})
	}
	if !strings.Contains(ng.errorLog(), `keygate reads keys from the header "x-custom-key", which keygate.conf does not remove`) {
		t.Errorf("nginx's error log does not name the header:\n%s", ng.errorLog())
	}
	if in := ng.keyLogged(t, key); len(in) > 0 {
		t.Errorf("the key is in nginx's %v", in)
	}
}
