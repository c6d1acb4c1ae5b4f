package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/store"
)

func TestMain(m *testing.M) {
	// The SDKs read these; the tests set everything they need themselves.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "OPENAI_") {
			os.Unsetenv(name)
		}
	}
	os.Exit(m.Run())
}

// identity is what the backend must see in the x-keygate-* headers:
// keygate's identity of the key and, for a metered request (reserved),
// one reservation id of keygate's.
type identity struct {
	keyID, account, scopes, env string
	reserved                    bool
}

func identityOf(k *store.Key) identity {
	return identity{keyID: k.ID, account: k.AccountID, scopes: strings.Join(k.Scopes, ","), env: k.Env}
}

// reservationHeader is where the backend finds a metered request's
// reservation id.
const reservationHeader = "X-Keygate-Reservation-Id"

// forgedReservation is the reservation id clients send to pose as a
// metered request that was already paid for.
const forgedReservation = "res_forged"

// row is one row of the decision table, as one SDK call sees it.
type row struct {
	name    string
	op      string // chat, models
	key     string // "" sends no credential
	headers map[string]string
	// What the call ends with: the final status, and the error code and
	// the Node SDK's error class for a deny.
	status    int
	code      string
	nodeClass string
	// statuses are nginx's answers to the call's HTTP requests, in order:
	// one per request the SDK made.
	statuses []int
	// who is the identity the backend must see, for allowed calls.
	who *identity
	// check looks at the client's response headers (lowercase names).
	check func(t *testing.T, h map[string]string)
	// limit, when set, makes the row's key just before the call: limited
	// to one request per limit.window, that request spent, and at least
	// limit.left of the window to go.
	limit *spent
}

// spent describes a rate-limited key whose budget is used up.
type spent struct{ window, left time.Duration }

// spoofed are headers a client might send to pose as another account or
// to make keygate check another route.
var spoofed = map[string]string{
	"X-Keygate-Key-Id":     "key_spoofed",
	"X-Keygate-Account-Id": "victim",
	"X-Keygate-Scopes":     "*",
	"X-Keygate-Env":        "test",
	"X-Original-URI":       "/v1/models",
	"X-Original-Method":    "GET",
}

// keys are the keys and accounts of the decision table.
type keys struct {
	full, low, modelsOnly, expired, broke, invalid string
	fullRec, lowRec                                *store.Key
}

func setUp(t *testing.T, kg *keygate) keys {
	t.Helper()
	threshold := int64(2000)
	kg.setAccount(t, "acme", 100000, nil)        // 1000.00 MXN
	kg.setAccount(t, "lowbal", 1250, &threshold) // 12.50 MXN, low under 20.00
	kg.setAccount(t, "broke", 0, nil)
	both := []string{"chat:send", "models:read"}
	var k keys
	k.full, k.fullRec = kg.createKey(t, keyOpts{account: "acme", scopes: both})
	k.low, k.lowRec = kg.createKey(t, keyOpts{account: "lowbal", scopes: both})
	k.modelsOnly, _ = kg.createKey(t, keyOpts{account: "acme", scopes: []string{"models:read"}})
	past := time.Now().Add(-time.Hour)
	k.expired, _ = kg.createKey(t, keyOpts{account: "acme", scopes: both, expires: &past})
	k.broke, _ = kg.createKey(t, keyOpts{account: "broke", scopes: []string{"*"}})
	k.invalid, _ = apikey.DefaultFormat().Mint(apikey.LivePrefix) // well-formed, never stored
	return k
}

// spentKey returns a key limited to one request per window whose request
// was just made, with at least left of the window to go, as its
// x-ratelimit-reset says: where windows are fixed, a key's first request
// may come just before its window ends.
func spentKey(t *testing.T, kg *keygate, ng *nginx, window, left time.Duration, call string) string {
	t.Helper()
	for range 20 {
		key, _ := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"chat:send", "models:read"},
			limit: &store.RateLimit{Requests: 1, Window: store.Duration(window)}})
		req, _ := http.NewRequest(http.MethodGet, ng.base+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-E2E-Call", call)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		reset, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Reset"))
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("a new key's first request: %d %v", resp.StatusCode, resp.Header)
		}
		if time.Duration(reset-1)*time.Second >= left { // reset is rounded up
			return key
		}
	}
	t.Fatalf("no key had %s of its window left after its first request", left)
	return ""
}

