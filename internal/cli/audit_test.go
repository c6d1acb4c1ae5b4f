package cli_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/natstest"
)

// trail opens the audit trail on e's NATS, as keygate's writers do.
func (e *env) trail() *audit.Log {
	e.t.Helper()
	_, js := natstest.Connect(e.t, e.nats)
	l, err := audit.Open(e.ctx, js, audit.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func TestAudit(t *testing.T) {
	e := newEnv(t)
	if r := e.run("audit"); r.code != 0 || r.out != "" || !strings.Contains(r.err, "no audit records") {
		t.Fatalf("audit before any record: exit %d %q %q %s", r.code, r.out, r.err, r.msg)
	}
	k := e.create("--account", "acme", "--name", "demo")
	rec, _, err := e.store().KeyByID(e.ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.ok("balance", "set", "acme", "100", "--currency", "MXN")
	e.ok("keys", "update", k.ID, "--rate-limit", "60/1m")
	admin := audit.Actor{Kind: audit.ActorAdminToken, ID: "tok_1"}
	if err := e.trail().Append(e.ctx, audit.Record{Actor: admin, Action: audit.KeyRevoke, Target: audit.Target{Kind: audit.TargetKey, ID: k.ID},
		Before: map[string]any{"status": "active"}, After: map[string]any{"status": "revoked"}}); err != nil {
		t.Fatal(err)
	}

	// JSON lines: the command line's own changes, then another writer's;
	// no secret.
	out := e.ok("audit", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || strings.Contains(out, rec.Hash) || strings.Contains(out, `"hash"`) || strings.Contains(out, k.Key) ||
		!strings.Contains(out, `"masked":"`+rec.Masked+`"`) {
		t.Fatalf("audit --json:\n%s", out)
	}
	var got []audit.Record
	for _, l := range lines {
		var r audit.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	for i, want := range []string{audit.KeyCreate, audit.BalanceSet, audit.KeyUpdate, audit.KeyRevoke} {
		if got[i].Action != want {
			t.Errorf("record %d: action %s, want %s", i, got[i].Action, want)
		}
	}
	if got[0].Actor.Kind != audit.ActorCLI || got[0].Actor.User == "" || got[3].Actor != admin {
		t.Errorf("actors %+v, %+v", got[0].Actor, got[3].Actor)
	}

	// One key's records, as a table.
	out = e.ok("audit", "--key", k.ID)
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 4 || !regexp.MustCompile(`^TIME +ACTOR +ACTION +TARGET +CHANGED$`).MatchString(rows[0]) ||
		!regexp.MustCompile(`^\S+Z +cli:\S+ +key\.create +key:`+k.ID+` +\S*account_id,\S*masked`).MatchString(rows[1]) ||
		!regexp.MustCompile(`^\S+Z +cli:\S+ +key\.update +key:`+k.ID+` +\S*rate_limit`).MatchString(rows[2]) ||
		!regexp.MustCompile(`^\S+Z +admin_token:tok_1 +key\.revoke +key:`+k.ID+` +status$`).MatchString(rows[3]) {
		t.Errorf("audit --key:\n%s", out)
	}
	out = e.ok("audit", "--account", "acme")
	if rows := strings.Split(strings.TrimSpace(out), "\n"); len(rows) != 2 || !strings.Contains(rows[1], "balance.set  account:acme") {
		t.Errorf("audit --account:\n%s", out)
	}
	if out := e.ok("audit", "--account", "other", "--json"); out != "" {
		t.Errorf("audit of an account without records: %q", out)
	}

	// --since: a duration, days, or a time.
	for since, want := range map[string]int{"1h": 4, "7d": 4, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339): 4, time.Now().Add(time.Hour).Format(time.RFC3339): 0} {
		out := strings.TrimSpace(e.ok("audit", "--since", since, "--json"))
		if n := len(strings.Fields(out)); n != want && !(want == 0 && out == "") {
			t.Errorf("audit --since %s: %d records, want %d:\n%s", since, n, want, out)
		}
	}
}

// TestAuditForeignMessages: what another NATS client publishes on the
// stream is reported if it is not a record, and printed without its
// control characters if it is.
func TestAuditForeignMessages(t *testing.T) {
	e := newEnv(t)
	l := e.trail()
	_, js := natstest.Connect(t, e.nats)
	if err := l.Append(e.ctx, audit.Record{Actor: audit.Actor{Kind: audit.ActorKeygate}, Action: audit.KeyRevokeLeaked,
		Target: audit.Target{Kind: audit.TargetKey, ID: "key_a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(e.ctx, "keygate_audit.key.key_b", []byte("\x1b[2Jnot a record")); err != nil {
		t.Fatal(err)
	}
	for _, forged := range []string{
		`{"id":"aud_x","at":"2025-01-01T00:00:00Z","actor":{"kind":"cli","user":"\u001b[31mevil\nnext\tcol"},"action":"key.revoke","target":{"kind":"key","id":"key_c"}}`,
		`{"id":"aud_y","at":"2025-01-01T00:00:00Z","actor":{"kind":"cli"},"action":"key.revoke","target":{"kind":"key","id":"key_c"},"after":{"\u001b[2J\n":1}}`,
	} {
		if _, err := js.Publish(e.ctx, "keygate_audit.key.key_c", []byte(forged)); err != nil {
			t.Fatal(err)
		}
	}
	r := e.run("audit")
	rows := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 1 || len(rows) != 3 || strings.Contains(r.out+r.err, "\x1b") ||
		!regexp.MustCompile(`^\S+Z +keygate +key\.revoke_leaked +key:key_a +-$`).MatchString(rows[1]) ||
		!regexp.MustCompile(`^2025-01-01T00:00:00Z +cli +key\.revoke +key:key_c +\?\[2J\?$`).MatchString(rows[2]) ||
		!strings.Contains(r.err, "sequence 2: not JSON") || !strings.Contains(r.err, "sequence 3: not a record Append would store") ||
		r.msg != "2 messages in stream keygate_audit are not audit records" {
		t.Errorf("audit: exit %d\n%s\n%s\n%s", r.code, r.out, r.err, r.msg)
	}
}

func TestAuditUsage(t *testing.T) {
	e := newEnv(t)
	plain, err := apikey.DefaultFormat().Mint(apikey.LivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--key", "key_a", "--account", "acme"}, "--key and --account"},
		{[]string{"--key", "key_a.>"}, "--key: must be 1-64"},
		{[]string{"--account", "*"}, "--account: must be 1-64"},
		{[]string{"--key", plain}, "--key: looks like a key"},
		{[]string{"--key", apikey.Hash(plain)}, "--key: looks like a key or a hash"},
		{[]string{"--since", "yesterday"}, `--since: "yesterday" is not a duration`},
		{[]string{"--since", "-1h"}, "--since:"},
		{[]string{"--since", ""}, "--since:"},
		{[]string{"extra"}, "audit takes no arguments"},
	} {
		r := e.run(append([]string{"audit"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.msg, tc.want) || strings.Contains(r.msg, plain) || strings.Contains(r.msg, "\n") {
			t.Errorf("audit %q: exit %d %q, want 2 and %q", tc.args, r.code, r.msg, tc.want)
		}
	}
}
