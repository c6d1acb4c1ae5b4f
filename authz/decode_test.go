package authz

import (
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/internal/config"
)

// testExtractor reads keys from authorization (Bearer) and x-api-key.
var testExtractor = &extractor{sources: []config.Credential{{Header: "authorization", Scheme: "Bearer"}, {Header: "x-api-key"}}}

// sameRequest reports whether two Requests say the same: the method, the
// path, the scope, the credential headers (the named ones in any order,
// as a map has none), the body, the meta headers and the peer.
func sameRequest(a, b *Request) bool {
	if a.Method != b.Method || a.Path != b.Path || a.Scope != b.Scope || a.HasScope != b.HasScope || !slices.Equal(a.raw, b.raw) ||
		a.HasBody != b.HasBody || string(a.Body) != string(b.Body) || a.meta != b.meta || a.conflicts != b.conflicts || a.peer != b.peer {
		return false
	}
	key := func(h credHeader) string { return h.name }
	sa, sb := slices.Clone(a.named), slices.Clone(b.named)
	slices.SortFunc(sa, func(x, y credHeader) int { return strings.Compare(key(x), key(y)) })
	slices.SortFunc(sb, func(x, y credHeader) int { return strings.Compare(key(x), key(y)) })
	return slices.Equal(sa, sb)
}

// envoyRequest is a Check as Envoy sends it, with peers, time, TLS-free
// connection details and a body.
func envoyRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/a/sa/b", Labels: map[string]string{"app": "client"},
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "10.0.0.5", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 41000}}}}},
		Destination: &authv3.AttributeContext_Peer{Service: "backend"},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "1234", Method: "POST", Path: "/v1/chat/completions?stream=true", Host: "api.example.com", Scheme: "https", Protocol: "HTTP/2", Size: 42,
				Headers: map[string]string{":method": "POST", "authorization": "Bearer sk-abc", "x-api-key": "sk-def", "user-agent": "OpenAI/Python",
					"x-forwarded-for": "198.51.100.9, 10.0.0.5"},
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: "Authorization", RawValue: []byte("Bearer sk-abc")}, {Key: "accept", Value: "*/*"}, {Key: "x-api-key", Value: "sk-def"},
					{Key: "X-Forwarded-For", RawValue: []byte("198.51.100.9, 10.0.0.5")},
				}},
				Body: `{"model":"gpt"}`,
			},
		},
		ContextExtensions: map[string]string{ScopeExtension: "chat:send", "other": "x"},
	}}
}

func TestDecodeKeepsWhatCheckUses(t *testing.T) {
	d := &Decoder{x: testExtractor}
	full := envoyRequest()
	b, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	got := GetRequest()
	defer PutRequest(got)
	if err := d.DecodeRequest(b, got); err != nil {
		t.Fatal(err)
	}
	if want := testExtractor.requestOf(full); !sameRequest(got, want) {
		t.Fatalf("DecodeRequest gave\n%+v\nwant\n%+v", got, want)
	}
	if len(got.named) != 2 || len(got.raw) != 2 || got.Scope != "chat:send" || got.peer != "10.0.0.5" || got.xff() != "198.51.100.9, 10.0.0.5" {
		t.Fatalf("kept %+v", got)
	}
}

// addressOf is an Address with a socket address, a pipe or an internal
// address, as Envoy may send for the source peer.
func addressOf(kind, addr string) *corev3.Address {
	switch kind {
	case "pipe":
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: addr}}}
	case "internal":
		return &corev3.Address{Address: &corev3.Address_EnvoyInternalAddress{EnvoyInternalAddress: &corev3.EnvoyInternalAddress{
			AddressNameSpecifier: &corev3.EnvoyInternalAddress_ServerListenerName{ServerListenerName: addr}}}}
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: addr}}}
}

// peerRequest is a CheckRequest with only a source address.
func peerRequest(a *corev3.Address) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Address: a}}}
}

