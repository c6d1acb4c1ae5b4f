package authz

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// projected is what Decode keeps of a request that proto.Unmarshal read.
func projected(d *Decoder, full *authv3.CheckRequest) *authv3.CheckRequest {
	a := full.GetAttributes()
	if a == nil {
		return &authv3.CheckRequest{}
	}
	out := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: a.GetContextExtensions()}}
	r := a.GetRequest()
	if r == nil {
		return out
	}
	out.Attributes.Request = &authv3.AttributeContext_Request{}
	h := r.GetHttp()
	if h == nil {
		return out
	}
	ph := &authv3.AttributeContext_HttpRequest{Method: h.GetMethod(), Path: h.GetPath()}
	for k, v := range h.GetHeaders() {
		if _, ok := d.credential([]byte(k)); ok {
			if ph.Headers == nil {
				ph.Headers = map[string]string{}
			}
			ph.Headers[k] = v
		}
	}
	if hm := h.GetHeaderMap(); hm != nil {
		ph.HeaderMap = &corev3.HeaderMap{}
		for _, hv := range hm.GetHeaders() {
			if _, ok := d.credential([]byte(hv.GetKey())); ok {
				ph.HeaderMap.Headers = append(ph.HeaderMap.Headers, &corev3.HeaderValue{Key: hv.GetKey(), Value: hv.GetValue(), RawValue: hv.GetRawValue()})
			}
		}
	}
	out.Attributes.Request.Http = ph
	return out
}

// envoyRequest is a Check as Envoy sends it, with peers, time, TLS-free
// connection details and a body.
func envoyRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/a/sa/b", Labels: map[string]string{"app": "client"}},
		Destination: &authv3.AttributeContext_Peer{Service: "backend"},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "1234", Method: "POST", Path: "/v1/chat/completions?stream=true", Host: "api.example.com", Scheme: "https", Protocol: "HTTP/2", Size: 42,
				Headers: map[string]string{":method": "POST", "authorization": "Bearer sk-abc", "x-api-key": "sk-def", "user-agent": "OpenAI/Python"},
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: "Authorization", RawValue: []byte("Bearer sk-abc")}, {Key: "accept", Value: "*/*"}, {Key: "x-api-key", Value: "sk-def"},
				}},
				Body: `{"model":"gpt"}`,
			},
		},
		ContextExtensions: map[string]string{ScopeExtension: "chat:send", "other": "x"},
	}}
}

func TestDecodeKeepsWhatCheckUses(t *testing.T) {
	d := &Decoder{headers: []string{"authorization", "x-api-key"}}
	full := envoyRequest()
	b, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	got := &authv3.CheckRequest{}
	if err := d.Decode(b, got); err != nil {
		t.Fatal(err)
	}
	if want := projected(d, full); !proto.Equal(got, want) {
		t.Fatalf("Decode gave\n%v\nwant\n%v", got, want)
	}
	if len(got.GetAttributes().GetRequest().GetHttp().GetHeaders()) != 2 || len(got.GetAttributes().GetRequest().GetHttp().GetHeaderMap().GetHeaders()) != 2 {
		t.Fatalf("kept headers other than the credentials: %v", got)
	}
}

// FuzzDecode checks Decode against proto.Unmarshal: whenever that reads
// the bytes, Decode reads the same method, path, context extensions and
// credential headers; Decode fails only where proto.Unmarshal fails too.
func FuzzDecode(f *testing.F) {
	d := &Decoder{headers: []string{"authorization", "x-api-key"}}
	seed := func(m proto.Message) {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	seed(envoyRequest())
	seed(&authv3.CheckRequest{})
	twice, _ := proto.Marshal(envoyRequest()) // fields repeat: messages merge, scalars and map keys take the last
	f.Add(append(twice, twice...))
	f.Add(protowire.AppendTag(nil, fieldAttributes, protowire.VarintType))
	f.Add([]byte("\x0a\x05\x22\x03\x12\x01\xff"))         // invalid UTF-8 in a field Decode skips
	f.Add([]byte("\x0a\x07\x22\x05\x12\x03\x12\x01\xff")) // invalid UTF-8 in the method
	f.Add(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType))
	f.Fuzz(func(t *testing.T, b []byte) {
		full := &authv3.CheckRequest{}
		fullErr := proto.Unmarshal(b, full)
		got := &authv3.CheckRequest{}
		err := d.Decode(b, got)
		switch {
		case err != nil && fullErr == nil:
			t.Fatalf("Decode failed (%v) where proto.Unmarshal did not", err)
		case fullErr != nil:
			return
		}
		if want := projected(d, full); !proto.Equal(got, want) {
			t.Fatalf("Decode gave\n%v\nproto.Unmarshal, projected:\n%v", got, want)
		}
	})
}

// BenchmarkDecodeRequest reads a request as Envoy sends it with Decode;
// BenchmarkDecodeRequestProto with proto.Unmarshal, as gRPC's codec does.
func BenchmarkDecodeRequest(b *testing.B) {
	d := &Decoder{headers: []string{"authorization", "x-api-key"}}
	benchDecode(b, func(buf []byte, req *authv3.CheckRequest) error { return d.Decode(buf, req) })
}

func BenchmarkDecodeRequestProto(b *testing.B) {
	benchDecode(b, func(buf []byte, req *authv3.CheckRequest) error { return proto.Unmarshal(buf, req) })
}

func benchDecode(b *testing.B, decode func([]byte, *authv3.CheckRequest) error) {
	buf, err := proto.Marshal(envoyRequest())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := decode(buf, &authv3.CheckRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}
