// Command opa-authz is an Envoy ext_authz server that decides with Open
// Policy Agent the way opa-envoy-plugin does: each CheckRequest becomes the
// policy's input through its JSON form (plus parsed_path and parsed_query),
// and the prepared query data.envoy.authz.allow is evaluated with the API
// keys' hashes loaded as data. The benchmark compares keygate with it: a
// general policy engine doing keygate's core job. It is not part of keygate.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
)

// policy allows a request whose bearer token hashes to a key in data.keys
// that is not revoked.
const policy = `package envoy.authz

default allow := false

token := t if {
	auth := input.attributes.request.http.headers.authorization
	startswith(auth, "Bearer ")
	t := substring(auth, 7, -1)
}

allow if {
	key := data.keys[crypto.sha256(token)]
	not key.revoked
}
`

type server struct {
	query rego.PreparedEvalQuery
}

var _ authv3.AuthorizationServer = (*server)(nil)

var (
	allowed = &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}
	denied  = &authv3.CheckResponse{Status: &status.Status{Code: int32(code.Code_PERMISSION_DENIED)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized}}}}
)

func (s *server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	input, err := toInput(req)
	if err != nil {
		return nil, err
	}
	rs, err := s.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return nil, err
	}
	if rs.Allowed() {
		return allowed, nil
	}
	return denied, nil
}

// toInput is opa-envoy-plugin's input: the request's JSON form, with the
// path and query parsed.
func toInput(req *authv3.CheckRequest) (ast.Value, error) {
	bs, err := protojson.Marshal(req)
	if err != nil {
		return nil, err
	}
	var input map[string]any
	if err := util.UnmarshalJSON(bs, &input); err != nil {
		return nil, err
	}
	u, err := url.Parse(req.GetAttributes().GetRequest().GetHttp().GetPath())
	if err != nil {
		return nil, err
	}
	var parts []any
	for _, p := range strings.Split(strings.TrimLeft(u.Path, "/"), "/") {
		parts = append(parts, p)
	}
	query := map[string]any{}
	for k, vs := range u.Query() {
		var l []any
		for _, v := range vs {
			l = append(l, v)
		}
		query[k] = l
	}
	input["parsed_path"], input["parsed_query"] = parts, query
	return ast.InterfaceToValue(input)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "opa-authz:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:9191", "listen address")
	dataFile := flag.String("data", "", `JSON data document: {"keys": {"<sha256 hex>": {"revoked": false}}}`)
	workers := flag.Uint("workers", 128, "gRPC stream workers (keygate uses 128)")
	admin := flag.String("pprof", "", "serve /debug/pprof/ on this address")
	flag.Parse()
	data := map[string]any{}
	if *dataFile != "" {
		b, err := os.ReadFile(*dataFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &data); err != nil {
			return fmt.Errorf("%s: %w", *dataFile, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	q, err := rego.New(rego.Query("data.envoy.authz.allow"), rego.Module("policy.rego", policy),
		rego.Store(inmem.NewFromObject(data))).PrepareForEval(ctx)
	if err != nil {
		return err
	}
	if *admin != "" {
		go func() { _ = http.ListenAndServe(*admin, nil) }() //nolint:gosec // benchmark tool on loopback
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer(grpc.NumStreamWorkers(uint32(*workers)))
	authv3.RegisterAuthorizationServer(s, &server{query: q})
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	return s.Serve(l)
}