// Rate-limited rows. The short wait must outlast starting node; the long
// one must stay over 60 s.
var (
	shortWait = &spent{window: 4 * time.Second, left: 2 * time.Second}
	longWait  = &spent{window: time.Hour, left: 2 * time.Minute}
)

// decisionRows is the decision table for one SDK, in the order it runs.
func decisionRows(k keys) []row {
	full, low := identityOf(k.fullRec), identityOf(k.lowRec)
	rateHeaders := func(limit string) func(t *testing.T, h map[string]string) {
		return func(t *testing.T, h map[string]string) {
			t.Helper()
			if h["x-ratelimit-limit"] != limit || !isInt(h["x-ratelimit-remaining"]) || !isInt(h["x-ratelimit-reset"]) ||
				h["x-ratelimit-limit-requests"] != limit || !isInt(h["x-ratelimit-remaining-requests"]) || !strings.HasSuffix(h["x-ratelimit-reset-requests"], "s") {
				t.Errorf("rate-limit headers: %v, want x-ratelimit-limit and -limit-requests %s from keygate", h, limit)
			}
		}
	}
	allowHeaders := func(t *testing.T, h map[string]string) {
		t.Helper()
		rateHeaders("600")(t, h)
		if h["x-balance-low"] != "" || h["x-balance-remaining"] != "" {
			t.Errorf("balance headers for an account that is not low: %v", h)
		}
	}
	unauthenticated := func(t *testing.T, h map[string]string) {
		t.Helper()
		if !strings.HasPrefix(h["www-authenticate"], `Bearer realm="keygate"`) || h["x-should-retry"] != "false" ||
			!strings.HasPrefix(h["content-type"], "application/json") {
			t.Errorf("401 headers: %v", h)
		}
	}
	return []row{
		{name: "allowed chat, spoofed identity", op: "chat", key: k.full, headers: spoofed, status: 200, statuses: []int{200}, who: &full, check: allowHeaders},
		{name: "allowed models", op: "models", key: k.full, status: 200, statuses: []int{200}, who: &full, check: allowHeaders},
		{name: "allowed, low balance", op: "chat", key: k.low, status: 200, statuses: []int{200}, who: &low, check: func(t *testing.T, h map[string]string) {
			t.Helper()
			rateHeaders("600")(t, h)
			if h["x-balance-low"] != "true" || h["x-balance-remaining"] != "12.50 MXN" {
				t.Errorf("low-balance headers: %v", h)
			}
		}},
		{name: "missing key", op: "chat", key: "", status: 401, code: "missing_api_key", nodeClass: "AuthenticationError", statuses: []int{401}, check: unauthenticated},
		{name: "invalid key", op: "models", key: k.invalid, status: 401, code: "invalid_api_key", nodeClass: "AuthenticationError", statuses: []int{401}, check: unauthenticated},
		{name: "expired key", op: "chat", key: k.expired, status: 401, code: "expired_api_key", nodeClass: "AuthenticationError", statuses: []int{401}, check: unauthenticated},
		{name: "missing scope, spoofed route", op: "chat", key: k.modelsOnly, headers: spoofed, status: 403, code: "insufficient_permissions", nodeClass: "PermissionDeniedError", statuses: []int{403},
			check: func(t *testing.T, h map[string]string) {
				t.Helper()
				if !strings.Contains(h["www-authenticate"], `error="insufficient_scope"`) || h["x-should-retry"] != "false" {
					t.Errorf("403 headers: %v", h)
				}
			}},
		{name: "zero balance", op: "chat", key: k.broke, status: 402, code: "insufficient_balance", nodeClass: "APIError", statuses: []int{402},
			check: func(t *testing.T, h map[string]string) {
				t.Helper()
				if h["x-should-retry"] != "false" || h["www-authenticate"] != "" {
					t.Errorf("402 headers: %v", h)
				}
			}},
		// The SDK sleeps retry-after (a few seconds) and tries again: the
		// request frees up in that time.
		{name: "short rate limit, retried", op: "chat", limit: shortWait, status: 200, statuses: []int{429, 200}, check: rateHeaders("1")},
		// A wait over 60 s says x-should-retry: false: one request, no retry.
		{name: "long rate limit", op: "chat", limit: longWait, status: 429, code: "rate_limit_exceeded", nodeClass: "RateLimitError", statuses: []int{429},
			check: func(t *testing.T, h map[string]string) {
				t.Helper()
				wait, err := strconv.Atoi(h["retry-after"])
				if err != nil || wait <= 60 || h["x-should-retry"] != "false" || h["x-ratelimit-limit"] != "1" || h["x-ratelimit-remaining"] != "0" ||
					h["x-ratelimit-limit-requests"] != "1" || h["x-ratelimit-remaining-requests"] != "0" {
					t.Errorf("429 headers: %v", h)
				}
			}},
	}
}

