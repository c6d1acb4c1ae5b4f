package serve_test

import (
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
)

// TestCheckAndProcessOnOneServer: the gRPC port serves ext_authz's Check
// and ext_proc's Process side by side. A metered check holds its estimate
// and names its reservation upstream; the response, observed through
// Process on the same connection, settles it from its usage.
func TestCheckAndProcessOnOneServer(t *testing.T) {
	ns := natstest.Run(t)
	cfg := testConfig(t, ns.ClientURL())
	// 0.50 MXN (50 centavos) per input token, 1 MXN per output token.
	cfg.Pricing.Models = []config.ModelPrice{{Match: "gpt-4o-mini*",
		TokenPrice: config.TokenPrice{Currency: "MXN", Input: "500000", Output: "1000000", MaxOutput: 1000}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := start(t, cfg)
	st := openStore(t, e, ns)
	key, _ := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 1_000_000)
	waitCode(t, e, key, 200)

	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`
	resp, err := e.client.Check(e.ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/v1/chat/completions", RawBody: []byte(body), Headers: map[string]string{
			"authorization": "Bearer " + key, "content-type": "application/json", "content-length": strconv.Itoa(len(body))}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == authz.ReservationHeader {
			id = h.GetHeader().GetValue()
		}
	}
	if id == "" {
		t.Fatalf("a metered check named no reservation: %v", resp)
	}

	observe := extprocv3.NewExternalProcessorClient(e.conn)
	raw := func(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }
	usage := `{"id":"chatcmpl-1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25}}`
	for _, msgs := range [][]*extprocv3.ProcessingRequest{
		{ // not metered: keygate closes the stream at once
			{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
				Headers: &corev3.HeaderMap{}}}},
		},
		{
			{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
				Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{raw(authz.ReservationHeader, id)}}}}},
			{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
				Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{raw(":status", "200"), raw("content-type", "application/json")}}}}},
			{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{
				Body: []byte(usage), EndOfStream: true}}},
		},
	} {
		ps, err := observe.Process(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if err := ps.Send(m); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := ps.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("Process answered %v, %v; want the stream closed without an answer", r, err)
		}
	}
	// 20 input tokens at 50 centavos, 5 output tokens at 100.
	poll.Until(t, 10*time.Second, "the balance debited by the usage", func() bool {
		a, _, err := st.Account(e.ctx, "acme")
		return err == nil && a.Exact() == money.Exact{Minor: 1_000_000 - 1500}
	})
	e.noKeysLogged(t, key)
}
