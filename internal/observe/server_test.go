package observe_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/funds"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/observe"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/pricing"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/store"
)

// price: 1 minor unit per input token, half that per cached one, 2 per
// output token.
var price = pricing.Charge{Outcome: pricing.Metered, Tokens: true,
	Price: pricing.Price{Input: money.NanosPerMinor, CachedInput: money.NanosPerMinor / 2, Output: 2 * money.NanosPerMinor}}

// Each test reservation holds 2,000 input and 100 output tokens: 2,200.
const (
	estimateIn, estimateOut = 2000, 100
	estimate                = 2200
	startBalance            = 1_000_000
)

// world is one keygate's money and its ExternalProcessor on a real gRPC
// server, with a client as Envoy's ext_proc filter.
type world struct {
	ctx    context.Context
	st     *store.Store
	funds  *funds.Funds
	set    *settle.Settler
	obs    *observe.Server
	client extprocv3.ExternalProcessorClient
}

func start(t *testing.T, o observe.Options) *world {
	t.Helper()
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	_, js := natstest.Connect(t, ns)
	so := store.DefaultOptions()
	so.HoldTTL = time.Hour
	st, err := store.Open(ctx, js, so)
	if err != nil {
		t.Fatal(err)
	}
	f := funds.New(st, funds.Options{ID: "kg0"})
	set := settle.New(settle.Options{ID: "kg0", Store: st, Funds: f})
	go func() {
		if err := set.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	if _, err := st.UpdateAccount(ctx, "acme", true, func(a *store.Account) error { a.Balance = startBalance; return nil }); err != nil {
		t.Fatal(err)
	}
	o.Settler = set
	w := serveWith(t, observe.New(o))
	w.ctx, w.st, w.funds, w.set = ctx, st, f, set
	return w
}

// reserve holds a request's estimate, as keygate's check does, and
// returns its reservation id.
func (w *world) reserve(t *testing.T) string {
	t.Helper()
	est, _ := price.Estimate(estimateIn, estimateOut)
	r := w.funds.Hold(w.ctx, "acme", est)
	for r.Unavailable {
		r = w.funds.Hold(w.ctx, "acme", est)
	}
	if !r.OK {
		t.Fatalf("hold of %d: %+v", est, r)
	}
	now := time.Now()
	res := settle.Reservation{Account: "acme", Key: "key_1", Model: "m", Currency: "USD",
		Charge: settle.ChargeOf(price), InputTokens: estimateIn, OutputTokens: estimateOut, Estimate: est, Held: est, Created: now, Expires: now.Add(time.Hour)}
	return w.set.Reserve(res)
}

// settlement waits for reservation id's settlement and returns it.
func (w *world) settlement(t *testing.T, id string) *settle.Settlement {
	t.Helper()
	var st settle.Settlement
	poll.Until(t, 10*time.Second, "settled "+id, func() bool {
		e, err := w.st.Accounts().Get(w.ctx, store.SettlementEntry("acme", id))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			t.Fatal(err)
		}
		return true
	})
	return &st
}

func (w *world) balance(t *testing.T) money.Exact {
	t.Helper()
	a, _, err := w.st.Account(w.ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	return a.Exact()
}

// Messages as Envoy's ext_proc filter sends them in observability mode,
// header values in raw_value.

func header(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }

func requestHeaders(hs ...*corev3.HeaderValue) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}}}}
}

func responseHeaders(status, ctype string, end bool, more ...*corev3.HeaderValue) *extprocv3.ProcessingRequest {
	hs := append([]*corev3.HeaderValue{header(":status", status), header("content-type", ctype)}, more...)
	return &extprocv3.ProcessingRequest{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: end}}}
}

func responseBody(b []byte, end bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: b, EndOfStream: end}}}
}

func responseTrailers() *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_ResponseTrailers{
		ResponseTrailers: &extprocv3.HttpTrailers{Trailers: &corev3.HeaderMap{}}}}
}

