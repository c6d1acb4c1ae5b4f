package reqpath

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// A stage adds to the readings what one kind of router makes of each:
// every reading is kept, and its transformed form added when it differs.
// Applied in this order, the stages give every combination of them.
var stages = []func(*set) error{
	each(cutFragment),   // "#x" is a fragment to URL parsers (Node's url.parse, WHATWG URL), a character to others
	each(dropAuthority), // "//host/p" is a network-path reference to WHATWG URL parsers
	decode,              // none, all but %2F and %5C (Go's ServeMux, find-my-way), all (ASGI, Rack), twice
	each(backslashes),   // "\\" is "/" to WHATWG URL parsers and to Node's url.parse
	each(stripParams),   // ";x" ends a segment's name to servlet containers
	each(mergeSlashes),  // "//" is "/" to nginx, Go's path.Clean, Envoy's merge_slashes
	each(removeDots),    // "." and ".." are resolved by RFC 3986 normalisers (Envoy's normalize_path, Go, nginx)
}

// set is the readings found so far, each once, within the bounds on
// their number and bytes.
type set struct {
	rs    []string
	seen  map[string]struct{}
	bytes int
}

func newSet(p string) *set {
	return &set{rs: []string{p}, seen: map[string]struct{}{p: {}}, bytes: len(p)}
}

// add adds r unless it is there already; past the bounds it refuses the
// path.
func (s *set) add(r string) error {
	if _, ok := s.seen[r]; ok {
		return nil
	}
	if len(s.rs) == maxReadings || s.bytes+len(r) > maxReadBytes {
		return refuse("the path has too many readings; spell it plainly")
	}
	s.seen[r] = struct{}{}
	s.rs = append(s.rs, r)
	s.bytes += len(r)
	return nil
}

// each lifts a transformation of one reading (false: it does not apply)
// into a stage.
func each(f func(string) (string, bool)) func(*set) error {
	return func(s *set) error {
		for _, r := range s.rs[:len(s.rs):len(s.rs)] {
			if t, ok := f(r); ok {
				if err := s.add(t); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

func cutFragment(p string) (string, bool) {
	i := strings.IndexByte(p, '#')
	if i < 0 {
		return "", false
	}
	return p[:i], true
}

// dropAuthority reads "//host/p" (or with "\" for either "/", as WHATWG
// URL parsers do for http) as host "host" and path "/p".
func dropAuthority(p string) (string, bool) {
	if len(p) < 2 || !isSlash(p[0]) || !isSlash(p[1]) {
		return "", false
	}
	rest := p[2:]
	i := strings.IndexAny(rest, `/\`)
	if i < 0 {
		return "/", true
	}
	return "/" + rest[i+1:], true
}

func isSlash(c byte) bool { return c == '/' || c == '\\' }

// decode adds each reading percent-decoded but for %2F and %5C, decoded
// whole, and decoded twice.
func decode(s *set) error {
	for _, r := range s.rs[:len(s.rs):len(s.rs)] {
		if strings.IndexByte(r, '%') < 0 {
			continue
		}
		once := unescape(r, false)
		for _, d := range []string{unescape(r, true), once, unescape(once, false)} {
			if err := checked(d); err != nil {
				return err
			}
			if err := s.add(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// unescape decodes every %XX of p (an invalid escape is kept as it is),
// but %2F and %5C when keepSlashes.
func unescape(p string, keepSlashes bool) string {
	if strings.IndexByte(p, '%') < 0 {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			b.WriteByte(p[i])
			continue
		}
		c := unhex(p[i+1])<<4 | unhex(p[i+2])
		if keepSlashes && (c == '/' || c == '\\') {
			b.WriteString(p[i : i+3])
		} else {
			b.WriteByte(c)
		}
		i += 2
	}
	return b.String()
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// checked refuses a decoded reading that holds a control character,
// bytes that are not UTF-8, or a letter that Unicode case folding turns
// into an ASCII one ("ſ" into "s", the Kelvin sign into "k"), which
// routers that fold case with Unicode's rules read as that letter.
func checked(p string) error {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < ' ' || c == 0x7f {
			return refuse("the path holds an escaped control character")
		}
	}
	if !utf8.ValidString(p) {
		return refuse("the path's escapes do not decode to UTF-8")
	}
	if strings.ContainsAny(p, "\u017f\u212a\u0130\u0131") {
		return refuse("the path holds a letter that case folding turns into an ASCII one")
	}
	return nil
}

func backslashes(p string) (string, bool) {
	if strings.IndexByte(p, '\\') < 0 {
		return "", false
	}
	return strings.ReplaceAll(p, `\`, "/"), true
}

// stripParams drops ";params" from every segment: "/a;x/b;y" is "/a/b".
func stripParams(p string) (string, bool) {
	if strings.IndexByte(p, ';') < 0 {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(p))
	in := false // inside a segment's parameters
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '/':
			in = false
		case c == ';':
			in = true
		}
		if !in {
			b.WriteByte(p[i])
		}
	}
	return b.String(), true
}

func mergeSlashes(p string) (string, bool) {
	if !strings.Contains(p, "//") {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String(), true
}

// removeDots resolves "." and ".." segments as RFC 3986 section 5.2.4
// does, keeping empty segments; ".." never climbs above the root.
func removeDots(p string) (string, bool) {
	if !hasDots(p) {
		return "", false
	}
	out := make([]byte, 0, len(p))
	for rest := p[1:]; ; { // p starts with "/"
		seg, more := rest, false
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest, more = rest[:i], rest[i+1:], true
		}
		switch seg {
		case ".":
		case "..":
			if i := bytes.LastIndexByte(out, '/'); i >= 0 {
				out = out[:i]
			}
		default:
			out = append(append(out, '/'), seg...)
			if !more {
				return string(out), true
			}
			continue
		}
		if !more {
			return string(append(out, '/')), true // "/a/." is "/a/"
		}
	}
}

// hasDots reports whether p has a "." or ".." segment.
func hasDots(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '.' || i == 0 || p[i-1] != '/' {
			continue
		}
		if j := i + 1; j == len(p) || p[j] == '/' || p[j] == '.' && (j+1 == len(p) || p[j+1] == '/') {
			return true
		}
	}
	return false
}
