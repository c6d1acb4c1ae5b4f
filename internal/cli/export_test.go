package cli_test

import (
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/cli"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// ledger writes settlements as keygates do and waits for the ledger.
type ledger struct {
	e  *env
	st *store.Store
	n  uint64 // messages the ledger should hold
}

func (e *env) ledger() *ledger { return &ledger{e: e, st: e.store()} }

// settle commits s's entry with the debit of its cost in one batch, and
// waits until the ledger has copied it: a bucket keeps one message per
// entry, so a later change of the entry must not come first.
func (l *ledger) settle(s settle.Settlement) {
	l.e.t.Helper()
	cost, _ := money.Exact{}.AddNanos(s.Cost)
	s.CostText = money.FormatExact(cost, s.Currency)
	b, _ := json.Marshal(s)
	l.put(func() error {
		_, _, err := l.st.CommitAccount(l.e.ctx, s.Account, []store.Entry{{Key: store.SettlementEntry(s.Account, s.Reservation), Value: b, TTL: time.Hour}},
			func(a *store.Account, es []store.Entry) error {
				for range es {
					ex, err := a.Exact().AddNanos(-s.Cost)
					if err != nil {
						return err
					}
					a.SetExact(ex)
				}
				return nil
			})
		return err
	})
}

// put writes one message of the ledger with write, and waits for it.
func (l *ledger) put(write func() error) {
	l.e.t.Helper()
	if err := write(); err != nil {
		l.e.t.Fatal(err)
	}
	l.n++
	stream, err := l.st.JetStream().Stream(l.e.ctx, store.DefaultOptions().LedgerStream)
	if err != nil {
		l.e.t.Fatal(err)
	}
	poll.Until(l.e.t, 10*time.Second, "the ledger's copy", func() bool {
		info, err := stream.Info(l.e.ctx)
		return err == nil && info.State.Msgs == l.n
	})
}

// copy writes s's entry again, without a debit, after its first copy
// was deleted: a second copy in the ledger, as an at-least-once ledger
// may hold.
func (l *ledger) copy(s settle.Settlement) {
	l.e.t.Helper()
	b, _ := json.Marshal(s)
	l.bucket(func(kv jetstream.KeyValue) error {
		_, err := kv.Put(l.e.ctx, store.SettlementEntry(s.Account, s.Reservation), b)
		return err
	})
}

// bucket runs a change of the accounts bucket that the ledger copies.
func (l *ledger) bucket(change func(kv jetstream.KeyValue) error) {
	l.e.t.Helper()
	l.put(func() error { return change(l.st.Accounts()) })
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n%s\nwant\n%s", path, got, want)
	}
}

