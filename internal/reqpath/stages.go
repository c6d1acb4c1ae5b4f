package reqpath

import (
	"strings"
	"unicode/utf8"
)

// A stage adds to the readings what one kind of router makes of each:
// every reading is kept, and its transformed form added when it differs.
// Applied in this order, the stages give every combination of them.
var stages = []func([]string) ([]string, error){
	each(cutFragment),   // "#x" is a fragment to URL parsers (Node's url.parse, WHATWG URL), a character to others
	each(dropAuthority), // "//host/p" is a network-path reference to WHATWG URL parsers
	decode,              // none, all but %2F and %5C (Go's ServeMux, find-my-way), all (ASGI, Rack), twice
	each(backslashes),   // "\" is "/" to WHATWG URL parsers and to Node's url.parse
	each(stripParams),   // ";x" ends a segment's name to servlet containers
	each(mergeSlashes),  // "//" is "/" to nginx, Go's path.Clean, Envoy's merge_slashes
	each(removeDots),    // "." and ".." are resolved by RFC 3986 normalisers (Envoy's normalize_path, Go, nginx)
}

// each lifts a transformation of one reading (false: it does not apply)
// into a stage.
func each(f func(string) (string, bool)) func([]string) ([]string, error) {
	return func(rs []string) ([]string, error) {
		for _, r := range rs {
			if t, ok := f(r); ok {
				rs = add(rs, t)
			}
		}
		return rs, nil
	}
}

// add appends r to rs unless it is there already.
func add(rs []string, r string) []string {
	for _, x := range rs {
		if x == r {
			return rs
		}
	}
	return append(rs, r)
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
func decode(rs []string) ([]string, error) {
	for _, r := range rs {
		if strings.IndexByte(r, '%') < 0 {
			continue
		}
		keep, err := checked(unescape(r, true))
		if err != nil {
			return nil, err
		}
		once, err := checked(unescape(r, false))
		if err != nil {
			return nil, err
		}
		twice, err := checked(unescape(once, false))
		if err != nil {
			return nil, err
		}
		rs = add(add(add(rs, keep), once), twice)
	}
	return rs, nil
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
func checked(p string) (string, error) {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < ' ' || c == 0x7f {
			return "", refuse("the path holds an escaped control character")
		}
	}
	if !utf8.ValidString(p) {
		return "", refuse("the path's escapes do not decode to UTF-8")
	}
	if strings.ContainsAny(p, "\u017f\u212a\u0130\u0131") {
		return "", refuse("the path holds a letter that case folding turns into an ASCII one")
	}
	return p, nil
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
	segs := strings.Split(p, "/")[1:] // p starts with "/"
	dots := false
	for _, s := range segs {
		if s == "." || s == ".." {
			dots = true
			break
		}
	}
	if !dots {
		return "", false
	}
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "") // "/a/." is "/a/"
		}
	}
	return "/" + strings.Join(out, "/"), true
}
