package openai

import "unicode/utf8"

// Error codes of a refused request body.
const (
	// CodeInvalidJSON: not RFC 8259 JSON with a top-level object (syntax,
	// invalid UTF-8, an unpaired surrogate escape, nesting deeper than 64,
	// anything after the object).
	CodeInvalidJSON = "invalid_json"
	// CodeDuplicateMember: a member name twice at the top level or in
	// stream_options, compared after unescaping.
	CodeDuplicateMember = "duplicate_member"
	// CodeInvalidMember: a metered member of the wrong type or range.
	CodeInvalidMember = "invalid_member"
	// CodeAmbiguousMember: a member name that case-insensitive readers
	// (Go's encoding/json, pydantic configured so) take for a metered one.
	CodeAmbiguousMember = "ambiguous_member"
)

// Error is a refused body. Param names the member, made safe to echo:
// printable ASCII, at most 64 bytes.
type Error struct {
	Code    string
	Param   string
	Message string
}

func (e *Error) Error() string { return e.Message }

// maxParam bounds a name echoed in Param and Message.
const maxParam = 64

// echo returns name safe to show: each byte or rune that is not printable
// ASCII becomes '?', cut at maxParam bytes.
func echo(name []byte) string {
	out := make([]byte, 0, min(len(name), maxParam))
	for i := 0; i < len(name) && len(out) < maxParam; {
		c := name[i]
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
			i++
			continue
		}
		out = append(out, '?')
		if c < utf8.RuneSelf {
			i++
		} else {
			_, n := utf8.DecodeRune(name[i:])
			i += n
		}
	}
	return string(out)
}

func duplicate(name string) *Error {
	return &Error{Code: CodeDuplicateMember, Param: name,
		Message: `The request body has two "` + name + `" members; send one.`}
}

func invalid(name, want string) *Error {
	return &Error{Code: CodeInvalidMember, Param: name,
		Message: `"` + name + `" must be ` + want + `.`}
}

func ambiguous(name, means string) *Error {
	return &Error{Code: CodeAmbiguousMember, Param: name,
		Message: `The request body has a member "` + name + `", which some servers read as "` + means +
			`"; spell it "` + means + `" exactly.`}
}
