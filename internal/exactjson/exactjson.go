// Package exactjson refuses the JSON that readers could take two ways.
// encoding/json keeps the last of a member given twice and matches a
// member's name to a field in any case, where other readers (a proxy, a
// logger, a schema validator) keep the first or match exactly; a body
// read one way by keygate and another by them is refused instead.
package exactjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// Check reports the first object in b, at any depth, that gives a member
// twice (names compared as encoding/json matches them, in any case) or
// names a member with an upper-case letter (every member of keygate's
// requests is lower case, so such a name is another spelling of one, or
// of nothing). b must hold valid JSON; the error names the member when
// its name is a plain word, and never quotes anything else.
func Check(b []byte) error { return walk(b, true) }

// Unique reports the first object in b, at any depth, that gives a
// member twice, names compared as encoding/json matches them (in any
// case): for records, whose maps may have keys in any case.
func Unique(b []byte) error { return walk(b, false) }

func walk(b []byte, lower bool) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return value(d, lower)
}

func value(d *json.Decoder, lower bool) error {
	t, err := d.Token()
	if err != nil {
		return err
	}
	switch t {
	case json.Delim('{'):
		seen := map[string]bool{}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return err
			}
			name, _ := k.(string)
			switch folded := fold(name); {
			case seen[folded]:
				return fmt.Errorf("%s is given twice", Shown(name))
			case lower && strings.ToLower(name) != name && plainName.MatchString(name):
				return fmt.Errorf("%s is not a member: member names are lower case", name)
			case lower && strings.ToLower(name) != name:
				return fmt.Errorf("a member's name is not lower case")
			default:
				seen[folded] = true
			}
			if err := value(d, lower); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for d.More() {
			if err := value(d, lower); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	_, err = d.Token() // the closing delimiter
	return err
}

// fold maps the names that encoding/json takes for one another (equal
// under Unicode simple case folding) to one string: each rune to the
// least of its folding orbit.
func fold(name string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, name)
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
