package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// stubCheck is one request the stub keygate received.
type stubCheck struct {
	call            string
	method, uri     []string // X-Original-Method and X-Original-URI values
	forwardedMethod []string // X-Forwarded-Method values
	requestMethod   string   // and the request line's
	requestURI      string
	contentLength   int64
	body            int
	contentType     []string
	originalLength  []string // X-Original-Content-Length values
	authorizations  []string
}

// stub stands where keygate should be and answers as the client's X-Stub
// header says, so the shipped handler can be shown answers keygate never
// gives.
type stub struct {
	srv    *httptest.Server
	mu     sync.Mutex
	checks []stubCheck
}

const denyBody = `{"error":{"message":"Your balance is 0.00 MXN; top up to continue.","type":"insufficient_quota","param":null,"code":"insufficient_balance"}}`

// What the stub's allow says to the client.
var stubAllowHeaders = map[string]string{"X-Ratelimit-Limit": "7", "X-Ratelimit-Remaining": "6", "X-Ratelimit-Reset": "9",
	"X-Ratelimit-Limit-Requests": "7", "X-Ratelimit-Remaining-Requests": "6", "X-Ratelimit-Reset-Requests": "9s",
	"X-Ratelimit-Limit-Tokens": "7000", "X-Ratelimit-Remaining-Tokens": "6000", "X-Ratelimit-Reset-Tokens": "8s",
	"X-Balance-Low": "true", "X-Balance-Remaining": "1.00 MXN"}

// What the stub's denials say besides their status and body.
var stubDenyHeaders = map[string]string{"X-Should-Retry": "false", "Retry-After": "7", "Www-Authenticate": `Bearer realm="keygate"`,
	"X-Ratelimit-Limit": "1", "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "7",
	"X-Ratelimit-Limit-Requests": "1", "X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "7s",
	"X-Ratelimit-Limit-Tokens": "50", "X-Ratelimit-Remaining-Tokens": "50", "X-Ratelimit-Reset-Tokens": "3600s"}

func startStub(t *testing.T) *stub {
	s := &stub{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.checks = append(s.checks, stubCheck{call: r.Header.Get("X-E2E-Call"), method: r.Header.Values("X-Original-Method"),
			uri: r.Header.Values("X-Original-Uri"), forwardedMethod: r.Header.Values("X-Forwarded-Method"), requestMethod: r.Method, requestURI: r.RequestURI, contentLength: r.ContentLength, body: len(body),
			contentType: r.Header.Values("Content-Type"), originalLength: r.Header.Values("X-Original-Content-Length"),
			authorizations: r.Header.Values("Authorization")})
		s.mu.Unlock()
		identity := func() {
			w.Header().Set("X-Keygate-Key-Id", "key_stub")
			w.Header().Set("X-Keygate-Account-Id", "stub-account")
			w.Header().Set("X-Keygate-Scopes", "chat:send")
			w.Header().Set("X-Keygate-Env", "live")
		}
		mode := r.Header.Get("X-Stub")
		switch mode {
		case "allow", "allow-reserved":
			identity()
			// keygate names its credential headers, in its own spelling.
			w.Header().Set("X-Envoy-Auth-Headers-To-Remove", "authorization,x-api-key,api-key")
			for name, v := range stubAllowHeaders {
				w.Header().Set(name, v)
			}
			w.Header().Set("Set-Cookie", "stub=1")
			if mode == "allow-reserved" {
				w.Header().Set("X-Keygate-Reservation-Id", "res_stub")
			}
		case "deny", "deny-400", "deny-413", "deny-415":
			w.Header().Set("Content-Type", "application/json")
			for name, v := range stubDenyHeaders {
				w.Header().Set(name, v)
			}
			w.Header().Set("X-Stub-Internal", "not for clients")
			w.Header().Set("Set-Cookie", "stub=1")
			w.Header().Set("X-Keygate-Reservation-Id", "res_stub")
			status := http.StatusPaymentRequired
			if code, ok := strings.CutPrefix(mode, "deny-"); ok {
				status, _ = strconv.Atoi(code)
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, denyBody)
		case "deny-accel-redirect":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Accel-Redirect", "/v1/models")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, denyBody)
		case "allow-remove-any-spelling":
			identity()
			w.Header().Set("X-Envoy-Auth-Headers-To-Remove", " Authorization , API-KEY,")
		case "allow-remove-unstripped":
			identity()
			w.Header().Set("X-Envoy-Auth-Headers-To-Remove", "authorization,x-custom-key,x-api-key")
		case "allow-no-identity":
			w.Header().Set("X-Ratelimit-Limit", "7")
		case "allow-empty-key-id":
			identity()
			w.Header().Set("X-Keygate-Key-Id", "")
		case "allow-no-scopes-header":
			identity()
			w.Header().Del("X-Keygate-Scopes")
		case "error-500":
			w.WriteHeader(http.StatusInternalServerError)
		case "deny-html":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, "<html>no</html>")
		case "deny-not-json":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, "forbidden")
		case "redirect":
			identity()
			http.Redirect(w, r, "/v1/models", http.StatusFound)
		case "teapot":
			identity()
			w.WriteHeader(http.StatusTeapot)
		case "slow":
			time.Sleep(3 * time.Second) // past the check's 2 s read timeout
			identity()
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stub) checksFor(call string) []stubCheck {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stubCheck
	for _, c := range s.checks {
		if c.call == call {
			out = append(out, c)
		}
	}
	return out
}

