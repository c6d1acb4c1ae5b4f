package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/serve"
	"github.com/keygate/keygate/internal/store"
)

// njsModule is where Debian's libnginx-mod-http-js puts the njs module.
const njsModule = "/usr/lib/nginx/modules/ngx_http_js_module.so"

const installHint = "run test/e2e/deps.sh (it installs Debian's nginx-light and libnginx-mod-http-js, and runs npm ci in test/e2e/node)"

// Paths of the shipped files, from this package's directory.
var (
	shippedConf = filepath.Join("..", "..", "proxy", "nginx", "keygate.conf")
	shippedJS   = filepath.Join("..", "..", "proxy", "nginx", "keygate.js")
	nodeDir     = "node"
)

// nginxBinary returns nginx's path, failing the test with what to install
// when nginx or its njs module is missing.
func nginxBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Fatalf("nginx is not installed: %s", installHint)
		}
		bin = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(njsModule); err != nil {
		t.Fatalf("the nginx njs module (%s) is not installed: %s", njsModule, installHint)
	}
	return bin
}

// nodeBinary returns node's path, failing the test with what to install
// when node or the pinned OpenAI SDK is missing.
func nodeBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: install Node.js 20 or later, then %s", installHint)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	var installed struct {
		Version string `json:"version"`
	}
	b, err := os.ReadFile(filepath.Join(nodeDir, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil {
		t.Fatalf("test/e2e/node/package.json: %v", err)
	}
	b, err = os.ReadFile(filepath.Join(nodeDir, "node_modules", "openai", "package.json"))
	if err != nil || json.Unmarshal(b, &installed) != nil {
		t.Fatalf("the OpenAI Node SDK is not installed in test/e2e/node: %s", installHint)
	}
	if want := pkg.Dependencies["openai"]; installed.Version != want {
		t.Fatalf("test/e2e/node has openai %s installed, package.json pins %s: %s", installed.Version, want, installHint)
	}
	for name, pin := range pkg.Dependencies {
		want := pin[strings.LastIndexByte(pin, '@')+1:] // "npm:express@4.22.3" or "4.22.3"
		b, err := os.ReadFile(filepath.Join(nodeDir, "node_modules", name, "package.json"))
		if err != nil || json.Unmarshal(b, &installed) != nil || installed.Version != want {
			t.Fatalf("test/e2e/node needs %s %s installed: %s", name, want, installHint)
		}
	}
	return bin
}

// keygate is a running keygate in nginx mode, with the NATS server and a
// store client of the test's own.
type keygate struct {
	ns   *server.Server
	inst *serve.Instance
	st   *store.Store
	ctx  context.Context
	logs *syncBuffer
}

// Routes of every keygate in these tests.
var routes = []config.Route{
	{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"},
	{Method: "GET", PathPrefix: "/v1/models", Scope: "models:read"},
}

// credentials of every keygate in these tests but one: keygate's default
// headers and Azure OpenAI's api-key, which the shipped recipes remove too.
var credentials = append(config.Default().Credentials, config.Credential{Header: "api-key"})

// withCredentials makes keygate read keys from creds.
func withCredentials(creds ...config.Credential) func(*config.Config) {
	return func(c *config.Config) { c.Credentials = creds }
}

// startKeygate runs keygate with its HTTP authorization mode in mode
// (nginx, envoy or traefik) on a NATS server of its own, reading keys from
// credentials; each option changes the configuration before it starts.
func startKeygate(t *testing.T, mode string, options ...func(*config.Config)) *keygate {
	t.Helper()
	ns := natstest.Run(t)
	cfg := config.Default()
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.HTTPAddr, cfg.HTTPMode = "127.0.0.1:0", mode
	cfg.NATS.URL = ns.ClientURL()
	cfg.Routes, cfg.DefaultScope = routes, "none"
	cfg.Credentials = credentials
	cfg.ShutdownGrace = config.Duration(2 * time.Second)
	cfg.ShutdownDelay = 0 // no load balancer to drain from
	for _, o := range options {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := natstest.Context(t)
	logs := &syncBuffer{}
	inst, err := serve.Start(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = inst.Shutdown()
		if t.Failed() {
			t.Logf("keygate log:\n%s", logs.String())
		}
	})
	_, js := natstest.Connect(t, ns)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return &keygate{ns: ns, inst: inst, st: st, ctx: ctx, logs: logs}
}

// keyOpts describe a key to create.
type keyOpts struct {
	account  string
	scopes   []string
	limit    *store.RateLimit
	expires  *time.Time
	test     bool     // a test key (store.EnvTest), which never consumes balance
	models   []string // the only models the key may call
	tokens   *store.TokenLimit
	allowIPs []string // the only networks the key may be used from
}

// createKey stores a new key (live unless o.test) and returns its
// plaintext and record.
func (k *keygate) createKey(t *testing.T, o keyOpts) (string, *store.Key) {
	t.Helper()
	f := apikey.DefaultFormat()
	prefix, env := apikey.LivePrefix, store.EnvLive
	if o.test {
		prefix, env = apikey.TestPrefix, store.EnvTest
	}
	plain, err := f.Mint(prefix)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := apikey.NewID()
	rec := &store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: o.account, Env: env, Scopes: o.scopes,
		RateLimit: o.limit, Masked: f.Mask(plain), CreatedAt: time.Now(), ExpiresAt: o.expires,
		Models: o.models, TokenLimit: o.tokens, AllowIPs: o.allowIPs}
	rec.SetVersion() // 2 for a record that carries restrictions
	if err := k.st.CreateKey(k.ctx, rec); err != nil {
		t.Fatal(err)
	}
	// A key is allowed once keygate has received its creation (within
	// milliseconds; before, its key filter has not seen it): wait for
	// that, as a client does between creating a key and using it.
	deadline := time.Now().Add(5 * time.Second)
	for !k.inst.KeyFilter().MayExist(rec.Hash) {
		if time.Now().After(deadline) {
			t.Fatal("keygate never saw the key's creation")
		}
		time.Sleep(time.Millisecond)
	}
	return plain, rec
}

// setAccount sets an account's balance (minor units) and optional
// low-balance threshold.
func (k *keygate) setAccount(t *testing.T, id string, balance int64, lowThreshold *int64) {
	t.Helper()
	if _, err := k.st.UpdateAccount(k.ctx, id, true, func(a *store.Account) error {
		a.Balance, a.LowBalanceThreshold = balance, lowThreshold
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// checks returns keygate_checks_total summed over every code.
func (k *keygate) checks(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + k.inst.AdminAddr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "keygate_checks_total{") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			n += v
		}
	}
	return int(n)
}

// readyz returns the status of keygate's /readyz.
func (k *keygate) readyz(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + k.inst.AdminAddr.String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// seen is one request as the backend received it.
type seen struct {
	Call   string
	Method string
	Path   string
	Header http.Header
	Body   int // bytes
}

// backend answers like an OpenAI-compatible server and records every
// request's headers. Once told where keygate's settle API is (settleTo),
// it settles each metered request after answering it, as a backend behind
// nginx or Traefik does.
type backend struct {
	srv     *httptest.Server
	mu      sync.Mutex
	seen    []seen
	release chan struct{} // closed to let held streams finish
	held    chan struct{} // receives once a held stream sent its first chunk

	settleURL, settleToken string
	settling               sync.WaitGroup
	settled                map[string][]settlement // by call
	settleErrs             []error
}

// settlement is keygate's answer to one settle request.
type settlement struct {
	Reservation string `json:"reservation_id"`
	Account     string `json:"account_id"`
	TokensIn    int64  `json:"tokens_in"`
	TokensOut   int64  `json:"tokens_out"`
	Cost        int64  `json:"cost_nanos"`
	Status      string `json:"status"`
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{release: make(chan struct{}), held: make(chan struct{}, 1), settled: map[string][]settlement{}}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(func() {
		b.unhold()
		b.srv.Close()
		b.settling.Wait()
		for _, err := range b.settleErrors() {
			t.Errorf("backend: %v", err)
		}
	})
	return b
}

// settleTo makes the backend settle what it answers through the settle
// API of the keygate whose admin listener is at adminAddr.
func (b *backend) settleTo(adminAddr, token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settleURL, b.settleToken = "http://"+adminAddr+"/v1/settle", token
}

// settlements returns keygate's answers to the settle requests of call.
func (b *backend) settlements(call string) []settlement {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]settlement(nil), b.settled[call]...)
}

