package authz

import (
	"slices"
	"strings"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// AppendAllow appends the wire form of resp to b when resp is an allow
// this package built (see Release), and reports whether it did: fields in
// order of their numbers, the metadata's keys sorted, written from the
// response's fields as it goes, where a generic marshaller walks the
// response twice and sorts the metadata's keys on every call
// (TestAppendAllow reads it back).
func AppendAllow(b []byte, resp *authv3.CheckResponse) ([]byte, bool) {
	if !isAllowResponse(resp) {
		return b, false
	}
	a := (*allowResponse)(unsafe.Pointer(resp))
	b = append(b, tag(1), 0) // status: empty
	b = appendVarint(append(b, tag(3)), okSize(&a.ok))
	b = appendOk(b, &a.ok)
	b = appendVarint(append(b, tag(4)), a.mdSize())
	return a.appendMetadata(b), true
}

// tag is the one-byte tag of length-delimited field num (below 16).
func tag(num protowire.Number) byte { return byte(num)<<3 | byte(protowire.BytesType) }

// appendVarint is protowire.AppendVarint, inlined for the small lengths
// an allow holds.
func appendVarint(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	return protowire.AppendVarint(b, uint64(n))
}

// sized is the size of a length-delimited field of n bytes with a
// one-byte tag.
func sized(n int) int {
	if n < 0x80 {
		return 2 + n
	}
	return 1 + protowire.SizeBytes(n)
}

// stringField is the size of a string field with a one-byte tag, 0 when
// empty (proto3 leaves it out).
func stringField(s string) int {
	if s == "" {
		return 0
	}
	return sized(len(s))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return append(appendVarint(append(b, tag(num)), len(s)), s...)
}

func okSize(ok *authv3.OkHttpResponse) int {
	n := 0
	for _, h := range ok.Headers {
		n += sized(optionSize(h))
	}
	for _, s := range ok.HeadersToRemove {
		n += sized(len(s))
	}
	for _, h := range ok.ResponseHeadersToAdd {
		n += sized(optionSize(h))
	}
	return n
}

func appendOk(b []byte, ok *authv3.OkHttpResponse) []byte {
	for _, h := range ok.Headers {
		b = appendOption(b, 2, h)
	}
	for _, s := range ok.HeadersToRemove {
		b = append(appendVarint(append(b, tag(5)), len(s)), s...)
	}
	for _, h := range ok.ResponseHeadersToAdd {
		b = appendOption(b, 6, h)
	}
	return b
}

func headerSize(h *corev3.HeaderValue) int { return stringField(h.Key) + stringField(h.Value) }

func optionSize(h *corev3.HeaderValueOption) int {
	n := sized(headerSize(h.Header))
	if h.AppendAction != 0 {
		n += 1 + protowire.SizeVarint(uint64(h.AppendAction))
	}
	return n
}

func appendOption(b []byte, num protowire.Number, h *corev3.HeaderValueOption) []byte {
	hs := headerSize(h.Header)
	size := sized(hs)
	if h.AppendAction != 0 {
		size += 1 + protowire.SizeVarint(uint64(h.AppendAction))
	}
	b = appendVarint(append(b, tag(num)), size)
	b = appendVarint(append(b, tag(1)), hs)
	b = appendString(b, 1, h.Header.Key)
	b = appendString(b, 2, h.Header.Value)
	if h.AppendAction != 0 {
		b = protowire.AppendVarint(append(b, 3<<3|byte(protowire.VarintType)), uint64(h.AppendAction))
	}
	return b
}

// mdOrder is the indexes of mdFields in sorted order, as deterministic
// marshalling writes a map's entries.
var mdOrder = func() [len(mdFields)]int {
	var o [len(mdFields)]int
	for i := range o {
		o[i] = i
	}
	slices.SortFunc(o[:], func(x, y int) int { return strings.Compare(mdFields[x], mdFields[y]) })
	return o
}()

// entrySize is the size of a metadata entry's message: its key and a
// Value holding a string (written even when empty: it is a oneof).
func entrySize(key, value string) int { return stringField(key) + sized(sized(len(value))) }

func (a *allowResponse) mdSize() int {
	n := 0
	for _, i := range mdOrder {
		n += sized(entrySize(mdFields[i], a.mdStrs[i].StringValue))
	}
	return n
}

func (a *allowResponse) appendMetadata(b []byte) []byte {
	for _, i := range mdOrder {
		k, v := mdFields[i], a.mdStrs[i].StringValue
		b = appendVarint(append(b, tag(1)), entrySize(k, v))
		b = appendString(b, 1, k)
		b = appendVarint(append(b, tag(2)), sized(len(v)))
		b = append(appendVarint(append(b, tag(3)), len(v)), v...)
	}
	return b
}
