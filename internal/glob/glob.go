// Package glob matches names against patterns where "*" stands for any
// run of characters, case-sensitively and without backtracking.
package glob

import "strings"

// Pattern is a pattern split at its *s: a name matches when it
// starts with prefix, ends with suffix, and holds each of middle in order
// between them, without overlaps. Without a * it is the name itself.
type Pattern struct {
	star           bool
	prefix, suffix string
	middle         []string
	min            int // the shortest name that can match
}

// Compile splits p at its *s.
func Compile(p string) Pattern {
	parts := strings.Split(p, "*")
	if len(parts) == 1 {
		return Pattern{prefix: p, min: len(p)}
	}
	c := Pattern{star: true, prefix: parts[0], suffix: parts[len(parts)-1], middle: parts[1 : len(parts)-1]}
	for _, s := range parts {
		c.min += len(s)
	}
	return c
}

// Match reports whether name matches, case-sensitively. Matching each
// middle part at its first place leaves the most room for the rest, so
// no backtracking is needed: the time is linear in the name's length
// per part.
func (p *Pattern) Match(name string) bool {
	if !p.star {
		return name == p.prefix
	}
	if len(name) < p.min || !strings.HasPrefix(name, p.prefix) || !strings.HasSuffix(name, p.suffix) {
		return false
	}
	rest := name[len(p.prefix) : len(name)-len(p.suffix)]
	for _, m := range p.middle {
		i := strings.Index(rest, m)
		if i < 0 {
			return false
		}
		rest = rest[i+len(m):]
	}
	return true
}
