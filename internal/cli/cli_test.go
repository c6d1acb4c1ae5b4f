package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/cli"
	"github.com/keygate/keygate/internal/natstest"
)

// env runs cli.Run against one real NATS server.
type env struct {
	t    *testing.T
	url  string
	ctx  context.Context
	nats *server.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := natstest.Run(t)
	return &env{t: t, url: s.ClientURL(), ctx: natstest.Context(t), nats: s}
}

type result struct {
	out, err string
	code     int
	msg      string // the error Run returned, as main prints it
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runEnv(map[string]string{"KEYGATE_NATS_URL": e.url}, args...)
}

func (e *env) runEnv(vars map[string]string, args ...string) result {
	e.t.Helper()
	var out, errOut bytes.Buffer
	io := cli.IO{Out: &out, Err: &errOut, Getenv: func(k string) string { return vars[k] }}
	err := cli.Run(e.ctx, args, io)
	r := result{out: out.String(), err: errOut.String(), code: cli.ExitCode(err)}
	if err != nil {
		r.msg = err.Error()
	}
	return r
}

// ok runs args and fails the test unless they succeed.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("keygate %s: exit %d: %s", strings.Join(args, " "), r.code, r.msg)
	}
	return r.out
}

// okJSON runs args and decodes their JSON output into v.
func (e *env) okJSON(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "--json")...)
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		e.t.Fatalf("keygate %s --json: want one line, got %q", strings.Join(args, " "), out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("keygate %s --json: %v in %q", strings.Join(args, " "), err, out)
	}
}

// keyOut is the JSON of a key record as the commands print it.
type keyOut struct {
	ID        string   `json:"id"`
	Key       string   `json:"key"`
	Hash      string   `json:"hash"`
	AccountID string   `json:"account_id"`
	Name      string   `json:"name"`
	Env       string   `json:"env"`
	Scopes    []string `json:"scopes"`
	RateLimit *struct {
		Requests int64  `json:"requests"`
		Window   string `json:"window"`
	} `json:"rate_limit"`
	Masked       string     `json:"masked"`
	Status       string     `json:"status"`
	CreatedAt    time.Time  `json:"created_at"`
	ExpiresAt    *time.Time `json:"expires_at"`
	RevokedAt    *time.Time `json:"revoked_at"`
	OldID        string     `json:"old_id"`
	OldExpiresAt *time.Time `json:"old_expires_at"`
}

func (e *env) create(args ...string) keyOut {
	e.t.Helper()
	var k keyOut
	e.okJSON(&k, append([]string{"keys", "create"}, args...)...)
	return k
}

func (e *env) get(id string) keyOut {
	e.t.Helper()
	var k keyOut
	e.okJSON(&k, "keys", "get", id)
	return k
}

func (e *env) list(args ...string) []keyOut {
	e.t.Helper()
	var ks []keyOut
	e.okJSON(&ks, append([]string{"keys", "list"}, args...)...)
	return ks
}

func ids(ks []keyOut) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.ID
	}
	return out
}

func TestKeysCreateJSON(t *testing.T) {
	e := newEnv(t)
	k := e.create("--account", "acme")
	format := apikey.DefaultFormat()
	if err := format.Check(k.Key); err != nil {
		t.Fatalf("minted key fails the format: %v", err)
	}
	if !strings.HasPrefix(k.Key, apikey.LivePrefix) || !strings.HasPrefix(k.ID, "key_") {
		t.Errorf("key %q id %q: want live prefix and key_ id", format.Mask(k.Key), k.ID)
	}
	if k.Hash != apikey.Hash(k.Key) || k.Masked != format.Mask(k.Key) {
		t.Errorf("hash/masked do not match the key")
	}
	if k.AccountID != "acme" || k.Env != "live" || strings.Join(k.Scopes, ",") != "*" ||
		k.Status != "active" || k.RateLimit != nil || k.ExpiresAt != nil || k.RevokedAt != nil {
		t.Errorf("defaults: got %+v", k)
	}
	got := e.get(k.ID)
	if got.Key != "" || got.Hash != k.Hash || got.Status != "active" {
		t.Errorf("get: got %+v", got)
	}
}

