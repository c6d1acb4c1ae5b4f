package cli_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/cli"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/serve"
)

func TestKeysRateLimitNone(t *testing.T) {
	e := newEnv(t)
	var k, rot rotated
	e.okJSON(&k, "keys", "create", "--account", "acme", "--rate-limit", "none")
	if !k.NoRateLimit || k.RateLimit != nil {
		t.Errorf("create --rate-limit none: no_rate_limit %v, rate_limit %+v", k.NoRateLimit, k.RateLimit)
	}
	if out := e.ok("keys", "get", k.ID); !strings.Contains(out, "rate limit: none (unlimited)") {
		t.Errorf("keys get:\n%s", out)
	}
	e.okJSON(&rot, "keys", "rotate", k.ID)
	if !rot.NoRateLimit || rot.RateLimit != nil {
		t.Errorf("rotate of an unlimited key: no_rate_limit %v, rate_limit %+v", rot.NoRateLimit, rot.RateLimit)
	}
	var plain rotated
	e.okJSON(&plain, "keys", "create", "--account", "acme")
	if plain.NoRateLimit || plain.RateLimit != nil {
		t.Errorf("create without --rate-limit: %+v", plain)
	}
	for _, bad := range []string{"None", "unlimited", "0", ""} {
		r := e.run("keys", "create", "--account", "acme", "--rate-limit="+bad)
		if bad == "" {
			if r.code != 0 {
				t.Errorf("--rate-limit= (the default): exit %d %q", r.code, r.msg)
			}
			continue
		}
		if r.code != cli.ExitUsage || !strings.Contains(r.msg, "--rate-limit") || !strings.Contains(r.msg, "(or none)") {
			t.Errorf("--rate-limit %s: exit %d %q", bad, r.code, r.msg)
		}
	}
}

// TestRateLimitNoneEndToEnd: with a default limit of 1 per minute, a key
// made with --rate-limit none, and its successor, are allowed twice
// through a running keygate; a key with the default is not.
func TestRateLimitNoneEndToEnd(t *testing.T) {
	e := newEnv(t)
	cfg := config.Default()
	cfg.NATS.URL = e.url
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DefaultRateLimit = "1/1m"
	cfg.ShutdownDelay = 0
	inst, err := serve.Start(e.ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Shutdown() })
	addr := inst.GRPCAddr.String()

	e.ok("balance", "set", "acme", "100")
	none := e.create("--account", "acme", "--rate-limit", "none")
	var succ keyOut
	e.okJSON(&succ, "keys", "rotate", none.ID)
	limited := e.create("--account", "acme")

	// check sends one request with key and returns the HTTP status ("200"
	// for an allow).
	check := func(key string) string {
		r := e.run("check", "--grpc-addr", addr, "--key", key)
		if r.code == 0 {
			return "200"
		}
		if status, ok := strings.CutPrefix(r.msg, "denied: HTTP "); ok {
			return status
		}
		t.Fatalf("check: exit %d %q", r.code, r.msg)
		return ""
	}
	// A key is allowed once keygate has seen its creation; until then it
	// is unknown (401).
	first := func(key string) {
		t.Helper()
		poll.Until(t, 10*time.Second, "allowed", func() bool {
			s := check(key)
			if s != "200" && s != "401" {
				t.Fatalf("first check: HTTP %s", s)
			}
			return s == "200"
		})
	}
	for _, k := range []keyOut{none, succ} {
		first(k.Key)
		if s := check(k.Key); s != "200" {
			t.Errorf("unlimited key %s, second request: HTTP %s, want 200", k.ID, s)
		}
	}
	first(limited.Key)
	if s := check(limited.Key); s != "429" {
		t.Errorf("key with the default 1/1m, second request: HTTP %s, want 429", s)
	}
}

// TestAllowIPsEndToEnd: a key made with --allow-ips is allowed from its
// network and denied 403 from elsewhere, and from anywhere once keys
// update --allow-ips none has reached keygate.
func TestAllowIPsEndToEnd(t *testing.T) {
	e := newEnv(t)
	cfg := config.Default()
	cfg.NATS.URL = e.url
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownDelay = 0
	inst, err := serve.Start(e.ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Shutdown() })
	addr := inst.GRPCAddr.String()
	e.ok("balance", "set", "acme", "100")
	k := e.create("--account", "acme", "--allow-ips", "10.0.0.0/8,2001:db8::/32")
	check := func(ip string) string {
		r := e.run("check", "--grpc-addr", addr, "--key", k.Key, "--client-ip", ip)
		if r.code == 0 {
			return "200"
		}
		s, _ := strings.CutPrefix(r.msg, "denied: HTTP ")
		return s
	}
	poll.Until(t, 10*time.Second, "allowed from 10.1.2.3", func() bool { return check("10.1.2.3") == "200" })
	for ip, want := range map[string]string{"2001:db8::7": "200", "::ffff:10.9.9.9": "200", "192.168.1.1": "403", "2001:db9::1": "403"} {
		if got := check(ip); got != want {
			t.Errorf("from %s: HTTP %s, want %s", ip, got, want)
		}
	}
	if r := e.run("check", "--grpc-addr", addr, "--key", k.Key, "--client-ip", "nowhere"); r.code != cli.ExitUsage || !strings.HasPrefix(r.msg, "--client-ip:") {
		t.Errorf("--client-ip nowhere: exit %d %q", r.code, r.msg)
	}
	e.ok("keys", "update", k.ID, "--allow-ips", "none")
	poll.Until(t, 10*time.Second, "allowed from 192.168.1.1", func() bool { return check("192.168.1.1") == "200" })
}
