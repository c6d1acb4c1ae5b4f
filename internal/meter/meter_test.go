package meter

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/glob"
	"github.com/keygate/keygate/internal/pricing"
)

// USD: gpt-4o-mini at 15, 7.5 and 60 nanos of a cent per token (0.15,
// 0.075, 0.60 USD per 1M); route 1 costs 4 cents a request.
func table(t *testing.T) *pricing.Table {
	t.Helper()
	tb, err := pricing.New(pricing.Options{
		Models: []pricing.Entry{{Match: "gpt-4o-mini*", Currency: "USD", Price: pricing.Price{Input: 15_000, CachedInput: 7_500, Output: 60_000, MaxOutput: 1000}}},
		Routes: []map[string]int64{nil, {"USD": 4_000_000_000}}, InputBytesPerToken: 1, HoldTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func models(ps ...string) []glob.Pattern {
	var out []glob.Pattern
	for _, p := range ps {
		out = append(out, glob.Compile(p))
	}
	return out
}

func TestDecide(t *testing.T) {
	chat := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":100}`
	prompt := int64(len(chat))
	n3 := strings.Replace(chat, `"max_tokens":100`, `"max_tokens":100,"n":3`, 1)
	noCap := `{"model":"gpt-4o-mini","messages":[]}`
	emb := `{"model":"gpt-4o-mini","input":"abc"}`
	tok := `{"model":"x","prompt":"abcd","max_tokens":7}`
	post := func(path, body string) Request {
		return Request{Method: "POST", Path: path, Route: -1, Body: []byte(body), HasBody: true, ContentType: "application/json", Currency: "USD"}
	}
	money := Key{Money: true}
	for _, tc := range []struct {
		name string
		k    Key
		r    Request
		code string // of the deny; "" for a plan
		in   int64
		out  int64
		est  int64
	}{
		{"unrestricted key: nothing read", Key{}, post("/v1/chat/completions", `not json`), "", 0, 0, 0},
		{"chat: prompt bytes and the cap", money, post("/v1/chat/completions", chat), "", prompt, 100, prompt*15_000 + 100*60_000},
		{"n multiplies the output", money, post("/v1/chat/completions", n3), "", int64(len(n3)), 300, int64(len(n3))*15_000 + 300*60_000},
		{"no cap: the price's default", money, post("/v1/chat/completions", noCap), "", int64(len(noCap)), 1000, int64(len(noCap))*15_000 + 1000*60_000},
		{"embeddings: no output", money, post("/v1/embeddings", emb), "", int64(len(emb)), 0, int64(len(emb)) * 15_000},
		{"unpriced model", money, post("/v1/chat/completions", `{"model":"o3","messages":[]}`), "model_not_priced", 0, 0, 0},
		{"other currency", Key{Money: true}, func() Request { r := post("/v1/chat/completions", chat); r.Currency = "MXN"; return r }(), "model_not_priced", 0, 0, 0},
		{"duplicate model", money, post("/v1/chat/completions", `{"model":"gpt-4o-mini","model":"o3"}`), "duplicate_member", 0, 0, 0},
		{"gzip", money, func() Request { r := post("/v1/chat/completions", chat); r.Encoding = "gzip"; return r }(), "unsupported_content_encoding", 0, 0, 0},
		{"cut short", money, func() Request { r := post("/v1/chat/completions", chat); r.Partial = true; return r }(), "request_too_large", 0, 0, 0},
		{"no body sent", money, func() Request { r := post("/v1/chat/completions", ""); r.HasBody = false; return r }(), "request_too_large", 0, 0, 0},
		{"multipart on chat", money, func() Request {
			r := post("/v1/chat/completions", chat)
			r.ContentType = "multipart/form-data; boundary=x"
			return r
		}(), "unsupported_media_type", 0, 0, 0},
		{"model outside the list", Key{Models: models("gpt-4o*")}, post("/v1/chat/completions", `{"model":"o3"}`), "model_not_found", 0, 0, 0},
		{"model in the list", Key{Models: models("gpt-4o*")}, post("/v1/chat/completions", `{"model":"gpt-4o-mini"}`), "", 0, 0, 0},
		{"listed key, no model", Key{Models: models("gpt-4o*")}, post("/v1/chat/completions", `{"messages":[]}`), "missing_model", 0, 0, 0},
		{"listed key, images JSON", Key{Models: models("gpt-4o*")}, post("/v1/images/generations", `{"model":"dall-e-3"}`), "model_not_found", 0, 0, 0},
		{"listed key, audio multipart", Key{Models: models("whisper*")}, func() Request {
			r := post("/v1/audio/transcriptions", "--x")
			r.ContentType = "multipart/form-data; boundary=x"
			return r
		}(), "unreadable_model", 0, 0, 0},
		{"listed key, files multipart", Key{Models: models("gpt-4o*")}, func() Request {
			r := post("/v1/files", "--x")
			r.ContentType = "multipart/form-data; boundary=x"
			return r
		}(), "", 0, 0, 0},
		{"listed key, multipart audio not sent", Key{Models: models("whisper*")}, func() Request {
			r := post("/v1/audio/transcriptions", "")
			r.ContentType, r.HasBody = "multipart/form-data; boundary=x", false
			return r
		}(), "unreadable_model", 0, 0, 0},
		{"listed key, JSON body not sent", Key{Models: models("gpt-4o*")}, func() Request {
			r := post("/v1/fine_tuning/jobs", "")
			r.HasBody = false
			return r
		}(), "request_too_large", 0, 0, 0},
		{"listed key, JSON without a model", Key{Models: models("gpt-4o*")}, post("/v1/files/x", `{"purpose":"batch"}`), "", 0, 0, 0},
		{"listed key, GET", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/models", Route: -1, NoBody: true}, "", 0, 0, 0},
		{"tokens only: no prices needed", Key{Tokens: true}, post("/v1/chat/completions", tok), "", int64(len(tok)), 7, 0},
		{"unparsed endpoint, unpriced: refused", money, post("/v1/images/generations", `{}`), "endpoint_not_priced", 0, 0, 0},
		{"unparsed endpoint, flat price", money, func() Request { r := post("/v1/images/generations", `{}`); r.Route = 1; return r }(), "", 0, 0, 4_000_000_000},
		{"GET without body: free", money, Request{Method: "GET", Path: "/v1/models", Route: -1, NoBody: true, Currency: "USD"}, "", 0, 0, 0},
		{"n times the cap past int64", money, post("/v1/chat/completions", `{"model":"gpt-4o-mini","n":33554432,"max_tokens":549755813888}`), "integer_above_max_value", 0, 0, 0},
		{"n times the cap wrapping negative", Key{Tokens: true}, post("/v1/chat/completions", `{"model":"x","n":33554432,"max_tokens":549755813887}`), "integer_above_max_value", 0, 0, 0},
		{"n times the cap at the bound", Key{Tokens: true}, post("/v1/chat/completions", `{"model":"x","n":1000,"max_tokens":1000000000}`), "", 46, 1_000_000_000_000, 0},
		{"chat in capitals", money, post("/V1/CHAT/COMPLETIONS", chat), "", prompt, 100, prompt*15_000 + 100*60_000},
		{"chat with a trailing slash", money, post("/v1/Chat/Completions/", chat), "", prompt, 100, prompt*15_000 + 100*60_000},
		{"form body, trailing slash", Key{Tokens: true}, func() Request {
			r := post("/v1/chat/completions/", "model=o3")
			r.ContentType = "application/x-www-form-urlencoded"
			return r
		}(), "unsupported_media_type", 0, 0, 0},
		{"embeddings in capitals", money, post("/v1/EMBEDDINGS/", emb), "", int64(len(emb)), 0, int64(len(emb)) * 15_000},
		{"deployment outside the list, body model in it", Key{Models: models("gpt-4o*")}, func() Request {
			r := post("/openai/deployments/o3/chat/completions", `{"model":"gpt-4o-mini"}`)
			r.Query = "api-version=1"
			return r
		}(), "model_not_found", 0, 0, 0},
		{"deployment outside the list", Key{Models: models("gpt-4o*")}, post("/openai/deployments/o3/chat/completions", `{"messages":[]}`), "model_not_found", 0, 0, 0},
		{"deployment priced as its model", money, post("/openai/Deployments/gpt-4o-mini/chat/completions", noCap), "", int64(len(noCap)), 1000, int64(len(noCap))*15_000 + 1000*60_000},
		{"engine outside the list", Key{Models: models("gpt-4o*")}, post("/v1/engines/o3/completions", `{"prompt":"x"}`), "model_not_found", 0, 0, 0},
		{"query model outside the list", Key{Models: models("gpt-4o*")}, func() Request {
			r := post("/v1/chat/completions", `{"model":"gpt-4o-mini"}`)
			r.Query = "model=o3"
			return r
		}(), "model_not_found", 0, 0, 0},
		{"Azure SDK: a deployment and the body's model, both listed", Key{Models: models("gpt-4o*", "prod")}, func() Request {
			r := post("/openai/deployments/prod/chat/completions", `{"model":"gpt-4o-mini"}`)
			r.Query = "api-version=2024-10-21"
			return r
		}(), "", 0, 0, 0},
		{"a deployment without a price", money, post("/openai/deployments/prod/chat/completions", chat), "model_not_priced", 0, 0, 0},
		{"Azure Realtime: deployment outside the list", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/openai/realtime", Query: "api-version=1&deployment=o3-realtime&model=gpt-4o-realtime", Route: -1, NoBody: true, Upgrade: true}, "model_not_found", 0, 0, 0},
		{"Azure Realtime: deployment listed", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/openai/realtime", Query: "api-version=1&deployment=gpt-4o-realtime", Route: -1, NoBody: true, Upgrade: true}, "", 0, 0, 0},
		{"deployment twice", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/openai/realtime", Query: "deployment=gpt-4o&deployment=o3", Route: -1, NoBody: true}, "ambiguous_model", 0, 0, 0},
		{"realtime call", Key{Models: models("gpt-4o*")}, func() Request {
			r := post("/v1/realtime/calls", "v=0")
			r.ContentType = "application/sdp"
			return r
		}(), "unreadable_model", 0, 0, 0},
		{"a WebSocket other than Realtime, model in the query", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/responses", Query: "model=gpt-4o", Route: -1, NoBody: true, Upgrade: true}, "unreadable_model", 0, 0, 0},
		{"run named in the query only", Key{Models: models("gpt-4o*")}, func() Request {
			r := post("/v1/threads/t/runs", `{"assistant_id":"asst_1"}`)
			r.Query = "model=gpt-4o"
			return r
		}(), "unreadable_model", 0, 0, 0},
		{"batch naming a model at its top level", Key{Models: models("gpt-4o*")}, post("/v1/batches", `{"model":"gpt-4o","input_file_id":"file-1"}`), "unreadable_model", 0, 0, 0},
		{"client secret naming a model at its top level", Key{Models: models("gpt-4o*")}, post("/v1/realtime/client_secrets", `{"model":"gpt-4o","session":{"model":"o3"}}`), "unreadable_model", 0, 0, 0},
		{"realtime call with a query model", Key{Models: models("gpt-4o*")}, func() Request {
			r := post("/v1/realtime/calls", "v=0")
			r.ContentType, r.Query = "application/sdp", "model=gpt-4o"
			return r
		}(), "unreadable_model", 0, 0, 0},
		{"realtime session naming its model", Key{Models: models("gpt-4o*")}, post("/v1/realtime/sessions", `{"model":"gpt-4o-realtime"}`), "", 0, 0, 0},
		{"query model in another case", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/realtime", Query: "model=gpt-4o&Model=o3", Route: -1, NoBody: true}, "ambiguous_model", 0, 0, 0},
		{"realtime model outside the list", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/realtime", Query: "model=o3-realtime", Route: -1, NoBody: true}, "model_not_found", 0, 0, 0},
		{"realtime model escaped", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/realtime", Query: "model=gpt%2D4o-realtime", Route: -1, NoBody: true}, "", 0, 0, 0},
		{"realtime model twice", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/realtime", Query: "model=gpt-4o&model=o3", Route: -1, NoBody: true}, "ambiguous_model", 0, 0, 0},
		{"realtime model with a fragment", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/realtime", Query: "model=gpt-4o#x", Route: -1, NoBody: true}, "ambiguous_model", 0, 0, 0},
		{"realtime model as an array", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/realtime", Query: "model[]=o3", Route: -1, NoBody: true}, "ambiguous_model", 0, 0, 0},
		{"realtime without a model", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/realtime", Route: -1, NoBody: true}, "unreadable_model", 0, 0, 0},
		{"realtime is not a free read", money, Request{Method: "GET", Path: "/v1/realtime", Query: "model=gpt-4o-mini", Route: -1, NoBody: true, Currency: "USD"}, "endpoint_not_priced", 0, 0, 0},
		{"an upgrade is not a free read", money, Request{Method: "GET", Path: "/v1/stream", Route: -1, NoBody: true, Upgrade: true, Currency: "USD"}, "endpoint_not_priced", 0, 0, 0},
		{"realtime at a flat price", money, Request{Method: "GET", Path: "/v1/realtime", Route: 1, NoBody: true, Currency: "USD"}, "", 0, 0, 4_000_000_000},
		{"listed key, batch", Key{Models: models("gpt-4o*")}, post("/v1/batches", `{"input_file_id":"file-1","endpoint":"/v1/chat/completions","completion_window":"24h"}`), "unreadable_model", 0, 0, 0},
		{"listed key, batches listed", Key{Models: models("gpt-4o*")}, Request{Method: "GET", Path: "/v1/batches", Route: -1, NoBody: true}, "", 0, 0, 0},
		{"listed key, run without a model", Key{Models: models("gpt-4o*")}, post("/v1/threads/thread_1/runs", `{"assistant_id":"asst_1"}`), "unreadable_model", 0, 0, 0},
		{"listed key, run naming its model", Key{Models: models("gpt-4o*")}, post("/v1/threads/thread_1/runs", `{"assistant_id":"asst_1","model":"gpt-4o"}`), "", 0, 0, 0},
		{"listed key, realtime secret", Key{Models: models("gpt-4o*")}, post("/v1/realtime/client_secrets", `{"session":{"type":"realtime","model":"o3-realtime"}}`), "unreadable_model", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Decide(tc.k, tc.r, table(t))
			switch {
			case tc.code != "" && (p.Deny == nil || p.Deny.Code != tc.code):
				t.Fatalf("plan %+v, want deny %s", p, tc.code)
			case tc.code == "" && p.Deny != nil:
				t.Fatalf("denied %+v", p.Deny)
			case tc.code == "" && (p.InputTokens != tc.in || p.OutputTokens != tc.out || p.Estimate != tc.est):
				t.Fatalf("in %d out %d est %d, want %d %d %d", p.InputTokens, p.OutputTokens, p.Estimate, tc.in, tc.out, tc.est)
			}
		})
	}
}

func BenchmarkDecideChat4K(b *testing.B) {
	body := `{"model":"gpt-4o-mini","max_tokens":256,"messages":[` + strings.Repeat(`{"role":"user","content":"The quick brown fox jumps over the lazy dog, again and again."},`, 50) + `{"role":"user","content":"end"}]}`
	tb, _ := pricing.New(pricing.Options{Models: []pricing.Entry{{Match: "gpt-4o-mini*", Currency: "USD", Price: pricing.Price{Input: 15_000, CachedInput: 7_500, Output: 60_000, MaxOutput: 1000}}}, InputBytesPerToken: 1})
	r := Request{Method: "POST", Path: "/v1/chat/completions", Route: -1, Body: []byte(body), HasBody: true, ContentType: "application/json", Currency: "USD"}
	k := Key{Money: true, Models: models("gpt-4o*")}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if p := Decide(k, r, tb); p.Deny != nil {
			b.Fatal(p.Deny)
		}
	}
}

// A request naming two models is charged at the highest of their prices,
// field by field: whichever runs, with whatever usage, costs no more.
func TestSeveralModels(t *testing.T) {
	tb, err := pricing.New(pricing.Options{
		Models: []pricing.Entry{
			{Match: "inheavy", Currency: "USD", Price: pricing.Price{Input: 10_000, CachedInput: 1_000, Output: 1_000, MaxOutput: 10}},
			{Match: "outheavy", Currency: "USD", Price: pricing.Price{Input: 1_000, CachedInput: 500, Output: 30_000, MaxOutput: 20}},
		},
		InputBytesPerToken: 1, HoldTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := pricing.Price{Input: 10_000, CachedInput: 1_000, Output: 30_000, MaxOutput: 20}
	for _, tc := range []struct{ path, query, body, model string }{
		{"/openai/deployments/outheavy/chat/completions", "", `{"model":"inheavy"}`, "inheavy,outheavy"},
		{"/openai/deployments/inheavy/chat/completions", "", `{"model":"outheavy"}`, "outheavy,inheavy"},
		{"/v1/chat/completions", "model=outheavy", `{"model":"inheavy"}`, "inheavy,outheavy"},
	} {
		r := Request{Method: "POST", Path: tc.path, Query: tc.query, Route: -1, Body: []byte(tc.body), HasBody: true, ContentType: "application/json", Currency: "USD"}
		p := Decide(Key{Money: true}, r, tb)
		n := int64(len(tc.body))
		if p.Deny != nil || p.Model != tc.model || p.Charge.Price != want || p.OutputTokens != 20 || p.Estimate != n*10_000+20*30_000 {
			t.Errorf("%s?%s %s: %+v, want %s at %+v", tc.path, tc.query, tc.body, p, tc.model, want)
		}
	}
	r := Request{Method: "POST", Path: "/openai/deployments/unpriced/chat/completions", Route: -1, Body: []byte(`{"model":"inheavy"}`), HasBody: true, ContentType: "application/json", Currency: "USD"}
	if p := Decide(Key{Money: true}, r, tb); p.Deny == nil || p.Deny.Code != "model_not_priced" {
		t.Errorf("one of two models unpriced: %+v", p)
	}
}
