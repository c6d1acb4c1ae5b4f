package authz_test

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// denied returns the HTTP status, error code and headers of a deny.
func denied(t *testing.T, resp *authv3.CheckResponse) (int, string, map[string]string) {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("want a deny, got %v", resp)
	}
	if resp.GetStatus().GetCode() == 0 {
		t.Fatal("deny with gRPC status OK")
	}
	var body struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("deny body is not JSON: %v: %s", err, d.GetBody())
	}
	if body.Error.Message == "" || body.Error.Type == "" {
		t.Fatalf("deny body lacks message or type: %s", d.GetBody())
	}
	if !strings.Contains(d.GetBody(), `"param":null`) {
		t.Fatalf("deny body lacks param:null: %s", d.GetBody())
	}
	h := headersOf(d.GetHeaders())
	if h["content-type"] != "application/json" {
		t.Fatalf("content-type = %q", h["content-type"])
	}
	h["type"] = body.Error.Type
	return int(d.GetStatus().GetCode()), body.Error.Code, h
}

func TestDecisionTable(t *testing.T) {
	f := newFixture(t)
	live, _ := f.createKey(t, keySpec{account: "acme"})
	f.setBalance(t, "acme", 50000, nil)
	revoked, _ := f.createKey(t, keySpec{revoked: true})
	expired, _ := f.createKey(t, keySpec{expiresIn: -time.Hour})
	chatOnly, _ := f.createKey(t, keySpec{scopes: []string{"chat:send"}})
	broke, _ := f.createKey(t, keySpec{account: "broke"})
	f.setBalance(t, "broke", 0, nil)
	noAccount, _ := f.createKey(t, keySpec{account: "ghost"})
	testKey, _ := f.createKey(t, keySpec{account: "broke", env: store.EnvTest})
	other, _ := f.createKey(t, keySpec{account: "acme"})
	unknown := live[:len(live)-10] + "AAAA" + live[len(live)-6:] // right shape, bad checksum
	unminted, _ := f.createKey(t, keySpec{})
	_ = unminted

	cases := []struct {
		name     string
		req      *authv3.CheckRequest
		status   int
		code     string
		errType  string
		wantHdrs []string
	}{
		{"no headers", request("GET", "/v1/models", nil), 401, "missing_api_key", "invalid_request_error", []string{"www-authenticate", "x-should-retry"}},
		{"nil attributes", &authv3.CheckRequest{}, 401, "missing_api_key", "invalid_request_error", nil},
		{"nil http", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, 401, "missing_api_key", "invalid_request_error", nil},
		{"bearer without key", request("GET", "/v1/models", map[string]string{"authorization": "Bearer "}), 401, "missing_api_key", "invalid_request_error", nil},
		{"basic scheme", request("GET", "/v1/models", map[string]string{"authorization": "Basic abc"}), 401, "invalid_api_key", "invalid_request_error", nil},
		{"malformed", request("GET", "/v1/models", bearer("sk-nope")), 401, "invalid_api_key", "invalid_request_error", []string{"www-authenticate"}},
		{"bad checksum", request("GET", "/v1/models", bearer(unknown)), 401, "invalid_api_key", "invalid_request_error", nil},
		{"huge header", request("GET", "/v1/models", map[string]string{"authorization": "Bearer " + strings.Repeat("a", 1<<20)}), 401, "invalid_api_key", "invalid_request_error", nil},
		{"non-utf8 raw", rawRequest("GET", "/v1/models", "authorization", "Bearer \xff\xfe"+live[2:]), 401, "invalid_api_key", "invalid_request_error", nil},
		{"two keys", request("GET", "/v1/models", map[string]string{"authorization": "Bearer " + live, "x-api-key": other}), 401, "invalid_api_key", "invalid_request_error", nil},
		{"revoked", request("GET", "/v1/models", bearer(revoked)), 401, "invalid_api_key", "invalid_request_error", nil},
		{"expired", request("GET", "/v1/models", bearer(expired)), 401, "expired_api_key", "invalid_request_error", []string{"www-authenticate", "x-should-retry"}},
		{"path with a NUL", request("GET", "/v1/models%00/x", bearer(chatOnly)), 400, "invalid_path", "invalid_request_error", []string{"content-type"}},
		{"path with an invalid escape", request("GET", "/v1/%zz", bearer(live)), 400, "invalid_path", "invalid_request_error", nil},
		{"scope, HEAD as GET", request("HEAD", "/v1/models", bearer(chatOnly)), 403, "insufficient_permissions", "permission_error", nil},
		{"scope, backslash and fragment", request("GET", `/v1\models#x`, bearer(chatOnly)), 403, "insufficient_permissions", "permission_error", nil},
		{"scope", request("GET", "/v1/models", bearer(chatOnly)), 403, "insufficient_permissions", "permission_error", []string{"x-should-retry", "www-authenticate"}},
		{"scope from context_extensions", withExt(request("POST", "/v1/chat/completions", bearer(chatOnly)), "images:create"), 403, "insufficient_permissions", "permission_error", nil},
		{"scope, doubled slash", request("GET", "/v1//models", bearer(chatOnly)), 403, "insufficient_permissions", "permission_error", nil},
		{"scope, escaped path", request("GET", "/v1/%6Dodels?x=1", bearer(chatOnly)), 403, "insufficient_permissions", "permission_error", nil},
		{"scope, escaped slash", request("GET", "/v1%2Fmodels", bearer(chatOnly)), 403, "insufficient_permissions", "permission_error", nil},
		{"scope, dot segments", request("GET", "/v1/chat/../models", bearer(chatOnly)), 403, "insufficient_permissions", "permission_error", nil},
		{"scope, upper-case path", request("GET", "/V1/MODELS", bearer(chatOnly)), 403, "insufficient_permissions", "permission_error", nil},
		{"scope, lower-case method", request("get", "/v1/models", bearer(chatOnly)), 403, "insufficient_permissions", "permission_error", nil},
		{"zero balance", request("GET", "/v1/models", bearer(broke)), 402, "insufficient_balance", "insufficient_quota", []string{"x-should-retry"}},
		{"no account", request("GET", "/v1/models", bearer(noAccount)), 402, "insufficient_balance", "insufficient_quota", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, code, h := denied(t, f.check(t, c.req))
			if status != c.status || code != c.code || h["type"] != c.errType {
				t.Fatalf("got %d %s %s, want %d %s %s", status, code, h["type"], c.status, c.code, c.errType)
			}
			for _, name := range c.wantHdrs {
				if h[name] == "" {
					t.Errorf("missing header %s in %v", name, h)
				}
			}
			if status == 401 && !strings.HasPrefix(h["www-authenticate"], `Bearer realm="keygate"`) {
				t.Errorf("www-authenticate = %q", h["www-authenticate"])
			}
			if status != 429 && status != 503 && h["x-should-retry"] != "false" {
				t.Errorf("x-should-retry = %q", h["x-should-retry"])
			}
		})
	}

	allowed := []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"bearer", request("GET", "/v1/models", bearer(live))},
		{"bearer lowercase scheme", request("GET", "/v1/models", map[string]string{"authorization": "bearer " + live})},
		{"x-api-key", request("GET", "/v1/models", map[string]string{"x-api-key": live})},
		{"same key twice", request("GET", "/v1/models", map[string]string{"authorization": "Bearer " + live, "x-api-key": live})},
		{"mixed-case header name", rawRequest("GET", "/v1/models", "Authorization", "Bearer "+live)},
		{"mixed-case name in headers map", request("GET", "/v1/models", map[string]string{"Authorization": "bearer " + live})},
		{"upper-case x-api-key in headers map", request("GET", "/v1/models", map[string]string{"X-API-KEY": live})},
		{"raw header_map", rawRequest("GET", "/v1/models", "authorization", "Bearer "+live)},
		{"scope granted", request("POST", "/v1/chat/completions?stream=true", bearer(chatOnly))},
		{"scope from context_extensions", withExt(request("GET", "/v1/models", bearer(chatOnly)), "chat:send")},
		{"test key skips balance", request("GET", "/v1/models", bearer(testKey))},
	}
	for _, c := range allowed {
		t.Run("allow "+c.name, func(t *testing.T) {
			resp := f.check(t, c.req)
			if resp.GetOkResponse() == nil || resp.GetStatus().GetCode() != 0 {
				t.Fatalf("want allow, got %v", resp)
			}
		})
	}
}

