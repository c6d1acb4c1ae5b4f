package admin_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

var keygateActor = admin.Actor{Kind: admin.ActorKeygate, User: "api_token_file", Host: "pod-0"}

func newToken(t *testing.T) string {
	t.Helper()
	secret, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// TestEnsureTokenAtOnce: three keygates starting at once with the same
// token store one record, tell the Recorder once, and all get it.
func TestEnsureTokenAtOnce(t *testing.T) {
	ctx, st := open(t)
	rec := &recorder{}
	secret := newToken(t)
	const n = 3
	var wg sync.WaitGroup
	views := make([]admin.TokenView, n)
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		// A Service each, as each keygate has its own.
		svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys, Record: rec.record})
		wg.Go(func() {
			views[i], created[i], errs[i] = svc.EnsureToken(ctx, keygateActor, "api_token_file", secret, []string{admin.ScopeKeys})
		})
	}
	wg.Wait()
	stored := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("EnsureToken %d: %v", i, errs[i])
		}
		if created[i] {
			stored++
		}
		if views[i].ID != views[0].ID || !strings.HasPrefix(views[i].ID, "tok_") || views[i].Status != admin.StatusActive ||
			!slices.Equal(views[i].Scopes, []string{admin.ScopeKeys}) || views[i].Name != "api_token_file" {
			t.Errorf("EnsureToken %d: %+v", i, views[i])
		}
	}
	if stored != 1 {
		t.Errorf("%d calls stored the record, want 1", stored)
	}
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys})
	if list, err := svc.ListTokens(ctx); err != nil || len(list) != 1 || list[0].ID != views[0].ID {
		t.Fatalf("ListTokens = %+v, %v; want the one record", list, err)
	}
	if len(rec.changes) != 1 || rec.changes[0].Action != admin.ActionTokenCreate || rec.changes[0].Actor != keygateActor ||
		rec.changes[0].TargetID != views[0].ID {
		t.Errorf("recorded %+v, want one token.create by keygate", rec.changes)
	}
	tok, err := svc.Authenticate(ctx, secret)
	if err != nil || tok.ID != views[0].ID {
		t.Errorf("Authenticate = %+v, %v", tok, err)
	}
	// A later start finds it and records nothing.
	if v, again, err := svc.EnsureToken(ctx, keygateActor, "api_token_file", secret, []string{admin.ScopeKeys}); err != nil || again || v.ID != views[0].ID {
		t.Errorf("EnsureToken again = %+v, %v, %v", v, again, err)
	}
}

// TestEnsureTokenLeavesRecordsAlone: a revoked token stays revoked, a
// stored token keeps its scopes, and a token made by tokens create keeps
// its id.
func TestEnsureTokenLeavesRecordsAlone(t *testing.T) {
	ctx, st := open(t)
	rec := &recorder{}
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys, Record: rec.record})
	secret := newToken(t)
	v, _, err := svc.EnsureToken(ctx, keygateActor, "api_token_file", secret, []string{admin.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.RevokeToken(ctx, cli, v.ID); err != nil {
		t.Fatal(err)
	}
	got, created, err := svc.EnsureToken(ctx, keygateActor, "api_token_file", secret, []string{admin.ScopeRead, admin.ScopeKeys})
	if err != nil || created || got.ID != v.ID || got.Status != admin.StatusRevoked || !slices.Equal(got.Scopes, []string{admin.ScopeRead}) {
		t.Fatalf("EnsureToken of a revoked token = %+v, %v, %v; want it as it was", got, created, err)
	}
	if _, err := svc.Authenticate(ctx, secret); !errors.Is(err, admin.ErrBadToken) {
		t.Errorf("Authenticate of the revoked token = %v, want ErrBadToken", err)
	}

	made, secret2, err := svc.CreateToken(ctx, cli, "dashboard", []string{admin.ScopeBalances})
	if err != nil {
		t.Fatal(err)
	}
	got, created, err = svc.EnsureToken(ctx, keygateActor, "api_token_file", secret2, []string{admin.ScopeRead})
	if err != nil || created || got.ID != made.ID || got.Name != "dashboard" || !slices.Equal(got.Scopes, []string{admin.ScopeBalances}) {
		t.Errorf("EnsureToken of a token made by CreateToken = %+v, %v, %v; want its record", got, created, err)
	}
	var actions []string
	for _, c := range rec.changes {
		actions = append(actions, c.Action)
	}
	if want := []string{admin.ActionTokenCreate, admin.ActionTokenRevoke, admin.ActionTokenCreate}; !slices.Equal(actions, want) {
		t.Errorf("recorded %v, want %v", actions, want)
	}
}

// TestEnsureTokenCompletesIndex: a record missing behind its id index
// entry (a keygate stopped between the two writes) is stored.
func TestEnsureTokenCompletesIndex(t *testing.T) {
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	_, js := natstest.Connect(t, ns)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys})
	secret := newToken(t)
	v, _, err := svc.EnsureToken(ctx, keygateActor, "api_token_file", secret, []string{admin.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, store.DefaultOptions().TokensBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, store.HashEntry(apikey.Hash(secret))); err != nil {
		t.Fatal(err)
	}
	got, created, err := svc.EnsureToken(ctx, keygateActor, "api_token_file", secret, []string{admin.ScopeRead})
	if err != nil || !created || got.ID != v.ID {
		t.Fatalf("EnsureToken after the record's loss = %+v, %v, %v", got, created, err)
	}
	if _, err := svc.Authenticate(ctx, secret); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
}

// TestEnsureTokenRefusals: a malformed token, a bad name or bad scopes
// are refused, naming the field and never quoting the token; nothing is
// stored.
func TestEnsureTokenRefusals(t *testing.T) {
	ctx, st := open(t)
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys})
	good := newToken(t)
	for _, tt := range []struct {
		name, secret, field string
		scopes              []string
	}{
		{"empty", "", "token", nil},
		{"checksum", good[:len(good)-1] + flip(good[len(good)-1]), "token", nil},
		{"short", good[:len(good)-1], "token", nil},
		{"two lines", good + "\n" + good, "token", nil},
		{"an API key", mustMint(t, apikey.DefaultFormat()), "token", nil},
		{"no scopes", good, "scopes", []string{}},
		{"bad scope", good, "scopes", []string{"admin"}},
	} {
		scopes := tt.scopes
		if scopes == nil {
			scopes = []string{admin.ScopeRead}
		}
		_, created, err := svc.EnsureToken(ctx, keygateActor, "api_token_file", tt.secret, scopes)
		e, ok := admin.AsError(err)
		if !ok || e.Kind != admin.Invalid || e.Field != tt.field || created {
			t.Errorf("%s: %v, want a refusal of %s", tt.name, err, tt.field)
			continue
		}
		if len(tt.secret) > 8 && strings.Contains(err.Error(), tt.secret[4:12]) {
			t.Errorf("%s: error %q quotes the token", tt.name, err)
		}
	}
	if list, err := svc.ListTokens(ctx); err != nil || len(list) != 0 {
		t.Errorf("refused tokens were stored: %+v, %v", list, err)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func mustMint(t *testing.T, f apikey.Format) string {
	t.Helper()
	k, err := f.Mint(f.Prefixes[0])
	if err != nil {
		t.Fatal(err)
	}
	return k
}
