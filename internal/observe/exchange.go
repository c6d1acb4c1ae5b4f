package observe

import (
	"bytes"
	"compress/gzip"
	"io"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/openai"
)

// exchange is what one stream has shown of a request and its response.
type exchange struct {
	id   string // the reservation; "" before the request headers, or not metered
	bad  bool   // the reservation header was there but unusable
	resp Response
	kind bodyKind
	gzip bool // a JSON body in gzip
	sse  openai.Stream
	json []byte
	max  int     // bytes of a JSON body kept
	room *budget // the bytes of JSON bodies all streams keep
	held int64   // what of room this stream's JSON body holds
}

// bodyKind is how a response body is read.
type bodyKind uint8

const (
	bodyJSON  bodyKind = iota // buffered up to max, read at its end
	bodySSE                   // fed to an openai.Stream
	bodyOther                 // not read: its first byte decides the outcome
)

// maxID bounds a reservation id; keygate's are far shorter.
const maxID = 256

// handle reads the next message of the stream and reports whether the
// outcome is known: nothing more is needed.
func (x *exchange) handle(req *extprocv3.ProcessingRequest) (done bool) {
	if r, ok := req.Request.(*extprocv3.ProcessingRequest_RequestHeaders); ok {
		x.id, x.bad = reservation(r.RequestHeaders.GetHeaders().GetHeaders())
		return x.id == ""
	}
	if x.id == "" { // no request headers first: nothing to settle
		return true
	}
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return x.headers(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return x.body(r.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		x.resp.Ended = true
		return true
	}
	return false // the request's body or trailers: not read
}

// reservation returns the reservation id in hs, "" if there is none;
// bad if the header is there but its value is not one keygate writes
// (a prefix, a length) or it is there twice with different values.
func reservation(hs []*corev3.HeaderValue) (id string, bad bool) {
	var v []byte
	for _, h := range hs {
		if h.GetKey() != authz.ReservationHeader {
			continue
		}
		w := value(h)
		if v != nil && !bytes.Equal(v, w) || !bytes.HasPrefix(w, []byte("res_")) || len(w) > maxID {
			return "", true
		}
		v = w
	}
	return string(v), false
}

// headers reads the response headers.
func (x *exchange) headers(h *extprocv3.HttpHeaders) bool {
	x.resp.Headers = true
	var ctype, enc []byte
	for _, hv := range h.GetHeaders().GetHeaders() {
		switch hv.GetKey() {
		case ":status":
			x.resp.Status = statusCode(value(hv))
		case "content-type":
			ctype = value(hv)
		case "content-encoding":
			enc = value(hv)
		}
	}
	x.kind, x.gzip = kindOf(ctype, enc)
	x.resp.Ended = h.GetEndOfStream()
	return x.resp.Ended || x.resp.Status >= 400
}

// body reads a chunk of the response body.
func (x *exchange) body(b *extprocv3.HttpBody) bool {
	chunk := b.GetBody()
	x.resp.Body += int64(len(chunk))
	switch x.kind {
	case bodySSE:
		x.sse.Write(chunk)
	case bodyJSON:
		if len(x.json)+len(chunk) > x.max || !x.room.take(int64(len(chunk))) {
			x.kind, x.json = bodyOther, x.json[:0] // too large to read: the estimate
			x.release()
		} else {
			x.held += int64(len(chunk))
			x.json = append(x.json, chunk...)
		}
	}
	x.resp.Ended = b.GetEndOfStream()
	return x.resp.Ended || x.kind == bodyOther && x.resp.Body > 0
}

// response is what the stream showed, with the usage its body reported.
func (x *exchange) response() Response {
	r := x.resp
	switch {
	case x.kind == bodySSE:
		r.Usage = x.sse.Usage()
	case x.kind == bodyJSON && r.Ended:
		r.Usage = x.jsonUsage()
	}
	return r
}

// jsonUsage reads the usage of the whole JSON body.
func (x *exchange) jsonUsage() openai.Usage {
	body := x.json
	if x.gzip {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return openai.Usage{}
		}
		if body, err = io.ReadAll(io.LimitReader(zr, int64(x.max)+1)); err != nil || len(body) > x.max {
			return openai.Usage{}
		}
	}
	u, _ := openai.ParseUsage(body)
	return u
}

// reset makes x ready for another stream, keeping a small JSON buffer.
func (x *exchange) reset() {
	json := x.json[:0]
	if cap(json) > 64<<10 {
		json = nil
	}
	x.release()
	*x = exchange{json: json, max: x.max, room: x.room}
}

// release gives back the room x's JSON body held.
func (x *exchange) release() {
	x.room.give(x.held)
	x.held = 0
}

// value is a header's value: Envoy sends raw_value, or value before
// version 1.29.
func value(h *corev3.HeaderValue) []byte {
	if len(h.GetRawValue()) > 0 {
		return h.GetRawValue()
	}
	return []byte(h.GetValue())
}

// statusCode reads a :status value: three digits, else 0.
func statusCode(v []byte) int {
	if len(v) != 3 {
		return 0
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// kindOf is how a body of content type ctype and content encoding enc
// is read. A body without a content type is tried as JSON.
func kindOf(ctype, enc []byte) (bodyKind, bool) {
	media, _, _ := bytes.Cut(ctype, []byte(";"))
	media = bytes.TrimSpace(media)
	var k bodyKind
	switch {
	case bytes.EqualFold(media, []byte("text/event-stream")):
		k = bodySSE
	case len(media) == 0, bytes.EqualFold(media, []byte("application/json")), hasSuffixFold(media, "+json"):
		k = bodyJSON
	default:
		return bodyOther, false
	}
	switch enc = bytes.TrimSpace(enc); {
	case len(enc) == 0, bytes.EqualFold(enc, []byte("identity")):
		return k, false
	case k == bodyJSON && bytes.EqualFold(enc, []byte("gzip")):
		return k, true
	}
	return bodyOther, false
}

func hasSuffixFold(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && bytes.EqualFold(b[len(b)-len(suffix):], []byte(suffix))
}