func withExt(req *authv3.CheckRequest, scope string) *authv3.CheckRequest {
	req.Attributes.ContextExtensions = map[string]string{"keygate.scope": scope}
	return req
}

func TestAllowResponse(t *testing.T) {
	f := newFixture(t)
	key, rec := f.createKey(t, keySpec{account: "acme", scopes: []string{"chat:send", "models:read"}})
	threshold := int64(100000)
	f.setBalance(t, "acme", 1250, &threshold)
	testKey, testRec := f.createKey(t, keySpec{account: "acme", env: store.EnvTest})

	resp := f.check(t, request("POST", "/v1/chat/completions", map[string]string{
		"authorization": "Bearer " + key, "x-keygate-key-id": "forged",
	}))
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("want allow, got %v", resp)
	}
	up := headersOf(ok.GetHeaders())
	want := map[string]string{"x-keygate-key-id": rec.ID, "x-keygate-account-id": "acme", "x-keygate-scopes": "chat:send,models:read", "x-keygate-env": "live"}
	for k, v := range want {
		if up[k] != v {
			t.Errorf("upstream %s = %q, want %q", k, up[k], v)
		}
	}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction().String() != "OVERWRITE_IF_EXISTS_OR_ADD" {
			t.Errorf("%s appends instead of overwriting", h.GetHeader().GetKey())
		}
	}
	// the credentials, and any reservation id the client sent: this
	// allow reserves nothing
	if strings.Join(ok.GetHeadersToRemove(), ",") != "authorization,x-api-key,x-keygate-reservation-id" {
		t.Errorf("headers_to_remove = %v", ok.GetHeadersToRemove())
	}
	client := headersOf(ok.GetResponseHeadersToAdd())
	if client["x-ratelimit-limit"] != "100" || client["x-ratelimit-remaining"] != "99" || client["x-ratelimit-reset"] != f.reset(rec.ID, 100, time.Minute) {
		t.Errorf("rate-limit headers = %v, want reset %s", client, f.reset(rec.ID, 100, time.Minute))
	}
	if client["x-balance-low"] != "true" || client["x-balance-remaining"] != "12.50 MXN" {
		t.Errorf("low-balance headers = %v", client)
	}
	md := resp.GetDynamicMetadata().GetFields()
	if md["key_id"].GetStringValue() != rec.ID || md["account_id"].GetStringValue() != "acme" {
		t.Errorf("dynamic_metadata = %v", md)
	}
	if strings.Contains(resp.String(), key) {
		t.Error("response contains the key")
	}

	resp = f.check(t, request("GET", "/v1/models", bearer(testKey)))
	if got := headersOf(resp.GetOkResponse().GetHeaders())["x-keygate-env"]; got != "test" {
		t.Errorf("test key env header = %q (key %s)", got, testRec.ID)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t)
	key, rec := f.createKey(t, keySpec{limit: &store.RateLimit{Requests: 3, Window: store.Duration(time.Minute)}})
	f.setBalance(t, "acme", 100, nil)
	req := request("GET", "/v1/models", bearer(key))
	for i := 2; i >= 0; i-- {
		resp := f.check(t, req)
		h := headersOf(resp.GetOkResponse().GetResponseHeadersToAdd())
		if h["x-ratelimit-limit"] != "3" || h["x-ratelimit-remaining"] != string(rune('0'+i)) {
			t.Fatalf("allow %d: headers %v", i, h)
		}
	}
	status, code, h := denied(t, f.check(t, req))
	if status != 429 || code != "rate_limit_exceeded" || h["type"] != "rate_limit_error" {
		t.Fatalf("got %d %s", status, code)
	}
	reset := f.reset(rec.ID, 3, time.Minute)
	if h["retry-after"] != reset || h["x-ratelimit-remaining"] != "0" || h["x-ratelimit-reset"] != reset || h["x-should-retry"] != "" {
		t.Fatalf("429 headers = %v, want reset %s", h, reset)
	}
	_, end := ratelimit.Grid(rec.ID, ratelimit.Limit{Units: 3, Window: time.Minute}, f.clock.now())
	f.clock.advance(end.Sub(f.clock.now()))
	if f.check(t, req).GetOkResponse() == nil {
		t.Fatal("not allowed in the next window")
	}
}

