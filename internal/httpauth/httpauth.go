// Package httpauth answers keygate's decision over plain HTTP, for proxies
// that ask an HTTP service instead of calling ext_authz over gRPC: Envoy's
// http_service, nginx auth_request (or the shipped njs handler) and Traefik
// forwardAuth. It reads the original request's method and path, and the
// address of the connection the proxy accepted, only from the source the
// operator named, so a client cannot steer the decision with headers
// meant for another proxy.
package httpauth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Checker decides one request, as authz.Server does.
type Checker interface {
	Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error)
}

// Modes: where the original method and path are read from.
const (
	ModeEnvoy   = "envoy"   // the request line: Envoy's http_service sends the original method and path
	ModeNginx   = "nginx"   // X-Original-Method and X-Original-URI (and X-Original-Content-Length)
	ModeTraefik = "traefik" // X-Forwarded-Method and X-Forwarded-Uri
)

// Modes lists the valid modes.
var Modes = []string{ModeEnvoy, ModeNginx, ModeTraefik}

// ClientIPHeader carries, in the envoy and nginx modes, the address of
// the connection the proxy accepted: set by the proxy alone, replacing
// any a client sent (nginx's proxy_set_header from $remote_addr, Envoy's
// authorization_request.headers_to_add from
// %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%). Traefik mode reads the last
// entry of the X-Forwarded-For that forwardAuth writes instead.
const ClientIPHeader = "X-Keygate-Client-IP"

// source names the headers a mode reads, as its proxy's documentation
// writes them (they are matched in any case); empty for the request line.
// length, if set, names the header that gives the length of a body the
// proxy did not send (the shipped nginx config sends none it holds in a
// file). peer is the header that names the proxy's peer, or "" for the
// last entry of X-Forwarded-For.
type source struct{ method, uri, length, peer string }

var sources = map[string]source{
	ModeEnvoy:   {"", "", "", ClientIPHeader},
	ModeNginx:   {"X-Original-Method", "X-Original-URI", "X-Original-Content-Length", ClientIPHeader},
	ModeTraefik: {"X-Forwarded-Method", "X-Forwarded-Uri", "", ""},
}

// Handler answers every request with the decision for the original
// request: 200 with the identity and rate-limit headers on allow, the
// deny's status, headers and JSON body otherwise.
type Handler struct {
	check   Checker
	release func(*authv3.CheckResponse)
	src     source
	log     *slog.Logger
}

// Options configure a Handler.
type Options struct {
	Mode string // one of Modes; "" is ModeEnvoy
	// Release, if set, is given each response once it is written.
	Release func(*authv3.CheckResponse)
	Log     *slog.Logger // optional
}

