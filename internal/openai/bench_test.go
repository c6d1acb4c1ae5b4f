package openai

import (
	"strconv"
	"strings"
	"testing"
)

func BenchmarkParseRequest4K(b *testing.B) {
	body := readSample(b, "chat_request.json")
	benchmarkRequest(b, body)
}

// BenchmarkParseRequest1M: a 1 MB chat body of 256 messages, text with
// escapes and some non-ASCII.
func BenchmarkParseRequest1M(b *testing.B) {
	var s strings.Builder
	s.WriteString(`{"model":"gpt-4o","max_completion_tokens":4096,"messages":[`)
	line := `Line of a long document, with \"quotes\", tabs\t and accents: déjà vu, naïve, Zürich.\n`
	for i := range 256 {
		if i > 0 {
			s.WriteByte(',')
		}
		s.WriteString(`{"role":"user","content":"` + strconv.Itoa(i) + `: `)
		for s.Len() < (i+1)*4096 {
			s.WriteString(line)
		}
		s.WriteString(`"}`)
	}
	s.WriteString(`]}`)
	benchmarkRequest(b, []byte(s.String()))
}

func benchmarkRequest(b *testing.B, body []byte) {
	if _, err := ParseRequest(body); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ParseRequest(body)
	}
}

func BenchmarkParseUsage(b *testing.B) {
	body := readSample(b, "chat_completion.json")
	if u, err := ParseUsage(body); err != nil || !u.Found {
		b.Fatal(u, err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ParseUsage(body)
	}
}

// BenchmarkStreamChunk: one chat completion delta event of about 200
// bytes per Write.
func BenchmarkStreamChunk(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-BjFuPq9c2XyZ7aWk1mN3oR5tU8vY0","object":"chat.completion.chunk","created":1750170000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":null}]}` + "\n\n")
	var s Stream
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		s.Write(chunk)
	}
	if s.Events() == 0 {
		b.Fatal("no events")
	}
}
