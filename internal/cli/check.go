package cli

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// runCheck sends one ext_authz Check, as Envoy would, and prints the
// answer: "keygate check --key KEY [--method GET] [--path /v1/models]".
// The key is read from $KEYGATE_API_KEY if --key is not given, so that it
// need not appear in shell history.
func runCheck(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	addr := fs.String("grpc-addr", "127.0.0.1:9191", "keygate's ext_authz `address`")
	key := fs.String("key", "", "API `key` to send as 'Authorization: Bearer KEY' (default $KEYGATE_API_KEY)")
	method := fs.String("method", "GET", "HTTP `method` of the request")
	path := fs.String("path", "/v1/models", "HTTP `path` of the request")
	scope := fs.String("scope", "", "`scope` to require, as an Envoy route's context_extensions keygate.scope would")
	body := fs.String("body", "", "request `body` (JSON), sent as Envoy's with_request_body does")
	clientIP := fs.String("client-ip", "", "the client's `address`, sent as Envoy's source address (default: none)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *key == "" {
		*key = io.getenv()("KEYGATE_API_KEY")
	}
	cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return usagef("--grpc-addr: %v", err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req := checkRequest(*key, *method, *path, *scope)
	if *clientIP != "" {
		if _, err := netip.ParseAddr(*clientIP); err != nil {
			return usagef("--client-ip: %q is not an IP address", *clientIP)
		}
		req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: *clientIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}}
	}
	if *body != "" {
		h := req.Attributes.Request.Http
		h.RawBody = []byte(*body)
		h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: "content-type", RawValue: []byte("application/json")},
			&corev3.HeaderValue{Key: "content-length", RawValue: []byte(strconv.Itoa(len(*body)))})
	}
	resp, err := authv3.NewAuthorizationClient(cc).Check(ctx, req)
	if err != nil {
		return fmt.Errorf("check via %s: %w", *addr, err)
	}
	out, _ := protojson.MarshalOptions{Multiline: true}.Marshal(resp)
	fmt.Fprintln(io.Out, string(out))
	if resp.GetOkResponse() == nil {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("denied: HTTP %d", resp.GetDeniedResponse().GetStatus().GetCode())}
	}
	return nil
}

func checkRequest(key, method, path, scope string) *authv3.CheckRequest {
	hm := &corev3.HeaderMap{}
	if key != "" {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + key)})
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, HeaderMap: hm},
	}}}
	if scope != "" {
		req.Attributes.ContextExtensions = map[string]string{"keygate.scope": scope}
	}
	return req
}
