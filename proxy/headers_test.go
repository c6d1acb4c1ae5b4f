package proxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/httpauth"
)

// clientHeaders are the headers of keygate's answer meant for the client:
// section 2's rate-limit trio, OpenAI's -requests and -tokens trios, and
// the low-balance pair. A recipe passes keygate's and hides a backend's
// own of the same name.
var clientHeaders = sorted([]string{
	"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
	"X-RateLimit-Limit-Requests", "X-RateLimit-Remaining-Requests", "X-RateLimit-Reset-Requests",
	"X-RateLimit-Limit-Tokens", "X-RateLimit-Remaining-Tokens", "X-RateLimit-Reset-Tokens",
	"X-Balance-Low", "X-Balance-Remaining",
})

// denyStatuses are the statuses keygate denies with: the decision table's
// and metering's (400, 413 and 415 for a body it will not read or pass).
var denyStatuses = []int{400, 401, 402, 403, 413, 415, 429, 503}

// handler is what keygate.js says it does with keygate's answer.
type handler struct {
	upstream    [][2]string // header, variable: the x-keygate-* headers for the backend
	client      [][2]string // header, variable: clientHeaders on allow
	denyHeaders []string
	statuses    []int
	unsent      string // the variable of X-Original-Content-Length
}

var (
	jsPair   = regexp.MustCompile(`\['([A-Za-z-]+)', '([a-z_]+)'`)
	jsString = regexp.MustCompile(`'([^']*)'`)
)

