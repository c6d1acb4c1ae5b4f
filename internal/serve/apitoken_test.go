package serve_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/serve"
)

// TestAPITokenFile: the admin token in api_token_file works against the
// admin API with api_token_scopes; its creation is audited as keygate's;
// once revoked, a restart leaves it revoked and says so by id; the token
// is never logged.
func TestAPITokenFile(t *testing.T) {
	ns := natstest.Run(t)
	secret, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, ns.ClientURL())
	cfg.APIAddr = "127.0.0.1:0"
	cfg.APITLS.CertFile, cfg.APITLS.KeyFile = writeCert(t)
	cfg.APITokenFile = filepath.Join(t.TempDir(), "token")
	cfg.APITokenScopes = []string{admin.ScopeKeys}
	if err := os.WriteFile(cfg.APITokenFile, []byte("\n  "+secret+" \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := start(t, cfg)
	client := tlsClient(t, cfg.APITLS.CertFile)
	call := func(e *env, method, path string, want int) {
		t.Helper()
		req, _ := http.NewRequestWithContext(e.ctx, method, "https://"+e.inst.APIAddr.String()+path,
			strings.NewReader(`{"account_id":"acme","scopes":["models:read"]}`))
		req.Header.Set("Authorization", "Bearer "+secret)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, res.StatusCode, b, want)
		}
	}
	call(e, "GET", "/v1/keys", 200)
	call(e, "POST", "/v1/keys", 201) // scope keys

	svc := admin.New(admin.Options{Store: openStore(t, e, ns), Keys: config.Default().Keys})
	tokens, err := svc.ListTokens(e.ctx)
	if err != nil || len(tokens) != 1 || tokens[0].Name != "api_token_file" {
		t.Fatalf("tokens: %+v, %v", tokens, err)
	}
	id := tokens[0].ID
	if !strings.Contains(e.logs.String(), `"msg":"admin token from api_token_file stored","token_id":"`+id+`"`) {
		t.Errorf("no log of the token's record:\n%s", e.logs)
	}
	_, js := natstest.Connect(t, ns)
	trail, err := audit.Bind(e.ctx, js, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var created []audit.Record
	for r, err := range trail.Read(e.ctx, audit.Filter{Kind: audit.TargetToken}) {
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, r)
	}
	if len(created) != 1 || created[0].Action != audit.TokenCreate || created[0].Target.ID != id ||
		created[0].Actor.Kind != audit.ActorKeygate || created[0].Actor.User != "api_token_file" {
		t.Errorf("audit trail of tokens: %+v", created)
	}

	if _, _, err := svc.RevokeToken(e.ctx, admin.Actor{Kind: admin.ActorCLI}, id); err != nil {
		t.Fatal(err)
	}
	again := start(t, cfg) // a restart, or another sidecar
	call(again, "GET", "/v1/keys", 401)
	if !strings.Contains(again.logs.String(), `"level":"WARN","msg":"the admin token in api_token_file is revoked`) ||
		!strings.Contains(again.logs.String(), id) {
		t.Errorf("no warning of the revoked token:\n%s", again.logs)
	}
	if tokens, err := svc.ListTokens(e.ctx); err != nil || len(tokens) != 1 || tokens[0].Status != admin.StatusRevoked {
		t.Errorf("tokens after the restart: %+v, %v", tokens, err)
	}
	e.noKeysLogged(t, secret)
	again.noKeysLogged(t, secret)
}

// TestAPITokenFileRefused: a file that holds no well-formed admin token,
// or is missing, stops keygate serve with an error naming api_token_file
// and never quoting the file's text.
func TestAPITokenFileRefused(t *testing.T) {
	ns := natstest.Run(t)
	good, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, text := range map[string]string{
		"checksum":   good[:len(good)-6] + "ZZZZZZ",
		"two tokens": good + "\n" + good,
		"api key":    "ghub_sk_live_0123456789abcdefghijklmnopqrstuv",
		"empty":      "\n",
		"missing":    "",
	} {
		cfg := testConfig(t, ns.ClientURL())
		cfg.APIAddr = "127.0.0.1:0"
		cfg.APITokenFile = filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if name != "missing" {
			if err := os.WriteFile(cfg.APITokenFile, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		var logs syncBuffer
		inst, err := serve.Start(natstest.Context(t), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
		if err == nil {
			_ = inst.Shutdown()
			t.Errorf("%s: keygate serve started", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "api_token_file: ") {
			t.Errorf("%s: error %q does not name api_token_file", name, err)
		}
		if len(text) > 16 && (strings.Contains(err.Error(), text[4:16]) || strings.Contains(logs.String(), text[4:16])) {
			t.Errorf("%s: the file's text is in the error %q or the logs", name, err)
		}
	}
}

// tlsClient trusts the certificate in certFile.
func tlsClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}