// reset is the x-ratelimit-reset of key id under n per window now: the
// seconds until its window ends, rounded up.
func (f *fixture) reset(id string, n int64, window time.Duration) string {
	_, end := ratelimit.Grid(id, ratelimit.Limit{Units: n, Window: window}, f.clock.now())
	return fmt.Sprint(int64(math.Ceil(end.Sub(f.clock.now()).Seconds())))
}

// TestRateLimitLongWait: a 429 whose wait is over a minute tells SDKs not
// to retry; one of a minute or less still lets them (keys' windows end at
// different times, so twenty keys see both).
func TestRateLimitLongWait(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "acme", 100, nil)
	for range 20 {
		key, rec := f.createKey(t, keySpec{limit: &store.RateLimit{Requests: 1, Window: store.Duration(10 * time.Minute)}})
		req := request("GET", "/v1/models", bearer(key))
		if f.check(t, req).GetOkResponse() == nil {
			t.Fatal("first request denied")
		}
		_, code, h := denied(t, f.check(t, req))
		_, end := ratelimit.Grid(rec.ID, ratelimit.Limit{Units: 1, Window: 10 * time.Minute}, f.clock.now())
		retry := ""
		if end.Sub(f.clock.now()) > time.Minute {
			retry = "false"
		}
		if code != "rate_limit_exceeded" || h["x-should-retry"] != retry || h["retry-after"] != f.reset(rec.ID, 1, 10*time.Minute) {
			t.Fatalf("%s with headers %v, want x-should-retry %q, retry-after %s", code, h, retry, f.reset(rec.ID, 1, 10*time.Minute))
		}
	}
}

