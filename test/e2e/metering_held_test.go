package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// testHeldInFlight: while a streamed request holds most of a balance, a
// second request whose estimate the balance covers, but what the stream
// leaves does not, is a 402 that says to retry in a second; both SDKs
// read that, and the Go SDK's retry passes once the stream is settled.
func testHeldInFlight(t *testing.T, kg *keygate, nodeBin string) {
	be := startBackend(t) // of its own: it holds streams until unhold
	be.settleTo(kg.inst.AdminAddr.String(), settleToken)
	ng := startNginx(t, kg.inst.HTTPAddr.String(), be.addr())
	const account = "held"
	// Each request below holds about 2.11 MXN (1,000 output tokens at 0.2
	// centavo, and its body's bytes at 0.1).
	kg.setAccount(t, account, 300, nil)
	key, _ := kg.createKey(t, keyOpts{account: account, scopes: []string{"chat:send"}})
	start := kg.balance(t, account)

	type streamed struct {
		u   usage
		err error
	}
	done := make(chan streamed, 1)
	go func() {
		client := openai.NewClient(option.WithBaseURL(ng.base+"/v1/"), option.WithAPIKey(key),
			option.WithHeader("X-E2E-Call", "go-held-stream"), option.WithHeader("X-E2E-Hold", "1"))
		stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o",
			MaxTokens: openai.Int(1000), Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}})
		defer stream.Close()
		var s streamed
		for stream.Next() {
			if c := stream.Current(); c.Usage.TotalTokens > 0 {
				s.u = usage{c.Usage.PromptTokens, c.Usage.CompletionTokens}
			}
		}
		s.err = stream.Err()
		done <- s
	}()
	select {
	case <-be.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream never started")
	}

	retryable := func(t *testing.T, h map[string]string) {
		t.Helper()
		if h["x-should-retry"] != "true" || h["retry-after"] != "1" || !strings.HasPrefix(h["content-type"], "application/json") {
			t.Errorf("402 headers: %v, want x-should-retry: true and retry-after: 1", h)
		}
	}
	busy := meterRow{op: "chat", key: key, model: "gpt-4o", maxTokens: 1000, status: 402, code: "insufficient_balance", nodeClass: "APIError", check: retryable}
	zero := 0
	t.Run("go, no retries", func(t *testing.T) {
		o, _ := goMeterCall(t, ng.base, "go-held-busy", busy, nil, &zero)
		verifyMeter(t, ng, be, "go-held-busy", busy, o, usage{})
	})
	t.Run("node, no retries", func(t *testing.T) {
		res := runNode(t, nodeBin, ng.base+"/v1", []nodeCall{{ID: "node-held-busy", Op: "chat", Key: key, Model: "gpt-4o", MaxTokens: 1000, MaxRetries: &zero}})
		o := outcome{status: res[0].Status, headers: res[0].Headers}
		if e := res[0].Error; e != nil {
			o.code, o.classes, o.err = e.Code, e.Classes, fmt.Errorf("%s: %s", e.Name, e.Message)
		}
		verifyMeter(t, ng, be, "node-held-busy", busy, o, usage{})
	})

	// With the SDK's retries: the stream ends once the first 402 is
	// answered, its settlement frees the balance, and a retry passes.
	go func() {
		log := filepath.Join(ng.dir, "access.log")
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if b, _ := os.ReadFile(log); strings.Contains(string(b), "go-held-retried 402 ") {
				break
			}
		}
		be.unhold()
	}()
	paid := meterRow{op: "chat", key: key, model: "gpt-4o", maxTokens: 1000, status: 200, paid: true}
	o, u := goMeterCall(t, ng.base, "go-held-retried", paid, nil, nil)
	if o.status != 200 || o.err != nil {
		t.Fatalf("the retried call: %d %v", o.status, o.err)
	}
	got := ng.statuses(t, "go-held-retried", 2)
	if len(got) < 2 || got[0] != 402 || got[len(got)-1] != 200 {
		t.Errorf("nginx answered %v, want 402s then 200", got)
	}
	s := <-done
	if s.err != nil || s.u.Prompt == 0 {
		t.Fatalf("the stream: %v, usage %+v", s.err, s.u)
	}
	kg.waitBalance(t, account, less(t, less(t, start, s.u.cost()), u.cost()))
}