func TestKeysCreateFlags(t *testing.T) {
	e := newEnv(t)
	k := e.create("--account", "acme", "--name", "ci bot", "--env", "test", "--scopes", "chat:send, models:read,chat:send",
		"--rate-limit", "1000000000/1s", "--expires-in", "720h")
	if !strings.HasPrefix(k.Key, apikey.TestPrefix) || k.Env != "test" || k.Name != "ci bot" {
		t.Errorf("got %+v", k)
	}
	if strings.Join(k.Scopes, ",") != "chat:send,models:read" {
		t.Errorf("scopes: got %v", k.Scopes)
	}
	if k.RateLimit == nil || k.RateLimit.Requests != 1_000_000_000 || k.RateLimit.Window != "1s" {
		t.Errorf("rate limit: got %+v", k.RateLimit)
	}
	if k.ExpiresAt == nil || k.ExpiresAt.Sub(k.CreatedAt) != 720*time.Hour {
		t.Errorf("expires_at: got %v, created %v", k.ExpiresAt, k.CreatedAt)
	}
	short := e.create("--account", "acme", "--expires-in", "1s")
	if short.ExpiresAt == nil || short.ExpiresAt.Sub(short.CreatedAt) != time.Second {
		t.Errorf("--expires-in 1s: got %v", short.ExpiresAt)
	}
	// Past 2262, where nanoseconds since 1970 overflow: still active.
	far := e.create("--account", "acme", "--expires-in", "2100000h")
	if far.ExpiresAt == nil || far.ExpiresAt.Year() < 2262 || far.Status != "active" {
		t.Errorf("--expires-in 2100000h: %v %s", far.ExpiresAt, far.Status)
	}
}

func TestKeysCreateHuman(t *testing.T) {
	e := newEnv(t)
	out := e.ok("keys", "create", "--account", "acme")
	key := regexp.MustCompile(`ghub_sk_live_[A-Za-z0-9]{32}`).FindString(out)
	id := regexp.MustCompile(`key_[A-Za-z0-9]{20}`).FindString(out)
	if key == "" || id == "" || !strings.Contains(out, "will not be shown again") {
		t.Fatalf("output: %q", out)
	}
	if got := e.get(id); got.Hash != apikey.Hash(key) {
		t.Errorf("stored hash does not match the printed key")
	}
	if !strings.Contains(out, "scopes * (* = every route)") {
		t.Errorf("output does not name the scopes: %q", out)
	}
}

// TestKeysCreateWarnsWithoutAccount: a live key for an account without a
// balance record is created, with a warning on stderr saying what to do.
func TestKeysCreateWarnsWithoutAccount(t *testing.T) {
	e := newEnv(t)
	const warning = "live keys of account ghost are denied 402 until `keygate balance set ghost AMOUNT`"
	r := e.run("keys", "create", "--account", "ghost", "--scopes", "chat:send", "--json")
	if r.code != 0 || !strings.Contains(r.err, warning) || !strings.Contains(r.out, `"scopes":["chat:send"]`) {
		t.Fatalf("exit %d, stderr %q, stdout %q", r.code, r.err, r.out)
	}
	e.ok("balance", "set", "ghost", "1")
	for _, args := range [][]string{{"--account", "ghost"}, {"--account", "nobody", "--env", "test"}} {
		if r := e.run(append([]string{"keys", "create"}, args...)...); r.code != 0 || r.err != "" {
			t.Errorf("keys create %v: exit %d, stderr %q", args, r.code, r.err)
		}
	}
}