func (b *backend) settleErrors() []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]error(nil), b.settleErrs...)
}

// settle settles the reservation r names (if any) with the usage the
// response reported, once the response is out: the settle API's request
// is the reservation id, the response's status and its usage as written.
func (b *backend) settle(r *http.Request, status int, usage map[string]any) {
	id := r.Header.Get("X-Keygate-Reservation-Id")
	b.mu.Lock()
	url, token := b.settleURL, b.settleToken
	b.mu.Unlock()
	if id == "" || url == "" {
		return
	}
	call := r.Header.Get("X-E2E-Call")
	body, _ := json.Marshal(map[string]any{"reservation_id": id, "status": status, "usage": usage})
	b.settling.Add(1)
	go func() {
		defer b.settling.Done()
		var st settlement
		err := postSettle(url, token, body, &st)
		b.mu.Lock()
		defer b.mu.Unlock()
		if err != nil {
			b.settleErrs = append(b.settleErrs, fmt.Errorf("%s: settling %s: %w", call, id, err))
			return
		}
		b.settled[call] = append(b.settled[call], st)
	}()
}

// postSettle sends one settle API request and decodes its answer.
func postSettle(url, token string, body []byte, into any) error {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, answer)
	}
	return json.Unmarshal(answer, into)
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// unhold lets every held stream finish.
func (b *backend) unhold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.release:
	default:
		close(b.release)
	}
}

