// Command noop is a do-nothing Envoy ext_authz server: it answers every
// Check with OK. The benchmark measures keygate against it, the cost of the
// gRPC round trip alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

type server struct{}

var _ authv3.AuthorizationServer = server{}

var ok = &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}

func (server) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return ok, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:9292", "listen address")
	workers := flag.Uint("workers", 128, "gRPC stream workers (keygate uses 128)")
	admin := flag.String("pprof", "", "serve /debug/pprof/ on this address")
	flag.Parse()
	if *admin != "" {
		go func() { _ = http.ListenAndServe(*admin, nil) }() //nolint:gosec // benchmark tool on loopback
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// The same stream workers as keygate, so that the comparison is of the
	// work alone.
	s := grpc.NewServer(grpc.NumStreamWorkers(uint32(*workers)))
	authv3.RegisterAuthorizationServer(s, server{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	return s.Serve(l)
}
