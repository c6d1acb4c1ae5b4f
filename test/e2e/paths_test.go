package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/config"
)

// The differential path test's API, as every backend serves it: each
// handler, the scope keygate must require before it runs, and the route
// table that says so.
var (
	handlerScope = map[string]string{
		"chat":        "chat:send",
		"models":      "models:read",
		"model":       "models:read",
		"file_get":    "files:read",
		"file_delete": "files:write",
	}
	pathRoutes = []config.Route{
		{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"},
		{Method: "GET", PathPrefix: "/v1/models", Scope: "models:read"},
		{Method: "GET", PathPrefix: "/v1/files", Scope: "files:read"},
		{Method: "DELETE", PathPrefix: "/v1/files", Scope: "files:write"},
	}
	// pathClasses are the kinds of spelling testdata/spellings.txt must
	// cover, each for every route.
	pathClasses = []string{"canonical", "case", "backslash", "fragment", "escaped-bslash", "escaped-slash", "dot-segments",
		"escaped-dots", "double-slash", "params", "nul", "control", "invalid-escape", "non-ascii", "absolute-form", "host"}
	// pathTargets are the routes a spelling aims at: handler and method.
	pathTargets = [][2]string{{"chat", "POST"}, {"models", "GET"}, {"model", "GET"}, {"file_get", "GET"},
		{"file_delete", "DELETE"}, {"models", "HEAD"}, {"file_get", "HEAD"}}
)

// spelling is one line of testdata/spellings.txt.
type spelling struct {
	class, handler, method, target, host string
	line                                 int
}

// readSpellings reads testdata/spellings.txt and fails the test unless
// every class has a spelling for every route.
func readSpellings(t *testing.T) []spelling {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "spellings.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []spelling
	have := map[[3]string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 && len(f) != 5 {
			t.Fatalf("testdata/spellings.txt:%d: want class, route, method, target and maybe host", i+1)
		}
		f = append(f, "api.example")
		target, err := strconv.Unquote(`"` + f[3] + `"`)
		if err != nil {
			t.Fatalf("testdata/spellings.txt:%d: target %s: %v", i+1, f[3], err)
		}
		host, err := strconv.Unquote(`"` + f[4] + `"`)
		if err != nil {
			t.Fatalf("testdata/spellings.txt:%d: host %s: %v", i+1, f[4], err)
		}
		if _, ok := handlerScope[f[1]]; !ok || !slices.Contains(pathClasses, f[0]) {
			t.Fatalf("testdata/spellings.txt:%d: unknown class %q or route %q", i+1, f[0], f[1])
		}
		out = append(out, spelling{class: f[0], handler: f[1], method: f[2], target: target, host: host, line: i + 1})
		have[[3]string{f[0], f[1], f[2]}] = true
	}
	for _, c := range pathClasses {
		for _, r := range pathTargets {
			if !have[[3]string{c, r[0], r[1]}] {
				t.Errorf("testdata/spellings.txt has no %s spelling of %s %s", c, r[1], r[0])
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// TestPathSpellings sends every spelling in testdata/spellings.txt through
// nginx and the shipped recipe, with a key for every scope, to the same
// API on six backends (Express 4 and 5, Koa, Fastify, Hono, Go's
// net/http), with keygate in each HTTP mode behind the recipe. Every
// request must be denied, or reach only a handler whose scope its key
// holds.
func TestPathSpellings(t *testing.T) {
	nodeBin := nodeBinary(t)
	spellings := readSpellings(t)
	backends := startPathBackends(t, nodeBin)
	for _, mode := range []string{"nginx", "envoy", "traefik"} {
		t.Run(mode, func(t *testing.T) {
			kg := startKeygate(t, mode, func(c *config.Config) { c.Routes, c.DefaultScope = pathRoutes, "none" })
			kg.setAccount(t, "acme", 1_000_000, nil)
			keys := map[string]string{} // scope -> a key holding only it
			for _, scope := range []string{"other:x", "chat:send", "models:read", "files:read", "files:write"} {
				keys[scope], _ = kg.createKey(t, keyOpts{account: "acme", scopes: []string{scope}})
			}
			var (
				mu    sync.Mutex
				tally = map[string]*classTally{}
				wg    sync.WaitGroup
			)
			for _, name := range slices.Sorted(mapKeys(backends)) {
				ng := startNginx(t, kg.inst.HTTPAddr.String(), backends[name])
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, sp := range spellings {
						for scope, key := range keys {
							handler, status, err := sendSpelling(ng, sp, key)
							mu.Lock()
							tally[sp.class] = tally[sp.class].add(t, name, sp, scope, handler, status, err)
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			report(t, tally)
		})
	}
}

// classTally counts what the requests of one class of spelling met.
type classTally struct {
	none, reached, violations int
	canonicalMissed           []string
}

// add counts one request's outcome: the handler that ran ("" for none).
func (c *classTally) add(t *testing.T, backend string, sp spelling, scope, handler string, status int, err error) *classTally {
	if c == nil {
		c = &classTally{}
	}
	switch {
	case err != nil:
		t.Errorf("%s, spellings.txt:%d (%s %q): %v", backend, sp.line, sp.method, sp.target, err)
	case handler == "":
		c.none++
	case handlerScope[handler] == "":
		t.Errorf("%s, spellings.txt:%d: unknown handler %q", backend, sp.line, handler)
	case handlerScope[handler] != scope:
		c.violations++
		t.Errorf("%s ran handler %s (scope %s) for %s %q, Host %q (spellings.txt:%d) with a key holding only %s",
			backend, handler, handlerScope[handler], sp.method, sp.target, sp.host, sp.line, scope)
	default:
		c.reached++
	}
	if sp.class == "canonical" && scope == handlerScope[sp.handler] && (handler != sp.handler || status != http.StatusOK) {
		c.canonicalMissed = append(c.canonicalMissed, fmt.Sprintf("%s %s %s: %d, handler %q", backend, sp.method, sp.target, status, handler))
	}
	return c
}

// report prints the tally by class and fails the test on a violation, or
// when a canonical request with its scope did not reach its handler (the
// test would prove nothing).
func report(t *testing.T, tally map[string]*classTally) {
	t.Helper()
	var b strings.Builder
	violations := 0
	fmt.Fprintf(&b, "%-16s %10s %8s %22s\n", "class", "no handler", "reached", "reached without scope")
	for _, class := range pathClasses {
		c := tally[class]
		fmt.Fprintf(&b, "%-16s %10d %8d %22d\n", class, c.none, c.reached, c.violations)
		violations += c.violations
		for _, m := range c.canonicalMissed {
			t.Errorf("a canonical request with its scope did not reach its handler: %s", m)
		}
	}
	fmt.Fprintf(&b, "handlers reached without their scope: %d", violations)
	t.Log("\n" + b.String())
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// sendSpelling sends sp with key over a connection of its own, exactly as
// written, and returns the handler that answered ("" for none) and the
// status.
func sendSpelling(ng *nginx, sp spelling, key string) (string, int, error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(ng.base, "http://"))
	if err != nil {
		return "", 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := sp.method + " " + sp.target + " HTTP/1.1\r\nHost: " + sp.host + "\r\nAuthorization: Bearer " + key + "\r\nConnection: close\r\n"
	if sp.method == http.MethodPost {
		body := `{"model":"e2e-model","messages":[]}`
		req += "Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	} else {
		req += "\r\n"
	}
	if _, err := io.WriteString(conn, req); err != nil {
		return "", 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: sp.method})
	if err != nil {
		return "", 0, fmt.Errorf("reading the answer: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("X-Handler"), resp.StatusCode, nil
}

// startPathBackends starts the API on the five Node frameworks
// (node/backends.mjs) and on Go's net/http, and returns their addresses.
func startPathBackends(t *testing.T, nodeBin string) map[string]string {
	t.Helper()
	cmd := exec.Command(nodeBin, "backends.mjs")
	cmd.Dir = nodeDir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // backends.mjs exits when its input ends
		if err := cmd.Wait(); err != nil {
			t.Logf("backends.mjs: %v\n%s", err, stderr.String())
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("backends.mjs did not start: %v\n%s", err, stderr.String())
	}
	var ports map[string]int
	if err := json.Unmarshal([]byte(line), &ports); err != nil || len(ports) != 5 {
		t.Fatalf("backends.mjs printed %q: %v", line, err)
	}
	addrs := map[string]string{}
	for name, port := range ports {
		addrs[name] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	mux := http.NewServeMux()
	for _, r := range [][3]string{{"POST", "/v1/chat/completions", "chat"}, {"GET", "/v1/models", "models"},
		{"GET", "/v1/models/{id}", "model"}, {"GET", "/v1/files/{id}", "file_get"}, {"DELETE", "/v1/files/{id}", "file_delete"}} {
		mux.HandleFunc(r[0]+" "+r[1], func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Handler", r[2])
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"handler":%q}`, r[2])
		})
	}
	gosrv := httptest.NewServer(mux)
	t.Cleanup(gosrv.Close)
	addrs["go-net-http"] = gosrv.Listener.Addr().String()
	return addrs
}
