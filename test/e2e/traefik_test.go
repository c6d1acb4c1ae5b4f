package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"gopkg.in/yaml.v3"
)

// No Traefik binary can be had here. traefikRecipe stands in for Traefik
// v3.7 running proxy/traefik (traefik.yml and keygate.yaml), doing what
// Traefik's source does with that configuration:
//   - the entry point's aliasHeadersStrategy: delete removes every request
//     header whose name has a character other than a letter, a digit or "-"
//     (pkg/server/server_entrypoint_tcp.go);
//   - forwardAuth (pkg/middlewares/auth/forward.go) sends keygate a GET
//     with the client's authRequestHeaders and X-Forwarded-* of its own;
//     with forwardBody, the client's body too, framed as the client framed
//     it, unless it is over maxBodySize: then it answers an empty 401
//     without asking; answers an unreachable keygate with an empty 500 and
//     a non-2xx answer with keygate's status, headers and body; on a 2xx
//     copies authResponseHeaders onto the request, replacing the client's,
//     and removes then copies every header authResponseHeadersRegex
//     matches;
//   - the headers middleware removes each customRequestHeaders entry whose
//     value is empty, and each customResponseHeaders one from the
//     backend's response.
type traefikRecipe struct {
	keygate, backend string // addresses

	aliasHeadersStrategy string
	authRequestHeaders   []string
	forwardBody          bool
	maxBodySize          int64
	authResponseHeaders  []string
	authResponseRegex    *regexp.Regexp
	removeRequest        []string
	removeResponse       []string
}

