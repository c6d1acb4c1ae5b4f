package serve

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/config"
)

// TestCodecRoundTrip marshals responses of every buffer size the codec
// uses, each into a buffer a larger one used before, and reads them back.
func TestCodecRoundTrip(t *testing.T) {
	c := newCodec(nil, nil)
	for _, n := range []int{4000, 1500, 10, 0, smallBufferCap, 3 * smallBufferCap} {
		want := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized}, Body: strings.Repeat("x", n),
		}}}
		for range 3 {
			out, err := c.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			got := &authv3.CheckResponse{}
			if err := c.Unmarshal(out, got); err != nil {
				t.Fatalf("body of %d bytes: %v", n, err)
			}
			out.Free()
			if !proto.Equal(got, want) {
				t.Fatalf("body of %d bytes: read back a different response", n)
			}
		}
	}
}

// TestCodecDecodesRequestsInPieces: a request that arrives in several
// buffers reads the same as one in a single buffer.
func TestCodecDecodesRequestsInPieces(t *testing.T) {
	srv := authz.New(authz.Options{Credentials: config.Default().Credentials}, nil, nil)
	c := newCodec(srv.Decoder(), nil)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "POST", Path: "/v1/chat/completions", Body: strings.Repeat("b", 100_000),
		Headers: map[string]string{"authorization": "Bearer sk-abc", "user-agent": "x"},
	}}}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, pieces := range []mem.BufferSlice{
		{mem.SliceBuffer(b)},
		{mem.SliceBuffer(b[:7]), mem.SliceBuffer(b[7:50_000]), mem.SliceBuffer(b[50_000:])},
	} {
		got := authz.GetRequest()
		if err := c.Unmarshal(pieces, got); err != nil {
			t.Fatal(err)
		}
		if got.Method != "POST" || got.Path != "/v1/chat/completions" {
			t.Fatalf("%d pieces: read %s %s", len(pieces), got.Method, got.Path)
		}
		if resp := srv.Decide(t.Context(), got); resp.GetDeniedResponse().GetBody() == "" || !strings.Contains(resp.GetDeniedResponse().GetBody(), "invalid_api_key") {
			t.Fatalf("%d pieces: the key read was not the one sent: %v", len(pieces), resp.GetDeniedResponse().GetBody())
		}
		authz.PutRequest(got)
	}
}

// TestCodecCarriesProcessMessages: the messages of the ExternalProcessor
// service, served on the same server, go through the codec unchanged.
func TestCodecCarriesProcessMessages(t *testing.T) {
	c := newCodec(authz.New(authz.Options{Credentials: config.Default().Credentials}, nil, nil).Decoder(), nil)
	for _, pair := range [][2]proto.Message{
		{&extprocv3.ProcessingRequest{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: []byte(strings.Repeat("data: {}\n\n", 500)), EndOfStream: true}}}, &extprocv3.ProcessingRequest{}},
		{&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: authz.ReservationHeader, RawValue: []byte("res_x")}}}}}}, &extprocv3.ProcessingRequest{}},
		{&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}, &extprocv3.ProcessingResponse{}},
	} {
		out, err := c.Marshal(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Unmarshal(out, pair[1]); err != nil {
			t.Fatal(err)
		}
		out.Free()
		if !proto.Equal(pair[0], pair[1]) {
			t.Fatalf("%v read back as %v", pair[0], pair[1])
		}
	}
}