// jsVar returns the text of keygate.js's `var name = ...;`.
func jsVar(t *testing.T, js, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)\nvar ` + name + ` = (.*?);\n`).FindStringSubmatch(js)
	if m == nil {
		t.Fatalf("keygate.js: no var %s", name)
	}
	return m[1]
}

func pairs(text string) [][2]string {
	var out [][2]string
	for _, m := range jsPair.FindAllStringSubmatch(text, -1) {
		out = append(out, [2]string{m[1], m[2]})
	}
	return out
}

func readHandler(t *testing.T) handler {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("nginx", "keygate.js"))
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	h := handler{upstream: append(pairs(jsVar(t, js, "IDENTITY")), pairs(jsVar(t, js, "RESERVATION"))...),
		client: pairs(jsVar(t, js, "CLIENT"))}
	for _, m := range jsString.FindAllStringSubmatch(jsVar(t, js, "DENY_HEADERS"), -1) {
		h.denyHeaders = append(h.denyHeaders, m[1])
	}
	for _, f := range strings.FieldsFunc(jsVar(t, js, "DENY_STATUSES"), func(r rune) bool { return !('0' <= r && r <= '9') }) {
		n, _ := strconv.Atoi(f)
		h.statuses = append(h.statuses, n)
	}
	if m := jsString.FindStringSubmatch(jsVar(t, js, "UNSENT")); m != nil {
		h.unsent = m[1]
	}
	return h
}

// readConf returns keygate.conf's top-level directives and its server.
func readConf(t *testing.T) (top []directive, server directive) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("nginx", "keygate.conf"))
	if err != nil {
		t.Fatal(err)
	}
	top = parseNginx(t, string(b))
	return top, one(t, find(top, "server"), "server")
}

// declared reports whether keygate.conf declares $name with js_var at the
// top level, without a value (so it is empty until keygate.js sets it).
func declared(top []directive, name string) bool {
	ds := find(top, "js_var", "$"+name)
	return len(ds) == 1 && len(ds[0].args) == 1
}

// TestNginxHeaders: what keygate.js reads of keygate's answer and what
// keygate.conf does with it agree. Every x-keygate-* header the backend
// gets (the reservation id among them) comes from a variable keygate.js
// sets from keygate's answer alone; the client gets keygate's
// clientHeaders on allow, never the backend's own; a deny passes them
// with every status keygate denies with.
func TestNginxHeaders(t *testing.T) {
	h := readHandler(t)
	top, server := readConf(t)
	backend := one(t, find(server.block, "location", "@keygate_backend"), "location @keygate_backend")

	var set []string
	for _, d := range find(backend.block, "proxy_set_header") {
		if len(d.args) == 2 && strings.HasPrefix(strings.ToLower(d.args[0]), "x-keygate-") {
			set = append(set, d.args[0]+" "+d.args[1])
		}
	}
	var want []string
	for _, p := range h.upstream {
		want = append(want, p[0]+" $"+p[1])
		if !declared(top, p[1]) {
			t.Errorf("keygate.conf: no js_var $%s without a value", p[1])
		}
	}
	slices.Sort(set)
	slices.Sort(want)
	if fmt.Sprint(set) != fmt.Sprint(want) {
		t.Errorf("@keygate_backend sets %q, keygate.js fills %q", set, want)
	}
	if !slices.ContainsFunc(h.upstream, func(p [2]string) bool { return strings.EqualFold(p[0], authz.ReservationHeader) }) {
		t.Errorf("keygate.js does not pass %s upstream", authz.ReservationHeader)
	}

	var client []string
	for _, p := range h.client {
		client = append(client, p[0])
		if len(find(backend.block, "proxy_hide_header", p[0])) != 1 {
			t.Errorf("@keygate_backend does not hide the backend's %s", p[0])
		}
		if add := find(backend.block, "add_header", p[0], "$"+p[1], "always"); len(add) != 1 {
			t.Errorf("@keygate_backend does not add %s from $%s, always", p[0], p[1])
		}
		if !declared(top, p[1]) {
			t.Errorf("keygate.conf: no js_var $%s without a value", p[1])
		}
	}
	if got := sorted(client); fmt.Sprint(got) != fmt.Sprint(clientHeaders) {
		t.Errorf("keygate.js passes %v on allow, want %v", got, clientHeaders)
	}
	deny := sorted(h.denyHeaders)
	for _, name := range append(slices.Clone(clientHeaders), "content-type", "www-authenticate", "x-should-retry", "retry-after") {
		if strings.HasPrefix(name, "x-balance-") {
			continue // said only on allow
		}
		if !slices.Contains(deny, name) {
			t.Errorf("keygate.js does not pass %s on a deny", name)
		}
	}
	if fmt.Sprint(h.statuses) != fmt.Sprint(denyStatuses) {
		t.Errorf("keygate.js passes denials of %v, want %v", h.statuses, denyStatuses)
	}
}

// TestNginxCheckBody: the check carries the body nginx holds in memory
// (as much as keygate reads) with the client's Content-Type and
// Content-Encoding, and for a body it does not carry, its length in
// X-Original-Content-Length, which the backend never gets.
func TestNginxCheckBody(t *testing.T) {
	h := readHandler(t)
	top, server := readConf(t)
	if buf := one(t, find(server.block, "client_body_buffer_size"), "client_body_buffer_size"); fmt.Sprint(buf.args) != fmt.Sprintf("[%dm]", httpauth.MaxBody>>20) {
		t.Errorf("client_body_buffer_size %v: the check carries what nginx holds in memory, and keygate reads %d bytes", buf.args, httpauth.MaxBody)
	}
	check := one(t, find(server.block, "location", "=", "/_keygate"), "location = /_keygate")
	if d := find(check.block, "proxy_pass_request_body"); len(d) != 0 {
		t.Errorf("/_keygate: %v: keygate reads the body", d)
	}
	for _, name := range []string{"Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding"} {
		if d := find(check.block, "proxy_set_header", name); len(d) != 0 {
			t.Errorf("/_keygate: %v: nginx frames the check's body itself, and the client's type and encoding go with it", d)
		}
	}
	if h.unsent == "" || !declared(top, h.unsent) {
		t.Fatalf("keygate.js's UNSENT %q is not a js_var of keygate.conf", h.unsent)
	}
	if d := find(check.block, "proxy_set_header", "X-Original-Content-Length", "$"+h.unsent); len(d) != 1 {
		t.Errorf("/_keygate does not send X-Original-Content-Length from $%s", h.unsent)
	}
	backend := one(t, find(server.block, "location", "@keygate_backend"), "location @keygate_backend")
	for _, name := range []string{"X-Original-Method", "X-Original-URI", "X-Original-Content-Length"} {
		if d := find(backend.block, "proxy_set_header", name, ""); len(d) != 1 {
			t.Errorf("@keygate_backend does not remove %s", name)
		}
	}
}

// TestTraefikHeaders: forwardAuth sends keygate the body, up to as much
// as keygate reads, with the headers that say how to read it; passes the
// reservation id upstream; and the backend's own client headers are
// removed from its responses.
func TestTraefikHeaders(t *testing.T) {
	dyn := readYAML(t, filepath.Join("traefik", "keygate.yaml"))
	fa := dig(t, dyn, "http", "middlewares", "keygate-auth", "forwardAuth")
	if v := dig(t, fa, "forwardBody"); v != true {
		t.Errorf("forwardBody %v, want true", v)
	}
	if v := dig(t, fa, "maxBodySize"); v != httpauth.MaxBody {
		t.Errorf("maxBodySize %v, want %d (what keygate reads)", v, httpauth.MaxBody)
	}
	sent := sorted(strs(t, dig(t, fa, "authRequestHeaders")))
	for _, h := range bodyHeaders {
		if !slices.Contains(sent, h) {
			t.Errorf("authRequestHeaders lacks %s", h)
		}
	}
	if !slices.Contains(sorted(strs(t, dig(t, fa, "authResponseHeaders"))), authz.ReservationHeader) {
		t.Errorf("authResponseHeaders lacks %s", authz.ReservationHeader)
	}
	var removed []string
	for name, v := range dig(t, dyn, "http", "middlewares", "keygate-upstream-headers", "headers", "customResponseHeaders").(map[string]any) {
		if v == "" {
			removed = append(removed, name)
		}
	}
	if got := sorted(removed); fmt.Sprint(got) != fmt.Sprint(clientHeaders) {
		t.Errorf("customResponseHeaders removes %v, want %v", got, clientHeaders)
	}
}
