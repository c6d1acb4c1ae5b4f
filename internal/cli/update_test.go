package cli_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/cli"
	"github.com/keygate/keygate/internal/store"
)

// restricted is the JSON of a key record with its restrictions.
type restricted struct {
	rotated
	V          int      `json:"v"`
	Models     []string `json:"models"`
	TokenLimit *struct {
		Tokens int64  `json:"tokens"`
		Window string `json:"window"`
	} `json:"token_limit"`
	Budget *struct {
		Amount int64  `json:"amount"`
		Period string `json:"period"`
	} `json:"budget"`
}

// restrictionsText is k's restrictions as one comparable line.
func restrictionsText(k restricted) string {
	var parts []string
	parts = append(parts, "v="+string(rune('0'+k.V)), "models="+strings.Join(k.Models, ","))
	if k.TokenLimit != nil {
		parts = append(parts, "tokens="+strings.Join([]string{itoa(k.TokenLimit.Tokens), k.TokenLimit.Window}, "/"))
	}
	if k.Budget != nil {
		parts = append(parts, "budget="+itoa(k.Budget.Amount)+"/"+k.Budget.Period)
	}
	return strings.Join(parts, " ")
}

// squeeze writes each line of out with single spaces between its words.
func squeeze(out string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(out, "\n") {
		b.WriteString(strings.Join(strings.Fields(l), " "))
		if strings.HasSuffix(l, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestKeysCreateRestrictions(t *testing.T) {
	e := newEnv(t)
	e.ok("balance", "set", "yen", "1000", "--currency", "JPY")
	e.ok("balance", "set", "usd", "10", "--currency", "USD")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--account", "acme"}, "v=0 models="},
		{[]string{"--account", "acme", "--models", "gpt-4o*, text-embedding-3-small"}, "v=2 models=gpt-4o*,text-embedding-3-small"},
		{[]string{"--account", "acme", "--token-limit", "100000/1m"}, "v=2 models= tokens=100000/1m0s"},
		{[]string{"--account", "nobody-yet", "--budget", "50.00/1mo"}, "v=2 models= budget=5000/1mo"},
		{[]string{"--account", "usd", "--budget", "50/1w"}, "v=2 models= budget=5000/1w"},
		{[]string{"--account", "yen", "--budget", "500/12h"}, "v=2 models= budget=500/12h"},
		{[]string{"--account", "acme", "--env", "test", "--models", "o3", "--token-limit", "10/1s", "--budget", "0.01/1d"},
			"v=2 models=o3 tokens=10/1s budget=1/1d"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var k restricted
			e.okJSON(&k, append([]string{"keys", "create"}, tc.args...)...)
			if got := restrictionsText(k); got != tc.want {
				t.Errorf("create: %s, want %s", got, tc.want)
			}
			var g restricted
			e.okJSON(&g, "keys", "get", k.ID)
			if got := restrictionsText(g); got != tc.want || g.Status != "active" {
				t.Errorf("get: %s %s, want %s active", got, g.Status, tc.want)
			}
			var l []restricted
			e.okJSON(&l, "keys", "list", "--all")
			for _, lk := range l {
				if lk.ID == k.ID && restrictionsText(lk) != tc.want {
					t.Errorf("list: %s, want %s", restrictionsText(lk), tc.want)
				}
			}
		})
	}
}

func TestKeysGetRestrictionsHuman(t *testing.T) {
	e := newEnv(t)
	e.ok("balance", "set", "usd", "10", "--currency", "USD")
	var k restricted
	e.okJSON(&k, "keys", "create", "--account", "usd", "--models", "gpt-4o*,o3", "--token-limit", "1000/1h", "--budget", "12.5/1mo")
	out := squeeze(e.ok("keys", "get", k.ID))
	for _, want := range []string{"models: gpt-4o*,o3\n", "tokens: 1000/1h0m0s\n", "budget: 12.50 USD/1mo\n", "rate limit: default\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys get lacks %q:\n%s", want, out)
		}
	}
	plain := e.create("--account", "usd")
	out = squeeze(e.ok("keys", "get", plain.ID))
	for _, want := range []string{"models: any\n", "tokens: none\n", "budget: none\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys get lacks %q:\n%s", want, out)
		}
	}
}

