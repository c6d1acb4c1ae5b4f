package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/config"
)

// envoyRemoves returns envoy/envoy.yaml's route_config.request_headers_to_remove:
// what Envoy's router removes from every request, ext_authz or not.
func envoyRemoves(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		StaticResources struct {
			Listeners []struct {
				FilterChains []struct {
					Filters []struct {
						TypedConfig struct {
							RouteConfig struct {
								RequestHeadersToRemove []string `yaml:"request_headers_to_remove"`
							} `yaml:"route_config"`
						} `yaml:"typed_config"`
					} `yaml:"filters"`
				} `yaml:"filter_chains"`
			} `yaml:"listeners"`
		} `yaml:"static_resources"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.StaticResources.Listeners[0].FilterChains[0].Filters[0].TypedConfig.RouteConfig.RequestHeadersToRemove
}

// TestEnvoyRecipe: Envoy running envoy/envoy.yaml asks keygate over gRPC,
// with every header as raw bytes (encode_raw_headers). A key sent in any
// header of keygate's `credentials` is checked, and keygate's allow asks
// Envoy to remove every one of those headers (headers_to_remove), a header
// added to `credentials` included; envoy.yaml's router removes the shipped
// ones on every route as well, /healthz (no ext_authz) included.
func TestEnvoyRecipe(t *testing.T) {
	custom := slices.Concat(credentials, []config.Credential{{Header: "x-custom-key"}})
	kg := startKeygate(t, "envoy", withCredentials(custom...))
	kg.setAccount(t, "acme", 100000, nil)
	key, rec := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"models:read"}})
	conn, err := grpc.NewClient(kg.inst.GRPCAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := authv3.NewAuthorizationClient(conn)

	removes := envoyRemoves(t)
	for _, c := range credentials {
		if !slices.Contains(removes, c.Header) {
			t.Errorf("envoy.yaml's request_headers_to_remove %v lacks %s", removes, c.Header)
		}
	}
	for _, c := range custom {
		t.Run(c.Header, func(t *testing.T) {
			value := key
			if c.Scheme != "" {
				value = c.Scheme + " " + key
			}
			resp, err := client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET", Path: "/v1/models", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
						{Key: ":method", RawValue: []byte("GET")}, {Key: ":path", RawValue: []byte("/v1/models")},
						{Key: c.Header, RawValue: []byte(value)},
					}},
				}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatalf("denied: %v", resp.GetDeniedResponse())
			}
			headers := map[string]string{}
			for _, h := range ok.GetHeaders() {
				headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if headers["x-keygate-key-id"] != rec.ID {
				t.Errorf("upstream headers %v", headers)
			}
			for _, want := range custom {
				if !slices.Contains(ok.GetHeadersToRemove(), want.Header) {
					t.Errorf("headers_to_remove %v lacks %s", ok.GetHeadersToRemove(), want.Header)
				}
			}
		})
	}
}