// unavailableRow is the last row: NATS is down and the key was never seen.
func unavailableRow(key string) row {
	return row{name: "auth unavailable", op: "chat", key: key, status: 503, code: "auth_unavailable", nodeClass: "InternalServerError",
		// 503 is retried: the SDKs' default of 2 retries, after retry-after: 1.
		statuses: []int{503, 503, 503},
		check: func(t *testing.T, h map[string]string) {
			t.Helper()
			if h["retry-after"] != "1" || !strings.HasPrefix(h["content-type"], "application/json") {
				t.Errorf("503 headers: %v", h)
			}
		}}
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func isInt(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func callID(sdk string, r row) string {
	return sdk + "-" + strings.NewReplacer(" ", "-", ",", "").Replace(r.name)
}

// outcome is what one SDK call ended with.
type outcome struct {
	status  int
	code    string
	param   string            // the error's param, where a test reads it
	classes []string          // Node: every error class the error is
	headers map[string]string // lowercase names
	content string
	err     error
}

// TestNginx runs the decision table through the shipped nginx config with
// both official SDKs, then the checks that need the stack as a whole:
// spoofed headers, streaming, large bodies, and the key store going away.
func TestNginx(t *testing.T) {
	nginxBinary(t)
	nodeBin := nodeBinary(t)
	kg := startKeygate(t, "nginx")
	be := startBackend(t)
	ng := startNginx(t, kg.inst.HTTPAddr.String(), be.addr())
	k := setUp(t, kg)

	t.Run("go", func(t *testing.T) {
		for _, r := range decisionRows(k) {
			t.Run(r.name, func(t *testing.T) {
				if r.limit != nil {
					r.key = spentKey(t, kg, ng, r.limit.window, r.limit.left, "prime-"+callID("go", r))
				}
				before := kg.checks(t)
				id := callID("go", r)
				o := goCall(t, ng, id, r.op, r.key, r.headers, "hello")
				verify(t, ng, be, id, r, o)
				if got := kg.checks(t) - before; got != len(r.statuses) {
					t.Errorf("keygate made %d checks for %d requests", got, len(r.statuses))
				}
			})
		}
	})

	t.Run("node", func(t *testing.T) {
		rows := decisionRows(k)
		// The rate-limited rows come first, and their keys are spent
		// last, so that node reaches them in the window left.
		slices.SortStableFunc(rows, func(a, b row) int { return cmpBool(b.limit != nil, a.limit != nil) })
		for i := len(rows) - 1; i >= 0; i-- {
			if r := &rows[i]; r.limit != nil {
				r.key = spentKey(t, kg, ng, r.limit.window, r.limit.left, "prime-"+callID("node", *r))
			}
		}
		before := kg.checks(t)
		outs := nodeCalls(t, nodeBin, ng, rows, "node")
		want := 0
		for i, r := range rows {
			want += len(r.statuses)
			t.Run(r.name, func(t *testing.T) { verify(t, ng, be, callID("node", r), r, outs[i]) })
		}
		if got := kg.checks(t) - before; got != want {
			t.Errorf("keygate made %d checks for %d requests", got, want)
		}
	})

	t.Run("spoofed header spellings", func(t *testing.T) { testSpellings(t, kg, ng, be, k) })
	t.Run("streaming", func(t *testing.T) { testStreaming(t, ng, be, k) })
	t.Run("large body", func(t *testing.T) { testLargeBody(t, nodeBin, ng, be, k) })

	// Last: take the key store away. A key keygate never saw cannot be
	// decided, and both SDKs get keygate's 503 after their retries.
	t.Run("auth unavailable", func(t *testing.T) {
		kg.ns.Shutdown()
		kg.ns.WaitForShutdown()
		waitFor(t, 10*time.Second, "keygate to report not ready", func() bool { return kg.readyz(t) == 503 })
		f := apikey.DefaultFormat()
		goKey, _ := f.Mint(apikey.LivePrefix)
		nodeKey, _ := f.Mint(apikey.LivePrefix)
		t.Run("go", func(t *testing.T) {
			r := unavailableRow(goKey)
			before := kg.checks(t)
			o := goCall(t, ng, callID("go", r), r.op, r.key, nil, "hello")
			verify(t, ng, be, callID("go", r), r, o)
			if got := kg.checks(t) - before; got != 3 {
				t.Errorf("keygate made %d checks, want 3", got)
			}
		})
		t.Run("node", func(t *testing.T) {
			r := unavailableRow(nodeKey)
			outs := nodeCalls(t, nodeBin, ng, []row{r}, "node")
			verify(t, ng, be, callID("node", r), r, outs[0])
		})
	})

	for _, key := range []string{k.full, k.low, k.modelsOnly, k.expired, k.broke, k.invalid} {
		if strings.Contains(kg.logs.String(), key) {
			t.Errorf("a key appears in keygate's log")
		}
		if in := ng.keyLogged(t, key); len(in) > 0 {
			t.Errorf("a key appears in nginx's %v", in)
		}
	}
	for _, s := range be.all() {
		checkUpstream(t, s, nil)
	}
}

// verify checks one call against its row: what the SDK saw, what nginx
// answered to each of its requests, and what the backend received.
func verify(t *testing.T, ng *nginx, be *backend, id string, r row, o outcome) {
	t.Helper()
	if o.status != r.status {
		t.Errorf("status %d, want %d (error %v)", o.status, r.status, o.err)
	}
	if r.status == 200 {
		if o.err != nil {
			t.Errorf("error %v", o.err)
		}
	} else {
		if o.code != r.code {
			t.Errorf("error code %q, want %q (error %v)", o.code, r.code, o.err)
		}
		if o.classes != nil && (len(o.classes) == 0 || o.classes[0] != r.nodeClass) {
			t.Errorf("Node error classes %v, want %s first", o.classes, r.nodeClass)
		}
	}
	if r.check != nil {
		r.check(t, o.headers)
	}
	if got := ng.statuses(t, id, len(r.statuses)); fmt.Sprint(got) != fmt.Sprint(r.statuses) {
		t.Errorf("nginx answered %v to the call's requests, want %v", got, r.statuses)
	}
	reqs := be.requests(id)
	wantBackend := 0
	if r.status == 200 {
		wantBackend = 1
	}
	if len(reqs) != wantBackend {
		t.Errorf("the backend got %d requests, want %d", len(reqs), wantBackend)
	}
	for _, s := range reqs {
		if r.who != nil {
			checkUpstream(t, s, r.who)
		}
	}
}

// checkUpstream checks what the backend received: never a credential or a
// header meant for keygate, and exactly keygate's identity when who is set.
func checkUpstream(t *testing.T, s seen, who *identity) {
	t.Helper()
	var ids map[string][]string
	for name, values := range s.Header {
		// As CGI, WSGI and PHP read it: "_" and "." are "-".
		norm := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
		switch {
		case isCredential(norm):
			t.Errorf("%s: the backend got the credential header %s", s.Call, name)
		case strings.HasPrefix(norm, "x-original-") || strings.Contains(norm, "method-override") || norm == "x-http-method":
			t.Errorf("%s: the backend got %s: %v", s.Call, name, values)
		case strings.HasPrefix(norm, "x-keygate-"):
			if ids == nil {
				ids = map[string][]string{}
			}
			ids[name] = values
		}
	}
	if who == nil {
		return
	}
	if res := ids[reservationHeader]; who.reserved {
		if len(res) != 1 || !strings.HasPrefix(res[0], "res_") || res[0] == forgedReservation {
			t.Errorf("%s: the backend got reservation ids %q, want one of keygate's", s.Call, res)
		}
		delete(ids, reservationHeader)
	}
	want := map[string][]string{
		"X-Keygate-Key-Id": {who.keyID}, "X-Keygate-Account-Id": {who.account},
		"X-Keygate-Scopes": {who.scopes}, "X-Keygate-Env": {who.env},
	}
	if who.scopes == "" {
		delete(want, "X-Keygate-Scopes") // an empty value is not sent
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("%s: the backend got identity headers %v, want %v", s.Call, ids, want)
	}
}

// isCredential reports whether the header named name (lowercase) is one
// keygate reads keys from.
func isCredential(name string) bool {
	return slices.ContainsFunc(credentials, func(c config.Credential) bool { return c.Header == name })
}

// goCall makes one call with the Go SDK.
func goCall(t *testing.T, ng *nginx, id, op, key string, headers map[string]string, content string) outcome {
	t.Helper()
	var resp *http.Response
	opts := []option.RequestOption{
		option.WithBaseURL(ng.base + "/v1/"),
		option.WithAPIKey(key), // "" sends no Authorization header
		option.WithHeader("X-E2E-Call", id),
		option.WithResponseInto(&resp),
		option.WithRequestTimeout(20 * time.Second),
	}
	for name, v := range headers {
		opts = append(opts, option.WithHeader(name, v))
	}
	if len(headers) > 0 {
		// More spellings than http.Header.Set makes: other cases, twice.
		opts = append(opts, option.WithMiddleware(func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
			req.Header["x-keygate-account-id"] = []string{"victim-lower"}
			req.Header["X-KEYGATE-SCOPES"] = []string{"*", "admin:*"}
			req.Header["x-keygate-key-id"] = []string{"key_spoofed2", "key_spoofed3"}
			req.Header["x-original-uri"] = []string{"/v1/models"}
			req.Header["X-ORIGINAL-METHOD"] = []string{"GET", "HEAD"}
			return next(req)
		}))
	}
	client := openai.NewClient(opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var o outcome
	switch op {
	case "chat":
		c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "e2e-model",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)},
		})
		o.err = err
		if err == nil {
			o.content = c.Choices[0].Message.Content
		}
	case "models":
		page, err := client.Models.List(ctx)
		o.err = err
		if err == nil && (len(page.Data) != 1 || page.Data[0].ID != "e2e-model") {
			o.err = fmt.Errorf("models: %+v", page.Data)
		}
	default:
		t.Fatalf("unknown op %s", op)
	}
	var apiErr *openai.Error
	switch {
	case errors.As(o.err, &apiErr):
		o.status, o.code = apiErr.StatusCode, apiErr.Code
		resp = apiErr.Response
	case o.err != nil:
		t.Fatalf("%s: not an *openai.Error: %v", id, o.err)
	}
	if resp != nil {
		if o.status == 0 {
			o.status = resp.StatusCode
		}
		o.headers = map[string]string{}
		for name := range resp.Header {
			o.headers[strings.ToLower(name)] = resp.Header.Get(name)
		}
	}
	return o
}

