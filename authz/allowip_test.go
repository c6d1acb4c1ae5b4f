package authz_test

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/store"
)

// from sets the check's source address, as Envoy sends its downstream
// peer; kind "pipe" sends a Unix socket instead.
func from(req *authv3.CheckRequest, kind, addr string) *authv3.CheckRequest {
	a := &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 41000}}}}
	if kind == "pipe" {
		a = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: addr}}}
	}
	if req.Attributes == nil {
		req.Attributes = &authv3.AttributeContext{}
	}
	req.Attributes.Source = &authv3.AttributeContext_Peer{Address: a}
	return req
}

// with adds headers to a request's headers map.
func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// ipCase is a check and what it should get.
type ipCase struct {
	name string
	key  string
	req  *authv3.CheckRequest
	code string // "" for an allow
	seen string // in the deny's message: the address keygate saw
}

// checkIPCases runs each case through the gRPC server and through the
// pooled decoder keygate's own gRPC codec uses, which must agree.
func checkIPCases(t *testing.T, f *fixture, srv *authz.Server, client authv3.AuthorizationClient, cases []ipCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(f.ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := proto.Marshal(tc.req)
			r := authz.GetRequest()
			defer authz.PutRequest(r)
			if err := srv.Decoder().DecodeRequest(b, r); err != nil {
				t.Fatal(err)
			}
			decoded := srv.Decide(f.ctx, r)
			for path, resp := range map[string]*authv3.CheckResponse{"gRPC": resp, "decoded": decoded} {
				if tc.code == "" {
					if resp.GetOkResponse() == nil {
						t.Fatalf("%s: want an allow, got %v", path, resp)
					}
					continue
				}
				status, code, h := denied(t, resp)
				if status != 403 || code != tc.code || h["type"] != "permission_error" || h["x-should-retry"] != "false" {
					t.Fatalf("%s: got %d %s %s %v, want 403 %s permission_error", path, status, code, h["type"], h, tc.code)
				}
				body := resp.GetDeniedResponse().GetBody()
				if !strings.Contains(body, tc.seen) || strings.Contains(body, tc.key) {
					t.Fatalf("%s: deny body %s: want it to name %q and never the key", path, body, tc.seen)
				}
			}
		})
	}
}

// TestIPAllowlist: with no trusted hops (the default), a key with
// allow_ips passes only from an address in it, as Envoy's source peer
// names it; X-Forwarded-For, whatever it says, is never read.
func TestIPAllowlist(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "acme", 100, nil)
	f.setBalance(t, "broke", 0, nil)
	listed := func(k *store.Key) {
		k.V, k.AllowIPs, k.RateLimit = 2, []string{"10.0.0.0/8", "2001:db8::/32", "203.0.113.7"}, unlimited
	}
	key := f.storeKey(t, listed)
	chatOnly := f.storeKey(t, func(k *store.Key) { listed(k); k.Scopes = []string{"chat:send"} })
	broke := f.storeKey(t, func(k *store.Key) { listed(k); k.AccountID = "broke" })
	open := f.storeKey(t, func(k *store.Key) { k.RateLimit = unlimited })
	get := func(key string, h ...string) *authv3.CheckRequest {
		return request("GET", "/v1/models", with(bearer(key), h...))
	}
	const unknown = "the address this request comes from is unknown"
	checkIPCases(t, f, f.srv, f.client, []ipCase{
		{name: "in a prefix", key: key, req: from(get(key), "", "10.1.2.3")},
		{name: "the one address", key: key, req: from(get(key), "", "203.0.113.7")},
		{name: "IPv6", key: key, req: from(get(key), "", "2001:db8::7")},
		{name: "IPv4-mapped", key: key, req: from(get(key), "", "::ffff:10.1.2.3")},
		{name: "with a zone", key: key, req: from(get(key), "", "2001:db8::7%eth0")},
		{name: "outside", key: key, req: from(get(key), "", "192.0.2.1"), code: "ip_not_allowed", seen: "cannot be used from 192.0.2.1"},
		{name: "next to the one address", key: key, req: from(get(key), "", "203.0.113.8"), code: "ip_not_allowed", seen: "203.0.113.8"},
		{name: "IPv4-mapped outside", key: key, req: from(get(key), "", "::ffff:192.0.2.1"), code: "ip_not_allowed", seen: "cannot be used from 192.0.2.1:"},
		{name: "IPv6 outside", key: key, req: from(get(key), "", "2001:db9::1"), code: "ip_not_allowed", seen: "2001:db9::1"},
		{name: "spoofed X-Forwarded-For", key: key, req: from(get(key, "x-forwarded-for", "10.1.2.3"), "", "192.0.2.1"), code: "ip_not_allowed", seen: "192.0.2.1"},
		{name: "spoofed X-Forwarded-For, peer appended", key: key,
			req: from(get(key, "x-forwarded-for", "10.1.2.3, 192.0.2.1"), "", "192.0.2.1"), code: "ip_not_allowed", seen: "192.0.2.1"},
		{name: "spoofed X-Forwarded-For in header_map", key: key,
			req:  from(rawRequest("GET", "/v1/models", "authorization", "Bearer "+key, "X-Forwarded-For", "10.1.2.3"), "", "192.0.2.1"),
			code: "ip_not_allowed", seen: "192.0.2.1"},
		{name: "no source address", key: key, req: get(key, "x-forwarded-for", "10.1.2.3"), code: "ip_not_allowed", seen: unknown},
		{name: "a pipe", key: key, req: from(get(key), "pipe", "/run/envoy.sock"), code: "ip_not_allowed", seen: unknown},
		{name: "a name", key: key, req: from(get(key), "", "localhost"), code: "ip_not_allowed", seen: unknown},
		{name: "the scope first", key: chatOnly, req: from(get(chatOnly), "", "192.0.2.1"), code: "insufficient_permissions", seen: "models:read"},
		{name: "before the balance", key: broke, req: from(get(broke), "", "192.0.2.1"), code: "ip_not_allowed", seen: "192.0.2.1"},
		{name: "a key without allow_ips, no address", key: open, req: get(open)},
	})
}

