package serve_test

import (
	"context"
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
// authorization), then NATS comes back. Throughout, /healthz answers 200
// and cached keys are served; afterwards the sidecar is ready again and
// applies a revocation made as NATS came back.
func TestSidecarHealsAfterSquat(t *testing.T) {
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
	live("with NATS stopped")

	squat := natstest.RunWith(t, opts("other", t.TempDir()))
	refused := func() int { return strings.Count(strings.ToLower(e.logs.String()), "authorization violation") }
	poll.Until(t, 30*time.Second, "five refused reconnects", func() bool {
		live("with the port squatted")
		if got := e.code(t, key); got != 200 {
			t.Fatalf("cached key with the port squatted: %d", got)
		}
		return refused() >= 5
	})
	squat.Shutdown()
	squat.WaitForShutdown()

	natstest.RunWith(t, real)
	if _, err := st.UpdateKey(e.ctx, rec.ID, func(k *store.Key) error { now := time.Now(); k.RevokedAt = &now; return nil }); err != nil {
		t.Fatal(err)
	}
	waitReady(t, e, 200)
	waitCode(t, e, key, 401)
	live("after NATS came back")
	e.noKeysLogged(t, key)
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
	if !strings.Contains(e.logs.String(), "nats connection closed for good") {
		t.Fatalf("no log of the closed connection:\n%s", e.logs.String())
	}
}
