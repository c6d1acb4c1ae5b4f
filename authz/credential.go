package authz

import (
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/config"
)

// maxCredential is the longest credential header looked at; longer ones are
// denied without a lookup.
const maxCredential = 8 << 10

// credStatus is what extraction found.
type credStatus int

const (
	credOK        credStatus = iota
	credMissing              // no credential header, or one with no key
	credConflict             // two different keys
	credTooLong              // a header over maxCredential
	credBadScheme            // e.g. "Authorization: Basic ..."
)

// extractor finds the key in a request's headers.
type extractor struct {
	sources []config.Credential
}

// extract returns the one key the request carries. Envoy sends headers
// either as a map with lowercase names (as the API requires; configured
// names are lowercase too) or, with encode_raw_headers, as a list with raw
// byte values. Names are matched in any case in both.
func (x *extractor) extract(h *authv3.AttributeContext_HttpRequest) (string, credStatus) {
	var f found
	if m := h.GetHeaders(); len(m) > 0 {
		x.fromMap(m, &f)
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		s, ok := x.source(hv.GetKey())
		if !ok {
			continue
		}
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		f.add(credential(v, s.Scheme))
	}
	if f.status == credOK && f.key == "" {
		return "", credMissing
	}
	return f.key, f.status
}

// fromMap reads the credential headers from the headers map: by their
// lowercase names, as Envoy sends them, and only if none is there, in any
// case, as other ext_authz clients may send them.
func (x *extractor) fromMap(m map[string]string, f *found) {
	seen := false
	for _, s := range x.sources {
		if v, ok := m[s.Header]; ok {
			f.add(credential(v, s.Scheme))
			seen = true
		}
	}
	if seen {
		return
	}
	for name, v := range m {
		if s, ok := x.source(name); ok {
			f.add(credential(v, s.Scheme))
		}
	}
}

// found accumulates credentials seen so far.
type found struct {
	key    string
	status credStatus
}

// source returns the credential source for header name, if any.
func (x *extractor) source(name string) (config.Credential, bool) {
	for _, s := range x.sources {
		if len(name) == len(s.Header) && strings.EqualFold(name, s.Header) {
			return s, true
		}
	}
	return config.Credential{}, false
}

func (f *found) add(key string, st credStatus) {
	switch {
	case f.status > st: // keep the worst finding
	case st != credOK:
		f.status = st
	case key == "":
	case f.key == "":
		f.key = key
	case f.key != key:
		f.status = credConflict
	}
}

// credential reads one header value: "<scheme> <key>" when the source has
// a scheme, else the whole value.
func credential(v, scheme string) (string, credStatus) {
	if len(v) > maxCredential {
		return "", credTooLong
	}
	v = strings.TrimSpace(v)
	if scheme == "" || v == "" {
		return v, credOK
	}
	word, rest, _ := strings.Cut(v, " ")
	if !strings.EqualFold(word, scheme) {
		return "", credBadScheme
	}
	return strings.TrimSpace(rest), credOK
}
