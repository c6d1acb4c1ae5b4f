package serve_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// proxy forwards loopback TCP to target until cut, so a test can take
// NATS away from keygate alone while other clients still reach it.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	t.Cleanup(func() { l.Close(); p.setCut(true) })
	go p.accept()
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// setCut closes every open connection and refuses new ones while cut.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

func (p *proxy) url() string { return "nats://" + p.l.Addr().String() }

// waitCached checks key until the check is answered from the cache (the
// cache admits entries asynchronously), reading keygate's hit counters.
func (e *env) waitCached(t *testing.T, key string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		before := e.hits(t)
		e.code(t, key)
		if e.hits(t) >= before+2 { // the key and its account
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("key never answered from the cache")
		}
	}
}

// hits is the number of positive cache hits so far, keys and accounts.
func (e *env) hits(t *testing.T) float64 {
	resp, err := http.Get("http://" + e.inst.AdminAddr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var n float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "keygate_cache_requests_total{") && strings.Contains(line, `result="hit"`) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			n += v
		}
	}
	return n
}

func readyz(t *testing.T, e *env) int {
	resp, err := http.Get("http://" + e.inst.AdminAddr.String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitReady(t *testing.T, e *env, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for readyz(t, e) != want {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered %d\n%s", want, e.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNATSOutage: cached keys are served, misses answer 503, readiness
// drops; changes made meanwhile are applied on reconnect before ready; past
// max staleness cached keys answer 503 too.
func TestNATSOutage(t *testing.T) {
	ns := natstest.Run(t)
	px := newProxy(t, ns.Addr().String())
	cfg := testConfig(t, px.url())
	cfg.Cache.MaxStaleness = config.Duration(3 * time.Second)
	e := start(t, cfg)
	st := openStore(t, e, ns)
	key, rec := createKey(t, e.ctx, st, "acme")
	setBalance(t, e.ctx, st, "acme", 100)
	waitCode(t, e, key, 200) // a key is denied until its creation reaches the key filter
	e.waitCached(t, key)

	px.setCut(true)
	waitReady(t, e, 503)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		h, err := healthpb.NewHealthClient(e.conn).Check(e.ctx, &healthpb.HealthCheckRequest{})
		if err == nil && h.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grpc health during outage: %v %v", h, err)
		}
	}
	if got := e.code(t, key); got != 200 {
		t.Fatalf("cached key during outage: %d", got)
	}
	f := apikey.DefaultFormat()
	unknown, _ := f.Mint(apikey.LivePrefix)
	if got := e.code(t, unknown); got != 503 {
		t.Fatalf("cache miss during outage: %d", got)
	}
	// Revoked while keygate cannot hear it.
	if _, err := st.UpdateKey(e.ctx, rec.ID, func(k *store.Key) error { now := time.Now(); k.RevokedAt = &now; return nil }); err != nil {
		t.Fatal(err)
	}

	px.setCut(false)
	waitReady(t, e, 200)
	if got := e.code(t, key); got != 401 {
		t.Fatalf("key revoked during the outage, after catch-up: %d", got)
	}

	// Changes after the reconnect arrive too.
	setBalance(t, e.ctx, st, "acme", 0)
	key2, _ := createKey(t, e.ctx, st, "acme")
	waitCode(t, e, key2, 402)
	setBalance(t, e.ctx, st, "acme", 100)
	waitCode(t, e, key2, 200)
	e.waitCached(t, key2)
	px.setCut(true)
	waitReady(t, e, 503)
	deadline := time.Now().Add(20 * time.Second)
	for e.code(t, key2) != 503 {
		if time.Now().After(deadline) {
			t.Fatal("cached key still served past max staleness")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.noKeysLogged(t, key, key2, unknown)
}
