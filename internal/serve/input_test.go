package serve_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// rawCodec sends and receives messages as bytes, so a test can send what
// Envoy may send and a Go client would refuse to marshal.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// checkRaw sends b as a CheckRequest and returns the response.
func (e *env) checkRaw(b []byte) (*authv3.CheckResponse, error) {
	var out []byte
	err := e.conn.Invoke(e.ctx, "/envoy.service.auth.v3.Authorization/Check", &b, &out, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return nil, err
	}
	resp := &authv3.CheckResponse{}
	return resp, proto.Unmarshal(out, resp)
}

// TestInvalidUTF8IsDecided: Envoy sends header bytes as they came when
// encode_raw_headers is off, invalid UTF-8 included. keygate decides such
// requests instead of failing the call (which fail-closed Envoy would
// turn into a bare 403); only bytes that are not a protobuf message are a
// gRPC error, and those are counted.
func TestInvalidUTF8IsDecided(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	key, k := createKey(t, e.ctx, st, "acme")
	// Unlimited: what is decided here is the input, not a lease.
	editKey(t, e.ctx, st, k.ID, func(k *store.Key) { k.NoRateLimit = true })
	setBalance(t, e.ctx, st, "acme", 100)
	waitCode(t, e, key, 200)
	marshal := func(method string, headers map[string]string) []byte {
		b, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: "/v1/models", Headers: headers},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		return bytes.ReplaceAll(b, []byte("@@@@"), []byte("\xff\xfe\xfd\xfc"))
	}
	cases := []struct {
		name string
		b    []byte
		want int
	}{
		{"user-agent", marshal("GET", map[string]string{"authorization": "Bearer " + key, "user-agent": "curl@@@@"}), 200},
		{"header name", marshal("GET", map[string]string{"authorization": "Bearer " + key, "x-@@@@": "1"}), 200},
		{"method", marshal("GET@@@@", map[string]string{"authorization": "Bearer " + key}), 200},
		{"credential", marshal("GET", map[string]string{"authorization": "Bearer " + key[:len(key)-4] + "@@@@"}), 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := e.checkRaw(c.b)
			if err != nil {
				t.Fatalf("gRPC error: %v", err)
			}
			got := 200
			if d := resp.GetDeniedResponse(); d != nil {
				got = int(d.GetStatus().GetCode())
			}
			if got != c.want {
				t.Fatalf("answered %d, want %d: %v", got, c.want, resp)
			}
		})
	}
	if _, err := e.checkRaw([]byte{0x0a, 0xff}); status.Code(err) != codes.Internal {
		t.Fatalf("garbage answered %v, want an Internal error", err)
	}
	if err := e.conn.Invoke(e.ctx, "/envoy.service.auth.v3.Authorization/Nope", &[]byte{}, new([]byte), grpc.ForceCodecV2(rawCodec{})); status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method answered %v", err)
	}
	metrics := e.metrics(t)
	for _, want := range []string{`keygate_grpc_errors_total{reason="undecodable"} 1`, `keygate_grpc_errors_total{reason="unknown_method"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// metrics returns the text of /metrics.
func (e *env) metrics(t testing.TB) string {
	t.Helper()
	resp, err := http.Get("http://" + e.inst.AdminAddr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
