package openai

import (
	"unicode"
	"unicode/utf8"
)

// Request is what keygate meters in a request body.
type Request struct {
	Model        string // top-level "model"; "" if absent
	MaxOutput    int64  // the largest of max_completion_tokens, max_tokens, max_output_tokens; 0 if none
	N            int64  // top-level "n" as sent (0 included); 1 if absent
	Stream       bool   // top-level "stream"
	IncludeUsage bool   // stream_options.include_usage is true
	PromptBytes  int64  // JSON bytes of the values of messages, prompt, input, instructions and system
}

// metered lists every top-level name ParseRequest reads. A name that
// encoding/json would match to one of them without being it is refused.
var metered = []string{"model", "max_completion_tokens", "max_tokens", "max_output_tokens", "n",
	"stream", "stream_options", "messages", "prompt", "input", "instructions", "system"}

// ParseRequest reads the metered fields of a request body in one pass,
// validating the whole body. It refuses, with an *Error, every body that
// another JSON reader could read differently.
func ParseRequest(body []byte) (Request, error) {
	r := Request{N: 1}
	s := scanner{b: body, body: "request"}
	i := members(&s, s.ws(0), "", func(i int, name, raw []byte) int { return r.member(&s, i, name, raw) })
	if i >= 0 && s.ws(i) != len(body) {
		s.fail(s.ws(i), "data after the top-level object")
	}
	if s.err != nil {
		return Request{}, s.err
	}
	return r, nil
}

// members is each for an object whose member names must be unique; a
// duplicate is named after prefix.
func members(s *scanner, i int, prefix string, member func(i int, name, raw []byte) int) int {
	var names seen
	return s.each(i, func(i int, name, raw []byte) int {
		if !names.add(name) {
			return s.refuse(duplicate(echo(append([]byte(prefix), name...))))
		}
		return member(i, name, raw)
	})
}

func (r *Request) member(s *scanner, i int, name, raw []byte) int {
	switch string(name) {
	case "model":
		return r.model(s, i)
	case "max_completion_tokens":
		return r.maxOutput(s, i, "max_completion_tokens")
	case "max_tokens":
		return r.maxOutput(s, i, "max_tokens")
	case "max_output_tokens":
		return r.maxOutput(s, i, "max_output_tokens")
	case "n":
		return countMember(s, i, "n", &r.N)
	case "stream":
		return boolMember(s, i, "stream", &r.Stream)
	case "stream_options":
		return r.streamOptions(s, i)
	case "messages", "prompt", "input", "instructions", "system":
		if j, null := s.null(i); null {
			return j
		}
		j := s.value(i)
		r.PromptBytes += int64(j - i)
		return j
	}
	if means, ok := foldsTo(name, metered); ok {
		return s.refuse(ambiguous(echo(raw), means))
	}
	return s.value(i)
}

func (r *Request) model(s *scanner, i int) int {
	if j, null := s.null(i); null {
		return j
	}
	if s.at(i) != '"' {
		return s.refuse(invalid("model", "a string"))
	}
	j, esc := s.str(i)
	if j < 0 {
		return j
	}
	if raw := s.b[i+1 : j-1]; esc {
		r.Model = string(unescape(nil, raw))
	} else {
		r.Model = string(raw)
	}
	return j
}

// maxOutput reads an output cap. Backends differ on which of the caps
// they obey when a body has more than one (vLLM takes max_tokens when
// max_completion_tokens is 0; older servers know only max_tokens), so the
// largest counts.
func (r *Request) maxOutput(s *scanner, i int, name string) int {
	var n int64
	i = countMember(s, i, name, &n)
	r.MaxOutput = max(r.MaxOutput, n)
	return i
}

// countMember reads a count into *dst unless it is null.
func countMember(s *scanner, i int, name string, dst *int64) int {
	j, n, ok, bad := s.count(i)
	switch {
	case j >= 0 && bad:
		return s.refuse(invalid(name, "a non-negative integer of at most 1000000000000, written without a sign, fraction or exponent"))
	case ok:
		*dst = n
	}
	return j
}

// boolMember reads a boolean into *dst unless it is null.
func boolMember(s *scanner, i int, name string, dst *bool) int {
	j, v, ok, bad := s.boolean(i)
	switch {
	case j >= 0 && bad:
		return s.refuse(invalid(name, "a boolean"))
	case ok:
		*dst = v
	}
	return j
}

var streamOptions = []string{"include_usage"}

func (r *Request) streamOptions(s *scanner, i int) int {
	if j, null := s.null(i); null {
		return j
	}
	if s.at(i) != '{' {
		return s.refuse(invalid("stream_options", "an object"))
	}
	return members(s, i, "stream_options.", func(i int, name, raw []byte) int {
		if string(name) == "include_usage" {
			return boolMember(s, i, "stream_options.include_usage", &r.IncludeUsage)
		}
		if means, ok := foldsTo(name, streamOptions); ok {
			return s.refuse(ambiguous(echo(append([]byte("stream_options."), raw...)), "stream_options."+means))
		}
		return s.value(i)
	})
}

// seen holds the member names of one object, to find a duplicate.
type seen struct {
	few  [16][]byte
	n    int
	many map[string]struct{}
}

// add reports false if name is already there.
func (s *seen) add(name []byte) bool {
	if s.many == nil {
		for _, x := range s.few[:s.n] {
			if string(x) == string(name) {
				return false
			}
		}
		if s.n < len(s.few) {
			s.few[s.n] = name
			s.n++
			return true
		}
		s.many = make(map[string]struct{}, 4*len(s.few))
		for _, x := range s.few {
			s.many[string(x)] = struct{}{}
		}
	}
	if _, ok := s.many[string(name)]; ok {
		return false
	}
	s.many[string(name)] = struct{}{}
	return true
}

// foldsTo returns the name among names (lower-case ASCII) that
// encoding/json would match name to, if name is not exactly it.
// encoding/json folds ASCII letters and maps every other rune to the
// smallest rune of its simple case-folding orbit (so "ſ" is "S" and the
// Kelvin sign is "K").
func foldsTo(name []byte, names []string) (string, bool) {
	var buf [32]byte
	f := buf[:0]
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			f = append(f, c)
			i++
		} else {
			r, n := utf8.DecodeRune(name[i:])
			f = utf8.AppendRune(f, foldRune(r))
			i += n
		}
		if len(f) > len("max_completion_tokens") {
			return "", false
		}
	}
	for _, m := range names {
		if len(m) == len(f) && upperEqual(m, f) && m != string(name) {
			return m, true
		}
	}
	return "", false
}

// upperEqual reports whether m (lower-case ASCII) upper-cased is f.
func upperEqual(m string, f []byte) bool {
	for i := 0; i < len(m); i++ {
		c := m[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != f[i] {
			return false
		}
	}
	return true
}

// foldRune returns the smallest rune of r's simple case-folding orbit, as
// encoding/json does.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}
