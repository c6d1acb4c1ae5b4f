package proxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/httpauth"
)

// shipped are the credential headers every recipe removes before the
// backend: keygate's default `credentials`, and api-key (Azure OpenAI's).
// A header keygate reads keys from by default must be here.
func shipped() []string {
	var out []string
	for _, c := range config.Default().Credentials {
		out = append(out, c.Header)
	}
	return sorted(append(out, "api-key"))
}

// sorted returns names in lower case, sorted, without repeats.
func sorted(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, strings.ToLower(n))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestRecipesRemoveTheCredentials: the nginx, Traefik and Envoy recipes
// each remove exactly the shipped credential headers, and nginx's handler
// knows the list nginx removes.
func TestRecipesRemoveTheCredentials(t *testing.T) {
	want := fmt.Sprint(shipped())
	n := nginxCredentials(t)
	tr := traefikCredentials(t)
	for recipe, got := range map[string][]string{
		"nginx $keygate_credential_headers":            n.listed,
		"nginx @keygate_backend removes":               n.removed,
		"traefik keygate-upstream-headers removes":     tr.removed,
		"traefik keygate-auth sends keygate":           tr.sent,
		"envoy route_config.request_headers_to_remove": envoyRemoved(t),
	} {
		if fmt.Sprint(got) != want {
			t.Errorf("%s: %v, want keygate's credential headers %s", recipe, got, want)
		}
	}
}

// --- nginx ---

// directive is one nginx directive, with its block if it has one.
type directive struct {
	name  string
	args  []string
	block []directive
}

// parseNginx parses nginx configuration text: directives, blocks, quoted
// strings and comments, which is all keygate.conf uses.
func parseNginx(t *testing.T, text string) []directive {
	t.Helper()
	tokens := tokenize(t, text)
	out, rest := parseBlock(t, tokens)
	if len(rest) != 0 {
		t.Fatalf("nginx config: unexpected %q", rest[0])
	}
	return out
}

func parseBlock(t *testing.T, tokens []string) ([]directive, []string) {
	t.Helper()
	var out []directive
	var cur []string
	for len(tokens) > 0 {
		tok := tokens[0]
		tokens = tokens[1:]
		switch tok {
		case ";":
			out = append(out, directive{name: cur[0], args: cur[1:]})
			cur = nil
		case "{":
			var block []directive
			block, tokens = parseBlock(t, tokens)
			if len(tokens) == 0 || tokens[0] != "}" {
				t.Fatal("nginx config: unclosed block")
			}
			tokens = tokens[1:]
			out = append(out, directive{name: cur[0], args: cur[1:], block: block})
			cur = nil
		case "}":
			return out, append([]string{tok}, tokens...)
		default:
			cur = append(cur, tok)
		}
	}
	return out, nil
}

// tokenize splits nginx configuration into words (quotes removed), ";",
// "{" and "}".
func tokenize(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			out = append(out, string(c))
			i++
		case c == '"' || c == '\'':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				t.Fatal("nginx config: unclosed quote")
			}
			out = append(out, s[i+1:i+1+end])
			i += end + 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n;{}", rune(s[j])) {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

// find returns the directives named name with the given first arguments.
func find(ds []directive, name string, args ...string) []directive {
	var out []directive
	for _, d := range ds {
		if d.name == name && len(d.args) >= len(args) && slices.Equal(d.args[:len(args)], args) {
			out = append(out, d)
		}
	}
	return out
}

func one(t *testing.T, ds []directive, what string) directive {
	t.Helper()
	if len(ds) != 1 {
		t.Fatalf("keygate.conf: %d of %s, want 1", len(ds), what)
	}
	return ds[0]
}

type nginxLists struct{ listed, removed []string }

// nginxCredentials reads keygate.conf: the headers in location /'s
// $keygate_credential_headers, and the credential headers that
// @keygate_backend sets to "" (every header whose name says key or
// authorization, so that none is missed from the list).
func nginxCredentials(t *testing.T) nginxLists {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("nginx", "keygate.conf"))
	if err != nil {
		t.Fatal(err)
	}
	server := one(t, find(parseNginx(t, string(b)), "server"), "server")
	root := one(t, find(server.block, "location", "/"), "location /")
	list := one(t, find(root.block, "js_var", "$keygate_credential_headers"), "js_var $keygate_credential_headers")
	var l nginxLists
	if len(list.args) != 2 {
		t.Fatalf("js_var $keygate_credential_headers: %q", list.args)
	}
	l.listed = sorted(strings.Fields(list.args[1]))
	backend := one(t, find(server.block, "location", "@keygate_backend"), "location @keygate_backend")
	credential := regexp.MustCompile(`(?i)key|auth`)
	for _, d := range find(backend.block, "proxy_set_header") {
		if len(d.args) == 2 && d.args[1] == "" && credential.MatchString(d.args[0]) {
			l.removed = append(l.removed, d.args[0])
		}
	}
	l.removed = sorted(l.removed)
	return l
}

