package adminapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/adminapi"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/poll"
)

// TestLockoutSparesValidTokens: an address that has sent too many bad
// tokens gets 429 for each further bad one, with a growing retry-after,
// while a valid token from the same address still passes.
func TestLockoutSparesValidTokens(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	bad := "kga_" + strings.Repeat("A", 42)
	forged, _ := apikey.Format{Prefixes: []string{"kga_"}, Length: 46, Checksum: true}.Mint("kga_") // well-formed, unknown
	for i := range adminapi.DefaultPolicy.Failures {
		tok := bad
		if i%2 == 1 {
			tok = forged
		}
		var e errorOut
		f.ok(req{method: "GET", path: "/v1/keys", token: tok}, http.StatusUnauthorized, &e)
		if e.Error.Code != "invalid_admin_token" {
			t.Fatalf("bad token %d: %+v", i, e)
		}
	}
	// A missing token is not a guess: it is not counted, and answered 401.
	var e errorOut
	f.ok(req{method: "GET", path: "/v1/keys"}, http.StatusUnauthorized, &e)
	if e.Error.Code != "missing_admin_token" {
		t.Errorf("no token: %+v", e)
	}
	var waits []string
	for range 3 {
		res := f.ok(req{method: "GET", path: "/v1/keys", token: forged}, http.StatusTooManyRequests, &e)
		if e.Error.Code != "too_many_failed_attempts" || e.Error.Type != "rate_limit_error" {
			t.Errorf("locked out: %+v", e)
		}
		waits = append(waits, res.Header.Get("Retry-After"))
	}
	if !slices.Equal(waits, []string{"1", "2", "4"}) {
		t.Errorf("retry-after: %v, want 1, 2, 4", waits)
	}
	f.ok(req{method: "GET", path: "/v1/keys", token: "read"}, http.StatusOK, nil)
	f.createKey("acme")
	f.ok(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":1}`}, http.StatusOK, nil)
}

// TestIdempotentCreateOnce: 50 concurrent retries of one create make one
// key; one answer holds the key itself, the others the same key with
// "key": null.
func TestIdempotentCreateOnce(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	const n = 50
	answers := make([]resp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			answers[i] = f.do(req{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","name":"retried"}`,
				header: map[string]string{"Idempotency-Key": "order-7"}})
		})
	}
	wg.Wait()
	shown, id := 0, ""
	for i, a := range answers {
		var k keyOut
		if a.StatusCode != http.StatusCreated || json.Unmarshal(a.body, &k) != nil {
			t.Fatalf("answer %d: %d %s", i, a.StatusCode, a.body)
		}
		if id == "" {
			id = k.ID
		}
		if k.ID != id || a.Header.Get("Location") != "/v1/keys/"+id {
			t.Errorf("answer %d names %s at %s, another %s", i, k.ID, a.Header.Get("Location"), id)
		}
		replayed := a.Header.Get("Idempotent-Replayed") == "true"
		switch {
		case k.Key != nil && !replayed:
			shown++
		case k.Key == nil && replayed:
		default:
			t.Errorf("answer %d: key %v, replayed %v", i, k.Key, replayed)
		}
	}
	if shown != 1 {
		t.Errorf("%d answers hold the key itself, want 1", shown)
	}
	var page struct{ Data []keyOut }
	f.ok(req{method: "GET", path: "/v1/keys?account=acme", token: "read"}, http.StatusOK, &page)
	if len(page.Data) != 1 {
		t.Errorf("%d keys after %d retries of one create", len(page.Data), n)
	}
}

// TestIdempotentCreditOnce: 50 concurrent retries of one credit apply it
// once.
func TestIdempotentCreditOnce(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	f.ok(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":1000}`}, http.StatusOK, nil)
	const n = 50
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			codes[i] = f.do(req{method: "POST", path: "/v1/accounts/acme/balance/credits", token: "balances", body: `{"amount":250}`,
				header: map[string]string{"Idempotency-Key": "invoice-2041"}}).StatusCode
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("credit %d: %d", i, c)
		}
	}
	var a accountOut
	f.ok(req{method: "GET", path: "/v1/accounts/acme/balance", token: "read"}, http.StatusOK, &a)
	if a.Balance != 1250 {
		t.Errorf("balance %d after %d retries of one credit of 250 to 1000, want 1250", a.Balance, n)
	}
}

