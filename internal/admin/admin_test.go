package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

func open(t *testing.T) (context.Context, *store.Store) {
	t.Helper()
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	_, js := natstest.Connect(t, ns)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return ctx, st
}

// recorder keeps the changes it is told of.
type recorder struct {
	mu      sync.Mutex
	changes []admin.Change
	fail    error
}

func (r *recorder) record(_ context.Context, c admin.Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
	return r.fail
}

var cli = admin.Actor{Kind: admin.ActorCLI, User: "ops", Host: "laptop"}

// TestEveryChangeRecorded: each change is told to the Recorder once,
// with its actor, target and views, and no view holds a key, a token or
// a hash.
func TestEveryChangeRecorded(t *testing.T) {
	ctx, st := open(t)
	rec := &recorder{}
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys, Record: rec.record})
	n, err := svc.CreateKey(ctx, cli, admin.CreateKeyInput{AccountID: "acme", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.UpdateKey(ctx, cli, n.ID, admin.KeyPatch{Name: admin.Some("api")}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.UpdateKey(ctx, cli, n.ID, admin.KeyPatch{}); err != nil { // no change: not recorded
		t.Fatal(err)
	}
	r, err := svc.RotateKey(ctx, cli, n.ID, admin.RotateInput{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second finds it revoked: not recorded
		if _, _, err := svc.RevokeKey(ctx, cli, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.SetBalance(ctx, cli, "acme", admin.SetBalanceInput{Balance: admin.Amount{Decimal: "10"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddBalance(ctx, cli, "acme", admin.Amount{Minor: -250}); err != nil {
		t.Fatal(err)
	}
	tv, token, err := svc.CreateToken(ctx, cli, "dash", []string{admin.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.RevokeToken(ctx, cli, tv.ID); err != nil {
		t.Fatal(err)
	}
	want := []struct{ action, kind, id string }{
		{admin.ActionKeyCreate, "key", n.ID}, {admin.ActionKeyUpdate, "key", n.ID}, {admin.ActionKeyRotate, "key", n.ID},
		{admin.ActionKeyRevoke, "key", r.ID}, {admin.ActionBalanceSet, "account", "acme"}, {admin.ActionBalanceAdd, "account", "acme"},
		{admin.ActionTokenCreate, "token", tv.ID}, {admin.ActionTokenRevoke, "token", tv.ID},
	}
	if len(rec.changes) != len(want) {
		t.Fatalf("%d changes recorded, want %d: %+v", len(rec.changes), len(want), rec.changes)
	}
	secrets := []string{n.Secret, r.Secret, token, apikey.Hash(n.Secret), apikey.Hash(r.Secret), apikey.Hash(token), `"hash":`, `"key":`, `"token":`}
	for i, c := range rec.changes {
		w := want[i]
		if c.Action != w.action || c.TargetKind != w.kind || c.TargetID != w.id || c.Actor != cli {
			t.Errorf("change %d: %+v, want %+v", i, c, w)
		}
		creation := strings.HasSuffix(c.Action, ".create") || c.Action == admin.ActionBalanceSet
		if c.After == nil || (c.Before == nil) != creation {
			t.Errorf("change %d (%s): before %v, after %v", i, c.Action, c.Before, c.After)
		}
		b, err := json.Marshal([]any{c.Before, c.After})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("change %d (%s) holds %q: %s", i, c.Action, s, b)
			}
		}
	}
	var after struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(rec.changes[1].After.(json.RawMessage), &after); err != nil || after.Name != "api" || after.Status != "active" {
		t.Errorf("key.update after: %s", rec.changes[1].After)
	}
}

// TestRecorderFailureKeepsTheChange: a Recorder's failure is reported,
// and the change and its result stand.
func TestRecorderFailureKeepsTheChange(t *testing.T) {
	ctx, st := open(t)
	rec := &recorder{fail: errors.New("audit stream down")}
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys, Record: rec.record})
	n, err := svc.CreateKey(ctx, cli, admin.CreateKeyInput{AccountID: "acme"})
	if !errors.Is(err, admin.ErrAudit) || n.Secret == "" {
		t.Fatalf("CreateKey: %v, secret %q", err, n.Secret)
	}
	if _, err := svc.GetKey(ctx, n.ID); err != nil {
		t.Errorf("the key was not kept: %v", err)
	}
}

// TestRefusals: what is refused names its field, or says why.
func TestRefusals(t *testing.T) {
	ctx, st := open(t)
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys})
	past := time.Now().Add(-time.Hour)
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		in    admin.CreateKeyInput
		field string
	}{
		{"no account", admin.CreateKeyInput{}, "account_id"},
		{"bad account", admin.CreateKeyInput{AccountID: "a.b"}, "account_id"},
		{"long name", admin.CreateKeyInput{AccountID: "a", Name: strings.Repeat("n", 201)}, "name"},
		{"control in name", admin.CreateKeyInput{AccountID: "a", Name: "a\x1b[2Jb"}, "name"},
		{"env", admin.CreateKeyInput{AccountID: "a", Env: "prod"}, "env"},
		{"no scopes", admin.CreateKeyInput{AccountID: "a", Scopes: []string{}}, "scopes"},
		{"bad scope", admin.CreateKeyInput{AccountID: "a", Scopes: []string{"a,b"}}, "scopes"},
		{"limit and none", admin.CreateKeyInput{AccountID: "a", RateLimit: admin.RateLimit{None: true, Limit: &store.RateLimit{Requests: 1, Window: store.Duration(time.Second)}}}, "rate_limit"},
		{"zero limit", admin.CreateKeyInput{AccountID: "a", RateLimit: admin.RateLimit{Limit: &store.RateLimit{Requests: 0, Window: store.Duration(time.Second)}}}, "rate_limit"},
		{"empty models", admin.CreateKeyInput{AccountID: "a", Models: []string{}}, "models"},
		{"bad model", admin.CreateKeyInput{AccountID: "a", Models: []string{"gpt 4"}}, "models"},
		{"token limit", admin.CreateKeyInput{AccountID: "a", TokenLimit: &store.TokenLimit{Tokens: 1, Window: 0}}, "token_limit"},
		{"budget amount", admin.CreateKeyInput{AccountID: "a", Budget: &admin.Budget{Amount: admin.Amount{Minor: 0}, Period: "1mo"}}, "budget"},
		{"budget period", admin.CreateKeyInput{AccountID: "a", Budget: &admin.Budget{Amount: admin.Amount{Minor: 5}, Period: "fortnight"}}, "budget"},
		{"budget decimals", admin.CreateKeyInput{AccountID: "a", Budget: &admin.Budget{Amount: admin.Amount{Decimal: "1.001"}, Period: "1d"}}, "budget"},
		{"expired", admin.CreateKeyInput{AccountID: "a", Expiry: admin.Expiry{At: &past}}, "expires_at"},
		{"year 10000", admin.CreateKeyInput{AccountID: "a", Expiry: admin.Expiry{At: &far}}, "expires_at"},
		{"empty allow_ips", admin.CreateKeyInput{AccountID: "a", AllowIPs: []string{}}, "allow_ips"},
		{"allow_ips host bits", admin.CreateKeyInput{AccountID: "a", AllowIPs: []string{"10.1.2.3/8"}}, "allow_ips"},
		{"allow_ips mapped", admin.CreateKeyInput{AccountID: "a", AllowIPs: []string{"::ffff:10.0.0.0/104"}}, "allow_ips"},
		{"bad allow_ips", admin.CreateKeyInput{AccountID: "a", AllowIPs: []string{"10.0.0.300/8"}}, "allow_ips"},
	} {
		_, err := svc.CreateKey(ctx, cli, tt.in)
		e, ok := admin.AsError(err)
		if !ok || e.Kind != admin.Invalid || e.Field != tt.field {
			t.Errorf("%s: %v, want a refusal of %s", tt.name, err, tt.field)
		}
	}
	if page, err := svc.ListKeys(ctx, admin.Filter{}, "", admin.MaxPageSize); err != nil || len(page.Keys) != 0 {
		t.Errorf("refused keys were stored: %v %v", page.Keys, err)
	}
	for _, id := range []string{"key_nope", "not/an/id", "ghub_sk_live_" + strings.Repeat("A", 32)} {
		_, err := svc.GetKey(ctx, id)
		if e, ok := admin.AsError(err); !ok || e.Kind != admin.NotFound || strings.Contains(e.Msg, strings.Repeat("A", 8)) {
			t.Errorf("GetKey(%q): %v", id, err)
		}
	}
}

// TestListingsAgree: a listing from the live index and one that reads
// the bucket agree, page by page, whatever the page size.
func TestListingsAgree(t *testing.T) {
	ctx, st := open(t)
	once := admin.New(admin.Options{Store: st, Keys: config.Default().Keys})
	live := admin.New(admin.Options{Store: st, Keys: config.Default().Keys})
	if err := live.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 40 {
		n, err := once.CreateKey(ctx, cli, admin.CreateKeyInput{AccountID: []string{"a", "b"}[i%3/2]})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n.ID)
	}
	slices.Sort(ids)
	all := func(svc *admin.Service, f admin.Filter, limit int) []string {
		var got []string
		cursor := ""
		for {
			p, err := svc.ListKeys(ctx, f, cursor, limit)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range p.Keys {
				got = append(got, k.ID)
			}
			if cursor = p.Next; cursor == "" {
				return got
			}
		}
	}
	poll.Until(t, 5*time.Second, "the live index current", func() bool { return len(all(live, admin.Filter{}, 1000)) == len(ids) })
	for _, limit := range []int{1, 3, 40, 1000} {
		for _, f := range []admin.Filter{{}, {Account: "b"}, {Statuses: []string{admin.StatusActive}}} {
			a, b := all(once, f, limit), all(live, f, limit)
			if !slices.Equal(a, b) || !slices.IsSorted(a) || f.Account == "" && !slices.Equal(a, ids) {
				t.Errorf("limit %d, filter %+v: read once %d keys, live %d", limit, f, len(a), len(b))
			}
		}
	}
}

// TestAllowIPs: a key's client address list is stored in canonical form,
// replaced and removed by updates, and kept by a rotation.
func TestAllowIPs(t *testing.T) {
	ctx, st := open(t)
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys})
	n, err := svc.CreateKey(ctx, cli, admin.CreateKeyInput{AccountID: "acme",
		AllowIPs: []string{"203.0.113.7", "10.0.0.0/8", "10.0.0.0/8", "2001:db8::/32"}})
	if err != nil {
		t.Fatal(err)
	}
	stored := func(id string) []string {
		t.Helper()
		k, _, err := st.KeyByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return k.AllowIPs
	}
	if got, want := stored(n.ID), []string{"203.0.113.7/32", "10.0.0.0/8", "2001:db8::/32"}; !slices.Equal(got, want) {
		t.Errorf("created: allow_ips %v, want %v", got, want)
	}
	rot, err := svc.RotateKey(ctx, cli, n.ID, admin.RotateInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got := stored(rot.ID); !slices.Equal(got, stored(n.ID)) {
		t.Errorf("successor: allow_ips %v", got)
	}
	if _, err := svc.UpdateKey(ctx, cli, rot.ID, admin.KeyPatch{AllowIPs: admin.Some([]string{"192.168.1.0/24"})}); err != nil {
		t.Fatal(err)
	}
	if got := stored(rot.ID); !slices.Equal(got, []string{"192.168.1.0/24"}) {
		t.Errorf("updated: allow_ips %v", got)
	}
	if _, err := svc.UpdateKey(ctx, cli, rot.ID, admin.KeyPatch{AllowIPs: admin.Some[[]string](nil)}); err != nil {
		t.Fatal(err)
	}
	if got := stored(rot.ID); got != nil {
		t.Errorf("removed: allow_ips %v", got)
	}
}