// TestRoutesIgnoreCase: a route's scope cannot be dodged by spelling the
// method or path in another case.
func TestRoutesIgnoreCase(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "acme", 100, nil)
	models, _ := f.createKey(t, keySpec{scopes: []string{"models:read"}})
	chat, _ := f.createKey(t, keySpec{scopes: []string{"chat:send"}})
	for _, r := range [][2]string{
		{"POST", "/v1/chat/completions"}, {"post", "/v1/chat/completions"}, {"Post", "/V1/CHAT/COMPLETIONS"},
		{"POST", "/V1/Chat/Completions?stream=true"}, {"pOsT", "/v1/%43hat/completions"},
	} {
		if _, code, _ := denied(t, f.check(t, request(r[0], r[1], bearer(models)))); code != "insufficient_permissions" {
			t.Errorf("%s %s with models:read: %s, want insufficient_permissions", r[0], r[1], code)
		}
		if f.check(t, request(r[0], r[1], bearer(chat))).GetOkResponse() == nil {
			t.Errorf("%s %s with chat:send: denied", r[0], r[1])
		}
	}
	// Letters that Unicode case folding makes ASCII ("ſ" is "s" to some
	// routers) are refused, escaped or not.
	for _, p := range []string{"/v1/chat/completion\u017f", "/v1/chat/completion%C5%BF"} {
		if _, code, _ := denied(t, f.check(t, request("POST", p, bearer(models)))); code != "invalid_path" {
			t.Errorf("POST %s: %s, want invalid_path", p, code)
		}
	}
}

// TestDenyEchoIsCapped: request values repeated in a deny are cut short.
func TestDenyEchoIsCapped(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "acme", 100, nil)
	chat, _ := f.createKey(t, keySpec{scopes: []string{"chat:send"}})
	huge := strings.Repeat("M", 1<<20)
	req := withExt(request(huge, "/v1/"+huge, bearer(chat)), strings.Repeat("s\"", 1000))
	resp := f.check(t, req)
	if _, code, h := denied(t, resp); code != "insufficient_permissions" || len(h["www-authenticate"]) > 300 || strings.Count(h["www-authenticate"], `"`) != 6 {
		t.Fatalf("%s, www-authenticate %q", code, h["www-authenticate"])
	}
	if n := len(resp.GetDeniedResponse().GetBody()); n > 1500 {
		t.Fatalf("deny body is %d bytes", n)
	}
}

// TestExpiryOutOfRange: expiry dates outside what nanoseconds can hold
// still mean what they say: long past is expired, far future is not.
func TestExpiryOutOfRange(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "acme", 100, nil)
	for _, c := range []struct {
		at   time.Time
		code string
	}{
		{time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC), "expired_api_key"},
		{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), "expired_api_key"},
		{time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), ""},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), ""},
	} {
		key, rec := f.createKey(t, keySpec{})
		if _, err := f.st.UpdateKey(f.ctx, rec.ID, func(k *store.Key) error { k.ExpiresAt = &c.at; return nil }); err != nil {
			t.Fatal(err)
		}
		resp := f.check(t, request("GET", "/v1/models", bearer(key)))
		if c.code == "" {
			if resp.GetOkResponse() == nil {
				t.Errorf("expiring %s: denied: %v", c.at, resp.GetDeniedResponse().GetBody())
			}
			continue
		}
		_, code, _ := denied(t, resp)
		if body := resp.GetDeniedResponse().GetBody(); code != c.code || !strings.Contains(body, c.at.Format("2006-01-02")) {
			t.Errorf("expiring %s: %s %s", c.at, code, body)
		}
	}
}