func TestKeysBadArgs(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"keys", "create"}, "--account is required"},
		{[]string{"keys", "create", "--account", "a b"}, "--account"},
		{[]string{"keys", "create", "--account", "acme", "--env", "prod"}, `--env: "prod"`},
		{[]string{"keys", "create", "--account", "acme", "--rate-limit", "10/x"}, `--rate-limit: "10/x": WINDOW must be`},
		{[]string{"keys", "create", "--account", "acme", "--rate-limit", "0/1m"}, `--rate-limit: "0/1m": N must be`},
		{[]string{"keys", "create", "--account", "acme", "--rate-limit", "600"}, `--rate-limit: "600"`},
		{[]string{"keys", "create", "--account", "acme", "--rate-limit", "5/-1m"}, "--rate-limit"},
		{[]string{"keys", "create", "--account", "acme", "--expires-in", "0"}, `--expires-in: "0" must be at least 1s`},
		{[]string{"keys", "create", "--account", "acme", "--expires-in", "500ms"}, "--expires-in"},
		{[]string{"keys", "create", "--account", "acme", "--expires-in", "-1h"}, "--expires-in"},
		{[]string{"keys", "create", "--account", "acme", "--expires-in", "30d"}, `--expires-in: "30d" is not a Go duration`},
		{[]string{"keys", "create", "--account", "acme", "--scopes", " , "}, "--scopes"},
		{[]string{"keys", "create", "--account", "acme", "--name", "a\nb"}, "--name"},
		{[]string{"keys", "create", "--account", "acme", "--bogus"}, "bogus"},
		{[]string{"keys", "create", "--account", "acme", "extra"}, "usage: keygate keys create"},
		{[]string{"keys", "get"}, "usage: keygate keys get KEY_ID"},
		{[]string{"keys", "revoke", "a", "b"}, "usage: keygate keys revoke KEY_ID"},
		{[]string{"keys", "rotate", "key_x", "--grace", "-1h"}, "--grace"},
		{[]string{"keys", "rotate", "key_x", "--grace", "soon"}, "--grace"},
		{[]string{"keys", "list", "--account", "no way"}, "--account"},
		{[]string{"keys", "frobnicate"}, "keys frobnicate"},
		{[]string{"keys"}, "usage: keygate keys"},
		{[]string{"keys", "list", "--nats-url", "localhost"}, "--nats-url"},
		{[]string{"nope"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := e.run(tt.args...)
			if r.code != cli.ExitUsage || !strings.Contains(r.msg, tt.want) {
				t.Errorf("got exit %d %q, want exit 2 with %q", r.code, r.msg, tt.want)
			}
			if r.out != "" {
				t.Errorf("printed %q", r.out)
			}
		})
	}
}

func TestKeysNotFound(t *testing.T) {
	e := newEnv(t)
	for _, cmd := range []string{"get", "revoke", "rotate"} {
		for _, id := range []string{"key_nope", "not/an/id"} {
			r := e.run("keys", cmd, id)
			if want := fmt.Sprintf("key %s not found", id); r.code != cli.ExitFailure || r.msg != want {
				t.Errorf("keys %s %s: got exit %d %q, want exit 1 %q", cmd, id, r.code, r.msg, want)
			}
		}
	}
}