// TestNginxFailsClosed shows the shipped handler answers keygate cannot
// give: only a 200 with the identity is an allow, only a JSON deny is
// passed on, and everything else, keygate being down included, is a 503
// auth_unavailable that never reaches the backend.
func TestNginxFailsClosed(t *testing.T) {
	nginxBinary(t)
	st := startStub(t)
	be := startBackend(t)
	ng := startNginx(t, st.srv.Listener.Addr().String(), be.addr())
	down := startNginx(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), be.addr()) // nothing listens there

	body := `{"model":"e2e-model","messages":[{"role":"user","content":"hello"}]}`
	sendBody := func(t *testing.T, base, call, mode, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions?stream=false", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer ghub_sk_live_stubstubstubstubstubstubstubstub")
		req.Header.Set("X-E2E-Call", call)
		req.Header.Set("X-Stub", mode)
		// What a client might send to steer the check.
		req.Header.Set("X-Original-Method", "GET")
		req.Header["x-original-uri"] = []string{"/v1/models", "/v1/other"}
		req.Header.Set("X-Keygate-Account-Id", "victim")
		req.Header.Set("X-Keygate-Reservation-Id", forgedReservation)
		req.Header.Set("X-Original-Content-Length", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	send := func(t *testing.T, base, call, mode string) (*http.Response, string) {
		t.Helper()
		return sendBody(t, base, call, mode, body)
	}
	unavailable := func(t *testing.T, resp *http.Response, body string) {
		t.Helper()
		if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Retry-After") != "1" ||
			!jsonError.MatchString(body) {
			t.Errorf("answer %d %v %s, want 503 auth_unavailable", resp.StatusCode, resp.Header, body)
		}
	}

	t.Run("allow", func(t *testing.T) {
		resp, _ := send(t, ng.base, "stub-allow", "allow")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		for name, want := range stubAllowHeaders {
			if got := resp.Header.Values(name); len(got) != 1 || got[0] != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("the check's Set-Cookie reached the client")
		}
		reqs := be.requests("stub-allow")
		if len(reqs) != 1 {
			t.Fatalf("the backend got %d requests", len(reqs))
		}
		checkUpstream(t, reqs[0], &identity{keyID: "key_stub", account: "stub-account", scopes: "chat:send", env: "live"})
		if reqs[0].Body != len(body) {
			t.Errorf("the backend got %d bytes of body, want %d", reqs[0].Body, len(body))
		}
		checks := st.checksFor("stub-allow")
		if len(checks) != 1 {
			t.Fatalf("%d checks for one request", len(checks))
		}
		c := checks[0]
		if fmt.Sprint(c.method) != "[POST]" || fmt.Sprint(c.uri) != "[/v1/chat/completions?stream=false]" {
			t.Errorf("the check got X-Original-Method %q and X-Original-URI %q", c.method, c.uri)
		}
		// The request line says the same, for a keygate in envoy mode.
		if c.requestMethod != http.MethodPost || c.requestURI != "/v1/chat/completions?stream=false" {
			t.Errorf("the check's request line was %s %s", c.requestMethod, c.requestURI)
		}
		// The body, whole, with its type, and no length of a body not sent.
		if c.body != len(body) || c.contentLength != int64(len(body)) || fmt.Sprint(c.contentType) != "[application/json]" || len(c.originalLength) != 0 {
			t.Errorf("the check had %d bytes of body (content-length %d, content-type %q, X-Original-Content-Length %q)",
				c.body, c.contentLength, c.contentType, c.originalLength)
		}
		if len(c.authorizations) != 1 {
			t.Errorf("the check got Authorization %q", c.authorizations)
		}
	})

	// The reservation id of keygate's allow reaches the backend, and the
	// client's never does (the allow above names none).
	t.Run("reservation id", func(t *testing.T) {
		resp, _ := send(t, ng.base, "stub-reserved", "allow-reserved")
		reqs := be.requests("stub-reserved")
		if resp.StatusCode != 200 || len(reqs) != 1 {
			t.Fatalf("status %d, %d requests at the backend", resp.StatusCode, len(reqs))
		}
		checkUpstream(t, reqs[0], &identity{keyID: "key_stub", account: "stub-account", scopes: "chat:send", env: "live", reserved: true})
		if got := reqs[0].Header.Values(reservationHeader); fmt.Sprint(got) != "[res_stub]" {
			t.Errorf("the backend got reservation ids %q, want keygate's", got)
		}
	})

	// A body over client_body_buffer_size waits in a file: the check
	// carries none of it, and its length in X-Original-Content-Length.
	// The backend gets it whole.
	t.Run("body in a file", func(t *testing.T) {
		large := `{"model":"e2e-model","messages":[{"role":"user","content":"` + strings.Repeat("x", 2<<20) + `"}]}`
		resp, _ := sendBody(t, ng.base, "stub-file", "allow", large)
		checks := st.checksFor("stub-file")
		if resp.StatusCode != 200 || len(checks) != 1 {
			t.Fatalf("status %d, %d checks", resp.StatusCode, len(checks))
		}
		c := checks[0]
		if c.body != 0 || c.contentLength != 0 || fmt.Sprint(c.originalLength) != fmt.Sprintf("[%d]", len(large)) || fmt.Sprint(c.contentType) != "[application/json]" {
			t.Errorf("the check had %d bytes of body (content-length %d, content-type %q, X-Original-Content-Length %q)",
				c.body, c.contentLength, c.contentType, c.originalLength)
		}
		if reqs := be.requests("stub-file"); len(reqs) != 1 || reqs[0].Body != len(large) {
			t.Errorf("the backend got %+v", reqs)
		}
	})

	t.Run("credential headers removed", func(t *testing.T) {
		resp, _ := send(t, ng.base, "stub-remove-any-spelling", "allow-remove-any-spelling")
		if resp.StatusCode != 200 || len(be.requests("stub-remove-any-spelling")) != 1 {
			t.Errorf("an allow naming only headers keygate.conf removes: %d", resp.StatusCode)
		}
	})

	// keygate reads keys from a header keygate.conf does not remove: the
	// key would reach the backend, so the request does not.
	t.Run("credential header not removed", func(t *testing.T) {
		resp, got := send(t, ng.base, "stub-remove-unstripped", "allow-remove-unstripped")
		unavailable(t, resp, got)
		if n := len(be.requests("stub-remove-unstripped")); n != 0 {
			t.Errorf("the backend got %d requests", n)
		}
		if !strings.Contains(ng.errorLog(), `keygate: keygate reads keys from the header "x-custom-key", which keygate.conf does not remove`) {
			t.Errorf("the error log does not name the header:\n%s", ng.errorLog())
		}
	})

	// A HEAD is checked as a GET: in X-Original-Method, X-Forwarded-Method
	// and the request line alike.
	t.Run("HEAD checked as GET", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodHead, ng.base+"/v1/models", nil)
		req.Header.Set("X-E2E-Call", "stub-head")
		req.Header.Set("X-Stub", "allow")
		req.Header.Set("X-Original-Method", "HEAD")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		checks := st.checksFor("stub-head")
		if resp.StatusCode != 200 || len(checks) != 1 {
			t.Fatalf("status %d, %d checks", resp.StatusCode, len(checks))
		}
		c := checks[0]
		if fmt.Sprint(c.method) != "[GET]" || fmt.Sprint(c.forwardedMethod) != "[GET]" || c.requestMethod != http.MethodGet {
			t.Errorf("the check got X-Original-Method %q, X-Forwarded-Method %q, request line %s", c.method, c.forwardedMethod, c.requestMethod)
		}
		if reqs := be.requests("stub-head"); len(reqs) != 1 || reqs[0].Method != http.MethodHead {
			t.Errorf("the backend got %+v, want one HEAD", reqs)
		}
	})

	// Every status keygate denies with, metering's 400, 413 and 415
	// among them, passes with its body and the headers a client reads.
	for _, c := range []struct {
		mode   string
		status int
	}{{"deny", 402}, {"deny-400", 400}, {"deny-413", 413}, {"deny-415", 415}} {
		t.Run(c.mode+" passed on", func(t *testing.T) {
			resp, got := send(t, ng.base, "stub-"+c.mode, c.mode)
			if resp.StatusCode != c.status || got != denyBody {
				t.Fatalf("answer %d %s", resp.StatusCode, got)
			}
			want := map[string]string{"Content-Type": "application/json"}
			for name, v := range stubDenyHeaders {
				want[name] = v
			}
			for name, want := range want {
				if v := resp.Header.Values(name); len(v) != 1 || v[0] != want {
					t.Errorf("%s: %q, want %q", name, v, want)
				}
			}
			for _, name := range []string{"X-Stub-Internal", "Set-Cookie", "X-Keygate-Key-Id", "X-Keygate-Reservation-Id"} {
				if v := resp.Header.Get(name); v != "" {
					t.Errorf("%s reached the client: %q", name, v)
				}
			}
			if n := len(st.checksFor("stub-" + c.mode)); n != 1 {
				t.Errorf("%d checks for one request", n)
			}
			if n := len(be.requests("stub-" + c.mode)); n != 0 {
				t.Errorf("the backend got %d requests", n)
			}
		})
	}

	t.Run("X-Accel-Redirect ignored", func(t *testing.T) {
		resp, got := send(t, ng.base, "stub-accel", "deny-accel-redirect")
		if resp.StatusCode != 401 || got != denyBody {
			t.Errorf("answer %d %s", resp.StatusCode, got)
		}
	})

	// A 200 without one of the identity headers carries a missing or
	// empty value: keygate.check must not turn it into an allow. An
	// x-keygate-scopes of "" is keygate's answer for a key without scopes,
	// and is allowed; a missing one is not.
	for _, mode := range []string{"allow-no-identity", "allow-empty-key-id", "allow-no-scopes-header", "error-500", "deny-html",
		"deny-not-json", "redirect", "teapot", "slow"} {
		t.Run(mode, func(t *testing.T) {
			resp, got := send(t, ng.base, "stub-"+mode, mode)
			unavailable(t, resp, got)
			if n := len(be.requests("stub-" + mode)); n != 0 {
				t.Errorf("the backend got %d requests", n)
			}
			if n := len(st.checksFor("stub-" + mode)); n != 1 {
				t.Errorf("%d checks for one request", n)
			}
		})
	}

	// Only keygate.check's subrequest reaches the check location, and no
	// client request reaches the backend's named location by its name.
	t.Run("internal locations", func(t *testing.T) {
		for _, path := range []string{"/_keygate", "/_keygate?x=1", "/@keygate_backend"} {
			req, _ := http.NewRequest(http.MethodGet, ng.base+path, nil)
			req.Header.Set("X-E2E-Call", "stub-internal")
			req.Header.Set("X-Stub", "allow")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if path == "/@keygate_backend" {
				// Like any other path: checked once, then allowed by the stub.
				if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Limit") != "7" {
					t.Errorf("%s: %d %v", path, resp.StatusCode, resp.Header)
				}
				continue
			}
			if resp.StatusCode != 404 || resp.Header.Get("X-Keygate-Key-Id") != "" {
				t.Errorf("%s: %d %v", path, resp.StatusCode, resp.Header)
			}
		}
		if n := len(st.checksFor("stub-internal")); n != 1 {
			t.Errorf("%d checks, want 1 (for /@keygate_backend)", n)
		}
	})

	t.Run("keygate unreachable", func(t *testing.T) {
		resp, got := send(t, down.base, "stub-down", "allow")
		unavailable(t, resp, got)
		if n := len(be.requests("stub-down")); n != 0 {
			t.Errorf("the backend got %d requests", n)
		}
		if !strings.Contains(down.errorLog(), "keygate: keygate answered 502") {
			t.Errorf("the error log does not say why:\n%s", down.errorLog())
		}
	})

	for _, n := range []*nginx{ng, down} {
		if in := n.keyLogged(t, "stubstubstub"); len(in) > 0 {
			t.Errorf("the credential appears in nginx's %v", in)
		}
	}
}
