package pricing

import "strings"

// pattern is a model pattern split at its *s: a name matches when it
// starts with prefix, ends with suffix, and holds each of middle in order
// between them, without overlaps. Without a * it is the name itself.
type pattern struct {
	star           bool
	prefix, suffix string
	middle         []string
	min            int // the shortest name that can match
}

func compile(p string) pattern {
	parts := strings.Split(p, "*")
	if len(parts) == 1 {
		return pattern{prefix: p, min: len(p)}
	}
	c := pattern{star: true, prefix: parts[0], suffix: parts[len(parts)-1], middle: parts[1 : len(parts)-1]}
	for _, s := range parts {
		c.min += len(s)
	}
	return c
}

// match reports whether name matches, case-sensitively. Matching each
// middle part at its first place leaves the most room for the rest, so
// no backtracking is needed: the time is linear in the name's length
// per part.
func (p *pattern) match(name string) bool {
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
