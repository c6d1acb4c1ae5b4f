package openai

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// maxDepth bounds the nesting of arrays and objects; the top-level object
// is depth 1.
const maxDepth = 64

// maxCount is the largest token count or n accepted.
const maxCount = 1_000_000_000_000

// scanner is a single-pass, strict RFC 8259 reader over one JSON text. It
// validates everything it skips: string escapes, UTF-8, surrogate pairs,
// number grammar and nesting depth. Its methods take the index to read at
// and return the index just past what they read, or -1 with err set.
type scanner struct {
	b     []byte
	depth int
	body  string // "request" or "response", for messages
	err   *Error
}

// fail records that the body is not JSON keygate accepts, at byte i.
func (s *scanner) fail(i int, what string) int {
	s.err = &Error{Code: CodeInvalidJSON, Message: "The " + s.body + " body is not valid JSON: " + what +
		" at byte " + strconv.Itoa(i) + "."}
	return -1
}

// refuse records a refusal of valid JSON.
func (s *scanner) refuse(e *Error) int {
	s.err = e
	return -1
}

// ws returns the index of the first byte at or after i that is not JSON
// whitespace.
func (s *scanner) ws(i int) int {
	b := s.b
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// at returns the byte at i, or 0 past the end.
func (s *scanner) at(i int) byte {
	if i < len(s.b) {
		return s.b[i]
	}
	return 0
}

// open reads c ('{' or '[') at i and the whitespace after it; empty
// reports that the container closes at once (and reads its end).
func (s *scanner) open(i int, c byte) (j int, empty bool) {
	if s.at(i) != c {
		if c == '{' {
			return s.fail(i, "expected an object"), false
		}
		return s.fail(i, "expected an array"), false
	}
	if s.depth++; s.depth > maxDepth {
		return s.fail(i, "nesting deeper than "+strconv.Itoa(maxDepth)), false
	}
	i = s.ws(i + 1)
	if end := c + 2; s.at(i) == end { // '}' or ']'
		s.depth--
		return i + 1, true
	}
	return i, false
}

// more reads what follows a member or element at i: a ',' and the
// whitespace after it (more true), or the container's end c.
func (s *scanner) more(i int, c byte) (j int, more bool) {
	i = s.ws(i)
	switch s.at(i) {
	case ',':
		return s.ws(i + 1), true
	case c:
		s.depth--
		return i + 1, false
	}
	return s.fail(i, "expected ',' or '"+string(c)+"'"), false
}

// key reads a member name at i and the ':' after it; j is at the value.
// raw is the name as written, between its quotes; esc says whether it
// holds escapes.
func (s *scanner) key(i int) (j int, raw []byte, esc bool) {
	if s.at(i) != '"' {
		return s.fail(i, "expected a member name"), nil, false
	}
	if j, esc = s.str(i); j < 0 {
		return j, nil, false
	}
	raw = s.b[i+1 : j-1]
	if s.at(j) != ':' {
		if j = s.ws(j); s.at(j) != ':' {
			return s.fail(j, "expected ':'"), nil, false
		}
	}
	return s.ws(j + 1), raw, esc
}

// each reads an object at i, calling member with the index of each
// member's value and its name, unescaped and as written; member returns
// the index past the value, or -1.
func (s *scanner) each(i int, member func(i int, name, raw []byte) int) int {
	i, empty := s.open(i, '{')
	for more := !empty; more && i >= 0; i, more = s.more(i, '}') {
		j, raw, esc := s.key(i)
		if j < 0 {
			return j
		}
		name := raw
		if esc {
			name = unescape(nil, raw)
		}
		if i = member(j, name, raw); i < 0 {
			return i
		}
	}
	return i
}

// value validates and skips one value.
func (s *scanner) value(i int) int {
	switch s.at(i) {
	case '"':
		i, _ = s.str(i)
		return i
	case '{':
		return s.object(i)
	case '[':
		return s.array(i)
	case 't':
		return s.lit(i, "true")
	case 'f':
		return s.lit(i, "false")
	case 'n':
		return s.lit(i, "null")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return s.number(i)
	case 0:
		if i >= len(s.b) {
			return s.fail(i, "unexpected end")
		}
	}
	return s.fail(i, "expected a value")
}

func (s *scanner) object(i int) int {
	i, empty := s.open(i, '{')
	for more := !empty; more && i >= 0; i, more = s.more(i, '}') {
		if i, _, _ = s.key(i); i >= 0 {
			i = s.value(i)
		}
		if i < 0 {
			return i
		}
	}
	return i
}

func (s *scanner) array(i int) int {
	i, empty := s.open(i, '[')
	for more := !empty; more && i >= 0; i, more = s.more(i, ']') {
		if i = s.value(i); i < 0 {
			return i
		}
	}
	return i
}

func (s *scanner) lit(i int, word string) int {
	if len(s.b)-i < len(word) || string(s.b[i:i+len(word)]) != word {
		return s.fail(i, "invalid literal")
	}
	return i + len(word)
}

// null reads a null at i if there is one.
func (s *scanner) null(i int) (int, bool) {
	if len(s.b)-i >= 4 && string(s.b[i:i+4]) == "null" {
		return i + 4, true
	}
	return i, false
}

// number validates -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at i.
func (s *scanner) number(i int) int {
	start := i
	if s.at(i) == '-' {
		i++
	}
	switch c := s.at(i); {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i = s.digits(i)
	default:
		return s.fail(start, "invalid number")
	}
	if s.at(i) == '.' {
		if j := s.digits(i + 1); j > i+1 {
			i = j
		} else {
			return s.fail(start, "invalid number")
		}
	}
	if c := s.at(i); c == 'e' || c == 'E' {
		i++
		if c := s.at(i); c == '+' || c == '-' {
			i++
		}
		if j := s.digits(i); j > i {
			i = j
		} else {
			return s.fail(start, "invalid number")
		}
	}
	return i
}

// digits returns the index past the digits at i.
func (s *scanner) digits(i int) int {
	for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
		i++
	}
	return i
}