// TestIdempotencyKeyScope: a key given again with another body is a 409;
// the same key of another token is another key; a bad key is a 400.
func TestIdempotencyKeyScope(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	_, other, err := f.svc.CreateToken(f.ctx, admin.Actor{Kind: admin.ActorCLI}, "other", []string{admin.ScopeBalances})
	if err != nil {
		t.Fatal(err)
	}
	credit := func(token, body, key string, want int) resp {
		t.Helper()
		return f.ok(req{method: "POST", path: "/v1/accounts/acme/balance/credits", token: token, body: body,
			header: map[string]string{"Idempotency-Key": key}}, want, nil)
	}
	f.ok(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":0}`}, http.StatusOK, nil)
	credit("balances", `{"amount":1}`, "k1", http.StatusOK)
	if res := credit("balances", `{"amount":1}`, "k1", http.StatusOK); res.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a repeat is not marked replayed")
	}
	var e errorOut
	res := credit("balances", `{"amount":2}`, "k1", http.StatusConflict)
	if json.Unmarshal(res.body, &e); e.Error.Code != "idempotency_key_reused" || e.Error.Param == nil || *e.Error.Param != "Idempotency-Key" {
		t.Errorf("another body: %s", res.body)
	}
	f.ok(req{method: "POST", path: "/v1/accounts/acme/balance/credits", token: other, body: `{"amount":1}`,
		header: map[string]string{"Idempotency-Key": "k1"}}, http.StatusOK, nil)
	// A refusal is an answer too: given again, not run again.
	credit("balances", `{"amount":1}`, "k2-"+strings.Repeat("x", 200), http.StatusOK)
	f.ok(req{method: "POST", path: "/v1/accounts/nobody/balance/credits", token: "balances", body: `{"amount":1}`,
		header: map[string]string{"Idempotency-Key": "k3"}}, http.StatusNotFound, nil)
	f.ok(req{method: "PUT", path: "/v1/accounts/nobody/balance", token: "balances", body: `{"balance":5}`}, http.StatusOK, nil)
	f.ok(req{method: "POST", path: "/v1/accounts/nobody/balance/credits", token: "balances", body: `{"amount":1}`,
		header: map[string]string{"Idempotency-Key": "k3"}}, http.StatusNotFound, nil)
	for _, key := range []string{strings.Repeat("x", 256), "tab\there", "é"} {
		credit("balances", `{"amount":1}`, key, http.StatusBadRequest)
	}
	var a accountOut
	f.ok(req{method: "GET", path: "/v1/accounts/acme/balance", token: "read"}, http.StatusOK, &a)
	if a.Balance != 3 {
		t.Errorf("balance %d, want 3 (k1 once per token, k2 once)", a.Balance)
	}
}