// requests returns what the backend received for call.
func (b *backend) requests(call string) []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []seen
	for _, s := range b.seen {
		if s.Call == call {
			out = append(out, s)
		}
	}
	return out
}

// all returns every request the backend received.
func (b *backend) all() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.seen...)
}

// contentSummary is what the backend answers about a chat message, so a
// client can check that its whole body arrived.
func contentSummary(content string) string {
	sum := sha256.Sum256([]byte(content))
	return fmt.Sprintf("len=%d sha256=%s", len(content), hex.EncodeToString(sum[:]))
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.seen = append(b.seen, seen{Call: r.Header.Get("X-E2E-Call"), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: len(body)})
	b.mu.Unlock()
	// A backend's own rate-limit headers: the client must see keygate's,
	// or none.
	for _, name := range []string{"X-RateLimit-Limit", "X-RateLimit-Limit-Requests", "X-RateLimit-Limit-Tokens", "X-RateLimit-Remaining-Tokens"} {
		w.Header().Set(name, "999999")
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
		b.chat(w, r, body)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/audio/transcriptions":
		// The upload's size, so a client can check that all of it arrived.
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"text":"bytes=%d"}`, len(body))
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"e2e-model","object":"model","created":1700000000,"owned_by":"keygate-e2e"}]}`)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}
}

func (b *backend) chat(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		Model    string `json:"model"`
		Stream   bool   `json:"stream"`
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Messages) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"message":"bad request","type":"invalid_request_error","param":null,"code":null}}`)
		return
	}
	var content string
	_ = json.Unmarshal(req.Messages[0].Content, &content)
	answer := contentSummary(content)
	usage := usageOf(content)
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-e2e", "object": "chat.completion", "created": 1700000000, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": answer}}},
			"usage": usage,
		})
		b.settle(r, http.StatusOK, usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher := w.(http.Flusher)
	chunk := func(delta map[string]any, finish any) {
		b, _ := json.Marshal(map[string]any{
			"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1700000000, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		})
		fmt.Fprintf(w, "data: %s\n\n", b)
		flusher.Flush()
	}
	chunk(map[string]any{"role": "assistant", "content": "first "}, nil)
	if r.Header.Get("X-E2E-Hold") != "" {
		// The client must get the first chunk while the stream is open.
		select {
		case b.held <- struct{}{}:
		default:
		}
		select {
		case <-b.release:
		case <-time.After(15 * time.Second):
		case <-r.Context().Done():
			return
		}
	}
	chunk(map[string]any{"content": answer}, nil)
	chunk(map[string]any{}, "stop")
	// The usage chunk, as OpenAI sends it last: no choices.
	last, _ := json.Marshal(map[string]any{"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1700000000,
		"model": req.Model, "choices": []any{}, "usage": usage})
	fmt.Fprintf(w, "data: %s\n\n", last)
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	flusher.Flush()
	b.settle(r, http.StatusOK, usage)
}

// usageOf is the usage the backend reports for a chat message: a token a
// byte of it in, and 4 out.
func usageOf(content string) map[string]any {
	return map[string]any{"prompt_tokens": len(content), "completion_tokens": 4, "total_tokens": len(content) + 4}
}

// nginx is a running nginx with the shipped config.
type nginx struct {
	base   string // http://127.0.0.1:port
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *syncBuffer
}

// shippedLevel is the error_log level keygate.conf ships with.
const shippedLevel = "error"

// startNginx runs nginx with a generated main config that includes the
// shipped keygate.conf, its addresses replaced by keygateAddr and
// backendAddr, its port by a free one and its log files by files in a
// directory of the test's own.
func startNginx(t *testing.T, keygateAddr, backendAddr string) *nginx {
	t.Helper()
	return startNginxLogging(t, keygateAddr, backendAddr, shippedLevel)
}

// startNginxLogging is startNginx with keygate.conf's error_log at level.
// nginx.conf's own error log (main.log) is at debug, the most it can say.
func startNginxLogging(t *testing.T, keygateAddr, backendAddr, level string) *nginx {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	// As root, nginx's workers run as nobody: they must reach dir, which
	// testing makes 0700 inside a 0700 directory of the test's own.
	if os.Geteuid() == 0 {
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for d := filepath.Dir(filepath.Dir(dir)); ; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
				t.Fatalf("nginx's workers (user nobody) cannot enter %s: point TMPDIR at a directory they can (%v)", d, err)
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	conf, err := os.ReadFile(shippedConf)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	replaced := string(conf)
	for old, new := range map[string]string{
		"server 127.0.0.1:9292;": "server " + keygateAddr + ";",
		"server 127.0.0.1:8000;": "server " + backendAddr + ";",
		"listen 8080;":           fmt.Sprintf("listen 127.0.0.1:%d;", port),
		"error_log /var/log/nginx/error.log " + shippedLevel + ";": "error_log " + filepath.Join(dir, "error.log") + " " + level + ";",
		// The shipped access log, and the tests' own, which says which
		// call each request belongs to.
		"access_log /var/log/nginx/access.log keygate;": "access_log " + filepath.Join(dir, "keygate-access.log") + " keygate; " +
			"access_log " + filepath.Join(dir, "access.log") + " e2e;",
	} {
		if n := strings.Count(replaced, old); n != 1 {
			t.Fatalf("%s has %q %d times; the test replaces it exactly once", shippedConf, old, n)
		}
		replaced = strings.Replace(replaced, old, new, 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "keygate.conf"), []byte(replaced), 0o644); err != nil {
		t.Fatal(err)
	}
	js, err := filepath.Abs(shippedJS)
	if err != nil {
		t.Fatal(err)
	}
	userLine := ""
	if os.Geteuid() == 0 {
		group := "nogroup"
		if _, err := user.LookupGroup(group); err != nil {
			group = "nobody"
		}
		userLine = "user nobody " + group + ";"
	}
	main := fmt.Sprintf(`load_module %[1]s;
