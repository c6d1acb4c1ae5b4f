package httpauth_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/httpauth"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// recorder is a Checker that keeps what it was asked and denies it.
type recorder struct{ got *authv3.CheckRequest }

var _ httpauth.Checker = (*recorder)(nil)

func (c *recorder) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	c.got = req
	return &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}}}}, nil
}

// headerValues returns every value of name in the check's header map.
func headerValues(req *authv3.CheckRequest, name string) []string {
	var out []string
	for _, h := range req.GetAttributes().GetRequest().GetHttp().GetHeaderMap().GetHeaders() {
		if h.GetKey() == name {
			out = append(out, string(h.GetRawValue()))
		}
	}
	return out
}

// TestOriginalContentLength: in nginx mode, X-Original-Content-Length
// gives the length of a body nginx did not send, which the check then
// carries as the request's content-length; it never shortens a body the
// check carries, and other modes ignore it.
func TestOriginalContentLength(t *testing.T) {
	for _, c := range []struct {
		name, mode, body string
		original         []string
		want             string // the check's content-length
	}{
		{"body not sent", "nginx", "", []string{"2097152"}, "2097152"},
		{"part of the body", "nginx", "{}", []string{"3"}, "3"},
		{"the whole body", "nginx", "{}", []string{"2"}, "2"},
		{"shorter than the body", "nginx", "{}", []string{"0"}, "2"},
		{"not a number", "nginx", "", []string{"12 "}, "0"},
		{"negative", "nginx", "", []string{"-5"}, "0"},
		{"twice", "nginx", "", []string{"2097152", "2097153"}, "0"},
		{"none", "nginx", "", nil, "0"},
		{"traefik mode", "traefik", "", []string{"2097152"}, "0"},
		{"envoy mode", "envoy", "", []string{"2097152"}, "0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			h := httpauth.New(rec, httpauth.Options{Mode: c.mode})
			req := httptest.NewRequest(http.MethodGet, "/_keygate", strings.NewReader(c.body))
			req.Header.Set("Content-Length", "0")
			if c.body != "" {
				req.Header.Set("Content-Length", "2")
			}
			req.Header.Set("X-Original-Method", "POST")
			req.Header.Set("X-Original-URI", "/v1/images/generations")
			req.Header.Set("X-Forwarded-Method", "POST")
			req.Header.Set("X-Forwarded-Uri", "/v1/images/generations")
			req.Header["X-Original-Content-Length"] = c.original
			h.ServeHTTP(httptest.NewRecorder(), req)
			if rec.got == nil {
				t.Fatal("no check was made")
			}
			if got := headerValues(rec.got, "content-length"); !slices.Equal(got, []string{c.want}) {
				t.Errorf("content-length %q, want %q", got, c.want)
			}
			if got := string(rec.got.GetAttributes().GetRequest().GetHttp().GetRawBody()); got != c.body {
				t.Errorf("body %q, want %q", got, c.body)
			}
		})
	}
}

// keygate is an authz server on a real NATS store, with one key limited
// to 198.51.100.0/24 and 2001:db8::/32, and one without allow_ips.
type keygate struct {
	st          *store.Store
	keys        *cache.Table[*authz.Key]
	accounts    *cache.Table[*authz.Account]
	listed, any string
}

func newKeygate(t *testing.T) *keygate {
	t.Helper()
	ctx := natstest.Context(t)
	_, js := natstest.Connect(t, natstest.Run(t))
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	k := &keygate{st: st}
	o := cache.Options{MaxEntries: 100, MaxNegative: 100, NegativeTTL: time.Minute, LoadTimeout: time.Second}
	if k.keys, err = cache.New(o, authz.KeyLoader(st)); err != nil {
		t.Fatal(err)
	}
	if k.accounts, err = cache.New(o, authz.AccountLoader(st)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.keys.Close)
	t.Cleanup(k.accounts.Close)
	if _, err := st.UpdateAccount(ctx, "acme", true, func(a *store.Account) error { a.Balance = 100; return nil }); err != nil {
		t.Fatal(err)
	}
	k.listed = k.create(t, []string{"198.51.100.0/24", "2001:db8::/32"})
	k.any = k.create(t, nil)
	return k
}

func (k *keygate) create(t *testing.T, ips []string) string {
	t.Helper()
	format := apikey.DefaultFormat()
	plain, err := format.Mint(apikey.LivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := apikey.NewID()
	rec := &store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: "acme", Env: store.EnvLive, Scopes: []string{"*"},
		Masked: format.Mask(plain), CreatedAt: time.Now(), AllowIPs: ips}
	if ips != nil {
		rec.V = 2
	}
	if err := k.st.CreateKey(natstest.Context(t), rec); err != nil {
		t.Fatal(err)
	}
	return plain
}

// handler serves mode in front of an authz server trusting hops.
func (k *keygate) handler(mode string, hops int) http.Handler {
	srv := authz.New(authz.Options{Format: apikey.DefaultFormat(), Credentials: config.Default().Credentials, XFFTrustedHops: hops},
		k.keys, k.accounts)
	return httpauth.New(srv, httpauth.Options{Mode: mode})
}