// TestNginxClientAddress: the check sends keygate the client's address
// in the header nginx mode reads, from $remote_addr alone (replacing any
// a client sent), and X-Forwarded-For with it appended; no other
// location sets that header.
func TestNginxClientAddress(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("nginx", "keygate.conf"))
	if err != nil {
		t.Fatal(err)
	}
	server := one(t, find(parseNginx(t, string(b)), "server"), "server")
	check := one(t, find(server.block, "location", "=", "/_keygate"), "location = /_keygate")
	want := map[string]string{strings.ToLower(httpauth.ClientIPHeader): "$remote_addr", "x-forwarded-for": "$proxy_add_x_forwarded_for"}
	got := map[string][]string{}
	for _, d := range find(check.block, "proxy_set_header") {
		if name := strings.ToLower(d.args[0]); want[name] != "" {
			got[name] = append(got[name], strings.Join(d.args[1:], " "))
		}
	}
	for name, v := range want {
		if len(got[name]) != 1 || got[name][0] != v {
			t.Errorf("location = /_keygate sets %s to %q, want %s once", name, got[name], v)
		}
	}
	for _, d := range server.block {
		for _, h := range find(d.block, "proxy_set_header") {
			if strings.EqualFold(h.args[0], httpauth.ClientIPHeader) && !slices.Equal(d.args, []string{"=", "/_keygate"}) {
				t.Errorf("location %v sets %s: only the check may", d.args, h.args[0])
			}
		}
	}
	for _, name := range []string{"set_real_ip_from", "real_ip_header"} {
		if len(find(server.block, name)) != 0 {
			t.Errorf("%s is set: whom to trust depends on the deployment (README)", name)
		}
	}
}

// --- Traefik ---

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// dig walks maps and lists: keys are map keys, ints are list indexes.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not a map", path)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: not a list of more than %d", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func strs(t *testing.T, v any) []string {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%v: not a list", v)
	}
	var out []string
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

type traefikLists struct{ sent, removed []string }

// bodyHeaders are the headers, besides the credentials, that forwardAuth
// sends keygate: what keygate needs to read the body.
var bodyHeaders = []string{"content-type", "content-encoding"}

// traefikCredentials reads keygate.yaml: the headers forwardAuth sends
// keygate but bodyHeaders, and those the headers middleware removes whose
// name says key or authorization.
func traefikCredentials(t *testing.T) traefikLists {
	t.Helper()
	dyn := readYAML(t, filepath.Join("traefik", "keygate.yaml"))
	mw := dig(t, dyn, "http", "middlewares")
	var l traefikLists
	for _, h := range sorted(strs(t, dig(t, mw, "keygate-auth", "forwardAuth", "authRequestHeaders"))) {
		if !slices.Contains(bodyHeaders, h) {
			l.sent = append(l.sent, h)
		}
	}
	credential := regexp.MustCompile(`(?i)key|auth`)
	for name, v := range dig(t, mw, "keygate-upstream-headers", "headers", "customRequestHeaders").(map[string]any) {
		if v == "" && credential.MatchString(name) {
			l.removed = append(l.removed, name)
		}
	}
	l.removed = sorted(l.removed)
	return l
}

// TestTraefikRecipe: the entry point removes aliased header names, the
// check comes first and trusts no client X-Forwarded-*, and the identity
// headers' other spellings are removed too.
func TestTraefikRecipe(t *testing.T) {
	static := readYAML(t, filepath.Join("traefik", "traefik.yml"))
	dyn := readYAML(t, filepath.Join("traefik", "keygate.yaml"))
	eps := dig(t, static, "entryPoints").(map[string]any)
	for name := range eps {
		if s := dig(t, eps, name, "http", "aliasHeadersStrategy"); s != "delete" {
			t.Errorf("entry point %s: aliasHeadersStrategy %v, want delete", name, s)
		}
	}
	if f := fmt.Sprint(dig(t, static, "providers", "file", "filename")); filepath.Base(f) != "keygate.yaml" {
		t.Errorf("the file provider reads %s, want keygate.yaml", f)
	}
	routers := dig(t, dyn, "http", "routers").(map[string]any)
	for name := range routers {
		for _, ep := range strs(t, dig(t, routers, name, "entryPoints")) {
			if eps[ep] == nil {
				t.Errorf("router %s: entry point %s is not in traefik.yml", name, ep)
			}
		}
		if mws := strs(t, dig(t, routers, name, "middlewares")); len(mws) < 2 || mws[0] != "keygate-auth" || mws[1] != "keygate-upstream-headers" {
			t.Errorf("router %s: middlewares %v, want keygate-auth then keygate-upstream-headers first", name, mws)
		}
	}
	fa := dig(t, dyn, "http", "middlewares", "keygate-auth", "forwardAuth")
	if v := dig(t, fa, "trustForwardHeader"); v != false {
		t.Errorf("trustForwardHeader %v, want false", v)
	}
	re := regexp.MustCompile(fmt.Sprint(dig(t, fa, "authResponseHeadersRegex")))
	for _, h := range []string{"X-Keygate-Account-Id", "x_keygate_account_id", "X.Keygate.Account.Id", "X~Keygate~Scopes", "X+Keygate+Key+Id"} {
		if !re.MatchString(h) {
			t.Errorf("authResponseHeadersRegex does not remove %s", h)
		}
	}
	for _, h := range []string{"X-Keygateway", "X-Request-Id", "Authorization"} {
		if re.MatchString(h) {
			t.Errorf("authResponseHeadersRegex removes %s", h)
		}
	}
	for _, h := range strs(t, dig(t, fa, "authResponseHeaders")) {
		if !re.MatchString(h) {
			t.Errorf("authResponseHeaders has %s, which authResponseHeadersRegex does not match", h)
		}
	}
}

// --- Envoy ---

// envoyRemoved reads envoy.yaml's route_config.request_headers_to_remove.
func envoyRemoved(t *testing.T) []string {
	t.Helper()
	b := readYAML(t, filepath.Join("..", "envoy", "envoy.yaml"))
	hcm := dig(t, b, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config")
	return sorted(strs(t, dig(t, hcm, "route_config", "request_headers_to_remove")))
}