// loadTraefikRecipe reads the shipped files.
func loadTraefikRecipe(t *testing.T, keygateAddr, backendAddr string) *traefikRecipe {
	t.Helper()
	var static struct {
		EntryPoints map[string]struct {
			HTTP struct {
				AliasHeadersStrategy string `yaml:"aliasHeadersStrategy"`
			} `yaml:"http"`
		} `yaml:"entryPoints"`
	}
	var dyn struct {
		HTTP struct {
			Routers map[string]struct {
				EntryPoints []string `yaml:"entryPoints"`
				Middlewares []string `yaml:"middlewares"`
			} `yaml:"routers"`
			Middlewares struct {
				Auth struct {
					ForwardAuth struct {
						TrustForwardHeader       bool     `yaml:"trustForwardHeader"`
						AuthRequestHeaders       []string `yaml:"authRequestHeaders"`
						ForwardBody              bool     `yaml:"forwardBody"`
						MaxBodySize              *int64   `yaml:"maxBodySize"`
						AuthResponseHeaders      []string `yaml:"authResponseHeaders"`
						AuthResponseHeadersRegex string   `yaml:"authResponseHeadersRegex"`
					} `yaml:"forwardAuth"`
				} `yaml:"keygate-auth"`
				Upstream struct {
					Headers struct {
						CustomRequestHeaders  map[string]string `yaml:"customRequestHeaders"`
						CustomResponseHeaders map[string]string `yaml:"customResponseHeaders"`
					} `yaml:"headers"`
				} `yaml:"keygate-upstream-headers"`
			} `yaml:"middlewares"`
		} `yaml:"http"`
	}
	for name, v := range map[string]any{"traefik.yml": &static, "keygate.yaml": &dyn} {
		b, err := os.ReadFile(filepath.Join("..", "..", "proxy", "traefik", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	router, ok := dyn.HTTP.Routers["ai"]
	if !ok || len(router.EntryPoints) != 1 || fmt.Sprint(router.Middlewares) != "[keygate-auth keygate-upstream-headers]" {
		t.Fatalf("keygate.yaml: router ai %+v: this stand-in runs one entry point, then keygate-auth, then keygate-upstream-headers", router)
	}
	fa := dyn.HTTP.Middlewares.Auth.ForwardAuth
	if fa.TrustForwardHeader {
		t.Fatal("keygate.yaml: trustForwardHeader is true")
	}
	tr := &traefikRecipe{keygate: keygateAddr, backend: backendAddr,
		aliasHeadersStrategy: static.EntryPoints[router.EntryPoints[0]].HTTP.AliasHeadersStrategy,
		authRequestHeaders:   fa.AuthRequestHeaders, forwardBody: fa.ForwardBody, maxBodySize: -1, // Traefik's default: no limit
		authResponseHeaders: fa.AuthResponseHeaders, authResponseRegex: regexp.MustCompile(fa.AuthResponseHeadersRegex)}
	if fa.MaxBodySize != nil {
		tr.maxBodySize = *fa.MaxBodySize
	}
	for name, v := range dyn.HTTP.Middlewares.Upstream.Headers.CustomRequestHeaders {
		if v == "" {
			tr.removeRequest = append(tr.removeRequest, name)
		}
	}
	for name, v := range dyn.HTTP.Middlewares.Upstream.Headers.CustomResponseHeaders {
		if v == "" {
			tr.removeResponse = append(tr.removeResponse, name)
		}
	}
	return tr
}

var aliasFree = regexp.MustCompile(`^[A-Za-z0-9-]+$`)

func (tr *traefikRecipe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if tr.aliasHeadersStrategy == "delete" {
		for name := range r.Header {
			if !aliasFree.MatchString(name) {
				delete(r.Header, name)
			}
		}
	}
	check, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+tr.keygate+"/", nil)
	if tr.forwardBody {
		check.ContentLength, check.TransferEncoding = r.ContentLength, r.TransferEncoding
		body, err := tr.readBody(r)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized) // over maxBodySize: Traefik's answer
			return
		}
		if body != nil {
			r.Body, check.Body = io.NopCloser(bytes.NewReader(body)), io.NopCloser(bytes.NewReader(body))
		}
	}
	for _, name := range tr.authRequestHeaders {
		if vs := r.Header.Values(name); len(vs) > 0 {
			check.Header[http.CanonicalHeaderKey(name)] = vs
		}
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	check.Header.Set("X-Forwarded-For", host)
	check.Header.Set("X-Forwarded-Method", r.Method)
	check.Header.Set("X-Forwarded-Proto", "http")
	check.Header.Set("X-Forwarded-Host", r.Host)
	check.Header.Set("X-Forwarded-Uri", r.URL.RequestURI())
	resp, err := http.DefaultClient.Do(check)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		for name, vs := range resp.Header {
			w.Header()[name] = vs
		}
		w.Header().Del("Connection")
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
		return
	}
	for _, name := range tr.authResponseHeaders {
		key := http.CanonicalHeaderKey(name)
		r.Header.Del(key)
		if vs := resp.Header[key]; len(vs) > 0 {
			r.Header[key] = vs
		}
	}
	for name := range r.Header {
		if tr.authResponseRegex.MatchString(name) {
			delete(r.Header, name)
		}
	}
	for name, vs := range resp.Header {
		if tr.authResponseRegex.MatchString(name) {
			r.Header[name] = vs
		}
	}
	for _, name := range tr.removeRequest {
		r.Header.Del(name)
	}
	target, _ := url.Parse("http://" + tr.backend)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		for _, name := range tr.removeResponse {
			resp.Header.Del(name)
		}
		return nil
	}
	proxy.ServeHTTP(w, r)
}

var errBodyTooLarge = errors.New("request body too large")

// readBody reads the body as forwardAuth does: nil for none, an error
// past maxBodySize.
func (tr *traefikRecipe) readBody(r *http.Request) ([]byte, error) {
	if tr.maxBodySize < 0 {
		return io.ReadAll(r.Body)
	}
	body := make([]byte, tr.maxBodySize+1)
	n, err := io.ReadFull(r.Body, body)
	switch {
	case errors.Is(err, io.EOF):
		return nil, nil
	case errors.Is(err, io.ErrUnexpectedEOF):
		return body[:n], nil
	case err != nil:
		return nil, err
	}
	return nil, errBodyTooLarge
}

