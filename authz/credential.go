package authz

import (
	"strings"

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

// key returns the one key r carries. Envoy sends headers either as a map
// with lowercase names (as the API requires; configured names are
// lowercase too) or, with encode_raw_headers, as a list with raw byte
// values; names are matched in any case in both. From the map, the
// configured (lowercase) names are read, and only if none is there, names
// in another case, as other ext_authz clients may send them.
func (x *extractor) key(r *Request) (string, credStatus) {
	var f found
	exact := false
	for _, h := range r.named {
		exact = exact || h.exact
	}
	for _, h := range r.named {
		if h.exact == exact {
			f.add(credential(h.value, x.sources[h.source].Scheme))
		}
	}
	for _, h := range r.raw {
		f.add(credential(h.value, x.sources[h.source].Scheme))
	}
	if f.status == credOK && f.key == "" {
		return "", credMissing
	}
	return f.key, f.status
}

// found accumulates credentials seen so far.
type found struct {
	key    string
	status credStatus
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