func TestKeysGetHuman(t *testing.T) {
	e := newEnv(t)
	k := e.create("--account", "acme", "--name", "web", "--rate-limit", "600/1m", "--scopes", "a,b")
	out := e.ok("keys", "get", k.ID)
	for _, want := range []string{"id:", k.ID, "account:", "acme", "name:", "web", "key:", k.Masked,
		"scopes:", "a,b", "rate limit:", "600/1m0s", "status:", "active", "expires:", "never"} {
		if !strings.Contains(out, want) {
			t.Errorf("get output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, k.Key) {
		t.Errorf("get prints the full key")
	}
}

func TestKeysRevoke(t *testing.T) {
	e := newEnv(t)
	k := e.create("--account", "acme")
	if out := e.ok("keys", "revoke", k.ID); !strings.Contains(out, "Revoked key "+k.ID) {
		t.Errorf("revoke: %q", out)
	}
	got := e.get(k.ID)
	if got.Status != "revoked" || got.RevokedAt == nil {
		t.Errorf("after revoke: %+v", got)
	}
	out := e.ok("keys", "revoke", k.ID)
	if !strings.Contains(out, "already revoked") {
		t.Errorf("second revoke: %q", out)
	}
	if again := e.get(k.ID); !again.RevokedAt.Equal(*got.RevokedAt) {
		t.Errorf("second revoke moved revoked_at from %v to %v", got.RevokedAt, again.RevokedAt)
	}
	if r := e.run("keys", "rotate", k.ID); r.code != cli.ExitFailure || !strings.Contains(r.msg, "revoked") {
		t.Errorf("rotate of a revoked key: exit %d %q", r.code, r.msg)
	}
}

func TestKeysList(t *testing.T) {
	e := newEnv(t)
	if ks := e.list(); len(ks) != 0 {
		t.Fatalf("empty list: got %v", ks)
	}
	if out := e.ok("keys", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list --json: got %q, want []", out)
	}
	a := e.create("--account", "acme", "--name", "a")
	b := e.create("--account", "acme", "--env", "test")
	c := e.create("--account", "other")
	d := e.create("--account", "acme")
	e.ok("keys", "revoke", d.ID)
	var rot keyOut
	e.okJSON(&rot, "keys", "rotate", b.ID, "--grace", "0")

	tests := []struct {
		args []string
		want []string
		stat map[string]string
	}{
		{nil, []string{a.ID, c.ID, rot.ID}, nil},
		{[]string{"--account", "acme"}, []string{a.ID, rot.ID}, nil},
		{[]string{"--account", "nobody"}, []string{}, nil},
		{[]string{"--all"}, []string{a.ID, b.ID, c.ID, d.ID, rot.ID},
			map[string]string{a.ID: "active", b.ID: "expired", d.ID: "revoked", rot.ID: "active"}},
		{[]string{"--all", "--account", "other"}, []string{c.ID}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			ks := e.list(tt.args...)
			if strings.Join(ids(ks), " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %v, want %v", ids(ks), tt.want)
			}
			for _, k := range ks {
				if want, ok := tt.stat[k.ID]; ok && k.Status != want {
					t.Errorf("%s: status %q, want %q", k.ID, k.Status, want)
				}
			}
		})
	}

	out := e.ok("keys", "list", "--all")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("table:\n%s", out)
	}
	for _, col := range []string{"NAME", "ACCOUNT", "ENV", "KEY", "SCOPES", "STATUS", "CREATED", "EXPIRES"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("header lacks %s: %q", col, lines[0])
		}
	}
	at := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:] {
		if f := strings.Fields(l[at:]); len(f) == 0 || (f[0] != "active" && f[0] != "expired" && f[0] != "revoked") {
			t.Errorf("STATUS column not aligned in %q", l)
		}
	}
	for _, want := range []string{"revoked", "expired", a.Masked} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if out := e.ok("keys", "list", "--account", "nobody"); !strings.Contains(out, "no active keys") {
		t.Errorf("empty table: %q", out)
	}
}

func TestFullKeyNeverListed(t *testing.T) {
	e := newEnv(t)
	k := e.create("--account", "acme", "--name", "n")
	r := e.create("--account", "acme")
	var rot keyOut
	e.okJSON(&rot, "keys", "rotate", r.ID)
	for _, args := range [][]string{
		{"keys", "list"}, {"keys", "list", "--json"}, {"keys", "list", "--all"}, {"keys", "list", "--all", "--json"},
		{"keys", "get", k.ID}, {"keys", "get", k.ID, "--json"}, {"keys", "get", rot.ID}, {"keys", "get", r.ID, "--json"},
		{"keys", "revoke", k.ID}, {"keys", "revoke", k.ID, "--json"},
	} {
		out := e.ok(args...)
		for _, secret := range []string{k.Key, r.Key, rot.Key} {
			if strings.Contains(out, secret) || strings.Contains(out, secret[len(secret)-12:]) {
				t.Errorf("keygate %s printed a key", strings.Join(args, " "))
			}
		}
	}
}

