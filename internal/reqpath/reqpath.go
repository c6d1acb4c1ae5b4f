// Package reqpath reads a request target the ways HTTP backends route on
// it. keygate decides on the path before the backend sees it, and cannot
// rewrite what the proxy forwards, so a path that routers read more than
// one way (percent escapes, dot segments, "//", "\", ";params", "#",
// "//host") is given as every distinct reading; a decision that holds for
// all of them holds whichever one the backend routes on. A target no
// backend should be given (control characters, invalid escapes, raw
// non-ASCII) is refused. docs/paths.md explains each reading and why.
package reqpath

import (
	"errors"
	"strings"
)

// Bounds on the work of a path with more than one reading: its length
// (before the query), its readings, and their bytes together. No client
// library's path comes near them (a real path has a handful of readings);
// a path crafted to multiply readings is refused once a stage passes one.
const (
	MaxAmbiguous = 512
	maxReadings  = 64
	maxReadBytes = 16 << 10
)

// Error is a refused target; Reason says why, for the client.
type Error struct{ Reason string }

func (e *Error) Error() string { return "invalid request path: " + e.Reason }

func refuse(reason string) error { return &Error{Reason: reason} }

// IsInvalid reports whether err refuses a target.
func IsInvalid(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Simple returns the one reading of a target that every backend reads the
// same way: an origin-form path of unreserved characters, sub-delimiters
// but ";", ":" and "@", with no "//" and no dot segment; the query is
// dropped. It reports false for any other target, which Readings handles.
// It does not allocate.
func Simple(target string) (string, bool) {
	p := target
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" || p[0] != '/' {
		return "", false
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		if !plain[c] {
			return "", false
		}
		if c == '/' && p[i-1] == '/' {
			return "", false
		}
		if c == '.' && p[i-1] == '/' && (i+1 == len(p) || p[i+1] == '/' || p[i+1] == '.' && (i+2 == len(p) || p[i+2] == '/')) {
			return "", false
		}
	}
	return p, true
}

// plain marks the bytes that no router reads two ways: RFC 3986's
// unreserved characters, "/", and the sub-delimiters and ":" and "@"
// that no router decodes or strips.
var plain = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/!$&'()*+,=:@") {
		t[c] = true
	}
	return t
}()

// Readings returns every distinct path a backend could route target on,
// the query dropped, or an *Error when no backend should be given it.
// The first reading is the path as sent.
func Readings(target string) ([]string, error) {
	if p, ok := Simple(target); ok {
		return []string{p}, nil
	}
	p, err := originForm(target)
	if err != nil {
		return nil, err
	}
	if err := checkRaw(p); err != nil {
		return nil, err
	}
	if len(p) > MaxAmbiguous {
		return nil, refuse("a path with escapes, dot segments or other characters that backends read differently must be at most 512 bytes")
	}
	rs := newSet(p)
	for _, st := range stages {
		if err := st(rs); err != nil {
			return nil, err
		}
	}
	return rs.rs, nil
}

// originForm returns the path of target with the query dropped: an
// origin-form target ("/v1/models?x") as it is, an absolute-form one
// ("http://host/v1/models") from its path, and "*" (OPTIONS *) as "*".
func originForm(target string) (string, error) {
	p := target
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i] // a "?" after "#" ends the path of the readings that keep "#"
	}
	switch {
	case p == "*":
		return p, nil
	case strings.HasPrefix(p, "/"):
		return p, nil
	case hasSchemePrefix(p, "http://"), hasSchemePrefix(p, "https://"):
		rest := p[strings.Index(p, "//")+2:]
		i := strings.IndexAny(rest, "/\\?#")
		if i < 0 {
			return "/", nil
		}
		if rest[i] == '?' {
			return "/", nil
		}
		return originForm(rest[i:])
	case p == "":
		return "", refuse("the request has no path")
	}
	return "", refuse("the path must start with /")
}

func hasSchemePrefix(s, scheme string) bool {
	return len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme)
}

// checkRaw refuses bytes that must never appear unescaped in a path
// (controls, space, non-ASCII) and "%" without two hex digits.
func checkRaw(p string) error {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c <= ' ' || c == 0x7f:
			return refuse("the path holds a control character or a space")
		case c >= 0x80:
			return refuse("the path holds a character that is not ASCII; percent-encode it as UTF-8")
		case c == '%' && (i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2])):
			return refuse("the path holds a % that is not followed by two hexadecimal digits")
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
