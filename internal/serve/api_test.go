package serve_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
)

// TestAdminAPI: keygate serve with api_addr serves the admin API, over
// TLS with api_tls, and a key it creates and revokes is allowed and then
// denied by the check.
func TestAdminAPI(t *testing.T) {
	ns := natstest.Run(t)
	cfg := testConfig(t, ns.ClientURL())
	cfg.APIAddr = "127.0.0.1:0"
	cfg.APITLS.CertFile, cfg.APITLS.KeyFile = writeCert(t)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := start(t, cfg)
	st := openStore(t, e, ns)
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys})
	_, token, err := svc.CreateToken(e.ctx, admin.Actor{Kind: admin.ActorCLI}, "ops", []string{admin.ScopeKeys, admin.ScopeBalances})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cfg.APITLS.CertFile)
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	base := "https://" + e.inst.APIAddr.String()
	call := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequestWithContext(e.ctx, method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, res.StatusCode, b, want)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	call("PUT", "/v1/accounts/acme/balance", `{"balance":10000}`, 200)
	k := call("POST", "/v1/keys", `{"account_id":"acme","scopes":["models:read"]}`, 201)
	secret, id := k["key"].(string), k["id"].(string)
	waitCode(t, e, secret, 200)
	call("POST", "/v1/keys/"+id+"/revoke", "", 200)
	waitCode(t, e, secret, 401)
	if l := call("GET", "/v1/keys?status=revoked", "", 200); len(l["data"].([]any)) != 1 {
		t.Errorf("revoked keys: %v", l)
	}
	if res, err := http.Get("http://" + e.inst.APIAddr.String() + "/v1/keys"); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS listener: %d", res.StatusCode)
		}
	}
	e.noKeysLogged(t, secret, token)

	// The API's changes are in the audit trail, by token.
	_, js := natstest.Connect(t, ns)
	trail, err := audit.Bind(e.ctx, js, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for r, err := range trail.Read(e.ctx, audit.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Actor.Kind != audit.ActorAdminToken || r.Actor.ID == "" || r.Actor.User != "ops" {
			t.Errorf("record %s by %+v", r.Action, r.Actor)
		}
		actions = append(actions, r.Action)
	}
	if want := []string{audit.BalanceSet, audit.KeyCreate, audit.KeyRevoke}; !slices.Equal(actions, want) {
		t.Errorf("audit trail %v, want %v", actions, want)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key,
// returning their paths.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keygate admin API"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
