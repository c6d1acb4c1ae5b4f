package serve_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/broker"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/serve"
	"github.com/keygate/keygate/internal/store"
)

// TestSquatterLearnsNothingAndForgesNoKey: keygate with its embedded NATS
// restarts, and meanwhile another process holds its port. A sidecar
// pointed at it, and a client that finds the token as the admin commands
// do, keep reconnecting. A plain listener on the port receives TLS
// handshakes and nothing else: no token. A rogue nats-server on the port,
// letting every client in (and recording its token) and holding a "*" key
// record in keygate_keys (at revisions past the sidecar's), gets no client
// of keygate's and no token, and the sidecar never allows the forged key. Once keygate is back on its data directory, with the same
// certificate and token, the sidecar is ready again.
func TestSquatterLearnsNothingAndForgesNoKey(t *testing.T) {
	addr := natstest.FreeAddr(t)
	embCfg := testConfig(t, "")
	embCfg.NATS.Listen = addr
	stopEmbedded := startEmbedded(t, embCfg)
	var port int
	fmt.Sscanf(addr, "127.0.0.1:%d", &port)
	tokenFile := filepath.Join(embCfg.NATS.TokenDir, fmt.Sprintf("nats-%d.token", port))
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	token = bytes.TrimSpace(token)

	cfg := noLimit(testConfig(t, "nats://"+addr))
	cfg.NATS.TokenDir = embCfg.NATS.TokenDir
	e := start(t, cfg)
	admin, err := broker.Connect(broker.Options{URL: "nats://" + addr, TokenDir: cfg.NATS.TokenDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	st, err := store.Open(e.ctx, admin.JS, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 100)
	waitCode(t, e, key, 200)
	e.waitCached(t, key)
	applied := lastRev(t, e, st)

	stopEmbedded() // the restart begins
	waitReady(t, e, 503)

	sq := natstest.Squat(t, addr)
	poll.Until(t, 30*time.Second, "reconnects to the listener", func() bool { return sq.Conns() >= 6 })
	sq.Close()
	for i, b := range sq.Received() {
		if len(b) == 0 || b[0] != 0x16 {
			t.Errorf("connection %d began with %q, not a TLS handshake", i, b[:min(len(b), 16)])
		}
		if bytes.Contains(b, token) {
			t.Errorf("connection %d sent the token", i)
		}
	}

	tokens := &natstest.Tokens{} // lets every client in, records its token
	rogue := natstest.RunWith(t, &server.Options{Host: "127.0.0.1", Port: port, CustomClientAuthentication: tokens})
	rst := storeWith(t, e.ctx, rogue.ClientURL())
	for range applied + 1 { // past the sidecar's revision, so that a sidecar reading this server applies the record
		if _, err := rst.Keys().Put(e.ctx, "filler", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	forged, _ := createKey(t, e.ctx, rst, "acme")
	setBalance(t, e.ctx, rst, "acme", 100)
	seen := totalConns(rogue)
	poll.Until(t, 30*time.Second, "reconnects to the rogue server", func() bool {
		if got := e.code(t, forged); got == 200 {
			t.Fatal("the sidecar allowed the forged key")
		}
		if e.inst.Ready() {
			t.Fatal("the sidecar is ready on the rogue server")
		}
		return totalConns(rogue) >= seen+5
	})
	rogue.Shutdown()
	rogue.WaitForShutdown()
	if got := tokens.Seen(); len(got) != 1 || got[0] != "" { // the test's own client
		t.Fatalf("the rogue server let in clients with tokens %q", got)
	}

	startEmbedded(t, embCfg)
	waitReady(t, e, 200)
	if got := e.code(t, forged); got != 401 {
		t.Fatalf("forged key after the restart: %d", got)
	}
	if got := e.code(t, key); got != 200 {
		t.Fatalf("key after the restart: %d", got)
	}
	if again, _ := os.ReadFile(tokenFile); !bytes.Equal(bytes.TrimSpace(again), token) {
		t.Fatal("the restarted keygate changed its token")
	}
}

// startEmbedded starts a keygate with its embedded NATS and returns what
// stops it, which the test may call before its end.
func startEmbedded(t *testing.T, cfg config.Config) (stop func()) {
	t.Helper()
	inst, err := serve.Start(natstest.Context(t), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { _ = inst.Shutdown() }) }
	t.Cleanup(stop)
	return stop
}

// lastRev is the keys bucket's last revision.
func lastRev(t *testing.T, e *env, st *store.Store) int {
	t.Helper()
	s, err := st.Keys().Status(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int(s.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq)
}

// totalConns is how many client connections s has accepted.
func totalConns(s *server.Server) uint64 {
	v, err := s.Varz(nil)
	if err != nil {
		return 0
	}
	return v.TotalConnections
}
