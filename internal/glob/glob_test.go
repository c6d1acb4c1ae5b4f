package glob

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		yes, no []string
	}{
		{"gpt-4o", []string{"gpt-4o"}, []string{"gpt-4o-mini", "GPT-4o", "gpt-4", "", "xgpt-4o"}},
		{"*", []string{"", "gpt-4o", "*", "anything at all"}, nil},
		{"gpt-4o*", []string{"gpt-4o", "gpt-4o-mini", "gpt-4o-2024-08-06"}, []string{"gpt-4", "Gpt-4o", "xgpt-4o"}}, // prefix; empty remainder
		{"*-mini", []string{"-mini", "gpt-4o-mini", "o1-mini"}, []string{"gpt-4o-mini-2024", "mini"}},               // suffix
		{"gpt-*-mini", []string{"gpt-4o-mini", "gpt--mini", "gpt-4.1-mini"}, []string{"gpt-mini", "gpt-4o-mini-x", "gpt-4o-nano"}},
		{"*4o*", []string{"4o", "gpt-4o", "gpt-4o-mini", "x4oy"}, []string{"gpt-4", "gpt-o4"}},
		{"a*b*c", []string{"abc", "aXbYc", "abbc", "abcbc", "acbc"}, []string{"ab", "ac", "acb", "abcx", "xabc"}},
		{"ab*ba", []string{"abba", "abXba"}, []string{"aba", "ab", "ba"}}, // prefix and suffix must not overlap
		{"*a*a*", []string{"aa", "xaxax", "aaa"}, []string{"a", "", "xa"}},
		{"a**", []string{"a", "ab"}, []string{"b"}}, // compile copes; CheckPattern refuses it
	}
	for _, tc := range tests {
		p := Compile(tc.pattern)
		for _, s := range tc.yes {
			if !p.Match(s) {
				t.Errorf("%q does not match %q", tc.pattern, s)
			}
		}
		for _, s := range tc.no {
			if p.Match(s) {
				t.Errorf("%q matches %q", tc.pattern, s)
			}
		}
	}
}

// FuzzMatch: the matcher agrees with a regular expression built from the
// pattern, on patterns and names the fuzzer chooses (model names come
// from clients).
func FuzzMatch(f *testing.F) {
	f.Add("gpt-*-mini", "gpt-4o-mini")
	f.Add("a*b*c", "abcbc")
	f.Add("ab*ba", "aba")
	f.Add("*", "")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		var re strings.Builder
		re.WriteString(`^(?s:`)
		for i, part := range strings.Split(pattern, "*") {
			if i > 0 {
				re.WriteString(`.*`)
			}
			re.WriteString(regexp.QuoteMeta(part))
		}
		re.WriteString(`)$`)
		if !utf8.ValidString(pattern) || !utf8.ValidString(name) {
			return // regexp matches runes; on valid UTF-8 that is matching bytes
		}
		want := regexp.MustCompile(re.String()).MatchString(name)
		p := Compile(pattern)
		if got := p.Match(name); got != want {
			t.Fatalf("%q matching %q = %v, want %v", pattern, name, got, want)
		}
	})
}
