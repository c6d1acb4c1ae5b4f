// Package exactjson refuses the JSON that readers could take two ways.
// encoding/json keeps the last of a member given twice and matches a
// member's name to a field in any case, where other readers (a proxy, a
// logger, a schema validator) keep the first or match exactly; a body
// read one way by keygate and another by them is refused instead.
package exactjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Check reports the first object in b, at any depth, that gives a member
// twice (names compared as encoding/json matches them, in any case) or
// names a member with an upper-case letter (every member of keygate's
// requests is lower case, so such a name is another spelling of one, or
// of nothing). The error names the member when its name is a plain word,
// and never quotes anything else.
func Check(b []byte) error { return walk(b, true) }

// Unique reports the first object in b, at any depth, that gives a
// member twice, names compared as encoding/json matches them (in any
// case): for records, whose maps may have keys in any case.
func Unique(b []byte) error { return walk(b, false) }

// errSyntax is b not being JSON; callers check b with encoding/json
// first, so it is only met by what they did not.
var errSyntax = errors.New("not valid JSON")

// maxDepth bounds nesting, as encoding/json's does.
const maxDepth = 10000

// scanner walks JSON text without decoding its values.
type scanner struct {
	b     []byte
	i     int
	lower bool
	depth int
	names [][]byte // the names of the objects being walked, innermost last
}

func walk(b []byte, lower bool) error {
	s := &scanner{b: b, lower: lower}
	s.ws()
	if err := s.value(); err != nil {
		return err
	}
	if s.ws(); s.i != len(s.b) {
		return errSyntax
	}
	return nil
}

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *scanner) value() error {
	if s.i >= len(s.b) {
		return errSyntax
	}
	switch s.b[s.i] {
	case '{', '[':
		return s.nested()
	case '"':
		_, err := s.str()
		return err
	}
	start := s.i // a number, true, false or null: up to a delimiter
	for s.i < len(s.b) && !delimiter(s.b[s.i]) {
		s.i++
	}
	if s.i == start {
		return errSyntax
	}
	return nil
}

func delimiter(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// nested walks an object or an array, s.i at its opening.
func (s *scanner) nested() error {
	if s.depth++; s.depth > maxDepth {
		return errSyntax
	}
	var err error
	if s.b[s.i] == '{' {
		base := len(s.names)
		err = s.object(base)
		s.names = s.names[:base]
	} else {
		err = s.array()
	}
	s.depth--
	return err
}

// object walks an object, s.i at its '{', its names kept in s.names
// from base.
func (s *scanner) object(base int) error {
	s.i++
	var folded map[string]bool // once there are many members
	for first := true; ; first = false {
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == '}' && first {
			s.i++
			return nil
		}
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return errSyntax
		}
		name, err := s.str()
		if err != nil {
			return err
		}
		if err := s.member(name, base, &folded); err != nil {
			return err
		}
		if s.ws(); s.i >= len(s.b) || s.b[s.i] != ':' {
			return errSyntax
		}
		s.i++
		s.ws()
		if err := s.value(); err != nil {
			return err
		}
		if more, err := s.next('}'); !more || err != nil {
			return err
		}
	}
}

// next reads what follows a member or an element: a comma, more to come,
// or end, the end of the object or array.
func (s *scanner) next(end byte) (more bool, err error) {
	s.ws()
	switch {
	case s.i < len(s.b) && s.b[s.i] == ',':
		s.i++
		return true, nil
	case s.i < len(s.b) && s.b[s.i] == end:
		s.i++
		return false, nil
	}
	return false, errSyntax
}

// member refuses name if the object's names since base have it, as
// encoding/json compares names (bytes.EqualFold: Unicode simple case
// folding), or, with lower, if it has an upper-case letter; else it adds
// it to them.
func (s *scanner) member(name []byte, base int, folded *map[string]bool) error {
	dup := false
	if *folded != nil {
		key := fold(name)
		dup = (*folded)[key]
		(*folded)[key] = true
	} else {
		for _, n := range s.names[base:] {
			if bytes.EqualFold(n, name) {
				dup = true
				break
			}
		}
		if s.names = append(s.names, name); len(s.names)-base > 32 {
			*folded = make(map[string]bool, 64)
			for _, n := range s.names[base:] {
				(*folded)[fold(n)] = true
			}
		}
	}
	switch {
	case dup:
		return fmt.Errorf("%s is given twice", Shown(string(name)))
	case !s.lower || !hasUpper(name):
		return nil
	case plainName.Match(name):
		return fmt.Errorf("%s is not a member: member names are lower case", name)
	}
	return errors.New("a member's name is not lower case")
}

// hasUpper reports whether name has a rune that is not lower case (an
// invalid byte is read as U+FFFD, as encoding/json reads it).
func hasUpper(name []byte) bool {
	for len(name) > 0 {
		r, n := utf8.DecodeRune(name)
		if unicode.ToLower(r) != r {
			return true
		}
		name = name[n:]
	}
	return false
}

// fold maps the names bytes.EqualFold takes for one another to one
// string: each rune to the least of its simple folding orbit.
func fold(name []byte) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, string(name))
}

// str reads a string, s.i at its '"', and returns its value: the bytes
// themselves unless it has escapes.
func (s *scanner) str() ([]byte, error) {
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i += 2
			continue
		case '"':
			s.i++
			if !escaped {
				return s.b[start+1 : s.i-1], nil
			}
			var v string
			if err := json.Unmarshal(s.b[start:s.i], &v); err != nil {
				return nil, errSyntax
			}
			return []byte(v), nil
		}
		s.i++
	}
	return nil, errSyntax
}

// array walks an array, s.i at its '['.
func (s *scanner) array() error {
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if err := s.value(); err != nil {
			return err
		}
		if more, err := s.next(']'); !more || err != nil {
			return err
		}
	}
}

// plainName is a name that can be quoted back: a word of letters and
// underscores, shorter than any key.
var plainName = regexp.MustCompile(`^[A-Za-z_]{1,32}$`)

// Shown is a member's name as an error may quote it: itself if it is a
// plain word, else "a member" (it could be a key pasted in the wrong
// place).
func Shown(name string) string {
	if plainName.MatchString(name) {
		return name
	}
	return "a member"
}
