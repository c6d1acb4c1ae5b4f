package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/cli"
	"github.com/keygate/keygate/internal/config"
)

// tokenOut is the JSON of an admin token as the commands print it.
type tokenOut struct {
	ID         string     `json:"id"`
	Token      string     `json:"token"`
	Hash       string     `json:"hash"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	var tok tokenOut
	e.okJSON(&tok, "tokens", "create", "--scope", "keys,read,keys", "--name", "dashboard")
	if !strings.HasPrefix(tok.ID, "tok_") || !strings.HasPrefix(tok.Token, "kga_") || len(tok.Token) != 46 || tok.Hash != "" {
		t.Fatalf("tokens create --json: %+v", tok)
	}
	if strings.Join(tok.Scopes, ",") != "keys,read" || tok.Name != "dashboard" || tok.Status != "active" {
		t.Errorf("tokens create --json: %+v", tok)
	}
	// Only the hash is stored.
	tokens, err := e.store().Tokens(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := tokens.ByID(e.ctx, tok.ID)
	if err != nil || rec.Hash != apikey.Hash(tok.Token) {
		t.Fatalf("stored token: %+v, %v", rec, err)
	}

	out := e.ok("tokens", "create", "--scope", "balances")
	if !strings.Contains(out, "Admin token: kga_") || !strings.Contains(out, "scopes balances") {
		t.Errorf("tokens create: %q", out)
	}
	var list []tokenOut
	e.okJSON(&list, "tokens", "list")
	if len(list) != 2 || list[0].ID != tok.ID || list[0].Token != "" || list[0].Hash != "" {
		t.Fatalf("tokens list --json: %+v", list)
	}
	if out := e.ok("tokens", "list"); strings.Contains(out, "kga_") || !strings.Contains(out, "dashboard") || !strings.Contains(out, "never") {
		t.Errorf("tokens list:\n%s", out)
	}

	if out := e.ok("tokens", "revoke", tok.ID); !strings.Contains(out, "Revoked admin token "+tok.ID) {
		t.Errorf("tokens revoke: %q", out)
	}
	var again tokenOut
	e.okJSON(&again, "tokens", "revoke", tok.ID)
	if again.Status != "revoked" || again.RevokedAt == nil {
		t.Errorf("second revoke: %+v", again)
	}
	if out := e.ok("tokens", "revoke", tok.ID); !strings.Contains(out, "already revoked") {
		t.Errorf("third revoke: %q", out)
	}
}

func TestTokensErrors(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tokens", "create"}, cli.ExitUsage, "--scope is required"},
		{[]string{"tokens", "create", "--scope", "admin"}, cli.ExitUsage, `--scope: "admin" is not read, keys or balances`},
		{[]string{"tokens", "create", "--scope", "read", "--name", "a\x1bb"}, cli.ExitUsage, "--name"},
		{[]string{"tokens", "revoke"}, cli.ExitUsage, "usage: keygate tokens revoke TOKEN_ID"},
		{[]string{"tokens", "revoke", "tok_nope"}, cli.ExitFailure, "token tok_nope not found"},
		{[]string{"tokens", "revoke", "key_nope"}, cli.ExitFailure, "token key_nope not found"},
		{[]string{"tokens", "frobnicate"}, cli.ExitUsage, "tokens frobnicate"},
	} {
		r := e.run(tt.args...)
		if r.code != tt.code || !strings.Contains(r.msg, tt.want) {
			t.Errorf("%v: exit %d %q, want exit %d with %q", tt.args, r.code, r.msg, tt.code, tt.want)
		}
	}
}

// TestTokensNew: tokens new prints a well-formed admin token, a new one
// each time, and stores nothing; keygate serve's api_token_file takes it.
func TestTokensNew(t *testing.T) {
	e := newEnv(t)
	first, second := e.ok("tokens", "new"), e.ok("tokens", "new")
	token := strings.TrimSuffix(first, "\n")
	if strings.Count(first, "\n") != 1 || !strings.HasPrefix(token, "kga_") || len(token) != 46 || first == second {
		t.Fatalf("tokens new printed %q, then %q", first, second)
	}
	if out := e.ok("tokens", "list"); !strings.Contains(out, "no admin tokens") {
		t.Errorf("tokens new stored something:\n%s", out)
	}
	svc := admin.New(admin.Options{Store: e.store(), Keys: config.Default().Keys})
	v, created, err := svc.EnsureToken(e.ctx, admin.Actor{Kind: admin.ActorKeygate}, "api_token_file", token, []string{admin.ScopeRead})
	if err != nil || !created {
		t.Fatalf("EnsureToken of the printed token = %+v, %v, %v", v, created, err)
	}
	if _, err := svc.Authenticate(e.ctx, token); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
	if r := e.run("tokens", "new", "--scope", "read"); r.code != cli.ExitUsage {
		t.Errorf("tokens new --scope read: exit %d %q, want a usage error", r.code, r.msg)
	}
}
