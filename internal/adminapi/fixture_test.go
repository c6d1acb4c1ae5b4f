package adminapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/adminapi"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// fixture is the admin API on a real HTTP server over a real NATS
// server, with a token of each scope and the audit trail wired as
// keygate serve wires it.
type fixture struct {
	t      testing.TB
	ctx    context.Context
	nc     *nats.Conn
	st     *store.Store
	trail  *audit.Log
	svc    *admin.Service
	srv    *httptest.Server
	tokens map[string]string // by scope
}

func newFixture(t *testing.T, o adminapi.Options) *fixture {
	t.Helper()
	return newFixtureWith(t, o, nil)
}

// newFixtureWith is newFixture with the store filled by fill before the
// API starts.
func newFixtureWith(t testing.TB, o adminapi.Options, fill func(jetstream.JetStream)) *fixture {
	t.Helper()
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	nc, js := natstest.Connect(t, ns)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if fill != nil {
		fill(js)
	}
	trail, err := audit.Open(ctx, js, audit.Options{KeyFormat: config.Default().Keys.Format()})
	if err != nil {
		t.Fatal(err)
	}
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys, Now: o.Now, Record: admin.AuditTo(trail)})
	if err := svc.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	idem, err := st.Idempotency(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o.Admin, o.Idempotency = svc, idem
	srv := httptest.NewServer(adminapi.New(o))
	t.Cleanup(srv.Close)
	f := &fixture{t: t, ctx: ctx, nc: nc, st: st, trail: trail, svc: svc, srv: srv, tokens: map[string]string{}}
	for _, scope := range []string{admin.ScopeRead, admin.ScopeKeys, admin.ScopeBalances} {
		_, secret, err := svc.CreateToken(ctx, admin.Actor{Kind: admin.ActorCLI}, scope+" token", []string{scope})
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[scope] = secret
	}
	return f
}

// req is a request to the API.
type req struct {
	method, path string
	token        string // a scope of f.tokens, "" for none, or a token itself
	body         string
	header       map[string]string
}

// build makes r's *http.Request.
func (f *fixture) build(r req) *http.Request {
	f.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequestWithContext(f.ctx, r.method, f.srv.URL+r.path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	if tok, ok := f.tokens[r.token]; ok {
		hr.Header.Set("Authorization", "Bearer "+tok)
	} else if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	return hr
}

// resp is an answer, its body read.
type resp struct {
	*http.Response
	body []byte
}

// do sends r.
func (f *fixture) do(r req) resp {
	f.t.Helper()
	hr, err := http.DefaultClient.Do(f.build(r))
	if err != nil {
		f.t.Fatal(err)
	}
	defer hr.Body.Close()
	b, err := io.ReadAll(hr.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	hr.Body = io.NopCloser(bytes.NewReader(b))
	return resp{hr, b}
}

// ok sends r and decodes its answer, which must have status want, into v.
func (f *fixture) ok(r req, want int, v any) resp {
	f.t.Helper()
	res := f.do(r)
	if res.StatusCode != want {
		f.t.Fatalf("%s %s: %d %s, want %d", r.method, r.path, res.StatusCode, res.body, want)
	}
	if v != nil {
		if err := json.Unmarshal(res.body, v); err != nil {
			f.t.Fatalf("%s %s: %v in %s", r.method, r.path, err, res.body)
		}
	}
	return res
}

// keyOut is a key as the API answers it.
type keyOut struct {
	ID          string     `json:"id"`
	Key         *string    `json:"key"`
	AccountID   string     `json:"account_id"`
	Name        string     `json:"name"`
	Scopes      []string   `json:"scopes"`
	Status      string     `json:"status"`
	ExpiresAt   *time.Time `json:"expires_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
	SuccessorID string     `json:"successor_id"`
	OldID       string     `json:"old_id"`
}

// accountOut is an account as the API answers it.
type accountOut struct {
	ID       string `json:"id"`
	Balance  int64  `json:"balance"`
	Currency string `json:"currency"`
}

// errorOut is an error as the API answers it.
type errorOut struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

// createKey makes a key for account through the API.
func (f *fixture) createKey(account string) keyOut {
	f.t.Helper()
	var k keyOut
	f.ok(req{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"` + account + `"}`}, http.StatusCreated, &k)
	return k
}
