package serve_test

// Records written straight into the KV buckets, past the admin API's
// checks (another tool, another version, a hand edit): each test writes
// the record with the jetstream KV API and checks the fail-closed answer
// over gRPC.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// rawKey writes json as the key record stored under hash.
func rawKey(t *testing.T, e *env, st *store.Store, hash, rec string) {
	t.Helper()
	if _, err := st.Keys().Put(e.ctx, store.HashEntry(hash), []byte(rec)); err != nil {
		t.Fatal(err)
	}
}

// keyJSON is k as stored, without its closing brace, so that members can
// be appended.
func keyJSON(t *testing.T, k *store.Key) string {
	t.Helper()
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "}")
}

// barrier revokes a fresh key of its own and waits until e denies it: the
// keys bucket's watch applies changes in order, so every key record
// written before is applied by then.
func barrier(t *testing.T, e *env, st *store.Store) {
	t.Helper()
	plain, k := createKey(t, e.ctx, st, "barrier")
	setBalance(t, e.ctx, st, "barrier", 100)
	waitCode(t, e, plain, 200)
	editKey(t, e.ctx, st, k.ID, func(k *store.Key) { now := time.Now(); k.RevokedAt = &now })
	waitCode(t, e, plain, 401)
}

func answer(t *testing.T, e *env, req *authv3.CheckRequest) (int, string) {
	t.Helper()
	resp, err := e.client.Check(e.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOkResponse() != nil {
		return 200, ""
	}
	d := resp.GetDeniedResponse()
	return int(d.GetStatus().GetCode()), d.GetBody()
}

// TestRecordHoldsPastTheBalance: holds that sum past 2^62 nanos (three
// of 2^62 wrapped to a negative sum in int64) make the record unreadable,
// and an unreadable account denies (402 or 503), never lends.
func TestRecordHoldsPastTheBalance(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, meteredConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	body := `{"model":"gpt-4o","max_tokens":1000}` // costs up to about 2.00 MXN
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, tc := range []struct {
		account string
		holds   int
	}{{"control", 0}, {"holds1", 1}, {"holds3", 3}, {"holds4", 4}} {
		key, _ := createKey(t, e.ctx, st, tc.account)
		setBalance(t, e.ctx, st, tc.account, 100) // 1.00 MXN: less than the estimate
		waitCode(t, e, key, 200)
		var hs []string
		for i := range tc.holds {
			hs = append(hs, fmt.Sprintf(`"other-keygate-%d":{"nanos":%d,"at":%q}`, i, int64(1)<<62, now))
		}
		rec := fmt.Sprintf(`{"id":%q,"balance":100,"currency":"MXN","updated_at":%q,"holds":{%s}}`, tc.account, now, strings.Join(hs, ","))
		if _, err := st.Accounts().Put(e.ctx, tc.account, []byte(rec)); err != nil {
			t.Fatal(err)
		}
		code, msg := answer(t, e, chat(key, body))
		if code != 402 && code != 503 {
			t.Errorf("account with balance 1.00 MXN and %d holds of 2^62 nanos: a request that can cost ~2.00 MXN answered %d %s, want 402 or 503", tc.holds, code, msg)
		}
	}
}

// TestRecordNamingAnotherAccount: an account record whose "id" is not the
// entry it is stored under is unreadable, so a poor account's key never
// spends the funds of the account its record names.
func TestRecordNamingAnotherAccount(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, meteredConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, _ := createKey(t, e.ctx, st, "poor")
	setBalance(t, e.ctx, st, "poor", 100)    // 1.00 MXN
	setBalance(t, e.ctx, st, "rich", 100000) // 1,000.00 MXN
	waitCode(t, e, key, 200)
	body := `{"model":"gpt-4o","max_tokens":1000}` // costs up to about 2.00 MXN
	if code, _ := answer(t, e, chat(key, body)); code != 402 {
		t.Fatalf("control: 1.00 MXN for a ~2.00 MXN request answered %d, want 402", code)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := st.Accounts().Put(e.ctx, "poor", []byte(`{"id":"rich","balance":100,"currency":"MXN","updated_at":"`+now+`"}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := answer(t, e, chat(key, body)); code == 200 {
			a, _, _ := st.Account(e.ctx, "rich")
			t.Fatalf("the record under \"poor\" (balance 1.00 MXN) says id \"rich\": a ~2.00 MXN request was allowed; account rich's holds now %+v", a.Holds)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRecordMemberTwice: a key record that gives a member twice is
// unreadable (encoding/json keeps the last "revoked_at", other readers the
// first), so the key is denied.
func TestRecordMemberTwice(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, k := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 100)
	waitCode(t, e, key, 200)
	rawKey(t, e, st, k.Hash, `{"revoked_at":"2020-01-01T00:00:00Z",`+strings.TrimPrefix(keyJSON(t, k), "{")+`,"revoked_at":null}`)
	barrier(t, e, st)
	if code := e.code(t, key); code != 401 {
		t.Fatalf("key record with \"revoked_at\" given twice (a time, then null): %d, want 401", code)
	}
}

// TestRecordNestedCaseVariant: a member given twice in another case,
// inside rate_limit as at the top level (encoding/json matches "REQUESTS"
// to requests and keeps the last), makes the key record unreadable.
func TestRecordNestedCaseVariant(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	// Control: the same trick at the top level is refused.
	ctl, ck := createKey(t, e.ctx, st, "acme")
	key, k := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 100)
	waitCode(t, e, key, 200)
	waitCode(t, e, ctl, 200)
	rawKey(t, e, st, ck.Hash, keyJSON(t, ck)+`,"rate_limit":{"requests":1,"window":"1h"},"RATE_LIMIT":null}`)
	rawKey(t, e, st, k.Hash, keyJSON(t, k)+`,"rate_limit":{"requests":1,"window":"1h","REQUESTS":1000000}}`)
	barrier(t, e, st)
	if code := e.code(t, ctl); code == 200 {
		t.Fatalf("control: top-level RATE_LIMIT allowed")
	}
	allowed := 0
	for range 5 {
		if e.code(t, key) == 200 {
			allowed++
		}
	}
	if allowed > 1 {
		t.Fatalf(`rate_limit {"requests":1,"window":"1h","REQUESTS":1000000}: %d of 5 requests allowed, want at most 1 (or the key denied)`, allowed)
	}
}

// TestRecordEmptyModelList: "models": [] (no model, or any?) is refused
// as "allow_ips": [] is, never read as no model list.
func TestRecordEmptyModelList(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, meteredConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, k := createKey(t, e.ctx, st, "acme")
	ipKey, ik := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 100000)
	waitCode(t, e, key, 200)
	waitCode(t, e, ipKey, 200)
	rawKey(t, e, st, ik.Hash, keyJSON(t, ik)+`,"v":2,"allow_ips":[]}`)
	rawKey(t, e, st, k.Hash, keyJSON(t, k)+`,"v":2,"models":[]}`)
	barrier(t, e, st)
	if code := e.code(t, ipKey); code == 200 {
		t.Fatalf("control: allow_ips [] allowed")
	}
	if code, body := answer(t, e, chat(key, `{"model":"gpt-4o","max_tokens":10}`)); code == 200 {
		t.Fatalf(`key record with "models": [] allowed a chat with gpt-4o (%d %s); an empty allowlist must allow no model or be refused as allow_ips [] is`, code, body)
	}
}

// TestRecordsThatDeny: absurd values, wrong types and other shapes in a
// key record deny the key, and no key is logged.
func TestRecordsThatDeny(t *testing.T) {
	ns := natstest.Run(t)
	cfg := testConfig(t, ns.ClientURL())
	cfg.Routes, cfg.DefaultScope = []config.Route{{Method: "GET", PathPrefix: "/v1/models", Scope: "models:read"}}, "none"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := start(t, cfg)
	st := openStore(t, e, ns)
	setBalance(t, e.ctx, st, "acme", 100)
	type tc struct {
		name string
		edit func(k *store.Key) string
		want []int
	}
	other := strings.Repeat("ab", 32)
	cases := []tc{
		{"v3", func(k *store.Key) string { return keyJSON(t, k) + `,"v":3}` }, []int{403}},
		{"v negative", func(k *store.Key) string { return keyJSON(t, k) + `,"v":-1}` }, []int{401}},
		{"v string", func(k *store.Key) string { return keyJSON(t, k) + `,"v":"2"}` }, []int{401}},
		{"v float", func(k *store.Key) string { return keyJSON(t, k) + `,"v":1.5}` }, []int{401}},
		{"unknown member", func(k *store.Key) string { return keyJSON(t, k) + `,"max_cost":1}` }, []int{403}},
		{"Revoked_At case variant null", func(k *store.Key) string {
			return keyJSON(t, k) + `,"revoked_at":"2020-01-01T00:00:00Z","Revoked_At":null}`
		}, []int{401, 403}},
		{"hash mismatch", func(k *store.Key) string {
			return strings.Replace(keyJSON(t, k), k.Hash, other, 1) + `}`
		}, []int{401}},
		{"expires far past", func(k *store.Key) string { return keyJSON(t, k) + `,"expires_at":"0001-01-01T00:00:00Z"}` }, []int{401}},
		{"expires with +14:00", func(k *store.Key) string {
			return keyJSON(t, k) + `,"expires_at":"` + time.Now().Add(-time.Hour).In(time.FixedZone("", 14*3600)).Format(time.RFC3339) + `"}`
		}, []int{401}},
		{"revoked at zero time", func(k *store.Key) string { return keyJSON(t, k) + `,"revoked_at":"0001-01-01T00:00:00Z"}` }, []int{401}},
		{"revoked_at empty string", func(k *store.Key) string { return keyJSON(t, k) + `,"revoked_at":""}` }, []int{401}},
		{"rate_limit negative", func(k *store.Key) string {
			return keyJSON(t, k) + `,"rate_limit":{"requests":-1,"window":"1m"}}`
		}, []int{401}},
		{"rate_limit huge", func(k *store.Key) string {
			return keyJSON(t, k) + `,"rate_limit":{"requests":9223372036854775807,"window":"1m"}}`
		}, []int{401}},
		{"rate_limit overflowing number", func(k *store.Key) string {
			return keyJSON(t, k) + `,"rate_limit":{"requests":1e40,"window":"1m"}}`
		}, []int{401}},
		{"rate_limit negative window", func(k *store.Key) string {
			return keyJSON(t, k) + `,"rate_limit":{"requests":1,"window":"-1h"}}`
		}, []int{401}},
		{"rate_limit and no_rate_limit", func(k *store.Key) string {
			return keyJSON(t, k) + `,"rate_limit":{"requests":1,"window":"1h"},"no_rate_limit":true}`
		}, []int{401}},
		{"budget negative", func(k *store.Key) string {
			return keyJSON(t, k) + `,"v":2,"budget":{"amount":-5,"period":"1d"}}`
		}, []int{401}},
		{"budget 0s period", func(k *store.Key) string {
			return keyJSON(t, k) + `,"v":2,"budget":{"amount":5,"period":"0s"}}`
		}, []int{401}},
		{"token_limit zero", func(k *store.Key) string {
			return keyJSON(t, k) + `,"v":2,"token_limit":{"tokens":0,"window":"1m"}}`
		}, []int{401}},
		{"allow_ips empty", func(k *store.Key) string { return keyJSON(t, k) + `,"v":2,"allow_ips":[]}` }, []int{401}},
		{"allow_ips mapped", func(k *store.Key) string {
			return keyJSON(t, k) + `,"v":2,"allow_ips":["::ffff:0.0.0.0/96"]}`
		}, []int{401}},
		{"allow_ips string", func(k *store.Key) string { return keyJSON(t, k) + `,"v":2,"allow_ips":"10.0.0.0/8"}` }, []int{401}},
		{"allow_ips null means none", func(k *store.Key) string {
			return keyJSON(t, k) + `,"v":2,"allow_ips":["203.0.113.7"]}`
		}, []int{403}},
		{"scopes string", func(k *store.Key) string {
			return strings.Replace(keyJSON(t, k), `"scopes":["*"]`, `"scopes":"*"`, 1) + `}`
		}, []int{401}},
		{"scopes with space", func(k *store.Key) string {
			return strings.Replace(keyJSON(t, k), `"scopes":["*"]`, `"scopes":["* "]`, 1) + `}`
		}, []int{401}},
		{"scopes odd :*", func(k *store.Key) string {
			return strings.Replace(keyJSON(t, k), `"scopes":["*"]`, `"scopes":[":*","*:*","MODELS:READ","models:*x"]`, 1) + `}`
		}, []int{403}},
		{"env LIVE", func(k *store.Key) string {
			return strings.Replace(keyJSON(t, k), `"env":"live"`, `"env":"LIVE"`, 1) + `}`
		}, []int{401}},
		{"not an object", func(k *store.Key) string { return `[` + keyJSON(t, k) + `}]` }, []int{401}},
		{"trailing garbage", func(k *store.Key) string { return keyJSON(t, k) + `} {"revoked_at":null}` }, []int{401}},
		{"empty", func(k *store.Key) string { return `` }, []int{401}},
	}
	type made struct {
		c     tc
		plain string
	}
	var all []made
	for _, c := range cases {
		plain, k := createKey(t, e.ctx, st, "acme")
		waitCode(t, e, plain, 200)
		rawKey(t, e, st, k.Hash, c.edit(k))
		all = append(all, made{c, plain})
	}
	barrier(t, e, st)
	for _, m := range all {
		code := e.code(t, m.plain)
		ok := false
		for _, w := range m.c.want {
			ok = ok || code == w
		}
		if !ok {
			t.Errorf("%s: %d, want %v", m.c.name, code, m.c.want)
		}
	}
	e.noKeysLogged(t, func() (ks []string) {
		for _, m := range all {
			ks = append(ks, m.plain)
		}
		return
	}()...)
}

// TestRecordOwnHoldPastTheBalance: a hold in this keygate's own name
// larger than the balance (written by another hand) is spent only up to
// the balance less the other holds.
func TestRecordOwnHoldPastTheBalance(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, meteredConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, _ := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 300) // 3.00 MXN: one ~2.00 MXN request
	waitCode(t, e, key, 200)
	body := `{"model":"gpt-4o","max_tokens":1000}`
	if code, _ := answer(t, e, chat(key, body)); code != 200 {
		t.Fatalf("first request: %d", code)
	}
	a, rev, err := st.Account(e.ctx, "acme")
	if err != nil || len(a.Holds) != 1 {
		t.Fatalf("%+v %v", a, err)
	}
	var own string
	for id := range a.Holds {
		own = id
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	rec := fmt.Sprintf(`{"id":"acme","balance":300,"currency":"MXN","updated_at":%q,"holds":{%q:{"nanos":%d,"at":%q}}}`, now, own, int64(1)<<62, now)
	if _, err := st.Accounts().Update(e.ctx, "acme", []byte(rec), rev); err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for range 50 {
		if code, _ := answer(t, e, chat(key, body)); code == 200 {
			allowed++
		}
	}
	if allowed > 0 {
		t.Fatalf("balance 3.00 MXN with one ~2.00 MXN request in flight, own hold set to 2^62 nanos: %d more of 50 allowed", allowed)
	}
}

// TestAccountRecordSpellings: an account record that gives "balance"
// twice, or again as "BALANCE" ({"balance":0,...,"BALANCE":100000} is
// 1,000.00 MXN to encoding/json and 0 to jq, Python or JS), is unreadable
// and its keys are denied.
func TestAccountRecordSpellings(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, c := range []struct{ name, rec string }{
		{"duplicate balance", `{"id":"dup","balance":0,"currency":"MXN","updated_at":"` + now + `","balance":100000}`},
		{"case variant", `{"id":"cv","balance":0,"currency":"MXN","updated_at":"` + now + `","BALANCE":100000}`},
	} {
		id := strings.SplitN(strings.TrimPrefix(c.rec, `{"id":"`), `"`, 2)[0]
		key, _ := createKey(t, e.ctx, st, id)
		setBalance(t, e.ctx, st, id, 1)
		waitCode(t, e, key, 200)
		setBalance(t, e.ctx, st, id, 0)
		waitCode(t, e, key, 402)
		if _, err := st.Accounts().Put(e.ctx, id, []byte(c.rec)); err != nil {
			t.Fatal(err)
		}
		ok := false
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if e.code(t, key) == 200 {
				ok = true
				break
			}
		}
		if ok {
			t.Errorf("%s: account record %s: a live key of the account was allowed, want 402", c.name, c.rec)
		}
	}
}

// TestBudgetEntryOutOfRange: a budget entry with numbers no keygate
// writes (a window's "granted" below 0) is not leased from: the key is
// unavailable (503) until the entry is deleted, never granted again and
// again.
func TestBudgetEntryOutOfRange(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, k := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 100)
	editKey(t, e.ctx, st, k.ID, func(k *store.Key) {
		k.RateLimit = &store.RateLimit{Requests: 1, Window: store.Duration(time.Hour)}
	})
	now := time.Now()
	entry := fmt.Sprintf(`{"v":1,"windows":[{"start_ns":%d,"len_ns":%d,"limit":1,"granted":-1000000}]}`,
		now.Add(-time.Minute).UnixNano(), int64(time.Hour))
	if _, err := st.Limits().Put(e.ctx, k.ID, []byte(entry)); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for range 10 {
		codes[e.code(t, key)]++
	}
	if codes[200] > 0 || codes[503] == 0 {
		t.Fatalf("key limited to 1 request/hour, budget entry window {limit:1, granted:-1000000}: answers %v, want 503s", codes)
	}
	if err := st.Limits().Delete(e.ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	waitCode(t, e, key, 200) // begun afresh once deleted
}

// TestBudgetEntryUnreadable: a budget entry keygate cannot read ("granted"
// as a string) is not begun afresh: a key whose hour's one request was
// spent through one keygate does not pass again through another.
func TestBudgetEntryUnreadable(t *testing.T) {
	ns := natstest.Run(t)
	e1 := start(t, fleetConfig(t, ns.ClientURL()))
	e2 := start(t, fleetConfig(t, ns.ClientURL()))
	st := openStore(t, e1, ns)
	key, k := createKey(t, e1.ctx, st, "acme")
	setBalance(t, e1.ctx, st, "acme", 100)
	editKey(t, e1.ctx, st, k.ID, func(k *store.Key) {
		k.RateLimit = &store.RateLimit{Requests: 1, Window: store.Duration(time.Hour)}
	})
	waitCode(t, e1, key, 200) // the hour's one request
	if code := e1.code(t, key); code != 429 {
		t.Fatalf("second request: %d, want 429", code)
	}
	ent, err := st.Limits().Get(e1.ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(ent.Value()), `"granted":1`, `"granted":"1"`, 1)
	if bad == string(ent.Value()) {
		t.Fatalf("entry %s", ent.Value())
	}
	if _, err := st.Limits().Put(e1.ctx, k.ID, []byte(bad)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if code := e2.code(t, key); code == 200 {
			t.Fatalf("budget entry %s (granted as a string): another keygate allowed a second request in the hour", bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