func TestUsageExport(t *testing.T) {
	e := newEnv(t)
	e.ok("balance", "set", "acme", "100")
	e.ok("balance", "set", "beta", "100", "--currency", "USD")
	l := e.ledger()
	a1 := settle.Settlement{Reservation: "res_a1", Key: "key_a", Account: "acme", Model: "gpt-4o", TokensIn: 1000, CachedIn: 200, TokensOut: 50,
		Cost: 12_345_678_901, Currency: "MXN", Status: settle.StatusSettled, CreatedAt: at("2020-03-01T09:59:59Z"), SettledAt: at("2020-03-01T10:00:00Z"), Keygate: "kg-1"}
	l.settle(a1)
	l.settle(settle.Settlement{Reservation: "res_b1", Key: "key_b", Account: "beta", Model: `o3 "mini", v2`, TokensIn: 7, TokensOut: 3,
		Cost: 150_000_000_000, Currency: "USD", Status: settle.StatusNoUsage, CreatedAt: at("2020-03-01T11:00:00Z"), SettledAt: at("2020-03-01T12:00:00Z"), Keygate: "kg-2"})
	l.settle(settle.Settlement{Reservation: "res_a2", Key: "key_a", Account: "acme", Model: "=HYPERLINK(\"http://evil\")\x1b[2J\t",
		Currency: "MXN", Status: settle.StatusFailed, CreatedAt: at("2020-03-02T10:00:00Z"), SettledAt: at("2020-03-02T10:00:01Z"), Keygate: "kg-1"})
	l.settle(settle.Settlement{Reservation: "res_a3", Key: "key_a", Account: "acme", Model: "gpt-4o", TokensIn: 1, TokensOut: 1, Cost: 1,
		Currency: "MXN", Status: settle.StatusSettled, CreatedAt: at("2020-03-05T00:00:00Z"), SettledAt: at("2020-03-05T00:00:00Z"), Keygate: "kg-1"})
	// Markers of deleted and purged entries, an empty body, a body that
	// is not a settlement, and a second copy of res_a1 (the ledger is
	// at-least-once): only the first copy counts.
	l.bucket(func(kv jetstream.KeyValue) error { return kv.Delete(e.ctx, store.SettlementEntry("acme", "res_a1")) })
	l.bucket(func(kv jetstream.KeyValue) error { return kv.Purge(e.ctx, store.SettlementEntry("beta", "res_b1")) })
	l.bucket(func(kv jetstream.KeyValue) error {
		_, err := kv.Put(e.ctx, store.SettlementEntry("acme", "res_empty"), nil)
		return err
	})
	l.bucket(func(kv jetstream.KeyValue) error {
		_, err := kv.Put(e.ctx, store.SettlementEntry("acme", "res_junk"), []byte("not json"))
		return err
	})
	dup := a1
	dup.Cost, dup.Keygate = 1, "kg-9"
	l.copy(dup)

	window := []string{"usage", "export", "--since", "2020-03-01T00:00:00Z", "--until", "2020-03-04T00:00:00Z"}
	r := e.run(window...)
	if r.code != 0 || r.err != "warning: skipped 1 ledger messages that are not settlements\nexported 3 settlements\n" {
		t.Fatalf("exit %d %q, stderr %q", r.code, r.msg, r.err)
	}
	golden(t, "export.jsonl", r.out)
	var first settle.Settlement
	if err := json.Unmarshal([]byte(strings.Split(r.out, "\n")[0]), &first); err != nil || first.Cost != a1.Cost || first.Keygate != "kg-1" {
		t.Errorf("first line: %+v, %v; want the first copy of res_a1", first, err)
	}
	golden(t, "export.csv", e.ok(append(window, "--format", "csv")...))

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--account", "acme"}, []string{"res_a1", "res_a2"}},
		{[]string{"--account", "beta", "--format", "jsonl"}, []string{"res_b1"}},
		{[]string{"--account", "nobody"}, nil},
		{[]string{"--since", "2020-03-02T00:00:00Z"}, []string{"res_a2"}},
		{[]string{"--since", "2020-03-01T10:00:00Z", "--until", "2020-03-02T10:00:01Z"}, []string{"res_a1", "res_b1"}},
		{[]string{"--since", "2000-01-01T00:00:00Z", "--until", "2030-01-01T00:00:00Z"}, []string{"res_a1", "res_b1", "res_a2", "res_a3"}},
		{[]string{"--since", "1d", "--until", "2030-01-01T00:00:00Z"}, nil},
	} {
		got := e.ok(append(slices.Clone(window), tc.args...)...) // later flags win
		var ids []string
		for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
			if line == "" {
				continue
			}
			var s settle.Settlement
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Fatalf("%v: line %q: %v", tc.args, line, err)
			}
			ids = append(ids, s.Reservation)
		}
		if strings.Join(ids, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%v: got %v, want %v", tc.args, ids, tc.want)
		}
	}

	// A duration counts back from now.
	l.settle(settle.Settlement{Reservation: "res_now", Key: "key_a", Account: "acme", Currency: "MXN", Status: settle.StatusSettled,
		CreatedAt: time.Now().Add(-time.Hour), SettledAt: time.Now().Add(-time.Hour), Keygate: "kg-1"})
	for since, want := range map[string]int{"2h": 1, "30m": 0, "1d": 1, "3000d": 5} {
		out := e.ok("usage", "export", "--since", since, "--format", "csv")
		if n := strings.Count(out, "\n") - 1; n != want {
			t.Errorf("--since %s: %d rows, want %d:\n%s", since, n, want, out)
		}
	}
}

func TestUsageExportErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"usage", "export"}, "--since is required"},
		{[]string{"usage", "export", "--since", "yesterday"}, `--since: "yesterday" is not a duration ago`},
		{[]string{"usage", "export", "--since", "2020-13-01T00:00:00Z"}, "--since"},
		{[]string{"usage", "export", "--since", "1d", "--until", "2d"}, "is not before --until"},
		{[]string{"usage", "export", "--since", "1d", "--until", "soon"}, "--until"},
		{[]string{"usage", "export", "--since", "1d", "--format", "xml"}, `--format: "xml" is not csv or jsonl`},
		{[]string{"usage", "export", "--since", "1d", "--account", "a b"}, "--account"},
		{[]string{"usage", "export", "--since", "1d", "--json"}, "usage: keygate usage export"},
		{[]string{"usage", "import"}, `unknown command "usage import"`},
		{[]string{"usage"}, "usage: keygate usage <command>"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := e.run(tc.args...)
			if r.code != cli.ExitUsage || !strings.Contains(r.msg, tc.want) || r.out != "" {
				t.Errorf("exit %d %q; want exit 2 with %q", r.code, r.msg, tc.want)
			}
		})
	}
	// An empty ledger exports nothing, and ends.
	if r := e.run("usage", "export", "--since", "1d"); r.code != 0 || r.out != "" || r.err != "exported 0 settlements\n" {
		t.Errorf("empty ledger: exit %d %q %q", r.code, r.out, r.err)
	}
}