func TestKeysRotate(t *testing.T) {
	e := newEnv(t)
	old := e.create("--account", "acme", "--name", "web", "--env", "test", "--scopes", "a,b", "--rate-limit", "5/1s")
	before := time.Now()
	var n keyOut
	e.okJSON(&n, "keys", "rotate", old.ID, "--grace", "1h")
	if n.ID == old.ID || n.Key == "" || n.Key == old.Key || n.OldID != old.ID {
		t.Fatalf("rotate: %+v", n)
	}
	if err := apikey.DefaultFormat().Check(n.Key); err != nil || !strings.HasPrefix(n.Key, apikey.TestPrefix) {
		t.Errorf("new key: %v", err)
	}
	if n.AccountID != "acme" || n.Name != "web" || n.Env != "test" || strings.Join(n.Scopes, ",") != "a,b" ||
		n.RateLimit == nil || n.RateLimit.Requests != 5 || n.RateLimit.Window != "1s" || n.ExpiresAt != nil {
		t.Errorf("new key does not inherit: %+v", n)
	}
	o := e.get(old.ID)
	if o.ExpiresAt == nil || !o.ExpiresAt.Equal(*n.OldExpiresAt) || o.Status != "active" {
		t.Fatalf("old key: %+v, old_expires_at %v", o, n.OldExpiresAt)
	}
	if d := o.ExpiresAt.Sub(before); d < time.Hour || d > time.Hour+time.Minute {
		t.Errorf("old key expires %v after rotate, want 1h", d)
	}

	// A key that expires before the grace period ends keeps its expiry.
	soon := e.create("--account", "acme", "--expires-in", "10m")
	e.okJSON(&n, "keys", "rotate", soon.ID) // default grace 24h
	if got := e.get(soon.ID); !got.ExpiresAt.Equal(*soon.ExpiresAt) || !n.OldExpiresAt.Equal(*soon.ExpiresAt) {
		t.Errorf("expiry moved from %v to %v", soon.ExpiresAt, got.ExpiresAt)
	}

	// Grace 0 ends the old key now; it cannot be rotated again.
	now := e.create("--account", "acme")
	out := e.ok("keys", "rotate", now.ID, "--grace", "0")
	if !strings.Contains(out, "has expired") || !strings.Contains(out, "will not be shown again") ||
		!regexp.MustCompile(`ghub_sk_live_[A-Za-z0-9]{32}`).MatchString(out) {
		t.Errorf("rotate output: %q", out)
	}
	if got := e.get(now.ID); got.Status != "expired" {
		t.Errorf("after --grace 0: %q", got.Status)
	}
	if r := e.run("keys", "rotate", now.ID); r.code != cli.ExitFailure || !strings.Contains(r.msg, "expired") {
		t.Errorf("rotate of an expired key: exit %d %q", r.code, r.msg)
	}
}

// accountOut is the JSON of an account as the commands print it.
type accountOut struct {
	ID                         string    `json:"id"`
	Balance                    int64     `json:"balance"`
	BalanceDecimal             string    `json:"balance_decimal"`
	Currency                   string    `json:"currency"`
	LowBalanceThreshold        *int64    `json:"low_balance_threshold"`
	LowBalanceThresholdDecimal string    `json:"low_balance_threshold_decimal"`
	UpdatedAt                  time.Time `json:"updated_at"`
}

