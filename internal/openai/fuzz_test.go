package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"unicode/utf8"
)

// goRequest is the metered fields as encoding/json reads them (matching
// names case-insensitively, the last duplicate winning).
type goRequest struct {
	Model               *string `json:"model"`
	MaxCompletionTokens *int64  `json:"max_completion_tokens"`
	MaxTokens           *int64  `json:"max_tokens"`
	MaxOutputTokens     *int64  `json:"max_output_tokens"`
	N                   *int64  `json:"n"`
	Stream              *bool   `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages     json.RawMessage `json:"messages"`
	Prompt       json.RawMessage `json:"prompt"`
	Input        json.RawMessage `json:"input"`
	Instructions json.RawMessage `json:"instructions"`
	System       json.RawMessage `json:"system"`
}

func (g *goRequest) request() Request {
	r := Request{N: 1}
	if g.Model != nil {
		r.Model = *g.Model
	}
	for _, n := range []*int64{g.MaxCompletionTokens, g.MaxTokens, g.MaxOutputTokens} {
		if n != nil {
			r.MaxOutput = max(r.MaxOutput, *n)
		}
	}
	if g.N != nil {
		r.N = *g.N
	}
	r.Stream = g.Stream != nil && *g.Stream
	r.IncludeUsage = g.StreamOptions != nil && g.StreamOptions.IncludeUsage != nil && *g.StreamOptions.IncludeUsage
	for _, v := range []json.RawMessage{g.Messages, g.Prompt, g.Input, g.Instructions, g.System} {
		if string(v) != "null" {
			r.PromptBytes += int64(len(v))
		}
	}
	return r
}

// surrogate matches a \u escape of a UTF-16 surrogate.
var surrogate = regexp.MustCompile(`\\u[dD][89a-fA-F]`)

// depth returns the deepest nesting of a valid JSON text.
func depth(body []byte) int {
	d := json.NewDecoder(bytes.NewReader(body))
	deepest, at := 0, 0
	for {
		tok, err := d.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			at++
			deepest = max(deepest, at)
		case json.Delim('}'), json.Delim(']'):
			at--
		}
	}
}

func seeds(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds for %s: %v", pattern, err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseRequest(f *testing.F) {
	seeds(f, "*.json")
	for _, s := range []string{`{"model":"a","\u006dodel":"b"}`, `{"Model":"a"}`, `{"ſtream":true}`, `{"max_tokens":1.0}`,
		`{"stream_options":{"include_usage":true}}`, `{"n":0,"messages":[{"model":"x"}]}`, `{"a":"\ud800"}`, `{"a":[[[[]]]]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseRequest(body)
		valid := json.Valid(body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Message == "" || len(e.Param) > maxParam {
				t.Fatalf("ParseRequest(%q): %#v", body, err)
			}
			// Stricter than encoding/json only where documented.
			object := bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{"))
			if e.Code == CodeInvalidJSON && valid && object && utf8.Valid(body) && !surrogate.Match(body) && depth(body) <= maxDepth {
				t.Fatalf("ParseRequest(%q) refused valid JSON: %v", body, err)
			}
			return
		}
		if !valid {
			t.Fatalf("ParseRequest(%q) = %+v for invalid JSON", body, got)
		}
		var g goRequest
		if err := json.Unmarshal(body, &g); err != nil {
			t.Fatalf("ParseRequest(%q) = %+v, but encoding/json: %v", body, got, err)
		}
		if want := g.request(); got != want {
			t.Fatalf("ParseRequest(%q) = %+v; encoding/json reads %+v", body, got, want)
		}
	})
}

func FuzzStream(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.sse")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(len(b)/2))
	}
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":1}}\r\n\r\n"), uint16(37))
	f.Add([]byte(bom+"data:x\rdata\r\r: c\n\n"), uint16(2))
	f.Fuzz(func(t *testing.T, body []byte, at uint16) {
		want := reference(body)
		if got := whole(body); got != want {
			t.Fatalf("whole %q: %+v; the reference reads %+v", body, got, want)
		}
		i := int(at) % (len(body) + 1)
		var s Stream
		s.Write(body[:i])
		s.Write(body[i:])
		if got := (result{s.Usage(), s.Events(), s.OutputBytes(), s.Skipped()}); got != want {
			t.Fatalf("%q split at %d: %+v; whole %+v", body, i, got, want)
		}
		if len(body) < 1024 {
			if got := feed(body, func(int) int { return 1 }); got != want {
				t.Fatalf("%q in 1-byte chunks: %+v; whole %+v", body, got, want)
			}
		}
		if u := want.Usage; u.Found && (u.Input < 0 || u.Output < 0 || u.CachedInput < 0 ||
			u.Input > maxCount || u.Output > maxCount || u.CachedInput > u.Input) {
			t.Fatalf("%q: usage %+v", body, u)
		}
	})
}

// TestFoldVariants: every spelling of a metered name that encoding/json
// matches to it (each letter in any case, or any rune that folds to it) is
// refused, and encoding/json does read it as the metered member.
func TestFoldVariants(t *testing.T) {
	folds := map[byte][]string{} // a lower-case letter's other spellings
	for c := byte('a'); c <= 'z'; c++ {
		folds[c] = []string{string(c - 'a' + 'A')}
	}
	for r := rune(utf8.RuneSelf); r <= utf8.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		for c := byte('a'); c <= 'z'; c++ {
			if bytes.EqualFold([]byte(s), []byte{c}) {
				folds[c] = append(folds[c], s)
			}
		}
	}
	if len(folds['k']) != 2 || len(folds['s']) != 2 {
		t.Fatalf("folds of k and s: %q %q; want the Kelvin sign and the long s too", folds['k'], folds['s'])
	}
	values := map[string]string{"model": `"x"`, "n": `2`, "stream": `true`, "stream_options": `{"include_usage":true}`}
	for _, name := range metered {
		value := values[name]
		if value == "" {
			value = `[1]`
			if name[:3] == "max" {
				value = `7`
			}
		}
		for i := range len(name) {
			for _, f := range folds[name[i]] {
				variant := name[:i] + f + name[i+1:]
				body := []byte(`{"` + variant + `":` + value + `}`)
				var e *Error
				if _, err := ParseRequest(body); !errors.As(err, &e) || e.Code != CodeAmbiguousMember {
					t.Errorf("ParseRequest(%s): %v; want ambiguous_member", body, err)
				}
				var g goRequest
				if err := json.Unmarshal(body, &g); err != nil || g.request() == (Request{N: 1}) {
					t.Errorf("encoding/json does not read %s as %s: %+v, %v", body, name, g.request(), err)
				}
			}
		}
	}
}
