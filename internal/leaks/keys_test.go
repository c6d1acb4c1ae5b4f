package leaks_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/leaks"
	"github.com/keygate/keygate/internal/poll"
)

// TestUnknownKeyRefresh: a report signed with a key not among those held
// makes keygate read GitHub's keys again, at most once a minute however
// many such reports come.
func TestUnknownKeyRefresh(t *testing.T) {
	old, next, forged := newSigner(t), newSigner(t), newSigner(t)
	f, ks := newURLFixture(t, old)
	body := reportBody(t, match("NMIfyYncKcRALEXAMPLE", "keygate_api_key"))
	if code, resp := f.report(t, old, body); code != http.StatusOK {
		t.Fatalf("signed with the listed key: %d %s", code, resp)
	}
	ks.serve(keyList(t, old, next)) // GitHub adds a key

	// Within the minute of the first read: not read again.
	f.clock.Advance(30 * time.Second)
	if code, _ := f.report(t, next, body); code != http.StatusUnauthorized {
		t.Fatalf("a new key within the minute: %d, want 401", code)
	}
	if n := ks.requests.Load(); n != 1 {
		t.Fatalf("keys read %d times, want 1", n)
	}

	// A minute on: one read finds it.
	f.clock.Advance(31 * time.Second)
	if code, resp := f.report(t, next, body); code != http.StatusOK {
		t.Fatalf("a new key a minute on: %d %s", code, resp)
	}
	if n := ks.requests.Load(); n != 2 {
		t.Fatalf("keys read %d times, want 2", n)
	}

	// Reports naming keys nobody lists: refused, and no read for a minute.
	for range 5 {
		if code, _ := f.report(t, forged, body); code != http.StatusUnauthorized {
			t.Fatalf("a forged key: %d, want 401", code)
		}
	}
	if n := ks.requests.Load(); n != 2 {
		t.Fatalf("keys read %d times after forged keys, want 2", n)
	}
	f.clock.Advance(time.Minute)
	if code, _ := f.report(t, forged, body); code != http.StatusUnauthorized {
		t.Fatalf("a forged key: %d, want 401", code)
	}
	if n, nm := ks.requests.Load(), ks.notModified.Load(); n != 3 || nm != 1 {
		t.Fatalf("keys read %d times (%d not modified), want 3 (1)", n, nm)
	}
	f.counters(t, map[string]float64{
		`keygate_leaks_key_fetches_total{result="ok"}`:                    3,
		`keygate_leaks_key_fetches_total{result="error"}`:                 0,
		`keygate_leaks_verification_failures_total{reason="unknown_key"}`: 7,
	})
}

// TestWithdrawnKey: keys are read again once they are an hour old, so a
// key GitHub no longer lists stops being trusted; while GitHub cannot be
// read, the keys held are kept.
func TestWithdrawnKey(t *testing.T) {
	old, next := newSigner(t), newSigner(t)
	f, ks := newURLFixture(t, old, next)
	body := reportBody(t, match("NMIfyYncKcRALEXAMPLE", "keygate_api_key"))
	if code, resp := f.report(t, old, body); code != http.StatusOK {
		t.Fatalf("%d %s", code, resp)
	}
	ks.serve([]byte("not json"))
	f.clock.Advance(leaks.MaxKeyAge)
	if code, resp := f.report(t, old, body); code != http.StatusOK {
		t.Fatalf("GitHub unreadable: %d %s, want the key held", code, resp)
	}
	if !strings.Contains(f.logs.String(), "the keys held are kept") {
		t.Errorf("the failed read is not logged:\n%s", f.logs.String())
	}
	ks.serve(keyList(t, next))
	f.clock.Advance(leaks.MinRefresh)
	if code, _ := f.report(t, old, body); code != http.StatusUnauthorized {
		t.Fatalf("a withdrawn key: %d, want 401", code)
	}
	if code, resp := f.report(t, next, body); code != http.StatusOK {
		t.Fatalf("the key still listed: %d %s", code, resp)
	}
	if n := ks.requests.Load(); n != 3 {
		t.Errorf("keys read %d times, want 3", n)
	}
	f.counters(t, map[string]float64{`keygate_leaks_key_fetches_total{result="error"}`: 1})
}

