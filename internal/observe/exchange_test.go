package observe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/settle"
)

func TestKindOf(t *testing.T) {
	for _, c := range []struct {
		ctype, enc string
		kind       bodyKind
		gzip       bool
	}{
		{"text/event-stream", "", bodySSE, false},
		{"Text/Event-Stream; charset=utf-8", "identity", bodySSE, false},
		{"text/event-stream", "gzip", bodyOther, false},
		{"application/json", "", bodyJSON, false},
		{" application/json ; charset=utf-8", "", bodyJSON, false},
		{"application/problem+json", "", bodyJSON, false},
		{"application/json", "GZIP", bodyJSON, true},
		{"application/json", "br", bodyOther, false},
		{"", "", bodyJSON, false},
		{"audio/mpeg", "", bodyOther, false},
		{"application/jsonl", "", bodyOther, false},
		{"text/event-streamx", "", bodyOther, false},
	} {
		if k, gz := kindOf([]byte(c.ctype), []byte(c.enc)); k != c.kind || gz != c.gzip {
			t.Errorf("%q %q: %d %v, want %d %v", c.ctype, c.enc, k, gz, c.kind, c.gzip)
		}
	}
}

func TestStatusCode(t *testing.T) {
	for in, want := range map[string]int{"200": 200, "404": 404, "599": 599, "20": 0, "2000": 0, "2x0": 0, "": 0, "-20": 0} {
		if got := statusCode([]byte(in)); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}

// A header value in value (Envoy before raw_value) reads the same.
func TestHeaderValue(t *testing.T) {
	id := "res_kg0_0_0_acme"
	for _, h := range []*corev3.HeaderValue{{Key: authz.ReservationHeader, Value: id}, {Key: authz.ReservationHeader, RawValue: []byte(id)}} {
		if got, bad := reservation([]*corev3.HeaderValue{h}); got != id || bad {
			t.Errorf("%v: %q %v", h, got, bad)
		}
	}
	long := &corev3.HeaderValue{Key: authz.ReservationHeader, RawValue: []byte("res_" + strings.Repeat("a", maxID))}
	if got, bad := reservation([]*corev3.HeaderValue{long}); got != "" || !bad {
		t.Errorf("a reservation id of %d bytes: %q %v", len(long.RawValue), got, bad)
	}
}

// The ends of a stream as Envoy ends one: a half close, a reset.
func TestStreamEnded(t *testing.T) {
	for err, want := range map[error]bool{
		io.EOF: true, status.Error(codes.Canceled, "context canceled"): true, context.Canceled: true,
		fmt.Errorf("recv: %w", io.EOF): true, status.Error(codes.ResourceExhausted, "too large"): false, errors.New("x"): false,
	} {
		if got := streamEnded(err); got != want {
			t.Errorf("%v: %v, want %v", err, got, want)
		}
	}
}

// sseEvent is a chat completion chunk event of exactly n bytes.
func sseEvent(n int) []byte {
	const head, tail = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1750170000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"`, `"},"finish_reason":null}]}` + "\n\n"
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

func BenchmarkChunk(b *testing.B) {
	x := &exchange{id: "res_kg0_0_0_acme", kind: bodySSE, max: DefaultMaxBody, room: &budget{limit: DefaultMaxBuffered}}
	x.resp.Headers, x.resp.Status = true, 200
	msg := &extprocv3.ProcessingRequest{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: sseEvent(200)}}}
	x.handle(msg) // the event buffer grows once
	b.ReportAllocs()
	b.SetBytes(200)
	for b.Loop() {
		if x.handle(msg) {
			b.Fatal("done after a chunk")
		}
	}
	if x.sse.Events() < 2 {
		b.Fatal("no event read")
	}
}

// memStream plays msgs as a Process stream in memory.
type memStream struct {
	msgs []*extprocv3.ProcessingRequest
	i    int
}

func (m *memStream) RecvMsg(v any) error {
	if m.i == len(m.msgs) {
		return io.EOF
	}
	req := v.(*extprocv3.ProcessingRequest)
	req.Request, req.ObservabilityMode = m.msgs[m.i].Request, true
	m.i++
	return nil
}

func (m *memStream) Send(*extprocv3.ProcessingResponse) error { return nil }

// settled is a Settler that answers at once.
type settled struct{}

func (settled) Settle(context.Context, string, settle.Outcome) (*settle.Settlement, error) {
	return &settle.Settlement{}, nil
}

func BenchmarkSettlement(b *testing.B) {
	raw := func(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }
	msgs := []*extprocv3.ProcessingRequest{
		{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{
			Headers: []*corev3.HeaderValue{raw(authz.ReservationHeader, "res_kg0_0_0_acme")}}}}},
		{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{
			Headers: []*corev3.HeaderValue{raw(":status", "200"), raw("content-type", "text/event-stream; charset=utf-8")}}}}},
	}
	for range 19 {
		msgs = append(msgs, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: sseEvent(200)}}})
	}
	usage := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1750170000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}` + "\n\ndata: [DONE]\n\n"
	msgs = append(msgs, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(usage), EndOfStream: true}}})
	s := New(Options{Settler: settled{}})
	ms := &memStream{msgs: msgs}
	b.ReportAllocs()
	for b.Loop() {
		ms.i = 0
		if err := s.process(ms); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Drain(context.Background()); err != nil {
		b.Fatal(err)
	}
	if s.stats.Usage.Load() == 0 || s.stats.Errors.Load() != 0 {
		b.Fatalf("%d settled from usage, %d errors", s.stats.Usage.Load(), s.stats.Errors.Load())
	}
}
