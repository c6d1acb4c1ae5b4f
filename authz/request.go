package authz

import (
	"strings"
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/apikey"
)

// Request is what a decision reads of a check: the method, the path, the
// scope a route's context extension names, the credential headers, the
// body and the headers metering reads, and the client's address.
// Check builds one from a CheckRequest; the gRPC server decodes one
// straight from the wire into a pooled Request (Decoder.DecodeRequest,
// GetRequest), so that a check allocates none of the request's messages,
// maps or strings.
type Request struct {
	Method, Path string
	Scope        string // the keygate.scope context extension, if HasScope
	HasScope     bool
	// named are the credential headers of the headers map (the last value
	// of each name, as a map keeps), raw those of header_map, in order.
	named, raw []credHeader
	// Body is the body the proxy sent with the check, if HasBody.
	Body    []byte
	HasBody bool
	rawBody bool // Body is raw_body's, which wins over body's
	// meta are the headers metering and the client's address read
	// (metaHeaders); conflicts has bit i set when meta header i came
	// twice with different values. While the request is read, meta holds
	// the headers map's values and rawFirst, rawLast and rawSeen what
	// header_map held; settleMeta sets both from them.
	meta              [len(metaHeaders)]string
	conflicts         uint8
	rawFirst, rawLast [len(metaHeaders)]string
	rawSeen           uint8
	// peer is the address of the connection the proxy accepted:
	// attributes.source.address.socket_address.address.
	peer string
	buf  []byte // what the strings point into, when decoded
	// hash is the key's hash while the request is decided, for lookups
	// that keep no reference to it.
	hash apikey.HashBuf
}

// metaHeaders are the headers metering reads, X-Forwarded-For among
// them, in lower case.
var metaHeaders = [...]string{"content-type", "content-encoding", "content-length", "transfer-encoding", "x-envoy-auth-partial-body", "x-forwarded-for", "upgrade"}

// Indexes into Request.meta.
const (
	metaContentType = iota
	metaEncoding
	metaLength
	metaTransfer
	metaPartial
	metaXFF
	metaUpgrade
)

// ambiguous reports whether a header metering reads came twice with
// different values.
func (r *Request) ambiguous() bool { return r.conflicts&^(1<<metaXFF) != 0 }

// xff is X-Forwarded-For, or "" when it came twice with different values
// (the client's address is then unknown wherever it is read).
func (r *Request) xff() string {
	if r.conflicts&(1<<metaXFF) != 0 {
		return ""
	}
	return r.meta[metaXFF]
}

// metaIndex returns the index of header name among metaHeaders: in any
// case for header_map (raw), as written (lower case, as Envoy writes
// them) for the headers map, whose keys differing in case would be read
// in no set order.
func metaIndex(name string, raw bool) (int, bool) {
	for i, h := range metaHeaders {
		if name == h || raw && len(name) == len(h) && strings.EqualFold(name, h) {
			return i, true
		}
	}
	return 0, false
}

// setMeta records the headers map's value for meta header i: the last
// wins, as in a decoded map.
func (r *Request) setMeta(i int, value string) { r.meta[i] = value }

// addRawMeta records a header_map value for meta header i, in order: a
// value other than the one before it (if that was not empty) is a
// conflict.
func (r *Request) addRawMeta(i int, value string) {
	bit := uint8(1) << i
	switch {
	case r.rawSeen&bit == 0:
		r.rawFirst[i], r.rawSeen = value, r.rawSeen|bit
	case r.rawLast[i] != "" && r.rawLast[i] != value:
		r.conflicts |= bit
	}
	r.rawLast[i] = value
}

// settleMeta ends the reading of the meta headers, whatever the order
// their fields came in: header_map's last value wins over the headers
// map's, and its first one differing from the map's (if not empty) is a
// conflict.
func (r *Request) settleMeta() {
	for i := range r.meta {
		if r.rawSeen&(1<<i) == 0 {
			continue
		}
		if r.meta[i] != "" && r.meta[i] != r.rawFirst[i] {
			r.conflicts |= 1 << i
		}
		r.meta[i] = r.rawLast[i]
	}
}

// credHeader is one credential header: which source it matches, whether
// its name is the source's as configured (lowercase), and its value.
type credHeader struct {
	source int
	name   string
	exact  bool
	value  string
}

// requests recycles the Requests the gRPC server decodes into.
var requests = sync.Pool{New: func() any { return new(Request) }}

// GetRequest returns an empty Request to decode into; PutRequest hands it
// back once its check is answered (the answer holds none of its strings).
func GetRequest() *Request { return requests.Get().(*Request) }

// PutRequest recycles r.
func PutRequest(r *Request) {
	r.reset()
	requests.Put(r)
}

func (r *Request) reset() {
	*r = Request{named: r.named[:0], raw: r.raw[:0], buf: r.buf[:0]}
}

// bodyOf sets the body from the body (string) or raw_body (bytes) field.
func (r *Request) bodyOf(body string, raw []byte) {
	switch {
	case len(raw) > 0:
		r.Body, r.HasBody = raw, true
	case body != "":
		r.Body, r.HasBody = []byte(body), true
	}
}

// setNamed records value for header name of the headers map, replacing
// an earlier value of the same name.
func (r *Request) setNamed(h credHeader) {
	for i := range r.named {
		if r.named[i].name == h.name {
			r.named[i] = h
			return
		}
	}
	r.named = append(r.named, h)
}

// fill sets r, empty, from a CheckRequest.
func (x *extractor) fill(r *Request, req *authv3.CheckRequest) {
	a := req.GetAttributes()
	r.peer = a.GetSource().GetAddress().GetSocketAddress().GetAddress()
	if s, ok := a.GetContextExtensions()[ScopeExtension]; ok {
		r.Scope, r.HasScope = s, true
	}
	h := a.GetRequest().GetHttp()
	r.Method, r.Path = h.GetMethod(), h.GetPath()
	for name, v := range h.GetHeaders() {
		if i, ok := x.sourceIndex(name); ok {
			r.setNamed(credHeader{source: i, name: name, exact: name == x.sources[i].Header, value: v})
		}
		if i, ok := metaIndex(name, false); ok {
			r.setMeta(i, v)
		}
	}
	r.bodyOf(h.GetBody(), h.GetRawBody())
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		if i, ok := x.sourceIndex(hv.GetKey()); ok {
			r.raw = append(r.raw, credHeader{source: i, value: valueOf(hv)})
		}
		if i, ok := metaIndex(hv.GetKey(), true); ok {
			r.addRawMeta(i, valueOf(hv))
		}
	}
	r.settleMeta()
}

// valueOf is a header_map entry's value: raw_value if set.
func valueOf(hv interface {
	GetValue() string
	GetRawValue() []byte
}) string {
	if raw := hv.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return hv.GetValue()
}

// sourceIndex returns the credential source for header name, in any case.
func (x *extractor) sourceIndex(name string) (int, bool) {
	for i, s := range x.sources {
		if len(name) == len(s.Header) && (name == s.Header || strings.EqualFold(name, s.Header)) {
			return i, true
		}
	}
	return 0, false
}