func TestExpiryFollowsClock(t *testing.T) {
	f := newFixture(t)
	key, _ := f.createKey(t, keySpec{expiresIn: time.Hour})
	f.setBalance(t, "acme", 100, nil)
	req := request("GET", "/v1/models", bearer(key))
	if f.check(t, req).GetOkResponse() == nil {
		t.Fatal("fresh key denied")
	}
	f.clock.advance(time.Hour)
	if _, code, _ := denied(t, f.check(t, req)); code != "expired_api_key" {
		t.Fatalf("code = %s", code)
	}
}

func TestStoreUnavailable(t *testing.T) {
	f := newFixture(t)
	key, _ := f.createKey(t, keySpec{})
	f.setBalance(t, "acme", 100, nil)
	f.closeStore(t)
	status, code, h := denied(t, f.check(t, request("GET", "/v1/models", bearer(key))))
	if status != 503 || code != "auth_unavailable" || h["retry-after"] == "" {
		t.Fatalf("got %d %s %v", status, code, h)
	}
}

// TestReleasedAllowIsReused checks that an allow built in a released
// response carries nothing over from the allow before it.
func TestReleasedAllowIsReused(t *testing.T) {
	f := newFixture(t)
	threshold := int64(100000)
	f.setBalance(t, "acme", 1250, &threshold) // low: two more client headers
	low, lowRec := f.createKey(t, keySpec{account: "acme", scopes: []string{"chat:send"}})
	plain, plainRec := f.createKey(t, keySpec{account: "beta", env: store.EnvTest})

	// check returns an allow and its text, the remaining count left out.
	check := func(key string) (*authv3.CheckResponse, string) {
		t.Helper()
		resp, _ := f.srv.Check(f.ctx, request("POST", "/v1/chat/completions", bearer(key)))
		if resp.GetOkResponse() == nil {
			t.Fatalf("want allow, got %v", resp)
		}
		c := proto.Clone(resp).(*authv3.CheckResponse)
		for _, h := range c.GetOkResponse().GetResponseHeadersToAdd() {
			if k := h.GetHeader().GetKey(); k == "x-ratelimit-remaining" || k == "x-ratelimit-remaining-requests" {
				h.Header.Value = ""
			}
		}
		return resp, prototext.Format(c)
	}
	_, wantPlain := check(plain)
	for range 3 {
		first, _ := check(low)
		authz.Release(first)
		second, got := check(plain)
		if got != wantPlain {
			t.Fatalf("after releasing %s's allow, %s's allow is\n%s\nwant\n%s", lowRec.ID, plainRec.ID, got, wantPlain)
		}
		authz.Release(second)
	}
	// Releasing twice, or a copy of an allow, does not put it in the pool
	// again: two allows would share it.
	first, _ := check(low)
	authz.Release(first)
	authz.Release(first)
	if a, _ := check(low); a == func() *authv3.CheckResponse { b, _ := check(plain); return b }() {
		t.Fatal("a response released twice went to two allows")
	}
	copied, _ := check(plain)
	shallow := &authv3.CheckResponse{Status: copied.Status, HttpResponse: copied.HttpResponse, DynamicMetadata: copied.DynamicMetadata}
	authz.Release(shallow) // not an allow of the pool's: ignored
	if a, _ := check(low); a == shallow {
		t.Fatal("a copy of an allow went into the pool")
	}

	deny, _ := f.srv.Check(f.ctx, request("GET", "/v1/models", bearer("sk-malformed")))
	authz.Release(deny) // shared: ignored
	if deny.GetDeniedResponse() == nil {
		t.Fatalf("want a denial, got %v", deny)
	}
	authz.Release(nil)
}

// An Upgrade header counts however often it comes: one followed by an
// empty one still opens a WebSocket, which a key with models may not
// open on a path other than the Realtime API's.
func TestRepeatedUpgrade(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "acme", 100, nil)
	key := f.storeKey(t, func(k *store.Key) { k.V, k.Models, k.NoRateLimit = 2, []string{"gpt-4o*"}, true })
	for _, tc := range []struct {
		name    string
		upgrade []string
		code    int32
	}{
		{"no upgrade", nil, 0},
		{"upgrade", []string{"websocket"}, 400},
		{"upgrade, then an empty one", []string{"websocket", ""}, 400},
	} {
		kv := []string{"authorization", "Bearer " + key}
		for _, v := range tc.upgrade {
			kv = append(kv, "upgrade", v)
		}
		resp := f.check(t, rawRequest("GET", "/v1/models/gpt-4o", kv...))
		if got := resp.GetDeniedResponse().GetStatus().GetCode(); int32(got) != tc.code {
			t.Errorf("%s: %v, want status %d", tc.name, resp, tc.code)
		}
	}
}