// TestClientAddress: each mode reads the address of the connection its
// proxy accepted from where that proxy writes it, and nowhere else; a key
// with allow_ips passes only from an address in it.
func TestClientAddress(t *testing.T) {
	k := newKeygate(t)
	nginx := []string{"X-Original-Method", "GET", "X-Original-URI", "/v1/models"}
	traefik := []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/v1/models"}
	const unknown = "the address this request comes from is unknown"
	for _, tc := range []struct {
		name, mode string
		hops       int
		key        string
		headers    []string // name, value, ...: each added, so names may repeat
		code       string   // "" for an allow
		seen       string
	}{
		// nginx: X-Keygate-Client-IP, which keygate.conf sets from $remote_addr.
		{"nginx, allowed", "nginx", 0, "listed", append(nginx, "X-Keygate-Client-IP", "198.51.100.9"), "", ""},
		{"nginx, IPv6", "nginx", 0, "listed", append(nginx, "X-Keygate-Client-IP", "2001:db8::9"), "", ""},
		{"nginx, IPv4-mapped", "nginx", 0, "listed", append(nginx, "X-Keygate-Client-IP", "::ffff:198.51.100.9"), "", ""},
		{"nginx, outside", "nginx", 0, "listed", append(nginx, "X-Keygate-Client-IP", "192.0.2.1"), "ip_not_allowed", "cannot be used from 192.0.2.1"},
		{"nginx, X-Forwarded-For ignored", "nginx", 0, "listed",
			append(nginx, "X-Keygate-Client-IP", "192.0.2.1", "X-Forwarded-For", "198.51.100.9"), "ip_not_allowed", "192.0.2.1"},
		{"nginx, no header", "nginx", 0, "listed", append(nginx, "X-Forwarded-For", "198.51.100.9"), "ip_not_allowed", unknown},
		{"nginx, the header twice", "nginx", 0, "listed",
			append(nginx, "X-Keygate-Client-IP", "198.51.100.9", "X-Keygate-Client-IP", "198.51.100.10"), "ip_not_allowed", unknown},
		{"nginx, a key without allow_ips, no header", "nginx", 0, "any", nginx, "", ""},
		{"nginx, one trusted hop", "nginx", 1, "listed",
			append(nginx, "X-Keygate-Client-IP", "10.0.0.5", "X-Forwarded-For", "6.6.6.6, 198.51.100.9, 10.0.0.5"), "", ""},

		// Traefik: the last entry of the X-Forwarded-For forwardAuth writes.
		{"traefik, allowed", "traefik", 0, "listed", append(traefik, "X-Forwarded-For", "198.51.100.9"), "", ""},
		{"traefik, X-Keygate-Client-IP ignored", "traefik", 0, "listed",
			append(traefik, "X-Forwarded-For", "192.0.2.1", "X-Keygate-Client-IP", "198.51.100.9"), "ip_not_allowed", "192.0.2.1"},
		{"traefik, client's entries ignored", "traefik", 0, "listed",
			append(traefik, "X-Forwarded-For", "198.51.100.9, 192.0.2.1"), "ip_not_allowed", "192.0.2.1"},
		{"traefik, no X-Forwarded-For", "traefik", 0, "listed", traefik, "ip_not_allowed", unknown},
		{"traefik, one trusted hop", "traefik", 1, "listed", append(traefik, "X-Forwarded-For", "6.6.6.6, 198.51.100.9, 10.0.0.5"), "", ""},
		{"traefik, one trusted hop, too few entries", "traefik", 1, "listed", append(traefik, "X-Forwarded-For", "198.51.100.9"), "ip_not_allowed", unknown},

		// Envoy's http_service: X-Keygate-Client-IP from headers_to_add,
		// X-Forwarded-For as Envoy appended to it.
		{"envoy, allowed", "envoy", 0, "listed", []string{"X-Keygate-Client-IP", "198.51.100.9"}, "", ""},
		{"envoy, X-Forwarded-For ignored", "envoy", 0, "listed",
			[]string{"X-Keygate-Client-IP", "192.0.2.1", "X-Forwarded-For", "198.51.100.9, 192.0.2.1"}, "ip_not_allowed", "192.0.2.1"},
		{"envoy, one trusted hop", "envoy", 1, "listed",
			[]string{"X-Keygate-Client-IP", "10.0.0.5", "X-Forwarded-For", "198.51.100.9, 10.0.0.5"}, "", ""},
		{"envoy, one trusted hop, peer not appended", "envoy", 1, "listed",
			[]string{"X-Keygate-Client-IP", "10.0.0.5", "X-Forwarded-For", "6.6.6.6, 198.51.100.9"}, "ip_not_allowed", unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := k.listed
			if tc.key == "any" {
				key = k.any
			}
			req := httptest.NewRequest("GET", "/v1/models", nil)
			req.Header.Set("Authorization", "Bearer "+key)
			for i := 0; i+1 < len(tc.headers); i += 2 {
				req.Header.Add(tc.headers[i], tc.headers[i+1])
			}
			w := httptest.NewRecorder()
			k.handler(tc.mode, tc.hops).ServeHTTP(w, req)
			body, _ := io.ReadAll(w.Result().Body)
			if tc.code == "" {
				if w.Code != 200 {
					t.Fatalf("status %d, want an allow: %s", w.Code, body)
				}
				return
			}
			var b struct {
				Error struct{ Message, Type, Code string }
			}
			if err := json.Unmarshal(body, &b); err != nil || w.Code != 403 || b.Error.Code != tc.code || b.Error.Type != "permission_error" {
				t.Fatalf("status %d, body %s: want 403 %s", w.Code, body, tc.code)
			}
			if !strings.Contains(b.Error.Message, tc.seen) || strings.Contains(string(body), key) {
				t.Fatalf("message %q: want it to name %q and never the key", b.Error.Message, tc.seen)
			}
		})
	}
}