// TestDecodePeer: the source's socket address is read as proto.Unmarshal
// reads it when parts of one message repeat: the oneof's last member
// wins, a socket address merges into the one before it.
func TestDecodePeer(t *testing.T) {
	d := &Decoder{x: testExtractor}
	marshal := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }
	socket := marshal(peerRequest(addressOf("socket", "10.0.0.5")))
	pipe := marshal(peerRequest(addressOf("pipe", "/run/envoy.sock")))
	internal := marshal(peerRequest(addressOf("internal", "l")))
	other := marshal(peerRequest(addressOf("socket", "2001:db8::1")))
	port := marshal(peerRequest(&corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}}))
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"socket", socket, "10.0.0.5"},
		{"pipe", pipe, ""},
		{"socket then pipe", slices.Concat(socket, pipe), ""},
		{"socket then internal", slices.Concat(socket, internal), ""},
		{"pipe then socket", slices.Concat(pipe, socket), "10.0.0.5"},
		{"socket then another", slices.Concat(socket, other), "2001:db8::1"},
		{"socket then a port", slices.Concat(socket, port), "10.0.0.5"},
		{"socket, pipe, a port", slices.Concat(socket, pipe, port), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := &authv3.CheckRequest{}
			if err := proto.Unmarshal(tc.b, full); err != nil {
				t.Fatal(err)
			}
			got := GetRequest()
			defer PutRequest(got)
			if err := d.DecodeRequest(tc.b, got); err != nil {
				t.Fatal(err)
			}
			if want := testExtractor.requestOf(full); got.peer != tc.want || want.peer != tc.want {
				t.Fatalf("peer %q, proto.Unmarshal's %q, want %q", got.peer, want.peer, tc.want)
			}
		})
	}
}

// Two different X-Forwarded-For values in header_map leave the address
// unknown; metering does not count X-Forwarded-For as ambiguous.
func TestDecodeXFFTwice(t *testing.T) {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "x-forwarded-for", RawValue: []byte("198.51.100.9, 10.0.0.5")}, {Key: "X-Forwarded-For", RawValue: []byte("6.6.6.6, 10.0.0.5")},
		}},
	}}}}
	b, _ := proto.Marshal(req)
	got := GetRequest()
	defer PutRequest(got)
	if err := (&Decoder{x: testExtractor}).DecodeRequest(b, got); err != nil {
		t.Fatal(err)
	}
	if got.xff() != "" || got.ambiguous() || !sameRequest(got, testExtractor.requestOf(req)) {
		t.Fatalf("xff %q, ambiguous %v", got.xff(), got.ambiguous())
	}
}

// FuzzDecode checks DecodeRequest against proto.Unmarshal: whenever that
// reads the bytes, DecodeRequest reads the same method, path, scope and
// credential headers; it fails only where proto.Unmarshal fails too.
func FuzzDecode(f *testing.F) {
	d := &Decoder{x: testExtractor}
	seed := func(m proto.Message) {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	seed(envoyRequest())
	seed(&authv3.CheckRequest{})
	twice, _ := proto.Marshal(envoyRequest()) // fields repeat: messages merge, scalars and map keys take the last
	f.Add(append(twice, twice...))
	f.Add(protowire.AppendTag(nil, fieldAttributes, protowire.VarintType))
	f.Add([]byte("\x0a\x05\x22\x03\x12\x01\xff"))         // invalid UTF-8 in a field DecodeRequest skips
	f.Add([]byte("\x0a\x07\x22\x05\x12\x03\x12\x01\xff")) // invalid UTF-8 in the method
	f.Add(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType))
	pipe, _ := proto.Marshal(peerRequest(addressOf("pipe", "/run/envoy.sock")))
	f.Add(append(slices.Clone(twice), pipe...)) // the source's oneof: the last member wins
	f.Add(append(slices.Clone(pipe), twice...))
	f.Fuzz(func(t *testing.T, b []byte) {
		full := &authv3.CheckRequest{}
		fullErr := proto.Unmarshal(b, full)
		got := GetRequest()
		defer PutRequest(got)
		err := d.DecodeRequest(b, got)
		switch {
		case err != nil && fullErr == nil:
			t.Fatalf("DecodeRequest failed (%v) where proto.Unmarshal did not", err)
		case fullErr != nil:
			return
		}
		if want := testExtractor.requestOf(full); !sameRequest(got, want) {
			t.Fatalf("DecodeRequest gave\n%+v\nproto.Unmarshal:\n%+v", got, want)
		}
	})
}

// BenchmarkDecodeRequest reads a request as Envoy sends it with
// DecodeRequest into a pooled Request; BenchmarkDecodeRequestProto with
// proto.Unmarshal, as gRPC's codec does.
func BenchmarkDecodeRequest(b *testing.B) {
	d := &Decoder{x: testExtractor}
	buf, err := proto.Marshal(envoyRequest())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r := GetRequest()
		if err := d.DecodeRequest(buf, r); err != nil {
			b.Fatal(err)
		}
		PutRequest(r)
	}
}

func BenchmarkDecodeRequestProto(b *testing.B) {
	buf, err := proto.Marshal(envoyRequest())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := proto.Unmarshal(buf, &authv3.CheckRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}

// requestOf is the Request of a CheckRequest, newly allocated.
func (x *extractor) requestOf(req *authv3.CheckRequest) *Request {
	r := &Request{}
	x.fill(r, req)
	return r
}