func TestBalance(t *testing.T) {
	e := newEnv(t)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"balance", "set", "acme", "100"}, "acme: 100.00 MXN\n"},
		{[]string{"balance", "add", "acme", "-3.25"}, "acme: 96.75 MXN\n"},
		{[]string{"balance", "get", "acme"}, "acme: 96.75 MXN\n"},
		{[]string{"balance", "add", "acme", "0.5"}, "acme: 97.25 MXN\n"},
		{[]string{"balance", "add", "acme", "-100"}, "acme: -2.75 MXN\n"},
		{[]string{"balance", "set", "acme", "10", "--low-threshold", "2.5"}, "acme: 10.00 MXN (low-balance threshold 2.50 MXN)\n"},
		{[]string{"balance", "add", "--low-threshold", "1", "acme", "1"}, ""}, // not a flag of add
		{[]string{"balance", "set", "acme", "0", "--low-threshold", "none"}, "acme: 0.00 MXN\n"},
		{[]string{"balance", "set", "acme", "1500", "--currency", "JPY"}, "acme: 1500 JPY\n"},
		{[]string{"balance", "add", "acme", "-1"}, "acme: 1499 JPY\n"},
		{[]string{"balance", "set", "new-co", "12.5", "--currency", "USD"}, "new-co: 12.50 USD\n"},
	}
	for _, s := range steps {
		r := e.run(s.args...)
		if s.want == "" {
			if r.code != cli.ExitUsage {
				t.Errorf("%v: exit %d, want 2", s.args, r.code)
			}
			continue
		}
		if r.code != 0 || r.out != s.want {
			t.Errorf("%v: exit %d %q %q, want %q", s.args, r.code, r.msg, r.out, s.want)
		}
	}
}

func TestBalanceJSON(t *testing.T) {
	e := newEnv(t)
	var a accountOut
	e.okJSON(&a, "balance", "set", "acme", "100", "--low-threshold", "10")
	e.okJSON(&a, "balance", "add", "acme", "-3.25")
	if a.ID != "acme" || a.Balance != 9675 || a.BalanceDecimal != "96.75" || a.Currency != "MXN" ||
		a.LowBalanceThreshold == nil || *a.LowBalanceThreshold != 1000 || a.LowBalanceThresholdDecimal != "10.00" ||
		time.Since(a.UpdatedAt) > time.Minute {
		t.Errorf("add --json: %+v", a)
	}
	var g accountOut
	e.okJSON(&g, "balance", "get", "acme")
	if !reflect.DeepEqual(g, a) {
		t.Errorf("get --json: %+v, want %+v", g, a)
	}
	out := e.ok("balance", "set", "acme", "1", "--low-threshold", "none", "--json")
	if strings.Contains(out, "low_balance_threshold") || !strings.Contains(out, `"balance":100,`) {
		t.Errorf("set --json without threshold: %s", out)
	}
}