// nodeCall is one call for calls.mjs.
type nodeCall struct {
	ID         string            `json:"id"`
	Op         string            `json:"op"`
	Key        string            `json:"key,omitempty"`
	NoKey      bool              `json:"noKey,omitempty"`
	Content    string            `json:"content,omitempty"`
	Repeat     int               `json:"repeat,omitempty"`
	Size       int               `json:"size,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	MaxRetries *int              `json:"maxRetries,omitempty"`
	Model      string            `json:"model,omitempty"`
	MaxTokens  int64             `json:"maxTokens,omitempty"`
	DupModel   string            `json:"dupModel,omitempty"`
}

// nodeResult is what calls.mjs says about one call.
type nodeResult struct {
	ID      string            `json:"id"`
	OK      bool              `json:"ok"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Content string            `json:"content"`
	Models  []string          `json:"models"`
	Chunks  int               `json:"chunks"`
	Usage   *usage            `json:"usage"`
	Error   *struct {
		Name    string   `json:"name"`
		Classes []string `json:"classes"`
		Status  int      `json:"status"`
		Code    string   `json:"code"`
		Type    string   `json:"type"`
		Param   *string  `json:"param"`
		Message string   `json:"message"`
	} `json:"error"`
	MS int `json:"ms"`
}

// runNode runs calls.mjs with calls against baseURL (http://host:port/v1)
// and returns its results.
func runNode(t *testing.T, nodeBin, baseURL string, calls []nodeCall) []nodeResult {
	t.Helper()
	in, _ := json.Marshal(map[string]any{"baseURL": baseURL, "calls": calls})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, "calls.mjs")
	cmd.Dir = nodeDir
	cmd.Stdin = strings.NewReader(string(in))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node calls.mjs: %v\n%s", err, stderr.String())
	}
	var results []nodeResult
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(calls) {
		t.Fatalf("node calls.mjs printed %q (%v)\n%s", out, err, stderr.String())
	}
	for _, r := range results {
		t.Logf("node %s: status %d in %d ms, error %+v, headers %v", r.ID, r.Status, r.MS, r.Error, r.Headers)
	}
	return results
}