func TestKeysRestrictionErrors(t *testing.T) {
	e := newEnv(t)
	k := e.create("--account", "acme")
	e.ok("balance", "set", "yen", "1000", "--currency", "JPY")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "create", "--account", "acme", "--models", "a b"}, `--models: model "a b"`},
		{[]string{"keys", "create", "--account", "acme", "--models", " , "}, "--models: give 1 to 64 models"},
		{[]string{"keys", "create", "--account", "acme", "--models", "none"}, "--models: none removes"},
		{[]string{"keys", "create", "--account", "acme", "--token-limit", "0/1m"}, `--token-limit: "0/1m": N must be`},
		{[]string{"keys", "create", "--account", "acme", "--token-limit", "100"}, `--token-limit: "100" is not N/WINDOW`},
		{[]string{"keys", "create", "--account", "acme", "--token-limit", "none"}, "--token-limit: none removes"},
		{[]string{"keys", "create", "--account", "acme", "--budget", "50"}, `--budget: "50" is not AMOUNT/PERIOD`},
		{[]string{"keys", "create", "--account", "acme", "--budget", "50/1y"}, `--budget: period "1y"`},
		{[]string{"keys", "create", "--account", "acme", "--budget", "-5/1d"}, `--budget: AMOUNT "-5" must be from 0.01`},
		{[]string{"keys", "create", "--account", "acme", "--budget", "x/1d"}, `--budget: "x"`},
		{[]string{"keys", "create", "--account", "acme", "--budget", "0/1d"}, "--budget: AMOUNT \"0\" must be from 0.01 to 10000000.00 MXN"},
		{[]string{"keys", "create", "--account", "acme", "--budget", "1.234/1d"}, "--budget: AMOUNT: \"1.234\" has more than 2 decimal places for MXN"},
		{[]string{"keys", "create", "--account", "yen", "--budget", "1.5/1d"}, "decimal places for JPY"},
		{[]string{"keys", "update", k.ID}, "keys update: give what to change"},
		{[]string{"keys", "update", k.ID, "--json"}, "keys update: give what to change"},
		{[]string{"keys", "update"}, "usage: keygate keys update KEY_ID"},
		{[]string{"keys", "update", k.ID, "--rate-limit", "fast"}, "--rate-limit: \"fast\" is not N/WINDOW, like 600/1m (or none, or default)"},
		{[]string{"keys", "update", k.ID, "--expires-in", "0"}, "--expires-in: \"0\" must be at least 1s (or never)"},
		{[]string{"keys", "update", k.ID, "--expires-in", ""}, "--expires-in: give a Go duration like 720h, or never"},
		{[]string{"keys", "update", k.ID, "--scopes", " "}, "--scopes"},
		{[]string{"keys", "update", k.ID, "--name", "a\x00"}, "--name"},
		{[]string{"keys", "update", k.ID, "--models", "a,b c"}, "--models"},
		{[]string{"keys", "update", k.ID, "--token-limit", "5/0s"}, "--token-limit"},
		{[]string{"keys", "update", k.ID, "--budget", "5/never"}, "--budget"},
		{[]string{"keys", "update", k.ID, "--budget", "5.001/1d"}, "--budget: AMOUNT"},
		{[]string{"keys", "update", k.ID, "--models="}, "--models: give a value, or none"},
		{[]string{"keys", "update", k.ID, "--rate-limit", ""}, "--rate-limit: give a value, or none"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := e.run(tc.args...)
			if r.code != cli.ExitUsage || !strings.Contains(r.msg, tc.want) || strings.Contains(r.msg, "\n") || r.out != "" {
				t.Errorf("exit %d %q, stdout %q; want exit 2 with %q", r.code, r.msg, r.out, tc.want)
			}
		})
	}
	if got := e.get(k.ID); got.Name != "" || got.ExpiresAt != nil || strings.Join(got.Scopes, ",") != "*" {
		t.Errorf("failed updates changed the key: %+v", got)
	}
}