// chunks splits b into body messages of n bytes, the last marked as the
// end if end.
func chunks(b []byte, n int, end bool) []*extprocv3.ProcessingRequest {
	var out []*extprocv3.ProcessingRequest
	for len(b) > n {
		out = append(out, responseBody(b[:n], false))
		b = b[n:]
	}
	return append(out, responseBody(b, end))
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "openai", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// play sends msgs on a new Process stream and waits for keygate to close
// it. With cut, it closes the stream after them, as Envoy does (after its
// deferred_close_timeout) when the client has gone away.
func (w *world) play(t *testing.T, msgs []*extprocv3.ProcessingRequest, cut bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	ps, err := w.client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := ps.Send(m); err != nil {
			break // closed by keygate
		}
	}
	if cut {
		if err := ps.CloseSend(); err != nil {
			t.Fatal(err)
		}
	}
	for {
		_, err := ps.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("keygate did not close the stream: %v", err)
		}
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Each response, sent as Envoy streams it, settles its reservation with
// the status and cost of the rules; the balance ends at the start less
// the sum of the costs, and nothing stays held.
func TestSettlesFromResponses(t *testing.T) {
	w := start(t, observe.Options{MaxBody: 4096})
	const sse, js = "text/event-stream; charset=utf-8", "application/json"
	chat, stream, streamUsage := testdata(t, "chat_completion.json"), testdata(t, "chat_stream.sse"), testdata(t, "chat_stream_usage.sse")
	large := append(bytes.Repeat([]byte(" "), 4096), chat...) // valid JSON with usage, over MaxBody
	cases := []struct {
		name   string
		resp   []*extprocv3.ProcessingRequest // after the request headers
		cut    bool
		status string
		cost   int64 // minor units
	}{
		// 93 uncached + 1024 cached / 2 + 46 output × 2
		{"JSON chat completion", append([]*extprocv3.ProcessingRequest{responseHeaders("200", js, false)}, chunks(chat, 100, true)...), false, settle.StatusSettled, 697},
		{"JSON in gzip", append([]*extprocv3.ProcessingRequest{responseHeaders("200", js, false, header("content-encoding", "gzip"))}, chunks(gzipped(t, chat), 50, true)...), false, settle.StatusSettled, 697},
		{"chat stream with usage", append([]*extprocv3.ProcessingRequest{responseHeaders("200", sse, false)}, chunks(streamUsage, 37, true)...), false, settle.StatusSettled, 19 + 2*10},
		{"Responses API stream", append([]*extprocv3.ProcessingRequest{responseHeaders("200", sse, false)}, chunks(testdata(t, "responses_stream.sse"), 200, true)...), false, settle.StatusSettled, 37 + 2*11},
		{"stream ended by trailers", append(append([]*extprocv3.ProcessingRequest{responseHeaders("200", sse, false)}, chunks(streamUsage, 500, false)...), responseTrailers()), false, settle.StatusSettled, 39},
		{"chat stream without usage", append([]*extprocv3.ProcessingRequest{responseHeaders("200", sse, false)}, chunks(stream, 64, true)...), false, settle.StatusNoUsage, estimate},
		{"error 400", append([]*extprocv3.ProcessingRequest{responseHeaders("400", js, false)}, chunks(testdata(t, "error.json"), 64, true)...), false, settle.StatusFailed, 0},
		{"error 500", []*extprocv3.ProcessingRequest{responseHeaders("500", js, false), responseBody(testdata(t, "error.json"), true)}, false, settle.StatusFailed, 0},
		{"503 from the proxy, no body", []*extprocv3.ProcessingRequest{responseHeaders("503", "text/plain", true)}, false, settle.StatusFailed, 0},
		{"cut before the response headers", nil, true, settle.StatusFailed, 0},
		{"cut after the headers, before the body", []*extprocv3.ProcessingRequest{responseHeaders("200", sse, false)}, true, settle.StatusFailed, 0},
		{"cut mid-stream without usage", append([]*extprocv3.ProcessingRequest{responseHeaders("200", sse, false)}, chunks(stream[:len(stream)/2], 64, false)...), true, settle.StatusNoUsage, estimate},
		{"cut mid-JSON", append([]*extprocv3.ProcessingRequest{responseHeaders("200", js, false)}, chunks(chat[:500], 100, false)...), true, settle.StatusNoUsage, estimate},
		{"JSON over MaxBody", append([]*extprocv3.ProcessingRequest{responseHeaders("200", js, false)}, chunks(large, 1000, true)...), false, settle.StatusNoUsage, estimate},
		{"a body not read", append([]*extprocv3.ProcessingRequest{responseHeaders("200", "audio/mpeg", false)}, chunks(make([]byte, 3000), 1000, true)...), false, settle.StatusNoUsage, estimate},
		{"JSON in brotli", []*extprocv3.ProcessingRequest{responseHeaders("200", js, false, header("content-encoding", "br")), responseBody([]byte{1, 2, 3}, true)}, false, settle.StatusNoUsage, estimate},
		{"an empty body", []*extprocv3.ProcessingRequest{responseHeaders("204", "", true)}, false, settle.StatusNoUsage, estimate},
	}
	var spent int64
	for _, c := range cases {
		id := w.reserve(t)
		msgs := append([]*extprocv3.ProcessingRequest{requestHeaders(header(":path", "/v1/chat/completions"), header(authz.ReservationHeader, id))}, c.resp...)
		w.play(t, msgs, c.cut)
		st := w.settlement(t, id)
		if st.Status != c.status || st.Cost != c.cost*money.NanosPerMinor {
			t.Errorf("%s: settled %s at %d nanos, want %s at %d minor units", c.name, st.Status, st.Cost, c.status, c.cost)
		}
		spent += c.cost
	}
	if got, want := w.balance(t), (money.Exact{Minor: startBalance - spent}); got != want {
		t.Errorf("balance %v, want %v", got, want)
	}
	if _, held := w.funds.Balance("acme"); held != 0 {
		t.Errorf("%d nanos still held", held)
	}
	s := w.obs.Stats()
	if s.Streams.Load() != uint64(len(cases)) || s.Usage.Load() != 5 || s.Failed.Load() != 5 || s.Estimate.Load() != 7 || s.Errors.Load() != 0 {
		t.Errorf("stats: %d streams, %d usage, %d failed, %d estimate, %d errors", s.Streams.Load(), s.Usage.Load(), s.Failed.Load(), s.Estimate.Load(), s.Errors.Load())
	}
}

// keygate closes a stream once it needs no more of it, before the
// response's end: at once for a request without a reservation, at an
// error status, at the first byte of a body it does not read. It settles
// nothing for a request without a usable reservation header.
func TestClosesEarly(t *testing.T) {
	w := start(t, observe.Options{})
	body := chunks(make([]byte, 5000), 1000, false) // never the end
	for _, c := range []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
	}{
		{"not metered", append([]*extprocv3.ProcessingRequest{requestHeaders(header(":path", "/v1/models")), responseHeaders("200", "application/json", false)}, body...)},
		{"a reservation header keygate never writes", append([]*extprocv3.ProcessingRequest{requestHeaders(header(authz.ReservationHeader, "abc")), responseHeaders("200", "application/json", false)}, body...)},
		{"two different reservation headers", append([]*extprocv3.ProcessingRequest{requestHeaders(header(authz.ReservationHeader, w.reserve(t)), header(authz.ReservationHeader, w.reserve(t))), responseHeaders("200", "application/json", false)}, body...)},
		{"the response first", append([]*extprocv3.ProcessingRequest{responseHeaders("200", "application/json", false)}, body...)},
		{"status 429", append([]*extprocv3.ProcessingRequest{requestHeaders(header(authz.ReservationHeader, w.reserve(t))), responseHeaders("429", "application/json", false)}, body...)},
		{"a body not read", append([]*extprocv3.ProcessingRequest{requestHeaders(header(authz.ReservationHeader, w.reserve(t))), responseHeaders("200", "image/png", false)}, body...)},
	} {
		t.Run(c.name, func(t *testing.T) { w.play(t, c.msgs, false) })
	}
	poll.Until(t, 10*time.Second, "two settlements", func() bool { s := w.obs.Stats(); return s.Failed.Load() == 1 && s.Estimate.Load() == 1 })
	if got := w.obs.Stats().Errors.Load(); got != 2 {
		t.Errorf("%d errors, want 2 (the unusable reservation headers)", got)
	}
}