// TestKeysFile: GitHub's keys from a file, for tests and networks that
// cannot reach GitHub; a key not in it makes keygate read it again, at
// most once a minute.
func TestKeysFile(t *testing.T) {
	old, next := newSigner(t), newSigner(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, keyList(t, old), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, leaks.Source{File: path, URL: "https://unused.invalid/"})
	if err := f.keys.Refresh(f.ctx); err != nil {
		t.Fatal(err)
	}
	live, rec := f.createKey(t, apikey.LivePrefix, false)
	if err := os.WriteFile(path, keyList(t, old, next), 0o600); err != nil {
		t.Fatal(err)
	}
	body := reportBody(t, match(live, "keygate_api_key"))
	if code, _ := f.report(t, next, body); code != http.StatusUnauthorized {
		t.Fatalf("a key added to the file within the minute: %d, want 401", code)
	}
	f.clock.Advance(leaks.MinRefresh)
	code, resp := f.report(t, next, body)
	if code != http.StatusOK || !strings.Contains(resp, `"true_positive"`) {
		t.Fatalf("a key added to the file, a minute on: %d %s", code, resp)
	}
	if !f.record(t, rec.ID).Revoked() {
		t.Fatal("not revoked")
	}
}

// TestKeyDocuments: what a keys document must hold. A key keygate cannot
// use is left out; a document without a usable key is an error naming
// where it was read.
func TestKeyDocuments(t *testing.T) {
	good := newSigner(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	doc := func(entries ...map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"public_keys": entries})
		return b
	}
	var goodEntry map[string]any
	var list struct {
		PublicKeys []map[string]any `json:"public_keys"`
	}
	if err := json.Unmarshal(keyList(t, good), &list); err != nil {
		t.Fatal(err)
	}
	goodEntry = list.PublicKeys[0]
	for _, c := range []struct {
		name string
		doc  []byte
		err  string // "" when the document is usable
	}{
		{"GitHub's shape", keyList(t, good), ""},
		{"one RSA key beside", doc(map[string]any{"key_identifier": "rsa", "key": rsaPEM}, goodEntry), ""},
		{"not JSON", []byte("<html>"), "not JSON"},
		{"no keys", doc(), "no ECDSA P-256 key"},
		{"only RSA", doc(map[string]any{"key_identifier": "rsa", "key": rsaPEM}), "no ECDSA P-256 key"},
		{"not PEM", doc(map[string]any{"key_identifier": "x", "key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}), "no ECDSA P-256 key"},
		{"no identifier", doc(map[string]any{"key": goodEntry["key"]}), "no ECDSA P-256 key"},
		{"too long", append(keyList(t, good), make([]byte, 1<<20)...), "longer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, c.doc, 0o600); err != nil {
				t.Fatal(err)
			}
			err := leaks.NewKeys(leaks.Source{File: path}, nil, nil).Refresh(t.Context())
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), path)):
				t.Fatalf("error %v, want one naming %s and saying %q", err, path, c.err)
			}
		})
	}
	if err := leaks.NewKeys(leaks.Source{File: filepath.Join(t.TempDir(), "missing.json")}, nil, nil).Refresh(t.Context()); err == nil {
		t.Error("a missing file is read")
	}
}

// TestCallerHangsUp: a read of GitHub's keys that a request started
// finishes even if that request is cancelled, so that a caller hanging
// up cannot spoil the one read of the minute.
func TestCallerHangsUp(t *testing.T) {
	gh := newSigner(t)
	ks := newKeyServer(t, keyList(t, gh))
	gate := make(chan struct{})
	ks.mu.Lock()
	ks.gate = gate
	ks.mu.Unlock()
	k := leaks.NewKeys(leaks.Source{URL: ks.URL, Client: ks.Client()}, nil, nil)
	body := []byte("[]")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- k.Verify(ctx, gh.id, gh.sign(t, body), body) }()
	poll.Until(t, 10*time.Second, "the keys requested", func() bool { return ks.requests.Load() == 1 })
	cancel()
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("Verify after its caller hung up mid-read: %v", err)
	}
	if err := k.Verify(t.Context(), gh.id, gh.sign(t, body), body); err != nil || ks.requests.Load() != 1 {
		t.Fatalf("Verify: %v after %d reads, want nil after 1", err, ks.requests.Load())
	}
}

// TestToken: a configured token is sent to the keys URL as a bearer
// token.
func TestToken(t *testing.T) {
	gh := newSigner(t)
	ks := newKeyServer(t, keyList(t, gh))
	k := leaks.NewKeys(leaks.Source{URL: ks.URL, Client: ks.Client(), Token: "github_pat_example"}, nil, nil)
	if err := k.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.auth != "Bearer github_pat_example" {
		t.Errorf("Authorization %q", ks.auth)
	}
}
