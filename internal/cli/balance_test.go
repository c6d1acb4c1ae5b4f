package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/cli"
	"github.com/keygate/keygate/internal/store"
)

// heldOut is the JSON of an account with what its holds add.
type heldOut struct {
	accountOut
	BalanceExact string           `json:"balance_exact"`
	Held         string           `json:"held"`
	Available    string           `json:"available"`
	Holds        map[string]int64 `json:"holds"`
}

// hold writes holds (nanos by keygate) and a remainder below the minor
// unit into an account's record, as keygates do.
func (e *env) hold(st *store.Store, acct string, nanos int64, holds map[string]int64) {
	e.t.Helper()
	_, err := st.UpdateAccount(e.ctx, acct, false, func(a *store.Account) error {
		a.BalanceNanos = nanos
		a.Holds = map[string]store.Hold{}
		for id, n := range holds {
			a.Holds[id] = store.Hold{Nanos: n, At: time.Now().UTC()}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func TestBalanceHolds(t *testing.T) {
	e := newEnv(t)
	st := e.store()
	var a heldOut
	e.ok("balance", "set", "acme", "100", "--low-threshold", "5")
	e.okJSON(&a, "balance", "get", "acme")
	if a.BalanceExact != "100.00" || a.Held != "0.00" || a.Available != "100.00" || a.Holds == nil || len(a.Holds) != 0 {
		t.Errorf("without holds: %+v", a)
	}
	// 100.005 MXN (half a centavo below the minor unit), of which 1.50
	// and 20 nanos of a centavo are held.
	e.hold(st, "acme", 500_000_000, map[string]int64{"kg-a": 150 * 1e9, "kg-b": 20})
	steps := []struct {
		args                          []string
		balance                       int64
		exact, held, available, human string
	}{
		{[]string{"balance", "get", "acme"}, 10000, "100.005", "1.5000000002", "98.5049999998",
			"acme: 100.005 MXN (held 1.5000000002, available 98.5049999998 MXN; low-balance threshold 5.00 MXN)\n"},
		{[]string{"balance", "add", "acme", "-0.25"}, 9975, "99.755", "1.5000000002", "98.2549999998",
			"acme: 99.755 MXN (held 1.5000000002, available 98.2549999998 MXN; low-balance threshold 5.00 MXN)\n"},
		{[]string{"balance", "add", "acme", "-99.76"}, -1, "-0.005", "1.5000000002", "-1.5050000002",
			"acme: -0.005 MXN (held 1.5000000002, available -1.5050000002 MXN; low-balance threshold 5.00 MXN)\n"},
		{[]string{"balance", "set", "acme", "1", "--low-threshold", "none"}, 100, "1.00", "1.5000000002", "-0.5000000002",
			"acme: 1.00 MXN (held 1.5000000002, available -0.5000000002 MXN)\n"},
	}
	for _, s := range steps {
		var v heldOut
		e.okJSON(&v, s.args...)
		if v.Balance != s.balance || v.BalanceExact != s.exact || v.Held != s.held || v.Available != s.available ||
			v.Holds["kg-a"] != 150*1e9 || v.Holds["kg-b"] != 20 || len(v.Holds) != 2 || v.Currency != "MXN" {
			t.Errorf("%v: %+v", s.args, v)
		}
		if out := e.ok("balance", "get", "acme"); out != s.human {
			t.Errorf("after %v: %q, want %q", s.args, out, s.human)
		}
	}
	// The record keeps its holds through set and add.
	rec, _, err := st.Account(e.ctx, "acme")
	if err != nil || len(rec.Holds) != 2 || rec.BalanceNanos != 0 {
		t.Errorf("record: %+v, %v", rec, err)
	}
	// Holds are in the account's currency: it does not change under them.
	e.ok("balance", "set", "acme", "0")
	if r := e.run("balance", "set", "acme", "0", "--currency", "USD"); r.code != cli.ExitFailure || !strings.Contains(r.msg, "holds of requests in flight in MXN") {
		t.Errorf("currency change with holds: exit %d %q", r.code, r.msg)
	}
	// Nor under a remainder below the minor unit.
	e.hold(st, "acme", 1, nil)
	if r := e.run("balance", "set", "acme", "0", "--currency", "USD"); r.code != cli.ExitFailure || !strings.Contains(r.msg, "holds 0.00000000001 MXN") {
		t.Errorf("currency change of one nano: exit %d %q", r.code, r.msg)
	}
	out := e.ok("balance", "get", "acme", "--json")
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"id", "balance", "balance_decimal", "balance_exact", "held", "available", "holds", "currency", "updated_at"} {
		if _, ok := m[name]; !ok {
			t.Errorf("balance get --json lacks %s: %s", name, out)
		}
	}
	if string(m["holds"]) != "{}" || string(m["balance_exact"]) != `"0.00000000001"` || string(m["balance_decimal"]) != `"0.00"` {
		t.Errorf("balance get --json: %s", out)
	}
}
