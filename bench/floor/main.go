// Command floor is the fastest ext_authz server gRPC allows: it never
// decodes a request and answers every Check with the same pre-encoded OK,
// on gRPC stream workers as keygate does. What keygate does beyond it is
// the cost of its decision; the benchmark measures keygate against it.
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
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// rawCodec reads nothing and writes the one answer it has.
type rawCodec struct{ ok mem.BufferSlice }

func (rawCodec) Name() string                         { return "proto" }
func (rawCodec) Unmarshal(mem.BufferSlice, any) error { return nil }
func (c rawCodec) Marshal(any) (mem.BufferSlice, error) {
	for _, b := range c.ok {
		b.Ref() // gRPC frees what it is given once written
	}
	return c.ok, nil
}

var _ encoding.CodecV2 = rawCodec{}

type server struct{}

var ok = &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}

func (server) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return ok, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:9293", "listen address")
	workers := flag.Uint("workers", 128, "gRPC stream workers (keygate uses 128)")
	admin := flag.String("pprof", "", "serve /debug/pprof/ on this address")
	flag.Parse()
	if *admin != "" {
		go func() { _ = http.ListenAndServe(*admin, nil) }() //nolint:gosec // benchmark tool on loopback
	}
	b, err := proto.Marshal(ok)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer(grpc.NumStreamWorkers(uint32(*workers)), grpc.ForceServerCodecV2(rawCodec{ok: mem.BufferSlice{mem.SliceBuffer(b)}}))
	authv3.RegisterAuthorizationServer(s, server{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	return s.Serve(l)
}