// TestIPAllowlistTrustedHop: with one trusted hop (a load balancer that
// appends the client to X-Forwarded-For, in front of an Envoy that
// appends the load balancer), the client is the second address from the
// right; a request that did not come that way has no known address.
func TestIPAllowlistTrustedHop(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "acme", 100, nil)
	srv := authz.New(authz.Options{Format: apikey.DefaultFormat(), Credentials: config.Default().Credentials, Now: f.clock.now,
		XFFTrustedHops: 1}, f.keys, f.accounts)
	client := serveGRPC(t, srv)
	key := f.storeKey(t, func(k *store.Key) {
		k.V, k.AllowIPs, k.RateLimit = 2, []string{"198.51.100.0/24", "2001:db8::/32"}, unlimited
	})
	via := func(xff ...string) *authv3.CheckRequest {
		kv := []string{"authorization", "Bearer " + key}
		for _, v := range xff {
			kv = append(kv, "x-forwarded-for", v)
		}
		return from(rawRequest("GET", "/v1/models", kv...), "", "10.0.0.5")
	}
	const unknown = "the address this request comes from is unknown"
	checkIPCases(t, f, srv, client, []ipCase{
		{name: "the client", key: key, req: via("198.51.100.9, 10.0.0.5")},
		{name: "the client's own entries before it", key: key, req: via("10.9.9.9, 6.6.6.6, 198.51.100.9, 10.0.0.5")},
		{name: "IPv6 client", key: key, req: via("[2001:db8::9]:5000, 10.0.0.5")},
		{name: "IPv4-mapped client", key: key, req: via("::ffff:198.51.100.9, 10.0.0.5")},
		{name: "the headers map", key: key, req: from(get2(key, "198.51.100.9, 10.0.0.5"), "", "10.0.0.5")},
		{name: "client outside", key: key, req: via("192.0.2.1, 10.0.0.5"), code: "ip_not_allowed", seen: "cannot be used from 192.0.2.1"},
		{name: "allowed address spoofed left of the client", key: key, req: via("198.51.100.9, 192.0.2.1, 10.0.0.5"), code: "ip_not_allowed", seen: "192.0.2.1"},
		{name: "peer not appended", key: key, req: via("6.6.6.6, 198.51.100.9"), code: "ip_not_allowed", seen: unknown},
		{name: "only the peer", key: key, req: via("10.0.0.5"), code: "ip_not_allowed", seen: unknown},
		{name: "no X-Forwarded-For", key: key, req: via(), code: "ip_not_allowed", seen: unknown},
		{name: "malformed client entry", key: key, req: via("198.51.100.x, 10.0.0.5"), code: "ip_not_allowed", seen: unknown},
		{name: "X-Forwarded-For twice, different", key: key, req: via("198.51.100.9, 10.0.0.5", "6.6.6.6, 10.0.0.5"), code: "ip_not_allowed", seen: unknown},
		{name: "X-Forwarded-For twice, the same", key: key, req: via("198.51.100.9, 10.0.0.5", "198.51.100.9, 10.0.0.5")},
	})
}

// get2 is a GET /v1/models with the key and X-Forwarded-For in the
// headers map.
func get2(key, xff string) *authv3.CheckRequest {
	return request("GET", "/v1/models", with(bearer(key), "x-forwarded-for", xff))
}

// An allowlist adds no allocation to a decoded check that passes it.
func TestIPAllowlistAllocatesNothing(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "acme", 100, nil)
	listed := f.storeKey(t, func(k *store.Key) {
		k.V, k.AllowIPs, k.NoRateLimit = 2, []string{"192.0.2.0/24", "10.0.0.0/8"}, true
	})
	// No rate limit: the fixture's clock stands still, and a key whose
	// window ends just after it would lease on every check.
	open := f.storeKey(t, func(k *store.Key) { k.NoRateLimit = true })
	allocs := func(key string) float64 {
		b, _ := proto.Marshal(from(request("GET", "/v1/models", bearer(key)), "", "10.1.2.3"))
		decide := func() {
			r := authz.GetRequest()
			if err := f.srv.Decoder().DecodeRequest(b, r); err != nil {
				t.Fatal(err)
			}
			resp := f.srv.Decide(f.ctx, r)
			if resp.GetOkResponse() == nil {
				t.Fatalf("not allowed: %v", resp)
			}
			authz.Release(resp)
			authz.PutRequest(r)
		}
		for range 3 { // the cache filled
			decide()
		}
		f.keys.Wait()
		// AllocsPerRun counts the whole process's allocations, background
		// work (usage, leases) included, which can only add: the least of
		// a few runs is the check's own.
		least := testing.AllocsPerRun(200, decide)
		for range 4 {
			least = min(least, testing.AllocsPerRun(200, decide))
		}
		return least
	}
	with, without := allocs(listed), allocs(open)
	t.Logf("allocations per decoded check: %v with allow_ips, %v without", with, without)
	if with > without {
		t.Fatalf("a decoded check of a key with allow_ips allocates %v times, one without %v", with, without)
	}
}