// keys update changes only what is given, step by step.
func TestKeysUpdate(t *testing.T) {
	e := newEnv(t)
	e.ok("balance", "set", "acme", "100")
	var k restricted
	e.okJSON(&k, "keys", "create", "--account", "acme", "--name", "web", "--scopes", "chat:send", "--rate-limit", "60/1m",
		"--models", "gpt-4o*", "--token-limit", "1000/1m", "--budget", "5/1d")
	type state struct {
		name, scopes, rate, restrictions string
		noRate, expires                  bool
	}
	of := func(k restricted) state {
		rate := ""
		if k.RateLimit != nil {
			rate = itoa(k.RateLimit.Requests) + "/" + k.RateLimit.Window
		}
		return state{k.Name, strings.Join(k.Scopes, ","), rate, restrictionsText(k), k.NoRateLimit, k.ExpiresAt != nil}
	}
	s := of(k)
	for _, step := range []struct {
		args   []string
		change func(*state)
	}{
		{[]string{"--name", "api"}, func(s *state) { s.name = "api" }},
		{[]string{"--name", ""}, func(s *state) { s.name = "" }},
		{[]string{"--scopes", "a, b"}, func(s *state) { s.scopes = "a,b" }},
		{[]string{"--models", "o3,o4-mini"}, func(s *state) { s.restrictions = "v=2 models=o3,o4-mini tokens=1000/1m0s budget=500/1d" }},
		{[]string{"--models", "none"}, func(s *state) { s.restrictions = "v=2 models= tokens=1000/1m0s budget=500/1d" }},
		{[]string{"--token-limit", "none", "--budget", "7.25/1w"}, func(s *state) { s.restrictions = "v=2 models= budget=725/1w" }},
		{[]string{"--budget", "none"}, func(s *state) { s.restrictions = "v=0 models=" }},
		{[]string{"--token-limit", "5/1s"}, func(s *state) { s.restrictions = "v=2 models= tokens=5/1s" }},
		{[]string{"--rate-limit", "none"}, func(s *state) { s.rate, s.noRate = "", true }},
		{[]string{"--rate-limit", "10/1s"}, func(s *state) { s.rate, s.noRate = "10/1s", false }},
		{[]string{"--rate-limit", "default"}, func(s *state) { s.rate = "" }},
		{[]string{"--expires-in", "1h"}, func(s *state) { s.expires = true }},
		{[]string{"--expires-in", "never"}, func(s *state) { s.expires = false }},
	} {
		var got restricted
		e.okJSON(&got, append([]string{"keys", "update", k.ID}, step.args...)...)
		step.change(&s)
		if of(got) != s {
			t.Errorf("update %v: %+v, want %+v", step.args, of(got), s)
		}
		var g restricted
		e.okJSON(&g, "keys", "get", k.ID)
		if of(g) != s || g.Status != "active" || g.Hash != k.Hash || !g.CreatedAt.Equal(k.CreatedAt) {
			t.Errorf("get after update %v: %+v", step.args, of(g))
		}
	}
	// --expires-in is from now.
	var exp restricted
	e.okJSON(&exp, "keys", "update", k.ID, "--expires-in", "2h")
	if d := time.Until(*exp.ExpiresAt); d < 2*time.Hour-time.Minute || d > 2*time.Hour {
		t.Errorf("--expires-in 2h: expires in %v", d)
	}
	// --json prints what keys get --json prints.
	upd := e.ok("keys", "update", k.ID, "--name", "same", "--json")
	if get := e.ok("keys", "get", k.ID, "--json"); upd != get {
		t.Errorf("update --json\n%s\nget --json\n%s", upd, get)
	}
	out := squeeze(e.ok("keys", "update", k.ID, "--name", "x"))
	if !strings.Contains(out, "Updated key "+k.ID) || !strings.Contains(out, "\nname: x\n") || strings.Contains(out, k.Key) {
		t.Errorf("update:\n%s", out)
	}
}

// keys update keeps the members of a record it does not know and its
// format when newer; it refuses a revoked key and a missing one.
func TestKeysUpdateKeeps(t *testing.T) {
	e := newEnv(t)
	st := e.store()
	k := e.create("--account", "acme")
	ent, err := st.Keys().Get(e.ctx, store.HashEntry(k.Hash))
	if err != nil {
		t.Fatal(err)
	}
	rec := strings.TrimSuffix(string(ent.Value()), "}") + `,"v":3,"allow_ips":["10.0.0.0/8"],"status":"forged"}`
	if _, err := st.Keys().Put(e.ctx, store.HashEntry(k.Hash), []byte(rec)); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--name", "n"}, {"--models", "o3"}, {"--models", "none"}} {
		e.ok(append([]string{"keys", "update", k.ID}, args...)...)
		ent, err := st.Keys().Get(e.ctx, store.HashEntry(k.Hash))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(ent.Value(), &m); err != nil {
			t.Fatal(err)
		}
		if string(m["allow_ips"]) != `["10.0.0.0/8"]` || string(m["v"]) != "3" || string(m["name"]) != `"n"` {
			t.Errorf("after update %v the record is %s", args, ent.Value())
		}
	}
	// The view's status is keygate's, whatever the record says.
	var v map[string]any
	e.okJSON(&v, "keys", "get", k.ID)
	if v["status"] != "active" || v["allow_ips"] == nil {
		t.Errorf("keys get --json: %v", v)
	}
	// Such a key is not rotated: its successor would lack what this
	// keygate cannot read.
	if r := e.run("keys", "rotate", k.ID); r.code != cli.ExitFailure || !strings.Contains(r.msg, "status, v=3") {
		t.Errorf("rotate: exit %d %q", r.code, r.msg)
	}

	e.ok("keys", "revoke", k.ID)
	before, _ := st.Keys().Get(e.ctx, store.HashEntry(k.Hash))
	r := e.run("keys", "update", k.ID, "--expires-in", "never")
	if r.code != cli.ExitFailure || !strings.Contains(r.msg, "key "+k.ID+" was revoked at ") || r.out != "" {
		t.Errorf("update of a revoked key: exit %d %q %q", r.code, r.msg, r.out)
	}
	if after, _ := st.Keys().Get(e.ctx, store.HashEntry(k.Hash)); after.Revision() != before.Revision() {
		t.Errorf("a refused update wrote the record")
	}
	for _, id := range []string{"key_nope", "not/an/id"} {
		if r := e.run("keys", "update", id, "--name", "x"); r.code != cli.ExitFailure || r.msg != "key "+id+" not found" {
			t.Errorf("update %s: exit %d %q", id, r.code, r.msg)
		}
	}
}