// count reads a token count or n at i: a JSON number written as digits
// only (no sign, fraction or exponent) of at most maxCount. null is absent
// (ok false). bad is true for any other value, which is skipped (and
// validated).
func (s *scanner) count(i int) (j int, n int64, ok, bad bool) {
	if j, null := s.null(i); null {
		return j, 0, false, false
	}
	if j = s.value(i); j < 0 {
		return j, 0, false, false
	}
	v := s.b[i:j]
	if len(v) > 13 {
		return j, 0, false, true
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return j, 0, false, true
		}
		n = n*10 + int64(c-'0')
	}
	if n > maxCount {
		return j, 0, false, true
	}
	return j, n, true, false
}

// boolean reads true, false or null (ok false) at i; bad for any other
// value.
func (s *scanner) boolean(i int) (j int, v, ok, bad bool) {
	switch s.at(i) {
	case 't':
		return s.lit(i, "true"), true, true, false
	case 'f':
		return s.lit(i, "false"), false, true, false
	case 'n':
		return s.lit(i, "null"), false, false, false
	}
	return s.value(i), false, false, true
}

// Masks for the eight-bytes-at-a-time string scan.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special returns the high bit of each of the eight bytes in w (read
// little-endian) that needs a look: a quote, a backslash, a control
// character or a non-ASCII byte. The lowest bit set is exact (a byte that
// wraps below zero is itself flagged before it borrows from the next);
// bits above it may be spurious.
func special(w uint64) uint64 {
	return ((w - 0x20*ones) | (w ^ '"'*ones - ones) | (w ^ '\\'*ones - ones) | w) & highs
}

// str reads a string at i (which holds '"') and returns the index past
// its closing quote and whether it holds escapes. It refuses control
// characters, invalid UTF-8, invalid escapes and unpaired surrogate
// escapes.
func (s *scanner) str(i int) (j int, esc bool) {
	b := s.b
	p := unsafe.Pointer(unsafe.SliceData(b))
	i++
	for {
		for ; i+8 <= len(b); i += 8 {
			// the eight bytes at i, in bounds by the loop's condition
			w := binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(p, i))[:])
			if m := special(w); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto look
			}
		}
		for i < len(b) && b[i] >= 0x20 && b[i] < utf8.RuneSelf && b[i] != '"' && b[i] != '\\' {
			i++
		}
	look:
		if i >= len(b) {
			return s.fail(i, "unterminated string"), false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc
		case c == '\\':
			esc = true
			if i+1 < len(b) && shortEscape[b[i+1]] {
				i += 2
				continue
			}
			n := escapeLen(b[i:])
			if n == 0 {
				return s.fail(i, "invalid escape or unpaired surrogate in a string"), false
			}
			i += n
		case c < 0x20:
			return s.fail(i, "control character in a string"), false
		case c >= 0xc2 && c <= 0xdf && i+1 < len(b) && b[i+1]&0xc0 == 0x80:
			i += 2 // a two-byte sequence
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return s.fail(i, "invalid UTF-8 in a string"), false
			}
			i += n
		}
	}
}

// shortEscape holds the characters that follow a backslash in a
// two-byte escape.
var shortEscape = [256]bool{'"': true, '\\': true, '/': true, 'b': true, 'f': true, 'n': true, 'r': true, 't': true}

// escapeLen returns the length of the escape at the start of b (which
// holds '\'), a surrogate pair counting as one escape; 0 if it is invalid
// or a lone surrogate.
func escapeLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
	default:
		return 0
	}
	r := hex4(b[2:])
	switch {
	case r < 0:
		return 0
	case r < 0xd800 || r > 0xdfff:
		return 6
	case r >= 0xdc00:
		return 0 // a low surrogate first
	}
	if len(b) < 12 || b[6] != '\\' || b[7] != 'u' {
		return 0
	}
	if lo := hex4(b[8:]); lo < 0xdc00 || lo > 0xdfff {
		return 0
	}
	return 12
}

// hex4 returns the value of four hex digits at the start of b, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unescape appends the value of a string's content, already validated by
// str, to dst.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		case 'u':
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r = utf16.DecodeRune(r, hex4(raw[i+2:]))
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			c = raw[i+1]
		}
		dst = append(dst, c)
		i += 2
	}
	return dst
}