// TestTraefikRecipe: proxy/traefik as Traefik runs it (traefikRecipe),
// with keygate in traefik mode reading keys from api-key too: a key in any
// credential header is checked and never reaches the backend, nor does any
// spelling of the identity headers but keygate's; and with keygate down,
// what the official SDKs make of Traefik's empty 500.
func TestTraefikRecipe(t *testing.T) {
	nodeBin := nodeBinary(t)
	kg := startKeygate(t, "traefik")
	be := startBackend(t)
	kg.setAccount(t, "acme", 100000, nil)
	key, rec := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"models:read"}})
	tr := loadTraefikRecipe(t, kg.inst.HTTPAddr.String(), be.addr())
	front := httptest.NewServer(tr)
	t.Cleanup(front.Close)

	who := identityOf(rec)
	spoofs := map[string]string{"X-Keygate-Account-Id": "victim", "X.Keygate.Account.Id": "victim2", "X_Keygate_Scopes": "*",
		"x~keygate~key~id": "key_spoofed"}
	for _, c := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"authorization", map[string]string{"Authorization": "Bearer " + key}, 200},
		{"x-api-key", map[string]string{"X-Api-Key": key}, 200},
		{"api-key", map[string]string{"API-KEY": key}, 200},
		{"aliases of credentials", map[string]string{"Authorization": "Bearer " + key, "X.Api.Key": key, "X_Api_Key": key, "Api.Key": key}, 200},
		{"alias alone", map[string]string{"X.Api.Key": key}, 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			call := "traefik-" + strings.ReplaceAll(c.name, " ", "-")
			req, _ := http.NewRequest(http.MethodGet, front.URL+"/v1/models", nil)
			req.Header.Set("X-E2E-Call", call)
			for name, v := range spoofs {
				req.Header[name] = []string{v}
			}
			for name, v := range c.headers {
				req.Header[name] = []string{v}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			reqs := be.requests(call)
			if c.status != 200 {
				if len(reqs) != 0 {
					t.Fatal("a denied request reached the backend")
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("the backend got %d requests", len(reqs))
			}
			checkUpstream(t, reqs[0], &who)
		})
	}

	// Traefik's forwardAuth answers a keygate it cannot reach with status
	// 500 and nothing else. Both SDKs retry that twice, then fail with
	// status 500 and no error code.
	t.Run("keygate down", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nobody := l.Addr().String()
		l.Close()
		down := loadTraefikRecipe(t, nobody, be.addr())
		var requests atomic.Int32
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			down.ServeHTTP(w, r)
		}))
		t.Cleanup(front.Close)

		started := time.Now()
		client := openai.NewClient(option.WithBaseURL(front.URL+"/v1/"), option.WithAPIKey(key))
		_, err = client.Models.List(context.Background())
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 || apiErr.Code != "" || requests.Load() != 3 {
			t.Errorf("Go SDK: %d requests, then %v", requests.Load(), err)
		}
		t.Logf("Go SDK: %d requests in %v, then %v", requests.Load(), time.Since(started).Round(time.Millisecond), err)

		requests.Store(0)
		res := runNode(t, nodeBin, front.URL+"/v1", []nodeCall{{ID: "traefik-down", Op: "models", Key: key}})
		e := res[0].Error
		if e == nil || e.Status != 500 || e.Code != "" || len(e.Classes) == 0 || e.Classes[0] != "InternalServerError" || requests.Load() != 3 {
			t.Errorf("Node SDK: %d requests, then %+v", requests.Load(), res[0])
		}
	})
}