// TestListKeysPages: every key once, in the order of their ids, page by
// page, with filters; keys another writer makes appear.
func TestListKeysPages(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	var want []string
	for i := range 230 {
		acct := []string{"acme", "globex"}[i%2]
		k := f.createKey(acct)
		if i%10 == 0 {
			f.ok(req{method: "POST", path: "/v1/keys/" + k.ID + "/revoke", token: "keys"}, http.StatusOK, nil)
		}
		want = append(want, k.ID)
	}
	// A key written by another writer (the command line) reaches the
	// listing through the watch.
	other, err := admin.New(admin.Options{Store: f.st, Keys: config.Default().Keys}).CreateKey(f.ctx, admin.Actor{Kind: admin.ActorCLI}, admin.CreateKeyInput{AccountID: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, other.ID)
	slices.Sort(want)
	list := func(query string, limit int) []keyOut {
		var all []keyOut
		cursor := ""
		for pages := 0; ; pages++ {
			var page struct {
				Data       []keyOut
				NextCursor *string `json:"next_cursor"`
			}
			q := fmt.Sprintf("/v1/keys?limit=%d%s", limit, query)
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			f.ok(req{method: "GET", path: q, token: "read"}, http.StatusOK, &page)
			if len(page.Data) > limit || pages > 1000 {
				t.Fatalf("page of %d keys for limit %d", len(page.Data), limit)
			}
			all = append(all, page.Data...)
			if page.NextCursor == nil {
				return all
			}
			cursor = *page.NextCursor
		}
	}
	poll.Until(t, 5*time.Second, "the other writer's key listed", func() bool { return len(list("", 1000)) == len(want) })
	for _, limit := range []int{1, 7, 100, 1000} {
		var got []string
		for _, k := range list("", limit) {
			got = append(got, k.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: %d keys, want %d in order", limit, len(got), len(want))
		}
	}
	acme := list("&account=acme&status=active", 50)
	for _, k := range acme {
		if k.AccountID != "acme" || k.Status != "active" {
			t.Errorf("account=acme&status=active lists %+v", k)
		}
	}
	if len(acme) != 115-23+1 { // the revoked keys are all acme's
		t.Errorf("%d active keys of acme, want %d", len(acme), 115-23+1)
	}
	if revoked := list("&status=revoked", 100); len(revoked) != 23 {
		t.Errorf("%d revoked keys, want 23", len(revoked))
	}
	if unused := list("&unused=30d", 100); len(unused) != len(want) {
		t.Errorf("%d unused keys, want all %d", len(unused), len(want))
	}
	for _, q := range []string{"?cursor=nope", "?limit=1001", "?limit=x", "?status=gone", "?account=a.b", "?unused=soon", "?colour=red", "?limit=1&limit=2"} {
		var e errorOut
		f.ok(req{method: "GET", path: "/v1/keys" + q, token: "read"}, http.StatusBadRequest, &e)
		if e.Error.Param == nil {
			t.Errorf("%s: no param in %+v", q, e)
		}
	}
}

// TestPathsAndMethods: other spellings of a path are not found, other
// methods not allowed, both in the API's JSON; a key given where an id
// goes is never echoed.
func TestPathsAndMethods(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	k := f.createKey("acme")
	for _, p := range []string{"/v1/keys/", "/v1//keys", "/V1/keys", "/v1/keys/" + k.ID + "/", "/v1/keys/%6Bey_x", "/v1/keys/./x",
		"/v1/accounts/acme/balance/credits/x", "/", "/v1/keys/" + k.ID + "/../" + k.ID} {
		var e errorOut
		res := f.ok(req{method: "GET", path: p, token: "read"}, http.StatusNotFound, &e)
		if e.Error.Code != "unknown_path" || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %s", p, res.body)
		}
	}
	var e errorOut
	res := f.ok(req{method: "DELETE", path: "/v1/keys/" + k.ID, token: "keys"}, http.StatusMethodNotAllowed, &e)
	if e.Error.Code != "method_not_allowed" || !strings.Contains(e.Error.Message, "GET, PATCH") {
		t.Errorf("DELETE: %s", res.body)
	}
	secret := *k.Key
	res = f.ok(req{method: "GET", path: "/v1/keys/" + secret, token: "read"}, http.StatusNotFound, nil)
	if strings.Contains(string(res.body), secret) || strings.Contains(string(res.body), secret[len(secret)-10:]) {
		t.Errorf("a key given as an id is echoed: %s", res.body)
	}
}

// TestNoSecretsInAnswers: no answer but the creation's holds the key,
// and none holds its hash or a token.
func TestNoSecretsInAnswers(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	k := f.createKey("acme")
	secret := *k.Key
	hash := apikey.Hash(secret)
	var rot keyOut
	f.ok(req{method: "POST", path: "/v1/keys/" + k.ID + "/rotate", token: "keys", body: `{"grace":"0s"}`}, http.StatusCreated, &rot)
	if rot.Key == nil || rot.OldID != k.ID {
		t.Fatalf("rotate: %+v", rot)
	}
	for _, r := range []req{
		{method: "GET", path: "/v1/keys/" + k.ID, token: "read"},
		{method: "GET", path: "/v1/keys", token: "read"},
		{method: "PATCH", path: "/v1/keys/" + rot.ID, token: "keys", body: `{"name":"n"}`},
		{method: "POST", path: "/v1/keys/" + rot.ID + "/revoke", token: "keys"},
		{method: "GET", path: "/v1/keys/" + k.ID + "/usage", token: "read"},
	} {
		body := string(f.do(r).body)
		for _, s := range append([]string{secret, *rot.Key, hash, `"hash"`}, tokensOf(f)...) {
			if strings.Contains(body, s) {
				t.Errorf("%s %s answers with a secret or hash: %s", r.method, r.path, body)
			}
		}
	}
}

func tokensOf(f *fixture) []string {
	var out []string
	for _, tok := range f.tokens {
		out = append(out, tok)
	}
	return out
}

// TestTokenLastUse: a token's last use is written at most once a
// minute.
func TestTokenLastUse(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := newFixture(t, adminapi.Options{Now: clock})
	tokens, err := f.st.Tokens(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	rev := func() (uint64, *time.Time) {
		views, err := f.svc.ListTokens(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range views {
			if slices.Equal(v.Scopes, []string{admin.ScopeRead}) {
				_, r, err := tokens.ByID(f.ctx, v.ID)
				if err != nil {
					t.Fatal(err)
				}
				return r, v.LastUsedAt
			}
		}
		t.Fatal("no read token")
		return 0, nil
	}
	before, used := rev()
	if used != nil {
		t.Fatalf("a new token was used at %v", used)
	}
	f.ok(req{method: "GET", path: "/v1/keys", token: "read"}, http.StatusOK, nil)
	first, used := rev()
	if first == before || used == nil || !used.Equal(now) {
		t.Errorf("after a request: revision %d (from %d), last used %v", first, before, used)
	}
	for range 4 {
		f.ok(req{method: "GET", path: "/v1/keys", token: "read"}, http.StatusOK, nil)
	}
	if r, _ := rev(); r != first {
		t.Errorf("written again by the next requests")
	}
	mu.Lock()
	now = now.Add(59 * time.Second)
	mu.Unlock()
	f.ok(req{method: "GET", path: "/v1/keys", token: "read"}, http.StatusOK, nil)
	if r, _ := rev(); r != first {
		t.Errorf("written again within a minute")
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	f.ok(req{method: "GET", path: "/v1/keys", token: "read"}, http.StatusOK, nil)
	if r, used := rev(); r == first || !used.Equal(now) {
		t.Errorf("a minute later: revision %d, last used %v", r, used)
	}
	// A revoked token is refused at once.
	views, _ := f.svc.ListTokens(f.ctx)
	for _, v := range views {
		if _, _, err := f.svc.RevokeToken(f.ctx, admin.Actor{Kind: admin.ActorCLI}, v.ID); err != nil {
			t.Fatal(err)
		}
	}
	f.ok(req{method: "GET", path: "/v1/keys", token: "read"}, http.StatusUnauthorized, nil)
}