// nodeCalls makes the rows' calls with the Node SDK, in order.
func nodeCalls(t *testing.T, nodeBin string, ng *nginx, rows []row, sdk string) []outcome {
	t.Helper()
	var calls []nodeCall
	for _, r := range rows {
		calls = append(calls, nodeCall{ID: callID(sdk, r), Op: r.op, Key: r.key, NoKey: r.key == "", Headers: r.headers})
	}
	var outs []outcome
	for _, res := range runNode(t, nodeBin, ng.base+"/v1", calls) {
		o := outcome{status: res.Status, headers: res.Headers, content: res.Content, classes: []string{}}
		if res.Error != nil {
			o.code, o.classes = res.Error.Code, res.Error.Classes
			o.err = fmt.Errorf("%s: %s", res.Error.Name, res.Error.Message)
		} else {
			o.classes = nil
		}
		outs = append(outs, o)
	}
	return outs
}

// testSpellings sends spoofed headers in spellings the SDKs do not make,
// over a raw connection: nginx must replace or drop every one.
func testSpellings(t *testing.T, kg *keygate, ng *nginx, be *backend, k keys) {
	noScopes, noScopesRec := kg.createKey(t, keyOpts{account: "acme"})
	body := `{"model":"e2e-model","messages":[{"role":"user","content":"hello"}]}`
	cases := []struct {
		name, request string
		status        int
		who           identity
	}{
		{"every spelling", "POST /v1/chat/completions HTTP/1.1\r\n" +
			"Host: api.example\r\n" +
			"Authorization: Bearer " + k.full + "\r\n" +
			"x-api-key: " + k.full + "\r\n" +
			"x-keygate-key-id: key_spoofed\r\n" +
			"X-KEYGATE-ACCOUNT-ID: victim\r\n" +
			"X-Keygate-Account-Id: victim2\r\n" +
			"X_Keygate_Account_Id: victim3\r\n" +
			"X.Keygate.Account.Id: victim4\r\n" +
			"x_keygate_env: test\r\n" +
			"X.Api.Key: " + k.full + "\r\n" +
			"X_Api_Key: " + k.full + "\r\n" +
			"Api_Key: " + k.full + "\r\n" +
			"X-Keygate-Scopes: *\r\n" +
			"X-Keygate-Scopes: admin:*\r\n" +
			"X-Keygate-Env: test\r\n" +
			"X-Original-URI: /v1/models\r\n" +
			"x-original-uri: /v1/models\r\n" +
			"X-Original-Method: GET\r\n" +
			"X_Original_Method: GET\r\n" +
			"X-HTTP-Method-Override: DELETE\r\n" +
			"Content-Type: application/json\r\n" +
			"X-E2E-Call: raw-every-spelling\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
			"Connection: close\r\n\r\n" + body, 200, identityOf(k.fullRec)},
		// A body sent in chunks is read whole and passed on.
		{"chunked body", "POST /v1/chat/completions HTTP/1.1\r\n" +
			"Host: api.example\r\n" +
			"Authorization: Bearer " + k.full + "\r\n" +
			"Content-Type: application/json\r\n" +
			"Transfer-Encoding: chunked\r\n" +
			"X-E2E-Call: raw-chunked-body\r\n" +
			"Connection: close\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 10, body[:10], len(body)-10, body[10:]), 200, identityOf(k.fullRec)},
		// The key in api-key alone (Azure OpenAI's header), in any case:
		// keygate reads it there, and nginx removes it.
		{"api-key", "POST /v1/chat/completions HTTP/1.1\r\n" +
			"Host: api.example\r\n" +
			"API-KEY: " + k.full + "\r\n" +
			"Content-Type: application/json\r\n" +
			"X-E2E-Call: raw-api-key\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
			"Connection: close\r\n\r\n" + body, 200, identityOf(k.fullRec)},
		// A key without scopes: keygate's x-keygate-scopes is empty, so
		// nginx sends none, and drops the client's.
		{"no scopes", "GET /v1/other HTTP/1.1\r\n" +
			"Host: api.example\r\n" +
			"X-Api-Key: " + noScopes + "\r\n" +
			"X-Keygate-Scopes: *\r\n" +
			"x-keygate-scopes: chat:send\r\n" +
			"X-E2E-Call: raw-no-scopes\r\n" +
			"Connection: close\r\n\r\n", 200, identityOf(noScopesRec)},
		// The request line's target in absolute form: $request_uri is
		// still the path, and the scope is chat:send's.
		{"absolute-form target", "POST http://api.example/v1/chat/completions HTTP/1.1\r\n" +
			"Host: api.example\r\n" +
			"Authorization: Bearer " + k.modelsOnly + "\r\n" +
			"X-Original-URI: /v1/models\r\n" +
			"X-Original-Method: GET\r\n" +
			"X-E2E-Call: raw-absolute-form\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
			"Connection: close\r\n\r\n" + body, 403, identity{}},
	}
	// Spellings of the chat completions path that a backend may route as
	// it: keygate must ask for chat:send on every one.
	for i, path := range []string{"/v1/chat/completions/", "/v1//chat/completions", "//v1/chat/completions", "/v1/./chat/completions",
		"/v1/models/../chat/completions", "/v1/chat%2Fcompletions", "/v1/%63hat/completions", "/V1/CHAT/COMPLETIONS",
		"/v1/chat/completions;x=1", "/v1/chat/completions?model=x"} {
		cases = append(cases, struct {
			name, request string
			status        int
			who           identity
		}{fmt.Sprintf("route spelling %d", i), "POST " + path + " HTTP/1.1\r\n" +
			"Host: api.example\r\n" +
			"Authorization: Bearer " + k.modelsOnly + "\r\n" +
			fmt.Sprintf("X-E2E-Call: raw-route-spelling-%d\r\n", i) +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
			"Connection: close\r\n\r\n" + body, 403, identity{}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status := rawRequest(t, ng, c.request)
			if status != c.status {
				t.Fatalf("status %d, want %d", status, c.status)
			}
			call := "raw-" + strings.ReplaceAll(c.name, " ", "-")
			reqs := be.requests(call)
			if c.status != 200 {
				if len(reqs) != 0 {
					t.Fatalf("a denied request reached the backend")
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("the backend got %d requests", len(reqs))
			}
			checkUpstream(t, reqs[0], &c.who)
			if reqs[0].Method == http.MethodPost && reqs[0].Body != len(body) {
				t.Errorf("the backend got %d bytes of body, want %d", reqs[0].Body, len(body))
			}
		})
	}
}

// rawRequest sends request as written and returns the response status.
func rawRequest(t *testing.T, ng *nginx, request string) int {
	t.Helper()
	resp, _ := rawAnswer(t, ng, request)
	return resp.StatusCode
}

// testStreaming: a streamed completion reaches the client chunk by chunk,
// while the backend is still writing it.
func testStreaming(t *testing.T, ng *nginx, be *backend, k keys) {
	var resp *http.Response
	client := openai.NewClient(option.WithBaseURL(ng.base+"/v1/"), option.WithAPIKey(k.full),
		option.WithHeader("X-E2E-Call", "go-stream"), option.WithHeader("X-E2E-Hold", "1"), option.WithResponseInto(&resp))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model: "e2e-model", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	defer stream.Close()
	first := make(chan bool, 1)
	go func() { first <- stream.Next() }()
	select {
	case ok := <-first:
		if !ok {
			t.Fatalf("stream: %v", stream.Err())
		}
	case <-time.After(5 * time.Second):
		be.unhold()
		t.Fatal("the first chunk did not arrive while the backend held the stream open: the response is buffered")
	}
	select {
	case <-be.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend did not hold the stream")
	}
	content := stream.Current().Choices[0].Delta.Content
	be.unhold()
	for stream.Next() {
		if cs := stream.Current().Choices; len(cs) > 0 {
			content += cs[0].Delta.Content
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if want := "first " + contentSummary("hello"); content != want {
		t.Errorf("content %q, want %q", content, want)
	}
	if resp == nil || resp.Header.Get("X-Ratelimit-Limit") != "600" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Errorf("stream response headers: %v", resp)
	}
	if reqs := be.requests("go-stream"); len(reqs) != 1 {
		t.Errorf("the backend got %d requests", len(reqs))
	} else {
		who := identityOf(k.fullRec)
		checkUpstream(t, reqs[0], &who)
	}
}

// testLargeBody: a chat completion of a few MB (an image, say) reaches the
// backend whole, from both SDKs; a streamed one from Node too.
func testLargeBody(t *testing.T, nodeBin string, ng *nginx, be *backend, k keys) {
	const unit = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
	repeat := 3<<20/len(unit) + 1 // just over 3 MiB
	content := strings.Repeat(unit, repeat)
	t.Run("go", func(t *testing.T) {
		o := goCall(t, ng, "go-large", "chat", k.full, nil, content)
		if o.err != nil || o.content != contentSummary(content) {
			t.Fatalf("answer %q (%v), want %q", o.content, o.err, contentSummary(content))
		}
		if reqs := be.requests("go-large"); len(reqs) != 1 || reqs[0].Body < len(content) {
			t.Fatalf("the backend got %d requests", len(reqs))
		}
	})
	t.Run("node", func(t *testing.T) {
		res := runNode(t, nodeBin, ng.base+"/v1", []nodeCall{
			{ID: "node-large", Op: "chat", Key: k.full, Content: unit, Repeat: repeat},
			{ID: "node-stream", Op: "chat_stream", Key: k.full},
		})
		if !res[0].OK || res[0].Content != contentSummary(content) {
			t.Errorf("large: %+v", res[0])
		}
		if !res[1].OK || res[1].Content != "first "+contentSummary("hello") || res[1].Chunks < 3 || res[1].Headers["x-ratelimit-limit"] != "600" {
			t.Errorf("stream: %+v", res[1])
		}
	})
}

var jsonError = regexp.MustCompile(`^\{"error":\{"message":"[^"]+","type":"server_error","param":null,"code":"auth_unavailable"\}\}$`)

// TestNginxAnyMode: the shipped config gives keygate the original method
// and URI in every place a mode reads them, so a keygate left in envoy mode
// (the default) or set to traefik decides as in nginx mode, and a client's
// X-Original-* or X-Forwarded-* change nothing. A HEAD needs what a GET
// to its path needs, whatever the mode.
func TestNginxAnyMode(t *testing.T) {
	nginxBinary(t)
	for _, mode := range []string{"nginx", "envoy", "traefik"} {
		t.Run(mode, func(t *testing.T) {
			kg := startKeygate(t, mode)
			be := startBackend(t)
			ng := startNginx(t, kg.inst.HTTPAddr.String(), be.addr())
			kg.setAccount(t, "acme", 100000, nil)
			modelsOnly, _ := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"models:read"}})
			chatOnly, _ := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"chat:send"}})
			full, fullRec := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"chat:send", "models:read"}})
			unknown, _ := apikey.DefaultFormat().Mint(apikey.LivePrefix)
			steer := map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/v1/models",
				"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/v1/models"}
			for _, c := range []struct {
				name, method, path, key string
				status                  int
			}{
				{"missing scope", "POST", "/v1/chat/completions", modelsOnly, 403},
				{"allowed", "POST", "/v1/chat/completions", full, 200},
				{"allowed GET", "GET", "/v1/models", modelsOnly, 200},
				{"HEAD, unknown key", "HEAD", "/v1/models", unknown, 401},
				// A HEAD is decided as the GET it mirrors.
				{"HEAD without GET's scope", "HEAD", "/v1/models", chatOnly, 403},
				{"HEAD with GET's scope", "HEAD", "/v1/models", modelsOnly, 200},
			} {
				call := mode + "-" + strings.ReplaceAll(c.name, " ", "-")
				req, _ := http.NewRequest(c.method, ng.base+c.path, strings.NewReader(`{"model":"e2e-model","messages":[{"role":"user","content":"hi"}]}`))
				if c.method != "POST" {
					req.Body, req.ContentLength = nil, 0
				}
				req.Header.Set("Authorization", "Bearer "+c.key)
				req.Header.Set("X-E2E-Call", call)
				for name, v := range steer {
					req.Header.Set(name, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.status)
				}
				reqs := be.requests(call)
				if c.status != 200 {
					if len(reqs) != 0 {
						t.Errorf("%s: a denied request reached the backend", c.name)
					}
					continue
				}
				if len(reqs) != 1 || reqs[0].Method != c.method {
					t.Fatalf("%s: the backend got %+v", c.name, reqs)
				}
				if c.key == full {
					who := identityOf(fullRec)
					checkUpstream(t, reqs[0], &who)
				}
			}
		})
	}
}
