package serve_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

const settleToken = "settle-token-0123456789abcdef0123456789"

// meteredConfig prices gpt-4o* in MXN at 1,000 per 1M input tokens (0.1
// centavo a token) and 2,000 per 1M output tokens, holding 100 output
// tokens when a request names no cap.
func meteredConfig(t *testing.T, natsURL string) config.Config {
	cfg := testConfig(t, natsURL)
	cfg.Pricing.Models = []config.ModelPrice{{Match: "gpt-4o*", TokenPrice: config.TokenPrice{Currency: "MXN", Input: "1000", Output: "2000", MaxOutput: 100}}}
	cfg.SettleToken = settleToken
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// chat is a Check of a chat completion with body, as Envoy sends it with
// with_request_body.
func chat(key, body string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/v1/chat/completions", RawBody: []byte(body),
			Headers: map[string]string{"authorization": "Bearer " + key, "content-type": "application/json", "content-length": fmt.Sprint(len(body)),
				authz.ReservationHeader: "res_forged"}},
	}}}
}

func header(hs []*corev3.HeaderValueOption, name string) string {
	for _, h := range hs {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// A metered key end to end: its model list, the hold, the reservation id
// upstream, the settlement through the settle API, and a balance that
// goes down by exactly the cost.
func TestMeteredRequest(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, meteredConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, k := createKey(t, e.ctx, st, "acme")
	editKey(t, e.ctx, st, k.ID, func(k *store.Key) {
		k.V, k.Models, k.TokenLimit = 2, []string{"gpt-4o*"}, &store.TokenLimit{Tokens: 100_000, Window: store.Duration(time.Minute)}
	})
	setBalance(t, e.ctx, st, "acme", 10_000) // 100.00 MXN
	waitCode(t, e, key, 200)

	resp, err := e.client.Check(e.ctx, chat(key, `{"model":"o3","messages":[]}`))
	if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 403 || !strings.Contains(resp.GetDeniedResponse().GetBody(), `"model_not_found"`) {
		t.Fatalf("a model outside the key's list: %v, %v", resp, err)
	}
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`
	resp, err = e.client.Check(e.ctx, chat(key, body))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("a metered chat: %v, %v", resp, err)
	}
	ok := resp.GetOkResponse()
	res := header(ok.GetHeaders(), authz.ReservationHeader)
	if !strings.HasPrefix(res, "res_") || res == "res_forged" {
		t.Fatalf("reservation id upstream %q", res)
	}
	if slices.Contains(ok.GetHeadersToRemove(), authz.ReservationHeader) { // Envoy removes after it sets
		t.Fatalf("headers_to_remove %v takes the reservation id away", ok.GetHeadersToRemove())
	}
	if header(ok.GetResponseHeadersToAdd(), "x-ratelimit-limit-tokens") != "100000" {
		t.Fatalf("token headers: %v", ok.GetResponseHeadersToAdd())
	}
	settled := settleHTTP(t, e, `{"reservation_id":"`+res+`","status":200,"usage":{"prompt_tokens":9,"completion_tokens":4}}`)
	// 9 in at 0.1 centavo and 4 out at 0.2: 1.7 centavos.
	if settled["cost_nanos"] != float64(17*money.NanosPerMinor/10) {
		t.Fatalf("settlement %v", settled)
	}
	a, _, err := st.Account(e.ctx, "acme")
	if err != nil || a.Exact() != (money.Exact{Minor: 9998, Nanos: 300_000_000}) {
		t.Fatalf("balance %+v, %v; want 99.983 MXN", a, err)
	}
}

// With a balance worth two estimates, three requests at once: two pass,
// the third is told to retry (its estimate is covered by the balance,
// not by what requests in flight leave).
func TestBalanceHeldInFlight(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, meteredConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, _ := createKey(t, e.ctx, st, "acme")
	body := `{"model":"gpt-4o","max_tokens":1000}`
	// Estimate: len(body) in at 0.1 centavo + 1,000 out at 0.2 = 200 + len/10 centavos.
	est := int64(len(body))*100_000_000 + 1000*200_000_000
	setBalance(t, e.ctx, st, "acme", 2*est/money.NanosPerMinor+1) // two estimates and a bit
	waitCode(t, e, key, 200)
	var mu sync.Mutex
	codes := map[int]int{}
	retry := 0
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			resp, err := e.client.Check(e.ctx, chat(key, body))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if resp.GetOkResponse() != nil {
				codes[200]++
				return
			}
			d := resp.GetDeniedResponse()
			codes[int(d.GetStatus().GetCode())]++
			if header(d.GetHeaders(), "x-should-retry") == "true" && header(d.GetHeaders(), "retry-after") == "1" {
				retry++
			}
		})
	}
	wg.Wait()
	if codes[200] != 2 || codes[402] != 1 || retry != 1 {
		t.Fatalf("answers %v (%d told to retry), want 2 allowed and one retryable 402", codes, retry)
	}
}

// settleHTTP settles through a keygate's settle API, retrying a 503 as a
// backend does (a retry answers the first settlement if the failed try
// was written after all).
func settleHTTP(t *testing.T, e *env, body string) map[string]any {
	t.Helper()
	for {
		req, _ := http.NewRequest("POST", "http://"+e.inst.AdminAddr.String()+"/v1/settle", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+settleToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		var m map[string]any
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			continue
		}
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("settle API: %d %v %v", resp.StatusCode, m, err)
			return nil
		}
		return m
	}
}

// Three keygates, 3,000 metered requests at once, each settled through
// the settle API of a keygate other than the one that checked it: the
// balance ends at the start minus the sum of the settlements' costs, to
// the nano.
func TestDebitsExactAcrossSidecars(t *testing.T) {
	ns := natstest.Run(t)
	var fleet []*env
	for range 3 {
		fleet = append(fleet, start(t, meteredConfig(t, ns.ClientURL())))
	}
	st := openStore(t, fleet[0], ns)
	key, k := createKey(t, fleet[0].ctx, st, "acme")
	if _, err := st.UpdateKey(fleet[0].ctx, k.ID, func(k *store.Key) error { k.NoRateLimit = true; return nil }); err != nil {
		t.Fatal(err)
	}
	setBalance(t, fleet[0].ctx, st, "acme", 100_000_000) // 1,000,000.00 MXN
	for _, e := range fleet {
		waitCode(t, e, key, 200)
	}
	const n = 3000
	var mu sync.Mutex
	var spent int64
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			e := fleet[i%3]
			resp, err := e.client.Check(e.ctx, chat(key, fmt.Sprintf(`{"model":"gpt-4o-mini","max_tokens":%d}`, 50+i%50)))
			for err == nil && resp.GetDeniedResponse().GetStatus().GetCode() == 503 { // a lease that took too long: a client retries
				resp, err = e.client.Check(e.ctx, chat(key, fmt.Sprintf(`{"model":"gpt-4o-mini","max_tokens":%d}`, 50+i%50)))
			}
			if err != nil || resp.GetOkResponse() == nil {
				t.Errorf("check %d: %v %v", i, resp, err)
				return
			}
			res := header(resp.GetOkResponse().GetHeaders(), authz.ReservationHeader)
			settled := settleHTTP(t, fleet[(i+1)%3], fmt.Sprintf(`{"reservation_id":"%s","usage":{"prompt_tokens":%d,"completion_tokens":%d}}`, res, i%37, i%53))
			if settled == nil {
				return
			}
			mu.Lock()
			spent += int64(settled["cost_nanos"].(float64))
			mu.Unlock()
		})
	}
	wg.Wait()
	end, _ := money.Exact{Minor: 100_000_000}.AddNanos(-spent)
	a, _, err := st.Account(fleet[0].ctx, "acme")
	if err != nil || a.Exact() != end {
		t.Fatalf("balance %+v (%v), want %v after %d settlements", a.Exact(), err, end, n)
	}
}

// The ways to spell a request past a key's model list and token limit:
// the chat path in other cases and with a trailing slash (Express and Koa
// route both to the chat handler), n times the cap past int64, a model in
// the query or the path, and a reservation id a client sends with a
// request that reserves nothing.
func TestMeteringSpellings(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, k := createKey(t, e.ctx, st, "acme")
	editKey(t, e.ctx, st, k.ID, func(k *store.Key) {
		k.V, k.NoRateLimit, k.Models, k.TokenLimit = 2, true, []string{"gpt-4o*"}, &store.TokenLimit{Tokens: 1000, Window: store.Duration(time.Hour)}
	})
	setBalance(t, e.ctx, st, "acme", 10_000)
	waitCode(t, e, key, 200)
	big := `{"model":"gpt-4o","max_tokens":100000}`
	for _, tc := range []struct {
		method, path, body string
		code               int
		error              string
	}{
		{"POST", "/v1/chat/completions", big, 429, "rate_limit_exceeded"},
		{"POST", "/V1/CHAT/COMPLETIONS", big, 429, "rate_limit_exceeded"},
		{"POST", "/v1/Chat/Completions/?x=1", big, 429, "rate_limit_exceeded"},
		{"POST", "/v1/chat/completions/", `{"model":"o3"}`, 403, "model_not_found"},
		{"POST", "/v1/chat/completions", `{"model":"gpt-4o","n":33554432,"max_tokens":549755813887}`, 400, "integer_above_max_value"},
		{"POST", "/openai/deployments/o3/chat/completions?api-version=2024-10-21", `{"model":"gpt-4o","max_tokens":10}`, 403, "model_not_found"},
		{"GET", "/v1/realtime?model=o3-realtime", "", 403, "model_not_found"},
		{"POST", "/v1/batches", `{"input_file_id":"file-1","endpoint":"/v1/chat/completions","completion_window":"24h"}`, 400, "unreadable_model"},
		{"GET", "/v1/models", "", 200, ""},
	} {
		r := chat(key, tc.body)
		h := r.Attributes.Request.Http
		h.Method, h.Path = tc.method, tc.path
		if tc.body == "" {
			delete(h.Headers, "content-type")
			delete(h.Headers, "content-length")
		}
		resp, err := e.client.Check(e.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		d := resp.GetDeniedResponse()
		switch {
		case tc.code == 200 && resp.GetOkResponse() == nil, tc.code != 200 && int(d.GetStatus().GetCode()) != tc.code:
			t.Errorf("%s %s %s: %v, want %d", tc.method, tc.path, tc.body, resp, tc.code)
		case tc.code != 200 && !strings.Contains(d.GetBody(), `"code":"`+tc.error+`"`):
			t.Errorf("%s %s %s: %s, want code %s", tc.method, tc.path, tc.body, d.GetBody(), tc.error)
		case tc.code == 200 && !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), authz.ReservationHeader):
			t.Errorf("an allow that reserves nothing keeps the client's reservation id: %v", resp.GetOkResponse().GetHeadersToRemove())
		}
	}
}

// A request that needs more tokens than the whole token limit fits no
// window: its 429 tells the SDKs not to retry, however soon the window
// ends (here within 30 s, under the 60 s past which every 429 says so).
func TestTokensOverTheLimitAreFinal(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, k := createKey(t, e.ctx, st, "acme")
	editKey(t, e.ctx, st, k.ID, func(k *store.Key) {
		k.V, k.NoRateLimit, k.TokenLimit = 2, true, &store.TokenLimit{Tokens: 1000, Window: store.Duration(30 * time.Second)}
	})
	setBalance(t, e.ctx, st, "acme", 10_000)
	waitCode(t, e, key, 200)
	for _, tc := range []struct {
		body  string
		code  int32
		retry string
	}{
		{`{"model":"gpt-4o","max_tokens":100000}`, 429, "false"},
		{`{"model":"gpt-4o","max_tokens":900}`, 0, ""},
		{`{"model":"gpt-4o","max_tokens":900}`, 429, ""}, // fits the next window
	} {
		resp, err := e.client.Check(e.ctx, chat(key, tc.body))
		if err != nil {
			t.Fatal(err)
		}
		d := resp.GetDeniedResponse()
		if int32(d.GetStatus().GetCode()) != tc.code || header(d.GetHeaders(), "x-should-retry") != tc.retry {
			t.Errorf("%s: %v, want status %d with x-should-retry %q", tc.body, resp, tc.code, tc.retry)
		}
	}
}