// TestTraefikMetering: proxy/traefik in front of a metered keygate, as
// Traefik runs it (traefikRecipe): forwardAuth sends keygate the body, so
// a live key pays what the backend settles and a model outside its list
// is refused; the backend gets keygate's reservation id, never a client's;
// a body over maxBodySize is Traefik's own empty 401, for every key.
func TestTraefikMetering(t *testing.T) {
	nodeBin := nodeBinary(t)
	kg := startKeygate(t, "traefik", withMetering)
	be := startBackend(t)
	be.settleTo(kg.inst.AdminAddr.String(), settleToken)
	m := setUpMetering(t, kg)
	front := httptest.NewServer(loadTraefikRecipe(t, kg.inst.HTTPAddr.String(), be.addr()))
	t.Cleanup(front.Close)
	live, test := identityOf(m.liveRec), identityOf(m.testRec)
	live.reserved = true
	// Traefik passes no header of keygate's allow to the client, and
	// removes the backend's own.
	noRateHeaders := func(t *testing.T, h map[string]string) {
		t.Helper()
		for name := range h {
			if strings.HasPrefix(name, "x-ratelimit-") {
				t.Errorf("the client got %s: %s", name, h[name])
			}
		}
	}
	for _, r := range []meterRow{
		{name: "chat", op: "chat", key: m.live, model: "gpt-4o", maxTokens: 10, status: 200, paid: true, who: &live, check: noRateHeaders},
		{name: "stream", op: "chat_stream", key: m.live, model: "gpt-4o", status: 200, paid: true, who: &live, check: noRateHeaders},
		{name: "test key", op: "chat", key: m.test, model: "gpt-4o", status: 200, who: &test, check: noRateHeaders},
		{name: "model outside the key's list", op: "chat", key: m.live, model: "o3", status: 403, code: "model_not_found"},
		{name: "duplicate model", op: "chat", key: m.live, model: "gpt-4o", dupModel: "o3", status: 400, code: "duplicate_member"},
	} {
		t.Run(r.name, func(t *testing.T) {
			before := kg.balance(t, metered)
			id := "traefik-meter-" + strings.ReplaceAll(r.name, " ", "-")
			o, u := goMeterCall(t, front.URL, id, r, forged, nil)
			if o.status != r.status || o.code != r.code {
				t.Fatalf("status %d, code %q (%v), want %d %q", o.status, o.code, o.err, r.status, r.code)
			}
			if r.check != nil {
				r.check(t, o.headers)
			}
			reqs := be.requests(id)
			if r.status != 200 {
				if len(reqs) != 0 {
					t.Errorf("a denied request reached the backend")
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("the backend got %d requests", len(reqs))
			}
			checkUpstream(t, reqs[0], r.who)
			want := before
			if r.paid {
				want = less(t, before, u.cost())
			}
			kg.waitBalance(t, metered, want)
		})
	}

	// Over maxBodySize (1 MiB), Traefik answers 401 without a body and
	// never asks keygate, whatever the key: the SDKs raise it without
	// retrying.
	t.Run("body over maxBodySize", func(t *testing.T) {
		big := meterRow{op: "chat", key: m.test, model: "gpt-4o", repeat: bigRepeat}
		o, _ := goMeterCall(t, front.URL, "traefik-large", big, nil, nil)
		if o.status != 401 || o.code != "" {
			t.Errorf("Go SDK: status %d, code %q (%v), want Traefik's empty 401", o.status, o.code, o.err)
		}
		res := runNode(t, nodeBin, front.URL+"/v1", []nodeCall{{ID: "traefik-large-node", Op: "chat", Key: m.live, Model: "gpt-4o", Content: "hello", Repeat: bigRepeat}})
		if e := res[0].Error; e == nil || e.Status != 401 || e.Code != "" || len(e.Classes) == 0 || e.Classes[0] != "AuthenticationError" {
			t.Errorf("Node SDK: %+v", res[0])
		}
		if n := len(be.requests("traefik-large")) + len(be.requests("traefik-large-node")); n != 0 {
			t.Errorf("the backend got %d requests", n)
		}
	})
}
