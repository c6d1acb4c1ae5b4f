package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// The metered keygate prices gpt-4o* in MXN at 1,000 per 1M input tokens
// (0.1 centavo, 1e8 nanos of a centavo, a token) and 2,000 per 1M output
// tokens, and holds 100 output tokens for a request that names no cap.
const (
	settleToken = "settle-token-e2e-0123456789abcdef0123456789"
	inputNanos  = 100_000_000
	outputNanos = 200_000_000
)

func withMetering(c *config.Config) {
	c.Pricing.Models = []config.ModelPrice{{Match: "gpt-4o*",
		TokenPrice: config.TokenPrice{Currency: "MXN", Input: "1000", Output: "2000", MaxOutput: 100}}}
	c.SettleToken = settleToken
}

// usage is what a chat completion's usage says, as the SDKs return it.
type usage struct {
	Prompt     int64 `json:"prompt_tokens"`
	Completion int64 `json:"completion_tokens"`
}

// cost is what a call that used u costs, in nanos of a centavo.
func (u usage) cost() int64 { return u.Prompt*inputNanos + u.Completion*outputNanos }

// balance returns an account's balance as the store holds it.
func (k *keygate) balance(t *testing.T, account string) money.Exact {
	t.Helper()
	a, _, err := k.st.Account(k.ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	return a.Exact()
}

// waitBalance waits until account's balance is want.
func (k *keygate) waitBalance(t *testing.T, account string, want money.Exact) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := k.balance(t, account)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("balance of %s: %+v, want %+v", account, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func less(t *testing.T, e money.Exact, nanos int64) money.Exact {
	t.Helper()
	out, err := e.AddNanos(-nanos)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// meterKeys are the keys of the metering tests.
type meterKeys struct {
	live, test, poor, tight string
	liveRec, testRec        *store.Key
}

// Accounts of the metering tests.
const (
	metered = "metered" // 1,000.00 MXN
	poor    = "poor"    // 0.10 MXN: less than any estimate
)

func setUpMetering(t *testing.T, kg *keygate) meterKeys {
	t.Helper()
	kg.setAccount(t, metered, 100000, nil)
	kg.setAccount(t, poor, 10, nil)
	both := []string{"chat:send", "models:read"}
	var m meterKeys
	m.live, m.liveRec = kg.createKey(t, keyOpts{account: metered, scopes: both, models: []string{"gpt-4o*"},
		tokens: &store.TokenLimit{Tokens: 1_000_000, Window: store.Duration(time.Minute)}})
	m.test, m.testRec = kg.createKey(t, keyOpts{account: metered, scopes: both, test: true})
	m.poor, _ = kg.createKey(t, keyOpts{account: poor, scopes: both})
	// Any request's estimate is over 50 tokens: the first is refused, and
	// since it fits no window, its 429 tells the SDKs not to retry it
	// however soon the window ends.
	m.tight, _ = kg.createKey(t, keyOpts{account: metered, scopes: both,
		tokens: &store.TokenLimit{Tokens: 50, Window: store.Duration(time.Hour)}})
	return m
}

// meterRow is one SDK call of the metering tests and what it must end with.
type meterRow struct {
	name, op, key, model string
	maxTokens            int64
	dupModel             string // a second "model" member, before the SDK's
	repeat               int    // the message is "hello" this many times
	// status, and for a deny the error code and the Node SDK's class.
	status    int
	code      string
	param     string
	nodeClass string
	// paid: the call reaches the backend with a reservation id, which the
	// backend settles, and the account pays its usage; otherwise the
	// backend gets no reservation id, and nothing is paid.
	paid  bool
	who   *identity
	check func(t *testing.T, h map[string]string)
}

// forged are the headers each metering call sends to pose as a request
// that was reserved (and so paid for) already.
var forged = map[string]string{reservationHeader: forgedReservation}

// A body over client_body_buffer_size (1 MiB), which nginx keeps in a
// file and the check does not carry.
const bigRepeat = (1<<20)/len("hello") + 1

func meterRows(m meterKeys) []meterRow {
	live, test := identityOf(m.liveRec), identityOf(m.testRec)
	live.reserved = true
	tokenHeaders := func(t *testing.T, h map[string]string) {
		t.Helper()
		if h["x-ratelimit-limit-tokens"] != "1000000" || !isInt(h["x-ratelimit-remaining-tokens"]) || !strings.HasSuffix(h["x-ratelimit-reset-tokens"], "s") ||
			h["x-ratelimit-limit-requests"] != "600" || !isInt(h["x-ratelimit-remaining-requests"]) || h["x-ratelimit-limit"] != "600" {
			t.Errorf("allow headers: %v, want keygate's -requests and -tokens", h)
		}
	}
	noTokenHeaders := func(t *testing.T, h map[string]string) {
		t.Helper()
		if h["x-ratelimit-limit-tokens"] != "" || h["x-ratelimit-limit-requests"] != "600" {
			t.Errorf("allow headers of a key without a token limit: %v", h)
		}
	}
	final := func(status string) func(t *testing.T, h map[string]string) {
		return func(t *testing.T, h map[string]string) {
			t.Helper()
			if h["x-should-retry"] != "false" || !strings.HasPrefix(h["content-type"], "application/json") {
				t.Errorf("%s headers: %v, want x-should-retry: false", status, h)
			}
		}
	}
	return []meterRow{
		{name: "chat", op: "chat", key: m.live, model: "gpt-4o-mini", maxTokens: 10, status: 200, paid: true, who: &live, check: tokenHeaders},
		{name: "stream", op: "chat_stream", key: m.live, model: "gpt-4o", status: 200, paid: true, who: &live, check: tokenHeaders},
		{name: "test key chat", op: "chat", key: m.test, model: "gpt-4o", status: 200, who: &test, check: noTokenHeaders},
		{name: "test key stream", op: "chat_stream", key: m.test, model: "unpriced-model", status: 200, who: &test, check: noTokenHeaders},
		// Keys whose limits need the body are refused one nginx does not
		// carry to keygate; others are not.
		{name: "test key large body", op: "chat", key: m.test, model: "gpt-4o", repeat: bigRepeat, status: 200, who: &test},
		{name: "large body", op: "chat", key: m.live, model: "gpt-4o", repeat: bigRepeat, status: 413, code: "request_too_large", nodeClass: "APIError", check: final("413")},
		{name: "model outside the key's list", op: "chat", key: m.live, model: "o3", status: 403, code: "model_not_found", param: "model", nodeClass: "PermissionDeniedError", check: final("403")},
		{name: "duplicate model", op: "chat", key: m.live, model: "gpt-4o", dupModel: "o3", status: 400, code: "duplicate_member", param: "model", nodeClass: "BadRequestError", check: final("400")},
		{name: "balance under the estimate", op: "chat", key: m.poor, model: "gpt-4o", status: 402, code: "insufficient_balance", nodeClass: "APIError", check: final("402")},
		{name: "token limit", op: "chat", key: m.tight, model: "gpt-4o", status: 429, code: "rate_limit_exceeded", nodeClass: "RateLimitError",
			check: func(t *testing.T, h map[string]string) {
				t.Helper()
				wait, err := strconv.Atoi(h["retry-after"])
				if h["x-ratelimit-limit-tokens"] != "50" || h["x-ratelimit-remaining-tokens"] != "50" || !strings.HasSuffix(h["x-ratelimit-reset-tokens"], "s") ||
					err != nil || wait < 1 || h["x-should-retry"] != "false" {
					t.Errorf("429 headers: %v, want the token limit's", h)
				}
			}},
	}
}

// TestNginxMetering: a keygate with prices and a settle token behind the
// shipped nginx config, and a backend that settles what it answers
// through the settle API, driven with both official SDKs: a live key pays
// exactly the usage each call reports, stream or not; a test key never
// pays; metering's denials (402, 403, 413, 400, 429 on tokens) reach the
// SDKs as their JSON errors, with their headers; and no reservation id a
// client sends reaches the backend.
func TestNginxMetering(t *testing.T) {
	nginxBinary(t)
	nodeBin := nodeBinary(t)
	kg := startKeygate(t, "nginx", withMetering)
	be := startBackend(t)
	be.settleTo(kg.inst.AdminAddr.String(), settleToken)
	ng := startNginx(t, kg.inst.HTTPAddr.String(), be.addr())
	m := setUpMetering(t, kg)
	start := kg.balance(t, metered)

	t.Run("go", func(t *testing.T) {
		for _, r := range meterRows(m) {
			t.Run(r.name, func(t *testing.T) {
				before := kg.balance(t, metered)
				id := "go-meter-" + strings.ReplaceAll(r.name, " ", "-")
				o, u := goMeterCall(t, ng.base, id, r, forged, nil)
				verifyMeter(t, ng, be, id, r, o, u)
				want := before
				if r.paid {
					want = less(t, before, u.cost())
				}
				kg.waitBalance(t, metered, want)
			})
		}
	})

	t.Run("node", func(t *testing.T) {
		before := kg.balance(t, metered)
		rows := meterRows(m)
		var calls []nodeCall
		for _, r := range rows {
			calls = append(calls, nodeCall{ID: "node-meter-" + strings.ReplaceAll(r.name, " ", "-"), Op: r.op, Key: r.key, Model: r.model,
				MaxTokens: r.maxTokens, DupModel: r.dupModel, Content: "hello", Repeat: r.repeat, Headers: forged})
		}
		res := runNode(t, nodeBin, ng.base+"/v1", calls)
		var paid int64
		for i, r := range rows {
			t.Run(r.name, func(t *testing.T) {
				o := outcome{status: res[i].Status, headers: res[i].Headers, content: res[i].Content}
				if e := res[i].Error; e != nil {
					o.code, o.classes, o.err = e.Code, e.Classes, fmt.Errorf("%s: %s", e.Name, e.Message)
					if e.Param != nil {
						o.param = *e.Param
					}
				}
				var u usage
				if res[i].Usage != nil {
					u = *res[i].Usage
				}
				verifyMeter(t, ng, be, calls[i].ID, r, o, u)
				if r.paid {
					paid += u.cost()
				}
			})
		}
		kg.waitBalance(t, metered, less(t, before, paid))
	})

	t.Run("raw", func(t *testing.T) { testMeterRaw(t, kg, ng, be, m) })
	t.Run("balance held in flight", func(t *testing.T) { testHeldInFlight(t, kg, nodeBin) })

	// Every paid call was settled once, and nothing else moved the
	// balance: what the account lost is the sum of what the settlements
	// charged.
	var charged int64
	calls := map[string]bool{}
	for _, s := range be.all() {
		calls[s.Call] = true
	}
	for call := range calls {
		for _, st := range be.settlements(call) {
			if st.Account == metered {
				charged += st.Cost
			}
		}
	}
	if got := kg.balance(t, metered); got != less(t, start, charged) {
		t.Errorf("balance %+v, want %+v less the %d nanos settled", got, start, charged)
	}
	for _, key := range []string{m.live, m.test, m.poor, m.tight} {
		if strings.Contains(kg.logs.String(), key) {
			t.Errorf("a key appears in keygate's log")
		}
		if in := ng.keyLogged(t, key); len(in) > 0 {
			t.Errorf("a key appears in nginx's %v", in)
		}
	}
}

// verifyMeter checks one metering call: what the SDK saw, that nginx
// answered one request, what the backend received, and, for a paid call,
// that its one settlement charged the usage the SDK was told.
func verifyMeter(t *testing.T, ng *nginx, be *backend, id string, r meterRow, o outcome, u usage) {
	t.Helper()
	verify(t, ng, be, id, row{status: r.status, code: r.code, nodeClass: r.nodeClass, statuses: []int{r.status}, who: r.who, check: r.check}, o)
	if o.param != r.param {
		t.Errorf("error param %q, want %q", o.param, r.param)
	}
	if r.status != 200 {
		return
	}
	if u.Prompt == 0 || u.Completion == 0 {
		t.Errorf("the SDK got no usage: %+v", u)
	}
	if !r.paid {
		if s := be.settlements(id); len(s) != 0 {
			t.Errorf("a call that pays nothing was settled: %+v", s)
		}
		return
	}
	var got []settlement
	waitFor(t, 10*time.Second, "the backend's settlement", func() bool { got = be.settlements(id); return len(got) > 0 })
	if len(got) != 1 || got[0].Status != "settled" || got[0].Cost != u.cost() || got[0].TokensIn != u.Prompt || got[0].TokensOut != u.Completion {
		t.Errorf("settlements %+v, want one charging %d nanos for %+v", got, u.cost(), u)
	}
}

// goMeterCall makes one metering call with the Go SDK to base
// (http://host:port): headers are added
// to the request; maxRetries, if set, replaces the SDK's 2.
func goMeterCall(t *testing.T, base, id string, r meterRow, headers map[string]string, maxRetries *int) (outcome, usage) {
	t.Helper()
	var resp *http.Response
	opts := []option.RequestOption{
		option.WithBaseURL(base + "/v1/"),
		option.WithAPIKey(r.key),
		option.WithHeader("X-E2E-Call", id),
		option.WithResponseInto(&resp),
		option.WithRequestTimeout(20 * time.Second),
	}
	for name, v := range headers {
		opts = append(opts, option.WithHeader(name, v))
	}
	if maxRetries != nil {
		opts = append(opts, option.WithMaxRetries(*maxRetries))
	}
	if r.dupModel != "" {
		opts = append(opts, option.WithMiddleware(func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return nil, err
			}
			body = bytes.Replace(body, []byte("{"), []byte(`{"model":"`+r.dupModel+`",`), 1)
			req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			return next(req)
		}))
	}
	client := openai.NewClient(opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	params := openai.ChatCompletionNewParams{Model: r.model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(strings.Repeat("hello", max(r.repeat, 1)))}}
	if r.maxTokens > 0 {
		params.MaxTokens = openai.Int(r.maxTokens)
	}
	var o outcome
	var u usage
	switch r.op {
	case "chat":
		c, err := client.Chat.Completions.New(ctx, params)
		o.err = err
		if err == nil {
			o.content, u = c.Choices[0].Message.Content, usage{c.Usage.PromptTokens, c.Usage.CompletionTokens}
		}
	case "chat_stream":
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		for stream.Next() {
			c := stream.Current()
			if len(c.Choices) > 0 {
				o.content += c.Choices[0].Delta.Content
			}
			if c.Usage.TotalTokens > 0 {
				u = usage{c.Usage.PromptTokens, c.Usage.CompletionTokens}
			}
		}
		o.err = stream.Err()
		stream.Close()
	default:
		t.Fatalf("unknown op %s", r.op)
	}
	var apiErr *openai.Error
	switch {
	case errors.As(o.err, &apiErr):
		o.status, o.code, o.param = apiErr.StatusCode, apiErr.Code, apiErr.Param
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
	return o, u
}
