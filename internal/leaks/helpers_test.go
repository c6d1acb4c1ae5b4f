package leaks_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/leaks"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// signer is a key pair standing for one of GitHub's.
type signer struct {
	id   string
	priv *ecdsa.PrivateKey
}

func newSigner(t testing.TB) signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return signer{id: hex.EncodeToString(sum[:]), priv: priv}
}

// sign is the Github-Public-Key-Signature of body.
func (s signer) sign(t testing.TB, body []byte) string {
	t.Helper()
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// keyList is the public keys document GitHub serves, listing signers.
func keyList(t testing.TB, signers ...signer) []byte {
	t.Helper()
	type entry struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	}
	var doc struct {
		PublicKeys []entry `json:"public_keys"`
	}
	for i, s := range signers {
		der, err := x509.MarshalPKIXPublicKey(&s.priv.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		p := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		doc.PublicKeys = append(doc.PublicKeys, entry{KeyIdentifier: s.id, Key: string(p), IsCurrent: i == len(signers)-1})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyServer serves a public keys document over HTTPS, with an ETag, as
// api.github.com does, counting the requests.
type keyServer struct {
	*httptest.Server
	requests, notModified atomic.Int64
	mu                    sync.Mutex
	doc                   []byte
	auth                  string        // the last Authorization header
	gate                  chan struct{} // if set, answers wait until it is closed
}

func newKeyServer(t testing.TB, doc []byte) *keyServer {
	ks := &keyServer{doc: doc}
	ks.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.requests.Add(1)
		ks.mu.Lock()
		doc := ks.doc
		ks.auth = r.Header.Get("Authorization")
		gate := ks.gate
		ks.mu.Unlock()
		if gate != nil {
			<-gate
		}
		sum := sha256.Sum256(doc)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if r.Header.Get("If-None-Match") == etag {
			ks.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(ks.Close)
	return ks
}

func (ks *keyServer) serve(doc []byte) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.doc = doc
}

// syncBuffer collects log lines from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is an endpoint on a real NATS server's store.
type fixture struct {
	ctx   context.Context
	st    *store.Store
	clock *clock
	keys  *leaks.Keys
	h     *leaks.Handler
	srv   *httptest.Server
	reg   *prometheus.Registry
	logs  *syncBuffer
	trail *audit.Log
}

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newFixture starts NATS, opens the store and serves the endpoint with
// GitHub's keys from src.
func newFixture(t testing.TB, src leaks.Source) *fixture {
	t.Helper()
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	_, js := natstest.Connect(t, ns)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	trail, err := audit.Open(ctx, js, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ctx: ctx, st: st, clock: &clock{t: start}, reg: prometheus.NewRegistry(), logs: &syncBuffer{}, trail: trail}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.keys = leaks.NewKeys(src, f.clock.Now, log)
	f.h = leaks.New(leaks.Options{Store: st, Format: apikey.DefaultFormat(), Keys: f.keys, Log: log, Now: f.clock.Now, Trail: trail})
	f.h.Register(f.reg)
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(f.srv.Close)
	return f
}

// newURLFixture is a fixture whose keys come from a key server listing
// signers.
func newURLFixture(t testing.TB, signers ...signer) (*fixture, *keyServer) {
	t.Helper()
	ks := newKeyServer(t, keyList(t, signers...))
	return newFixture(t, leaks.Source{URL: ks.URL, Client: ks.Client()}), ks
}

// createKey stores a new key with prefix; revoked ones are revoked an
// hour before the fixture's clock.
func (f *fixture) createKey(t testing.TB, prefix string, revoked bool) (string, *store.Key) {
	t.Helper()
	fm := apikey.DefaultFormat()
	plain, err := fm.Mint(prefix)
	if err != nil {
		t.Fatal(err)
	}
	id, err := apikey.NewID()
	if err != nil {
		t.Fatal(err)
	}
	env := store.EnvLive
	if prefix == apikey.TestPrefix {
		env = store.EnvTest
	}
	k := &store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: "acme", Env: env, Scopes: []string{"*"},
		Masked: fm.Mask(plain), CreatedAt: start.Add(-24 * time.Hour)}
	if revoked {
		at := start.Add(-time.Hour)
		k.RevokedAt = &at
	}
	if err := f.st.CreateKey(f.ctx, k); err != nil {
		t.Fatal(err)
	}
	return plain, k
}

// record reads key id back from the store.
func (f *fixture) record(t testing.TB, id string) *store.Key {
	t.Helper()
	k, _, err := f.st.KeyByID(f.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// post sends body with the given signature headers ("" leaves one out)
// and returns the status and the response body.
func (f *fixture) post(t testing.TB, body []byte, keyID, sig string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodPost, f.srv.URL+leaks.Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if keyID != "" {
		req.Header.Set(leaks.HeaderKeyID, keyID)
	}
	if sig != "" {
		req.Header.Set(leaks.HeaderSignature, sig)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// report posts body signed by s.
func (f *fixture) report(t testing.TB, s signer, body []byte) (int, string) {
	t.Helper()
	return f.post(t, body, s.id, s.sign(t, body))
}

// match is one entry of a report in GitHub's documented shape.
func match(token, typ string) map[string]string {
	return map[string]string{"token": token, "type": typ,
		"url": "https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar.txt", "source": "content"}
}

func reportBody(t testing.TB, matches ...map[string]string) []byte {
	t.Helper()
	b, err := json.Marshal(matches)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// named replaces each token's SHA-256 in s by its name.
func named(s string, tokens map[string]string) string {
	for name, tok := range tokens {
		s = strings.ReplaceAll(s, apikey.Hash(tok), "<"+name+">")
	}
	return s
}

// counters checks the counters named in want (name{label="value"}).
func (f *fixture) counters(t testing.TB, want map[string]float64) {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + `="` + l.GetValue() + `"}`
			}
			got[name] = m.GetCounter().GetValue()
		}
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (registered: %v), want %v", name, g, ok, v)
		}
	}
}

// noTokens fails if any token, or its last 16 characters, appears in s.
func noTokens(t testing.TB, where, s string, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		if strings.Contains(s, tok) || len(tok) >= 16 && strings.Contains(s, tok[len(tok)-16:]) {
			t.Fatalf("a reported token appears in the %s:\n%s", where, s)
		}
	}
}
