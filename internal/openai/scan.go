package openai

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of arrays and objects; the top-level object
// is depth 1.
const maxDepth = 64

// maxCount is the largest token count or n accepted.
const maxCount = 1_000_000_000_000

// scanner is a single-pass, strict RFC 8259 reader over one JSON text. It
// validates everything it skips: string escapes, UTF-8, surrogate pairs,
// number grammar and nesting depth. Its methods leave i just past what
// they read.
type scanner struct {
	b     []byte
	i     int
	depth int
	body  string // "request" or "response", for messages
}

// syntax is the error for input that is not JSON keygate accepts.
func (s *scanner) syntax(what string) *Error {
	return &Error{Code: CodeInvalidJSON, Message: "The " + s.body + " body is not valid JSON: " + what +
		" at byte " + strconv.Itoa(s.i) + "."}
}

func (s *scanner) ws() {
	for s.i < len(s.b) && s.b[s.i] <= ' ' {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the byte at i, or 0 at the end.
func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// open consumes c ('{' or '[') and the whitespace after it.
func (s *scanner) open(c byte) error {
	if s.peek() != c {
		if c == '{' {
			return s.syntax("expected an object")
		}
		return s.syntax("expected an array")
	}
	s.depth++
	if s.depth > maxDepth {
		return s.syntax("nesting deeper than " + strconv.Itoa(maxDepth))
	}
	s.i++
	s.ws()
	return nil
}

// close reports whether the container ends here (c is '}' or ']'),
// consuming c if so; otherwise it consumes the ',' and whitespace before
// the next member.
func (s *scanner) close(c byte) (bool, error) {
	s.ws()
	switch s.peek() {
	case c:
		s.i++
		s.depth--
		return true, nil
	case ',':
		s.i++
		s.ws()
		return false, nil
	}
	return false, s.syntax("expected ',' or '" + string(c) + "'")
}

// empty consumes c and reports true if the container just opened is empty.
func (s *scanner) empty(c byte) bool {
	if s.peek() == c {
		s.i++
		s.depth--
		return true
	}
	return false
}

// key reads a member name and the ':' after it. raw is the name as
// written, between its quotes; esc says whether it holds escapes.
func (s *scanner) key() (raw []byte, esc bool, err error) {
	if s.peek() != '"' {
		return nil, false, s.syntax("expected a member name")
	}
	if raw, esc, err = s.str(); err != nil {
		return nil, false, err
	}
	s.ws()
	if s.peek() != ':' {
		return nil, false, s.syntax("expected ':'")
	}
	s.i++
	s.ws()
	return raw, esc, nil
}

// value validates and skips one value.
func (s *scanner) value() error {
	if s.i >= len(s.b) {
		return s.syntax("unexpected end")
	}
	switch s.b[s.i] {
	case '"':
		_, _, err := s.str()
		return err
	case '{':
		return s.object()
	case '[':
		return s.array()
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return s.number()
	}
	return s.syntax("expected a value")
}

func (s *scanner) object() error {
	if err := s.open('{'); err != nil {
		return err
	}
	if s.empty('}') {
		return nil
	}
	for {
		if _, _, err := s.key(); err != nil {
			return err
		}
		if err := s.value(); err != nil {
			return err
		}
		if end, err := s.close('}'); end || err != nil {
			return err
		}
	}
}

// each reads an object, calling member with each member name, unescaped
// and as written, the scanner at its value; member must read the value.
func (s *scanner) each(member func(name, raw []byte) error) error {
	if err := s.open('{'); err != nil {
		return err
	}
	if s.empty('}') {
		return nil
	}
	for {
		raw, esc, err := s.key()
		if err != nil {
			return err
		}
		name := raw
		if esc {
			name = unescape(nil, raw)
		}
		if err := member(name, raw); err != nil {
			return err
		}
		if end, err := s.close('}'); end || err != nil {
			return err
		}
	}
}

func (s *scanner) array() error {
	if err := s.open('['); err != nil {
		return err
	}
	if s.empty(']') {
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		if end, err := s.close(']'); end || err != nil {
			return err
		}
	}
}

func (s *scanner) lit(word string) error {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.syntax("invalid literal")
	}
	s.i += len(word)
	return nil
}

// isNull consumes a null and reports whether there was one.
func (s *scanner) isNull() bool {
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// number validates -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return s.syntax("invalid number")
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return s.syntax("invalid number")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return s.syntax("invalid number")
		}
	}
	return nil
}

// digits consumes [0-9]* and reports whether there was at least one.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// count reads a token count or n: a JSON number written as digits only
// (no sign, fraction or exponent) of at most maxCount. null is absent
// (ok false). bad is true for any other value, which is skipped (and
// validated); err is for input that is not JSON.
func (s *scanner) count() (n int64, ok, bad bool, err error) {
	if s.isNull() {
		return 0, false, false, nil
	}
	start := s.i
	if err := s.value(); err != nil {
		return 0, false, false, err
	}
	v := s.b[start:s.i]
	if len(v) == 0 || len(v) > 13 {
		return 0, false, true, nil
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false, true, nil
		}
		n = n*10 + int64(c-'0')
	}
	if n > maxCount {
		return 0, false, true, nil
	}
	return n, true, false, nil
}

// boolean reads true, false or null (ok false); bad for any other value.
func (s *scanner) boolean() (v, ok, bad bool, err error) {
	switch s.peek() {
	case 't':
		return true, true, false, s.lit("true")
	case 'f':
		return false, true, false, s.lit("false")
	case 'n':
		return false, false, false, s.lit("null")
	}
	return false, false, true, s.value()
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

// str reads a string at i (which holds '"') and returns its content as
// written and whether it holds escapes. It refuses control characters,
// invalid UTF-8, invalid escapes and unpaired surrogate escapes.
func (s *scanner) str() (raw []byte, esc bool, err error) {
	b := s.b
	start := s.i + 1
	i := start
	for {
		for ; i+8 <= len(b); i += 8 {
			if m := special(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto look
			}
		}
		for i < len(b) && b[i] >= 0x20 && b[i] < utf8.RuneSelf && b[i] != '"' && b[i] != '\\' {
			i++
		}
	look:
		if i >= len(b) {
			s.i = i
			return nil, false, s.syntax("unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return b[start:i], esc, nil
		case c == '\\':
			esc = true
			n := escapeLen(b[i:])
			if n == 0 {
				s.i = i
				return nil, false, s.syntax("invalid escape or unpaired surrogate in a string")
			}
			i += n
		case c < 0x20:
			s.i = i
			return nil, false, s.syntax("control character in a string")
		case c >= 0xc2 && c <= 0xdf && i+1 < len(b) && b[i+1]&0xc0 == 0x80:
			i += 2 // a two-byte sequence
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				s.i = i
				return nil, false, s.syntax("invalid UTF-8 in a string")
			}
			i += n
		}
	}
}

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