// A filter not in observability mode waits for an answer to each
// message: keygate answers each with an empty one, and settles all the
// same.
func TestAnswersWithoutObservabilityMode(t *testing.T) {
	w := start(t, observe.Options{})
	id := w.reserve(t)
	msgs := append([]*extprocv3.ProcessingRequest{requestHeaders(header(authz.ReservationHeader, id)), responseHeaders("200", "text/event-stream", false)},
		chunks(testdata(t, "chat_stream_usage.sse"), 300, true)...)
	ps, err := w.client.Process(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		m.ObservabilityMode = false
		if err := ps.Send(m); err != nil {
			t.Fatal(err)
		}
		resp, err := ps.Recv()
		if i == len(msgs)-1 {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("after the last message: %v, %v; want the stream closed", resp, err)
			}
			break
		}
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		want := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
		switch i {
		case 0:
			want.Response = &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}
		case 1:
			want.Response = &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}
		}
		if !proto.Equal(resp, want) {
			t.Fatalf("message %d answered %v, want %v", i, resp, want)
		}
	}
	if st := w.settlement(t, id); st.Status != settle.StatusSettled || st.Cost != 39*money.NanosPerMinor {
		t.Fatalf("settled %+v", st)
	}
}

// Settlements run beside the streams, at most Parallel at once, each
// within Timeout: a settler that does not answer costs errors, never a
// stream.
func TestSettlementsBounded(t *testing.T) {
	stuck := &blockingSettler{release: make(chan struct{})}
	w := serveWith(t, observe.New(observe.Options{Settler: stuck, Parallel: 2}))
	failed := []*extprocv3.ProcessingRequest{requestHeaders(header(authz.ReservationHeader, "res_kg0_0_0_acme")), responseHeaders("500", "application/json", true)}
	for range 5 {
		w.play(t, failed, false)
	}
	poll.Until(t, 10*time.Second, "two settlements in progress", func() bool { return stuck.now.Load() == 2 })
	close(stuck.release)
	poll.Until(t, 10*time.Second, "five settlements failed", func() bool { return w.obs.Stats().Errors.Load() == 5 })
	if n := stuck.most.Load(); n != 2 {
		t.Errorf("%d settlements at once, want 2", n)
	}
	if err := w.obs.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}

	w = serveWith(t, observe.New(observe.Options{Settler: &blockingSettler{}, Timeout: 50 * time.Millisecond}))
	w.play(t, failed, false)
	poll.Until(t, 10*time.Second, "a settlement timed out", func() bool { return w.obs.Stats().Errors.Load() == 1 })
}

