// Package natstest runs real in-process NATS servers with JetStream for
// tests: random ports, temporary store directories, shut down with the test;
// and plain listeners that hold a server's port in its place and record
// what clients send them.
package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Run starts a JetStream-enabled nats-server on a random loopback port.
func Run(t testing.TB) *server.Server {
	t.Helper()
	return RunWith(t, &server.Options{})
}

// RunWith starts a nats-server with opts, filling in a random loopback
// port, JetStream and a temporary store directory where they are unset.
func RunWith(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	return start(t, opts, true)
}

func start(t testing.TB, opts *server.Options, wait bool) *server.Server {
	t.Helper()
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = -1
	}
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	opts.JetStream = true
	opts.NoSigs = true
	opts.NoLog = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if wait && !s.ReadyForConnections(10*time.Second) {
		t.Fatal("nats server did not start")
	}
	return s
}

// FreeAddr returns a loopback address with a port free at the time.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
}

// FreePort returns a loopback port free at the time.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts finds n free loopback ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		defer l.Close()
	}
	return ports
}

// Connect opens a client connection to s and its JetStream context.
func Connect(t testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Context returns a context that ends with the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// RunCluster starts n JetStream servers routed into one cluster and waits
// until its JetStream meta leader sees all of them online. Each server has
// a random client port and its own temporary store directory.
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	var servers []*server.Server
	for _, opts := range ClusterOptions(t, n) {
		servers = append(servers, start(t, opts, false))
	}
	for _, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatal("nats cluster node did not start")
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !allPeersOnline(servers) {
		if time.Now().After(deadline) {
			t.Fatal("nats cluster: no JetStream meta leader that sees every server online")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return servers
}

// ClusterOptions returns the options of n JetStream servers routed into
// one cluster, to start with RunWith: JetStream clustering needs every
// server's routes up front, so a test can start some of them later.
func ClusterOptions(t testing.TB, n int) []*server.Options {
	t.Helper()
	ports := freePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var opts []*server.Options
	for i := range n {
		opts = append(opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Cluster:    server.ClusterOpts{Name: "keygate-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		})
	}
	return opts
}

// allPeersOnline reports whether the JetStream meta leader has heard from
// every server: until then it refuses to place a replicated stream ("no
// suitable peers for placement").
func allPeersOnline(servers []*server.Server) bool {
	for _, s := range servers {
		if s.JetStreamIsLeader() {
			return len(s.JetStreamClusterPeers()) == len(servers)
		}
	}
	return false
}

// URLs returns the servers' client URLs as a comma-separated seed list.
func URLs(servers []*server.Server) string {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// WaitDisconnected waits until nc has noticed it lost its server.
func WaitDisconnected(t testing.TB, nc *nats.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the NATS connection never noticed it was cut")
		}
		time.Sleep(time.Millisecond)
	}
}

// WaitConnected waits until nc is connected again.
func WaitConnected(t testing.TB, nc *nats.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the NATS connection never came back")
		}
		time.Sleep(time.Millisecond)
	}
}