// A successor has its predecessor's restrictions.
func TestKeysRotateRestrictions(t *testing.T) {
	e := newEnv(t)
	var k, n restricted
	e.okJSON(&k, "keys", "create", "--account", "acme", "--models", "gpt-4o*", "--token-limit", "1000/1m", "--budget", "5/1d")
	e.okJSON(&n, "keys", "rotate", k.ID)
	if restrictionsText(n) != restrictionsText(k) {
		t.Errorf("successor: %s, want %s", restrictionsText(n), restrictionsText(k))
	}
	var m map[string]any
	e.okJSON(&m, "keys", "get", n.ID)
	if m["budget_id"] != k.ID {
		t.Errorf("successor's budget_id %v, want %s", m["budget_id"], k.ID)
	}
	if keys := slices.Collect(maps.Keys(m)); !slices.Contains(keys, "unused") || slices.Contains(keys, "key") {
		t.Errorf("keys get --json members: %v", keys)
	}
}

// TestKeysAllowIPs: --allow-ips sets a key's client addresses in
// canonical form, keys get shows them, keys update replaces and removes
// them, and a malformed list is a usage error naming the flag.
func TestKeysAllowIPs(t *testing.T) {
	e := newEnv(t)
	var k struct {
		ID       string   `json:"id"`
		V        int      `json:"v"`
		AllowIPs []string `json:"allow_ips"`
	}
	e.okJSON(&k, "keys", "create", "--account", "acme", "--allow-ips", "10.0.0.0/8, 2001:db8::/32,203.0.113.7")
	if got := strings.Join(k.AllowIPs, ","); got != "10.0.0.0/8,2001:db8::/32,203.0.113.7/32" || k.V != 2 {
		t.Errorf("create: v %d allow_ips %s", k.V, got)
	}
	if out := squeeze(e.ok("keys", "get", k.ID)); !strings.Contains(out, "from: 10.0.0.0/8,2001:db8::/32,203.0.113.7/32\n") {
		t.Errorf("keys get:\n%s", out)
	}
	e.okJSON(&k, "keys", "update", k.ID, "--allow-ips", "192.168.0.0/16")
	if got := strings.Join(k.AllowIPs, ","); got != "192.168.0.0/16" {
		t.Errorf("update: allow_ips %s", got)
	}
	removed := k
	removed.AllowIPs, removed.V = nil, 0
	e.okJSON(&removed, "keys", "update", k.ID, "--allow-ips", "none")
	if removed.AllowIPs != nil || removed.V != 0 {
		t.Errorf("update none: v %d allow_ips %v", removed.V, removed.AllowIPs)
	}
	if out := squeeze(e.ok("keys", "get", k.ID)); !strings.Contains(out, "from: any address\n") {
		t.Errorf("keys get:\n%s", out)
	}
	for _, bad := range []string{"10.1.2.3/8", "::ffff:10.0.0.1", "fe80::1%eth0", "nowhere", ","} {
		r := e.run("keys", "create", "--account", "acme", "--allow-ips", bad)
		if r.code != cli.ExitUsage || !strings.HasPrefix(r.msg, "--allow-ips: ") {
			t.Errorf("--allow-ips %q: exit %d %q", bad, r.code, r.msg)
		}
	}
	if r := e.run("keys", "create", "--account", "acme", "--allow-ips", "none"); r.code != cli.ExitUsage || !strings.Contains(r.msg, "none removes") {
		t.Errorf("create --allow-ips none: exit %d %q", r.code, r.msg)
	}
}