%[2]s
daemon off;
master_process on;
worker_processes 1;
pid %[3]s/nginx.pid;
error_log %[3]s/main.log debug;
events { worker_connections 256; }
http {
    log_format e2e '$http_x_e2e_call $status $request_method "$request_uri"';
    client_body_temp_path %[3]s/body;
    proxy_temp_path %[3]s/proxy;
    fastcgi_temp_path %[3]s/fastcgi;
    uwsgi_temp_path %[3]s/uwsgi;
    scgi_temp_path %[3]s/scgi;
    js_import keygate from %[4]s;
    include %[3]s/keygate.conf;
}
`, njsModule, userLine, dir, js)
	mainPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(mainPath, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &nginx{base: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir, exited: make(chan struct{}), stderr: &syncBuffer{}}
	n.cmd = exec.Command(bin, "-p", dir, "-c", mainPath, "-e", filepath.Join(dir, "main.log"))
	n.cmd.Stdout, n.cmd.Stderr = n.stderr, n.stderr
	// nginx stops with the test process, and its workers with it.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() { n.stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-n.exited:
			t.Fatalf("nginx exited at start:\n%s\n%s", n.stderr.String(), n.errorLog())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %d:\n%s\n%s", port, n.stderr.String(), n.errorLog())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return n
}

func (n *nginx) stop(t *testing.T) {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
	if t.Failed() {
		b, _ := os.ReadFile(filepath.Join(n.dir, "access.log"))
		t.Logf("nginx access log:\n%s\nnginx error log:\n%s", b, n.errorLog())
	}
}

// errorLog returns keygate.conf's error log.
func (n *nginx) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}

// logs returns every log nginx wrote, by file name: keygate.conf's error
// and access logs, nginx.conf's error log and the tests' access log.
func (n *nginx) logs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range []string{"error.log", "keygate-access.log", "main.log", "access.log"} {
		b, err := os.ReadFile(filepath.Join(n.dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		out[name] = string(b)
	}
	return out
}

// keyLogged reports which of nginx's logs contain key.
func (n *nginx) keyLogged(t *testing.T, key string) []string {
	t.Helper()
	var in []string
	for name, text := range n.logs(t) {
		if strings.Contains(text, key) {
			in = append(in, name)
		}
	}
	slices.Sort(in)
	return in
}

// logged is one access log line: a client request as nginx answered it.
type logged struct {
	Call, Method, URI string
	Status            int
}

func (n *nginx) accessLog(t *testing.T) []logged {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "access.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []logged
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var l logged
		var uri string
		if _, err := fmt.Sscanf(line, "%s %d %s %s", &l.Call, &l.Status, &l.Method, &uri); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		l.URI = strings.Trim(uri, `"`)
		out = append(out, l)
	}
	return out
}

// statuses returns the statuses nginx answered to call's requests, in
// order. nginx logs a request once its answer is sent, so it waits until
// at least want are logged (or a few seconds pass).
func (n *nginx) statuses(t *testing.T, call string, want int) []int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []int
		for _, l := range n.accessLog(t) {
			if l.Call == call {
				got = append(got, l.Status)
			}
		}
		if len(got) >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
