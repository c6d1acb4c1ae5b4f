package serve_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/serve"
	"github.com/keygate/keygate/internal/store"
)

func healthz(t *testing.T, e *env) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + e.inst.AdminAddr.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// storeWith opens the store on url with a client of the test's own that
// reconnects for ever.
func storeWith(t *testing.T, ctx context.Context, url string, opts ...nats.Option) *store.Store {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.IgnoreAuthErrorAbort(),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSidecarHealsAfterSquat: NATS stops, a server with another token
// holds its port (the sidecar's reconnects are refused, many times, for
// authorization), then NATS comes back. Throughout, for several times the
// time after which a silent change stream counts as stuck, /healthz
// answers 200 and cached keys are served; afterwards the sidecar is ready
// again and applies a revocation made as NATS came back.
func TestSidecarHealsAfterSquat(t *testing.T) {
	const stuckAfter = 2 * time.Second
	serve.SetWatchTiming(t, 200*time.Millisecond, stuckAfter)
	addr := natstest.FreeAddr(t)
	opts := func(token string, dir string) *server.Options {
		o := &server.Options{Host: "127.0.0.1", Authorization: token, StoreDir: dir}
		fmt.Sscanf(addr, "127.0.0.1:%d", &o.Port)
		return o
	}
	real := opts("right", t.TempDir())
	ns := natstest.RunWith(t, real)
	cfg := noLimit(testConfig(t, "nats://"+addr))
	cfg.NATS.Token = "right"
	e := start(t, cfg)
	st := storeWith(t, e.ctx, "nats://"+addr, nats.Token("right"))
	key, rec := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 100)
	waitCode(t, e, key, 200)
	e.waitCached(t, key)

	live := func(when string) {
		t.Helper()
		if code, body := healthz(t, e); code != 200 {
			t.Fatalf("/healthz %s: %d %s", when, code, body)
		}
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	waitReady(t, e, 503)
	// Properties over time, not waits for something to happen.
	for end := time.Now().Add(2 * stuckAfter); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		live("with NATS stopped")
	}

	squat := natstest.RunWith(t, opts("other", t.TempDir()))
	refused := func() int { return strings.Count(strings.ToLower(e.logs.String()), "authorization violation") }
	squatted := time.Now()
	poll.Until(t, 30*time.Second, "five refused reconnects", func() bool {
		live("with the port squatted")
		if got := e.code(t, key); got != 200 {
			t.Fatalf("cached key with the port squatted: %d", got)
		}
		return refused() >= 5 && time.Since(squatted) > 2*stuckAfter
	})
	squat.Shutdown()
	squat.WaitForShutdown()

	natstest.RunWith(t, real)
	if _, err := st.UpdateKey(e.ctx, rec.ID, func(k *store.Key) error { now := time.Now(); k.RevokedAt = &now; return nil }); err != nil {
		t.Fatal(err)
	}
	waitReady(t, e, 200)
	waitCode(t, e, key, 401)
	for end := time.Now().Add(2 * stuckAfter); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		live("after NATS came back")
	}
	e.noKeysLogged(t, key)
}

// TestStuckWatchFailsLiveness: a sidecar whose change stream's consumer is
// gone and cannot be made again (the stream takes no more consumers),
// while NATS answers, fails /healthz once the stream has been silent for
// the stuck time; once a consumer can be made again, it catches up and
// /healthz answers 200 again.
func TestStuckWatchFailsLiveness(t *testing.T) {
	serve.SetWatchTiming(t, 100*time.Millisecond, time.Second)
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	_, admin := natstest.Connect(t, ns)
	release := takeLastConsumer(t, admin)
	poll.Until(t, 30*time.Second, "/healthz 503", func() bool {
		code, body := healthz(t, e)
		return code == 503 && strings.Contains(body, "keygate_keys")
	})
	if e.inst.Ready() {
		t.Fatal("ready with a change stream lost")
	}
	release()
	waitReady(t, e, 200)
	poll.Until(t, 30*time.Second, "/healthz 200 at the new consumer's first heartbeat", func() bool {
		code, _ := healthz(t, e)
		return code == 200
	})
}

// takeLastConsumer leaves the keys bucket's stream room for one consumer
// and gives it to another client than keygate: it adds a consumer of its
// own, limits the stream to one, and deletes keygate's. It returns what
// gives the room back.
func takeLastConsumer(t *testing.T, js jetstream.JetStream) (release func()) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, "KV_"+store.DefaultOptions().KeysBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "squatter", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	limit := func(n int) {
		cfg := s.CachedInfo().Config
		cfg.MaxConsumers = n
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	limit(1)
	for c := range s.ConsumerNames(ctx).Name() {
		if c != "squatter" {
			// keygate may have dropped it meanwhile (an ordered
			// consumer is remade after a gap): gone either way.
			if err := s.DeleteConsumer(ctx, c); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				t.Fatal(err)
			}
		}
	}
	return func() { limit(-1) }
}

// TestClosedForGoodFailsLiveness: a sidecar whose NATS connection nats.go
// has closed for good (the server sent an error it does not reconnect
// after) answers /healthz 503, so that it is restarted.
func TestClosedForGoodFailsLiveness(t *testing.T) {
	// With a keys bucket of a 60-character name, keygate's requests at
	// start stay under 255 characters a line (the longest, a consumer's
	// creation, about 240), and a key's lookup does not (about 275): the
	// server answers "maximum control line exceeded", after which nats.go
	// never reconnects.
	ns := natstest.RunWith(t, &server.Options{MaxControlLine: 255})
	cfg := testConfig(t, ns.ClientURL())
	cfg.NATS.KeysBucket = "keys_" + strings.Repeat("x", 55)
	e := start(t, cfg)
	if code, body := healthz(t, e); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	o := store.DefaultOptions()
	o.KeysBucket = cfg.NATS.KeysBucket
	st, err := store.Open(e.ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := createKey(t, e.ctx, st, "acme")
	poll.Until(t, 30*time.Second, "/healthz 503", func() bool {
		e.code(t, key)
		code, body := healthz(t, e)
		return code == 503 && strings.Contains(body, "closed for good")
	})
	waitReady(t, e, 503)
	// nats.go reports the closed connection to its handler, which logs it,
	// a moment after the connection reads closed.
	poll.Until(t, 10*time.Second, "a log of the closed connection", func() bool {
		return strings.Contains(e.logs.String(), "nats connection closed for good")
	})
}