func TestBalanceErrors(t *testing.T) {
	e := newEnv(t)
	e.ok("balance", "set", "acme", "5")
	e.ok("balance", "set", "yen", "100", "--currency", "JPY")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"balance", "get", "nobody"}, 1, "account nobody not found"},
		{[]string{"balance", "add", "nobody", "-3.25"}, 1, "account nobody not found"},
		{[]string{"balance", "set", "acme", "5", "--currency", "USD"}, 1, "holds 5.00 MXN"},
		{[]string{"balance", "set", "acme", "5", "--currency", "usd"}, 2, `--currency: "usd"`},
		{[]string{"balance", "set", "acme", "5", "--currency", "MXNX"}, 2, "--currency"},
		{[]string{"balance", "set", "acme", "abc"}, 2, `AMOUNT: "abc"`},
		{[]string{"balance", "set", "acme", "1.234"}, 2, "AMOUNT"},
		{[]string{"balance", "add", "acme", "1e5"}, 2, "AMOUNT"},
		{[]string{"balance", "add", "acme", "--3"}, 2, ""},
		{[]string{"balance", "add", "acme", "+3"}, 2, "AMOUNT"},
		{[]string{"balance", "add", "acme", "3."}, 2, "AMOUNT"},
		{[]string{"balance", "add", "yen", "1.5"}, 2, "decimal places for JPY"},
		{[]string{"balance", "add", "acme", "99999999999999999999"}, 2, "too large"},
		{[]string{"balance", "set", "acme", "5", "--low-threshold", "-1"}, 2, "--low-threshold"},
		{[]string{"balance", "set", "acme", "5", "--low-threshold", "x"}, 2, "--low-threshold"},
		{[]string{"balance", "set", "acme"}, 2, "usage: keygate balance set ACCT AMOUNT"},
		{[]string{"balance", "add", "acme"}, 2, "usage: keygate balance add ACCT AMOUNT"},
		{[]string{"balance", "get", "bad id"}, 2, "ACCT"},
		{[]string{"balance", "add", "bad/id", "1"}, 2, "ACCT"},
		{[]string{"balance", "refund", "acme"}, 2, "balance refund"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := e.run(tt.args...)
			if r.code != tt.code || !strings.Contains(r.msg, tt.want) {
				t.Errorf("got exit %d %q, want exit %d with %q", r.code, r.msg, tt.code, tt.want)
			}
		})
	}
	if out := e.ok("balance", "get", "acme"); out != "acme: 5.00 MXN\n" {
		t.Errorf("failed commands changed the account: %q", out)
	}
}

func TestBalanceAddConcurrent(t *testing.T) {
	e := newEnv(t)
	e.ok("balance", "set", "acme", "0")
	const n = 20
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			codes[i] = e.run("balance", "add", "acme", "1.01").code
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Fatalf("add %d: exit %d", i, c)
		}
	}
	if out := e.ok("balance", "get", "acme"); out != "acme: 20.20 MXN\n" {
		t.Errorf("after %d concurrent adds: %q", n, out)
	}
}

func TestConnectErrors(t *testing.T) {
	e := &env{t: t, ctx: context.Background()}
	tests := []struct {
		vars map[string]string
		args []string
		want string
	}{
		{nil, []string{"keys", "list"}, "nats://127.0.0.1:4222"},
		{map[string]string{"KEYGATE_NATS_URL": "nats://127.0.0.1:1"}, []string{"balance", "get", "acme"}, "nats://127.0.0.1:1"},
		{nil, []string{"keys", "get", "key_x", "--nats-url", "nats://bob:hunter2@127.0.0.1:1"}, "nats://redacted@127.0.0.1:1"},
		{nil, []string{"keys", "list", "--nats-url", "nats://s3cr3ttoken@127.0.0.1:1,nats://127.0.0.1:2"}, "nats://redacted@127.0.0.1:1"},
	}
	for _, tt := range tests {
		if tt.vars == nil && !strings.Contains(strings.Join(tt.args, " "), "--nats-url") {
			if c, err := net.Dial("tcp", "127.0.0.1:4222"); err == nil {
				c.Close()
				continue // something listens on the default port
			}
		}
		r := e.runEnv(tt.vars, tt.args...)
		if r.code != cli.ExitFailure || !strings.Contains(r.msg, tt.want) || strings.Contains(r.msg, "\n") {
			t.Errorf("%v: got exit %d %q, want exit 1 naming %s", tt.args, r.code, r.msg, tt.want)
		}
		for _, secret := range []string{"hunter2", "s3cr3ttoken", "bob"} {
			if strings.Contains(r.msg, secret) {
				t.Errorf("%v: error shows %q: %s", tt.args, secret, r.msg)
			}
		}
	}
}

