package audit

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
)

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"hash": true, "key": true, "token": true, "secret": true, "password": true,
		"key_hash": true, "keyHash": true, "api_key": true, "apiKey": true, "APIKey": true, "API-Key": true,
		"access_token": true, "accessToken": true, "client_secret": true, "Password": true, "passwd": true,
		"nats_creds": true, "credentials": true, "authorization": true, "nkey": true, "seed": true,
		"masked": false, "id": false, "key_id": false, "keyId": false, "token_limit": false, "tokens": false,
		"keys": false, "successor_id": false, "budget_id": false, "account_id": false, "monkey": false,
		"scopes": false, "rate_limit": false, "": false,
	} {
		if got := secretName(name); got != want {
			t.Errorf("secretName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestSecretValue(t *testing.T) {
	f := apikey.DefaultFormat()
	plain, err := f.Mint(apikey.TestPrefix)
	if err != nil {
		t.Fatal(err)
	}
	hash := apikey.Hash(plain)
	typo := plain[:20] + "x" + plain[21:]
	secret := secretValue(f)
	for s, want := range map[string]bool{
		plain: true, hash: true, strings.ToUpper(hash): true, typo: true,
		"prod " + plain + " (old)": true, "Bearer " + plain: true, "hash." + hash: true, apikey.LivePrefix + plain: true,
		f.Mask(plain): false, hash[:63]: false, plain[:len(plain)-1]: false, apikey.LivePrefix: false,
		"key_8fK2nQ1xZ0aLm3Rt7Vb9": false, "acme": false, "": false,
		strings.Repeat(apikey.LivePrefix, 4): false,
	} {
		if got := secret(s); got != want {
			t.Errorf("secretValue(%q) = %v, want %v", s, got, want)
		}
	}
	custom := apikey.Format{Prefixes: []string{"sk-"}, Length: 20}
	if !secretValue(custom)("x sk-abcdefghijklmnopq y") || secretValue(custom)(plain[:20]) {
		t.Error("custom format")
	}
}

func TestScrub(t *testing.T) {
	f := apikey.DefaultFormat()
	plain, err := f.Mint(apikey.LivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	hash := apikey.Hash(plain)
	in := map[string]any{
		"hash":        hash,
		"masked":      f.Mask(plain),
		"token_limit": map[string]any{"tokens": 1000, "window": "1m"},
		"nested":      map[string]any{"deeper": map[string]any{"api_key": plain, "password": "p", "name": "ok"}},
		"list":        []any{map[string]any{"token": "t0k3n", "id": "tok_1"}, plain, "fine", nil},
		"renamed":     hash,
		"note":        plain,
		"name":        "prod " + plain,
		"entry":       "hash." + hash,
		hash:          "a hash as a member name",
		"empty":       map[string]any{"secret": "s"},
	}
	got, err := scrub(in, secretValue(f))
	if err != nil {
		t.Fatal(err)
	}
	out := mustJSON(t, got)
	want := `{"empty":{},"list":[{"id":"tok_1"},"fine",null],"masked":"` + f.Mask(plain) +
		`","nested":{"deeper":{"name":"ok"}},"token_limit":{"tokens":1000,"window":"1m"}}`
	if out != want {
		t.Errorf("scrub =\n%s\nwant\n%s", out, want)
	}
	for _, s := range []string{plain, hash, "t0k3n", `"p"`} {
		if strings.Contains(out, s) {
			t.Errorf("%s survived", s)
		}
	}
}
