package authz

import (
	"bytes"
	"errors"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// Decoder reads a serialized CheckRequest keeping only what Check uses:
// the method, the path, the context extensions and the credential headers
// (from the headers map and from header_map, named in any case).
// Everything else Envoy sends (peers, TLS details, other headers, the
// body) is skipped without being allocated, which is most of the cost of
// reading a request. Where it keeps a field, the result is what
// proto.Unmarshal gives (FuzzDecode checks). It checks the wire format
// only: invalid UTF-8, which Envoy sends when a header carries such bytes
// and encode_raw_headers is off, is kept as it is, never an error, so
// such a request is decided (a key with those bytes is malformed) instead
// of failing the call.
type Decoder struct {
	headers []string // credential header names, lowercase
}

// Decoder returns the request decoder for s's credential headers.
func (s *Server) Decoder() *Decoder {
	d := &Decoder{}
	for _, c := range s.extract.sources {
		d.headers = append(d.headers, c.Header)
	}
	return d
}

var errFieldNumber = errors.New("invalid field number")

// Field numbers, from envoy/service/auth/v3 and envoy/config/core/v3.
const (
	fieldAttributes        = 1  // CheckRequest.attributes
	fieldRequest           = 4  // AttributeContext.request
	fieldContextExtensions = 10 // AttributeContext.context_extensions
	fieldHTTP              = 2  // AttributeContext.Request.http
	fieldMethod            = 2  // HttpRequest.method
	fieldHeaders           = 3  // HttpRequest.headers
	fieldPath              = 4  // HttpRequest.path
	fieldHeaderMap         = 13 // HttpRequest.header_map
	fieldHeaderMapHeaders  = 1  // HeaderMap.headers
	fieldKey               = 1  // map entries, HeaderValue.key
	fieldValue             = 2  // map entries, HeaderValue.value
	fieldRawValue          = 3  // HeaderValue.raw_value
)

// Decode reads b into req, which is empty or holds an earlier part of the
// same message (fields merge as in proto.Unmarshal).
func (d *Decoder) Decode(b []byte, req *authv3.CheckRequest) error {
	r := fields{b: b}
	for num, v, ok := r.next(); ok; num, v, ok = r.next() {
		if num != fieldAttributes {
			continue
		}
		if req.Attributes == nil {
			req.Attributes = &authv3.AttributeContext{}
		}
		if err := d.attributes(v, req.Attributes); err != nil {
			return err
		}
	}
	return r.err
}

func (d *Decoder) attributes(b []byte, a *authv3.AttributeContext) error {
	r := fields{b: b}
	for num, v, ok := r.next(); ok; num, v, ok = r.next() {
		var err error
		switch num {
		case fieldRequest:
			if a.Request == nil {
				a.Request = &authv3.AttributeContext_Request{}
			}
			err = d.request(v, a.Request)
		case fieldContextExtensions:
			var key, value []byte
			if key, value, err = entry(v); err == nil {
				if a.ContextExtensions == nil {
					a.ContextExtensions = map[string]string{}
				}
				a.ContextExtensions[string(key)] = string(value)
			}
		}
		if err != nil {
			return err
		}
	}
	return r.err
}

func (d *Decoder) request(b []byte, req *authv3.AttributeContext_Request) error {
	r := fields{b: b}
	for num, v, ok := r.next(); ok; num, v, ok = r.next() {
		if num != fieldHTTP {
			continue
		}
		if req.Http == nil {
			req.Http = &authv3.AttributeContext_HttpRequest{}
		}
		if err := d.http(v, req.Http); err != nil {
			return err
		}
	}
	return r.err
}

func (d *Decoder) http(b []byte, h *authv3.AttributeContext_HttpRequest) error {
	r := fields{b: b}
	for num, v, ok := r.next(); ok; num, v, ok = r.next() {
		var err error
		switch num {
		case fieldMethod:
			err = setString(&h.Method, v)
		case fieldPath:
			err = setString(&h.Path, v)
		case fieldHeaders:
			var key, value []byte
			if key, value, err = entry(v); err == nil {
				if name, ok := d.credential(key); ok {
					if h.Headers == nil {
						h.Headers = map[string]string{}
					}
					if string(key) != name { // another spelling: kept as sent
						name = string(key)
					}
					h.Headers[name] = string(value)
				}
			}
		case fieldHeaderMap:
			if h.HeaderMap == nil {
				h.HeaderMap = &corev3.HeaderMap{}
			}
			err = d.headerMap(v, h.HeaderMap)
		}
		if err != nil {
			return err
		}
	}
	return r.err
}

func (d *Decoder) headerMap(b []byte, m *corev3.HeaderMap) error {
	r := fields{b: b}
	for num, v, ok := r.next(); ok; num, v, ok = r.next() {
		if num != fieldHeaderMapHeaders {
			continue
		}
		var key, value, raw []byte
		hr := fields{b: v}
		for num, v, ok := hr.next(); ok; num, v, ok = hr.next() {
			switch num {
			case fieldKey:
				key = v
			case fieldValue:
				value = v
			case fieldRawValue:
				raw = v
			}
		}
		if hr.err != nil {
			return hr.err
		}
		if _, ok := d.credential(key); ok {
			hv := &corev3.HeaderValue{Key: string(key), Value: string(value)}
			if len(raw) > 0 {
				hv.RawValue = bytes.Clone(raw)
			}
			m.Headers = append(m.Headers, hv)
		}
	}
	return r.err
}

// credential returns the configured name that name is, in any case.
func (d *Decoder) credential(name []byte) (string, bool) {
	for _, h := range d.headers {
		if string(name) == h || len(name) == len(h) && strings.EqualFold(string(name), h) {
			return h, true
		}
	}
	return "", false
}

// entry reads a map<string, string> entry.
func entry(b []byte) (key, value []byte, err error) {
	r := fields{b: b}
	for num, v, ok := r.next(); ok; num, v, ok = r.next() {
		switch num {
		case fieldKey:
			key = v
		case fieldValue:
			value = v
		}
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	return key, value, nil
}

func setString(dst *string, v []byte) error {
	*dst = string(v)
	return nil
}

// fields reads the length-delimited fields of a message in turn. It skips
// fields of other wire types: every field Decode reads is length-delimited,
// and proto.Unmarshal keeps one sent with another wire type as an unknown
// field.
type fields struct {
	b   []byte
	err error
}

// next returns the next length-delimited field, or false at the end of
// the message or at an error (in err).
func (r *fields) next() (protowire.Number, []byte, bool) {
	for len(r.b) > 0 {
		num, typ, n := protowire.ConsumeTag(r.b)
		if n < 0 {
			r.err = protowire.ParseError(n)
			return 0, nil, false
		}
		if num > protowire.MaxValidNumber {
			r.err = errFieldNumber
			return 0, nil, false
		}
		r.b = r.b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, r.b); n < 0 {
				r.err = protowire.ParseError(n)
				return 0, nil, false
			}
			r.b = r.b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(r.b)
		if n < 0 {
			r.err = protowire.ParseError(n)
			return 0, nil, false
		}
		r.b = r.b[n:]
		return num, v, true
	}
	return 0, nil, false
}