// New returns a Handler asking c.
func New(c Checker, o Options) *Handler {
	h := &Handler{check: c, release: o.Release, src: sources[o.Mode], log: o.Log}
	if h.release == nil {
		h.release = func(*authv3.CheckResponse) {}
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, ok := h.checkRequest(r)
	if !ok {
		h.log.Warn("http authorization request without the original request; check the proxy's configuration",
			"needs", h.src.method+", "+h.src.uri)
		writeMisconfigured(w, h.src)
		return
	}
	resp, _ := h.check.Check(r.Context(), req)
	defer h.release(resp)
	if ok := resp.GetOkResponse(); ok != nil {
		writeHeaders(w, ok.GetHeaders())
		writeHeaders(w, ok.GetResponseHeadersToAdd())
		// Envoy's http_service removes these from the upstream request.
		w.Header().Set("x-envoy-auth-headers-to-remove", strings.Join(ok.GetHeadersToRemove(), ","))
		w.WriteHeader(http.StatusOK)
		return
	}
	d := resp.GetDeniedResponse()
	writeHeaders(w, d.GetHeaders())
	w.WriteHeader(int(d.GetStatus().GetCode()))
	_, _ = w.Write([]byte(d.GetBody()))
}

// checkRequest describes r as Envoy's Check would: the original method and
// path from the mode's source, the proxy's peer as the source address,
// and every header value as a raw header_map entry, so that repeated
// credential headers are seen. It reports false when the mode's method or
// path headers are missing or repeated: the proxy in front is not
// configured as the mode requires, and nothing is guessed. A missing
// peer leaves the client's address unknown: only keys with allow_ips are
// refused.
func (h *Handler) checkRequest(r *http.Request) (*authv3.CheckRequest, bool) {
	method, path := r.Method, r.RequestURI
	if h.src.method != "" {
		var ok1, ok2 bool
		method, ok1 = single(r.Header, h.src.method)
		path, ok2 = single(r.Header, h.src.uri)
		if !ok1 || !ok2 {
			return nil, false
		}
	}
	body, partial := readBody(r)
	length := h.unsent(r, len(body))
	hm := &corev3.HeaderMap{}
	for name, values := range r.Header {
		key := strings.ToLower(name)
		if key == partialHeader && h.src.method != "" { // only Envoy sets it; from nginx or Traefik it is the client's
			continue
		}
		if key == "content-length" && length != "" { // the check's own, replaced by the client's
			continue
		}
		for _, v := range values {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: key, RawValue: []byte(v)})
		}
	}
	if partial {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: partialHeader, RawValue: []byte("true")})
	}
	if length != "" {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "content-length", RawValue: []byte(length)})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: h.peer(r)}}}},
		Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, HeaderMap: hm, RawBody: body},
		},
	}}, true
}

// peer is the address of the connection the proxy accepted, as the mode
// names it; "" when the proxy sent none, or more than one.
func (h *Handler) peer(r *http.Request) string {
	if h.src.peer != "" {
		v, _ := single(r.Header, h.src.peer)
		return v
	}
	xff, _ := single(r.Header, "X-Forwarded-For")
	return xff[strings.LastIndexByte(xff, ',')+1:]
}

// partialHeader is Envoy's mark of a body it cut short.
const partialHeader = "x-envoy-auth-partial-body"

// MaxBody is how much of a body the check reads, as Envoy's
// with_request_body max_request_bytes in the shipped config: keygate
// refuses a longer body only for keys whose limits need it read.
const MaxBody = 1 << 20

// readBody reads up to MaxBody of r's body, and reports whether there was
// more.
func readBody(r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return b, true
	}
	if len(b) > MaxBody {
		return b[:MaxBody], true
	}
	return b, false
}

// unsent returns the length of the client's body that the mode's length
// header gives, when it is longer than the n bytes the check carries, and
// "" otherwise. Such a body is read as cut short; the header can only make
// keygate stricter, so a client's own (where the proxy does not replace
// it) gains nothing.
func (h *Handler) unsent(r *http.Request, n int) string {
	if h.src.length == "" {
		return ""
	}
	v, ok := single(r.Header, h.src.length)
	if !ok {
		return ""
	}
	length, err := strconv.ParseInt(v, 10, 64)
	if err != nil || length <= int64(n) {
		return ""
	}
	return strconv.FormatInt(length, 10)
}

// single returns the one non-empty value of header name.
func single(h http.Header, name string) (string, bool) {
	vs := h.Values(name)
	if len(vs) != 1 || vs[0] == "" {
		return "", false
	}
	return vs[0], true
}

func writeHeaders(w http.ResponseWriter, hs []*corev3.HeaderValueOption) {
	for _, h := range hs {
		w.Header().Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
}

// misconfigured is the body when the proxy did not send what the mode
// reads: a 503 in the decision table's form, so clients retry later and
// operators see the cause in the message.
const misconfigured = `{"error":{"message":"Authentication is unavailable: the proxy in front of keygate did not send one %s and one %s header. Contact the API provider.","type":"server_error","param":null,"code":"auth_unavailable"}}`

func writeMisconfigured(w http.ResponseWriter, s source) {
	w.Header().Set("content-type", "application/json")
	w.Header().Set("retry-after", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = fmt.Fprintf(w, misconfigured, s.method, s.uri)
}
