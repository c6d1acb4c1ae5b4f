package authz

import (
	"errors"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Decoder reads a serialized CheckRequest into a Request, keeping only
// what a decision uses: the method, the path, the keygate.scope context
// extension, the credential headers and the headers metering and the
// client's address read (from the headers map and from header_map, named
// in any case), the body, and the source peer's socket address.
// Everything else Envoy sends (the destination, TLS details, other
// headers) is skipped without being allocated,
// and what is kept is copied into the Request's own buffer: a decoded
// check allocates nothing. Where it keeps a field, the result is what
// proto.Unmarshal gives (FuzzDecode checks). It checks the wire format
// only: invalid UTF-8, which Envoy sends when a header carries such bytes
// and encode_raw_headers is off, is kept as it is, never an error, so
// such a request is decided (a key with those bytes is malformed) instead
// of failing the call.
type Decoder struct {
	x *extractor
}

// Decoder returns the request decoder for s's credential headers.
func (s *Server) Decoder() *Decoder { return &Decoder{x: &s.extract} }

var errFieldNumber = errors.New("invalid field number")

// Field numbers, from envoy/service/auth/v3 and envoy/config/core/v3.
const (
	fieldAttributes        = 1  // CheckRequest.attributes
	fieldSource            = 1  // AttributeContext.source
	fieldPeerAddress       = 1  // AttributeContext.Peer.address
	fieldSocketAddress     = 1  // Address.socket_address, of the oneof
	fieldPipe              = 2  // Address.pipe, of the oneof
	fieldInternalAddress   = 3  // Address.envoy_internal_address, of the oneof
	fieldAddress           = 2  // SocketAddress.address
	fieldRequest           = 4  // AttributeContext.request
	fieldContextExtensions = 10 // AttributeContext.context_extensions
	fieldHTTP              = 2  // AttributeContext.Request.http
	fieldMethod            = 2  // HttpRequest.method
	fieldHeaders           = 3  // HttpRequest.headers
	fieldPath              = 4  // HttpRequest.path
	fieldBody              = 11 // HttpRequest.body
	fieldRawBody           = 12 // HttpRequest.raw_body
	fieldHeaderMap         = 13 // HttpRequest.header_map
	fieldHeaderMapHeaders  = 1  // HeaderMap.headers
	fieldKey               = 1  // map entries, HeaderValue.key
	fieldValue             = 2  // map entries, HeaderValue.value
	fieldRawValue          = 3  // HeaderValue.raw_value
)

// DecodeRequest reads b, a whole CheckRequest, into r, which is empty:
// fields that repeat merge as in proto.Unmarshal.
func (d *Decoder) DecodeRequest(b []byte, r *Request) error {
	if cap(r.buf)-len(r.buf) < len(b) { // every string kept fits: no copy moves
		r.buf = append(make([]byte, 0, len(r.buf)+len(b)), r.buf...)
	}
	f := fields{b: b}
	for num, v, ok := f.next(); ok; num, v, ok = f.next() {
		if num == fieldAttributes {
			if err := d.attributes(v, r); err != nil {
				return err
			}
		}
	}
	r.settleMeta()
	return f.err
}

func (d *Decoder) attributes(b []byte, r *Request) error {
	f := fields{b: b}
	for num, v, ok := f.next(); ok; num, v, ok = f.next() {
		var err error
		switch num {
		case fieldSource:
			err = r.source(v)
		case fieldRequest:
			err = d.request(v, r)
		case fieldContextExtensions:
			var key, value []byte
			if key, value, err = entry(v); err == nil && string(key) == ScopeExtension {
				r.Scope, r.HasScope = r.keep(value), true
			}
		}
		if err != nil {
			return err
		}
	}
	return f.err
}

// source reads the peer's address from an AttributeContext.Peer.
func (r *Request) source(b []byte) error {
	f := fields{b: b}
	for num, v, ok := f.next(); ok; num, v, ok = f.next() {
		if num == fieldPeerAddress {
			if err := r.address(v); err != nil {
				return err
			}
		}
	}
	return f.err
}

// address reads an Address: the socket address's address; a pipe or an
// internal address that follows replaces the socket address, as the
// oneof does in proto.Unmarshal.
func (r *Request) address(b []byte) error {
	f := fields{b: b}
	for num, v, ok := f.next(); ok; num, v, ok = f.next() {
		switch num {
		case fieldSocketAddress:
			sf := fields{b: v}
			for num, v, ok := sf.next(); ok; num, v, ok = sf.next() {
				if num == fieldAddress {
					r.peer = r.keep(v)
				}
			}
			if sf.err != nil {
				return sf.err
			}
		case fieldPipe, fieldInternalAddress:
			r.peer = ""
		}
	}
	return f.err
}

func (d *Decoder) request(b []byte, r *Request) error {
	f := fields{b: b}
	for num, v, ok := f.next(); ok; num, v, ok = f.next() {
		if num == fieldHTTP {
			if err := d.http(v, r); err != nil {
				return err
			}
		}
	}
	return f.err
}

func (d *Decoder) http(b []byte, r *Request) error {
	f := fields{b: b}
	for num, v, ok := f.next(); ok; num, v, ok = f.next() {
		var err error
		switch num {
		case fieldMethod:
			r.Method = r.keep(v)
		case fieldPath:
			r.Path = r.keep(v)
		case fieldHeaders:
			var key, value []byte
			if key, value, err = entry(v); err == nil {
				if i, ok := d.x.sourceIndex(unsafeString(key)); ok {
					name := r.keep(key)
					r.setNamed(credHeader{source: i, name: name, exact: name == d.x.sources[i].Header, value: r.keep(value)})
				}
				if i, ok := metaIndex(unsafeString(key), false); ok {
					r.setMeta(i, r.keep(value))
				}
			}
		case fieldBody:
			if len(v) > 0 && (len(r.Body) == 0 || !r.rawBody) {
				r.Body, r.HasBody = r.keepBytes(v), true
			}
		case fieldRawBody:
			if len(v) > 0 {
				r.Body, r.HasBody, r.rawBody = r.keepBytes(v), true, true
			}
		case fieldHeaderMap:
			err = d.headerMap(v, r)
		}
		if err != nil {
			return err
		}
	}
	return f.err
}

func (d *Decoder) headerMap(b []byte, r *Request) error {
	f := fields{b: b}
	for num, v, ok := f.next(); ok; num, v, ok = f.next() {
		if num != fieldHeaderMapHeaders {
			continue
		}
		var key, value, raw []byte
		hf := fields{b: v}
		for num, v, ok := hf.next(); ok; num, v, ok = hf.next() {
			switch num {
			case fieldKey:
				key = v
			case fieldValue:
				value = v
			case fieldRawValue:
				raw = v
			}
		}
		if hf.err != nil {
			return hf.err
		}
		if len(raw) > 0 {
			value = raw
		}
		if i, ok := d.x.sourceIndex(unsafeString(key)); ok {
			r.raw = append(r.raw, credHeader{source: i, value: r.keep(value)})
		}
		if i, ok := metaIndex(unsafeString(key), true); ok {
			r.addRawMeta(i, r.keep(value))
		}
	}
	return f.err
}

// keep copies v into r's buffer and returns it as a string that lives as
// long as r is not reset.
func (r *Request) keep(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	start := len(r.buf)
	r.buf = append(r.buf, v...)
	return unsafeString(r.buf[start:])
}

// keepBytes copies v into r's buffer.
func (r *Request) keepBytes(v []byte) []byte {
	start := len(r.buf)
	r.buf = append(r.buf, v...)
	return r.buf[start:len(r.buf):len(r.buf)]
}

// unsafeString is b as a string, without a copy: b must not change while
// the string is in use.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

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
		// Most fields Envoy sends are short strings with a one-byte tag
		// and length: read those without protowire's general varints.
		if b := r.b; len(b) >= 2 && b[0] < 0x80 && b[0]&7 == byte(protowire.BytesType) && b[0] >= 1<<3 && b[1] < 0x80 {
			if n := int(b[1]); n <= len(b)-2 {
				r.b = b[2+n:]
				return protowire.Number(b[0] >> 3), b[2 : 2+n : 2+n], true
			}
		}
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