func TestConfigFile(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "keygate.yaml")
	yaml := `nats:
  url: nats://127.0.0.1:1
  keys_bucket: other_keys
  accounts_bucket: other_accounts
keys:
  live_prefix: acme_live_
  test_prefix: acme_test_
  length: 40
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// KEYGATE_NATS_URL (set by e.run) wins over the file's URL.
	var k keyOut
	e.okJSON(&k, "keys", "create", "--account", "acme", "--config", file)
	if !strings.HasPrefix(k.Key, "acme_live_") || len(k.Key) != 40 {
		t.Errorf("key %q does not follow the configured format", k.Masked)
	}
	// The configured buckets hold it, the default ones do not.
	if r := e.run("keys", "get", k.ID); r.code != cli.ExitFailure {
		t.Errorf("key found in the default bucket: exit %d", r.code)
	}
	// --nats-url wins over both.
	r := e.runEnv(map[string]string{"KEYGATE_NATS_URL": "nats://127.0.0.1:1"},
		"keys", "get", k.ID, "--config", file, "--nats-url", e.url)
	if r.code != 0 || !strings.Contains(r.out, k.Masked) {
		t.Errorf("--nats-url over env: exit %d %q", r.code, r.msg)
	}
	// Without flag or env, the file's URL is used.
	r = e.runEnv(nil, "keys", "list", "--config", file)
	if r.code != cli.ExitFailure || !strings.Contains(r.msg, "nats://127.0.0.1:1") {
		t.Errorf("file URL: exit %d %q", r.code, r.msg)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("keys:\n  length: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	typed := filepath.Join(dir, "typed.yaml")
	if err := os.WriteFile(typed, []byte("cache:\n  max_keys: lots\nnats:\n  replicas: [3]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = e.run("keys", "list", "--config", typed)
	if want := "config " + typed + `: cache.max_keys: "lots" is not a whole number (line 2); config ` + typed +
		": nats.replicas: want a whole number, got a list (line 4)"; r.code != cli.ExitUsage || r.msg != want {
		t.Errorf("--config with type errors: exit %d %q, want exit 2 %q", r.code, r.msg, want)
	}
	for _, f := range []string{bad, filepath.Join(dir, "missing.yaml")} {
		if r := e.run("keys", "list", "--config", f); r.code != cli.ExitUsage || strings.Contains(r.msg, "\n") {
			t.Errorf("--config %s: exit %d %q, want a one-line exit 2", f, r.code, r.msg)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	e := &env{t: t, ctx: context.Background()}
	if out := e.ok("version"); !strings.HasPrefix(out, "keygate ") {
		t.Errorf("version: %q", out)
	}
	for _, args := range [][]string{{"keys", "help"}, {"balance", "--help"}} {
		if out := e.ok(args...); !strings.Contains(out, "usage: keygate "+args[0]) {
			t.Errorf("%v: %q", args, out)
		}
	}
}

// TestKeyInsteadOfID: a pasted key works where an id is asked for, and is
// never echoed whole, found or not.
func TestKeyInsteadOfID(t *testing.T) {
	e := newEnv(t)
	r := e.run("keys", "create", "--account", "acme", "--json")
	var created struct{ ID, Key string }
	if err := json.Unmarshal([]byte(r.out), &created); err != nil {
		t.Fatal(err)
	}
	unknown, _ := apikey.DefaultFormat().Mint(apikey.LivePrefix)
	for _, cmd := range []string{"get", "rotate", "revoke"} {
		r := e.run("keys", cmd, unknown)
		if r.code != cli.ExitFailure || strings.Contains(r.msg+r.out+r.err, unknown) || !strings.Contains(r.msg, "not found") {
			t.Errorf("keys %s UNKNOWN_KEY: exit %d %q", cmd, r.code, r.msg)
		}
	}
	r = e.run("keys", "revoke", created.Key)
	if r.code != 0 || strings.Contains(r.out+r.err, created.Key) || !strings.Contains(r.out, created.ID) {
		t.Fatalf("keys revoke KEY: exit %d %q %q", r.code, r.out, r.msg)
	}
}