// dayOut is one day of keys usage --json.
type dayOut struct {
	Date      string            `json:"date"`
	Counts    map[string]int64  `json:"counts"`
	Total     int64             `json:"total"`
	TokensIn  int64             `json:"tokens_in"`
	TokensOut int64             `json:"tokens_out"`
	Spend     map[string]string `json:"spend"`
}

func TestKeysUsageSpend(t *testing.T) {
	e := newEnv(t)
	e.ok("balance", "set", "acme", "100")
	k := e.create("--account", "acme")
	other := e.create("--account", "acme")
	l := e.ledger()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	s := func(res, key string, settled time.Time, in, out, cost int64, currency string) {
		l.settle(settle.Settlement{Reservation: res, Key: key, Account: "acme", TokensIn: in, TokensOut: out, Cost: cost, Currency: currency,
			Status: settle.StatusSettled, CreatedAt: settled, SettledAt: settled, Keygate: "kg-1"})
	}
	s("r1", k.ID, today.Add(time.Minute), 100, 10, 5*1e9, "MXN")
	s("r2", k.ID, today.Add(2*time.Minute), 50, 5, 10*1e9+1, "") // a settlement without currency is in the account's
	s("r3", other.ID, today.Add(time.Minute), 1000, 1000, 1e12, "MXN")
	s("r4", k.ID, today.Add(-time.Hour), 7, 3, 1, "MXN")
	s("r5", k.ID, today.AddDate(0, 0, -10), 9, 9, 9, "MXN")
	// A second copy counts once.
	l.bucket(func(kv jetstream.KeyValue) error { return kv.Delete(e.ctx, store.SettlementEntry("acme", "r1")) })
	l.copy(settle.Settlement{Reservation: "r1", Key: k.ID, Account: "acme", TokensIn: 100, TokensOut: 10, Cost: 5 * 1e9, Currency: "MXN",
		Status: settle.StatusSettled, CreatedAt: today.Add(time.Minute), SettledAt: today.Add(time.Minute), Keygate: "kg-1"})

	var v struct {
		KeyID string   `json:"key_id"`
		Days  []dayOut `json:"days"`
	}
	e.okJSON(&v, "keys", "usage", k.ID, "--days", "3")
	if len(v.Days) != 3 {
		t.Fatalf("days: %+v", v.Days)
	}
	want := []dayOut{
		{Date: today.AddDate(0, 0, -2).Format("2006-01-02"), Spend: map[string]string{}},
		{Date: today.AddDate(0, 0, -1).Format("2006-01-02"), TokensIn: 7, TokensOut: 3, Spend: map[string]string{"MXN": "0.00000000001"}},
		{Date: today.Format("2006-01-02"), TokensIn: 150, TokensOut: 15, Spend: map[string]string{"MXN": "0.15000000001"}},
	}
	for i, d := range v.Days {
		w := want[i]
		if d.Date != w.Date || d.TokensIn != w.TokensIn || d.TokensOut != w.TokensOut || !maps.Equal(d.Spend, w.Spend) || d.Counts == nil {
			t.Errorf("day %d: %+v, want %+v", i, d, w)
		}
	}
	out := squeeze(e.ok("keys", "usage", k.ID, "--days", "2"))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[1], "total tokens_in tokens_out spend") ||
		!strings.HasSuffix(lines[2], " 0 7 3 0.00000000001 MXN") || !strings.HasSuffix(lines[3], " 0 150 15 0.15000000001 MXN") {
		t.Errorf("keys usage:\n%s", out)
	}
	var none struct{ Days []dayOut }
	e.okJSON(&none, "keys", "usage", other.ID, "--days", "1")
	if d := none.Days[0]; d.TokensIn != 1000 || d.Spend["MXN"] != "10.00" {
		t.Errorf("other key: %+v", d)
	}
}
