package serve

import (
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
)

// TestCodecRoundTrip marshals responses of every buffer size the codec
// uses, each into a buffer a larger one used before, and reads them back.
func TestCodecRoundTrip(t *testing.T) {
	c := newCodec()
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
