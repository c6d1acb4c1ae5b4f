package serve_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/serve"
)

// githubKey writes a public keys document listing a new key pair, as
// GitHub serves it, and returns the pair and the file.
func githubKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": "k1", "is_current": true,
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}}})
	path := filepath.Join(t.TempDir(), "github-keys.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return priv, path
}

// postReport posts body to the admin port's secret scanning endpoint,
// signed by priv unless it is nil.
func postReport(t *testing.T, e *env, priv *ecdsa.PrivateKey, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, http.MethodPost, "http://"+e.inst.AdminAddr.String()+"/v1/github/secret-scanning", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if priv != nil {
		sum := sha256.Sum256(body)
		sig, err := ecdsa.SignASN1(rand.Reader, priv, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Github-Public-Key-Identifier", "k1")
		req.Header.Set("Github-Public-Key-Signature", base64.StdEncoding.EncodeToString(sig))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestLeakedKeyRevoked: with leaks.github on, a report GitHub signed
// revokes the key it names on the running keygate; an unsigned one does
// nothing.
func TestLeakedKeyRevoked(t *testing.T) {
	ns := natstest.Run(t)
	priv, keys := githubKey(t)
	cfg := testConfig(t, ns.ClientURL())
	cfg.Leaks.GitHub.Enabled, cfg.Leaks.GitHub.KeysFile = true, keys
	e := start(t, cfg)
	st := openStore(t, e, ns)
	key, _ := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 100)
	waitCode(t, e, key, 200)

	body, _ := json.Marshal([]map[string]string{{"token": key, "type": "keygate_api_key",
		"url": "https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar.txt", "source": "content"}})
	if code, resp := postReport(t, e, nil, body); code != http.StatusUnauthorized {
		t.Fatalf("unsigned report: %d %s", code, resp)
	}
	if got := e.code(t, key); got != 200 {
		t.Fatalf("after an unsigned report the key answers %d", got)
	}
	code, resp := postReport(t, e, priv, body)
	want := `[{"token_hash":"` + apikey.Hash(key) + `","token_type":"keygate_api_key","label":"true_positive"}]` + "\n"
	if code != http.StatusOK || resp != want {
		t.Fatalf("signed report: %d %s, want 200 %s", code, resp, want)
	}
	waitCode(t, e, key, 401)
	e.noKeysLogged(t, key)

	resp2, err := http.Get("http://" + e.inst.AdminAddr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	metrics, _ := io.ReadAll(resp2.Body)
	if !strings.Contains(string(metrics), "keygate_leaks_keys_revoked_total 1\n") {
		t.Errorf("/metrics does not count the revocation:\n%s", metrics)
	}
}

// TestLeaksOffByDefault: without leaks.github.enabled the admin port has
// no such endpoint.
func TestLeaksOffByDefault(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	if code, _ := postReport(t, e, nil, []byte(`[]`)); code != http.StatusNotFound {
		t.Fatalf("POST /v1/github/secret-scanning: %d, want 404", code)
	}
}

// TestLeaksBadKeysFile: a keys file keygate cannot use stops it, naming
// the field.
func TestLeaksBadKeysFile(t *testing.T) {
	ns := natstest.Run(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, []byte(`{"public_keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, ns.ClientURL())
	cfg.Leaks.GitHub.Enabled, cfg.Leaks.GitHub.KeysFile = true, path
	inst, err := serve.Start(natstest.Context(t), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		_ = inst.Shutdown()
		t.Fatal("started with a keys file holding no key")
	}
	if !strings.Contains(err.Error(), "leaks.github.keys_file") {
		t.Errorf("error %q does not name leaks.github.keys_file", err)
	}
}