// serveWith serves obs on a real gRPC server.
func serveWith(t *testing.T, obs *observe.Server) *world {
	t.Helper()
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, obs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &world{ctx: t.Context(), obs: obs, client: extprocv3.NewExternalProcessorClient(cc)}
}

// blockingSettler settles nothing: each call waits for its context or
// for release to close, and fails.
type blockingSettler struct {
	release   chan struct{}
	now, most atomic.Int64
}

func (b *blockingSettler) Settle(ctx context.Context, id string, o settle.Outcome) (*settle.Settlement, error) {
	n := b.now.Add(1)
	defer b.now.Add(-1)
	for m := b.most.Load(); n > m && !b.most.CompareAndSwap(m, n); m = b.most.Load() {
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.release:
		return nil, errors.New("released")
	}
}

// A stream reset mid-response (as Envoy resets it, when it closes it after
// the client went away) settles with what it showed. The filter here
// waits for answers, so that the test knows what keygate has read before
// the reset.
func TestResetMidResponse(t *testing.T) {
	w := start(t, observe.Options{})
	stream := testdata(t, "chat_stream.sse")
	for _, c := range []struct {
		name   string
		msgs   int // of the response sent before the reset
		status string
		cost   int64
	}{
		{"after the headers", 1, settle.StatusFailed, 0},
		{"after some output", 3, settle.StatusNoUsage, estimate},
	} {
		id := w.reserve(t)
		msgs := append([]*extprocv3.ProcessingRequest{requestHeaders(header(authz.ReservationHeader, id)), responseHeaders("200", "text/event-stream", false)},
			chunks(stream, 100, true)...)
		ctx, cancel := context.WithCancel(w.ctx)
		ps, err := w.client.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs[:1+c.msgs] {
			m.ObservabilityMode = false
			if err := ps.Send(m); err != nil {
				t.Fatal(err)
			}
			if _, err := ps.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		if st := w.settlement(t, id); st.Status != c.status || st.Cost != c.cost*money.NanosPerMinor {
			t.Errorf("%s: settled %s at %d nanos, want %s at %d minor units", c.name, st.Status, st.Cost, c.status, c.cost)
		}
	}
	if got := w.obs.Stats().Errors.Load(); got != 0 {
		t.Errorf("%d errors: a reset is how Envoy ends a stream", got)
	}
}

// TestBufferedBodiesBounded: the JSON bodies all streams keep are bounded
// together (MaxBuffered), not only each (MaxBody): a body that finds no
// room settles at its estimate, and the room comes back when a stream
// ends.
func TestBufferedBodiesBounded(t *testing.T) {
	w := start(t, observe.Options{MaxBody: 4096, MaxBuffered: 6000})
	chat := testdata(t, "chat_completion.json")
	padded := append(bytes.Repeat([]byte(" "), 3000-len(chat)), chat...) // 3,000 bytes of JSON with usage
	// One stream keeps 4,000 bytes of a body that has not ended.
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	held, err := w.client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append([]*extprocv3.ProcessingRequest{requestHeaders(header(authz.ReservationHeader, w.reserve(t))),
		responseHeaders("200", "application/json", false)}, chunks(make([]byte, 4000), 1000, false)...) {
		if err := held.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 10*time.Second, "4,000 bytes kept", func() bool { return w.obs.Buffered() == 4000 })
	settleBody := func(body []byte) *settle.Settlement {
		id := w.reserve(t)
		w.play(t, append([]*extprocv3.ProcessingRequest{requestHeaders(header(authz.ReservationHeader, id)),
			responseHeaders("200", "application/json", false)}, chunks(body, 1000, true)...), false)
		return w.settlement(t, id)
	}
	if st := settleBody(padded); st.Status != settle.StatusNoUsage {
		t.Errorf("3,000 bytes with 2,000 free: settled %s, want %s (the estimate)", st.Status, settle.StatusNoUsage)
	}
	if got := w.obs.Buffered(); got != 4000 {
		t.Errorf("%d bytes kept after the refused body, want 4,000", got)
	}
	cancel() // the stream holding 4,000 bytes ends
	poll.Until(t, 10*time.Second, "the room given back", func() bool { return w.obs.Buffered() == 0 })
	if st := settleBody(padded); st.Status != settle.StatusSettled {
		t.Errorf("3,000 bytes with 6,000 free: settled %s, want %s (from its usage)", st.Status, settle.StatusSettled)
	}
}
