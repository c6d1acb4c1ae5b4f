package openai

import (
	"errors"
	"os"
	"testing"
)

// samples are the response bodies in testdata and the usage each reports.
var samples = []struct {
	file    string
	want    Usage
	events  int64 // for streams: data events, [DONE] excluded
	outputB int64 // for streams: bytes of their data
}{
	{"chat_completion.json", Usage{Input: 1117, CachedInput: 1024, Output: 46, Found: true}, 0, 0},
	{"completion.json", Usage{Input: 5, Output: 7, Found: true}, 0, 0},
	{"embeddings.json", Usage{Input: 8, Found: true}, 0, 0},
	{"responses.json", Usage{Input: 36, Output: 87, Found: true}, 0, 0},
	{"error.json", Usage{}, 0, 0},
	{"chat_stream_usage.sse", Usage{Input: 19, Output: 10, Found: true}, 6, 2008},
	{"chat_stream.sse", Usage{}, 4, 892},
	{"completion_stream_usage.sse", Usage{Input: 5, Output: 5, Found: true}, 3, 749},
	{"responses_stream.sse", Usage{Input: 37, Output: 11, Found: true}, 18, 5439},
	{"responses_stream_incomplete.sse", Usage{Input: 2048, CachedInput: 1920, Output: 4, Found: true}, 12, 4263},
}

func readSample(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseUsageSamples(t *testing.T) {
	for _, c := range samples {
		if c.events > 0 {
			continue
		}
		if got, err := ParseUsage(readSample(t, c.file)); err != nil || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.file, got, err, c.want)
		}
	}
}

func TestParseUsage(t *testing.T) {
	found := func(in, cached, out int64) Usage {
		return Usage{Input: in, CachedInput: cached, Output: out, Found: true}
	}
	for _, c := range []struct {
		body string
		want Usage
	}{
		{`{}`, Usage{}},
		{`{"usage":null}`, Usage{}},
		{`{"usage":{}}`, Usage{}},
		{`{"usage":{"total_tokens":5}}`, Usage{}},
		{`{"usage":1}`, Usage{}},
		{`{"usage":[{"prompt_tokens":1}]}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"completion_tokens":0}}`, found(1, 0, 0)},
		{`{"usage":{"prompt_tokens":0,"completion_tokens":0}}`, found(0, 0, 0)},
		{`{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"completion_tokens_details":{"reasoning_tokens":2}}}`, found(3, 0, 4)},
		{`{"usage":{"prompt_tokens":3,"prompt_tokens_details":null,"completion_tokens":0}}`, found(3, 0, 0)},
		{`{"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":null},"completion_tokens":1}}`, found(3, 0, 1)},
		{`{"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens":1}}`, found(3, 3, 1)},
		{`{"usage":{"input_tokens":1000000000000,"output_tokens":1000000000000}}`, found(1e12, 0, 1e12)},
		{`{"us\u0061ge":{"input_t\u006fkens":9,"\u006futput_tokens":2}}`, found(9, 0, 2)},
		// both spellings: the larger counts
		{`{"usage":{"prompt_tokens":3,"input_tokens":5,"completion_tokens":7,"output_tokens":2}}`, found(5, 0, 7)},
		{`{"usage":{"input_tokens":5,"prompt_tokens_details":{"cached_tokens":1},"input_tokens_details":{"cached_tokens":4},"output_tokens":0}}`, found(5, 4, 0)},
		{`{"usage":{"prompt_tokens":5,"output_tokens":2}}`, found(5, 0, 2)},
		// an input count and an output count are needed: a usage missing
		// one is not found (the estimate is charged)
		{`{"usage":{"completion_tokens":3}}`, Usage{}},
		{`{"usage":{"prompt_tokens":null,"completion_tokens":3}}`, Usage{}},
		{`{"usage":{"output_tokens":3,"total_tokens":3}}`, Usage{}},
		{`{"usage":{"prompt_tokens":3}}`, Usage{}},
		{`{"usage":{"input_tokens":3}}`, Usage{}},
		{`{"usage":{"prompt_tokens":3,"completion_tokens":null}}`, Usage{}},
		{`{"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":3}}}`, Usage{}},
		{`{"usage":{"prompt_tokens":3,"total_tokens":7}}`, Usage{}},
		{`{"usage":{"prompt_tokens":3,"total_tokens":null}}`, Usage{}},
		{`{"response":{"usage":{"input_tokens":4,"input_tokens_details":{"cached_tokens":1}}}}`, Usage{}},
		// embeddings: no output, the input count and a total equal to it
		{`{"usage":{"prompt_tokens":8,"total_tokens":8}}`, found(8, 0, 0)},
		{`{"usage":{"prompt_tokens":8,"total_tokens":8,"completion_tokens":0}}`, found(8, 0, 0)},
		{`{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":2}}`, found(3, 0, 4)},
		// counts that are not integers from 0 to 1e12
		{`{"usage":{"prompt_tokens":-1,"completion_tokens":1}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1.0,"completion_tokens":1}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1e2,"completion_tokens":1}}`, Usage{}},
		{`{"usage":{"prompt_tokens":"5","completion_tokens":1}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1000000000001,"completion_tokens":1}}`, Usage{}},
		{`{"usage":{"prompt_tokens":184467440737095516150,"completion_tokens":1}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"completion_tokens":-1}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":-1}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":-1}}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":2}}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"completion_tokens":1,"prompt_tokens_details":[]}}`, Usage{}},
		// duplicates
		{`{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1},"usage":null}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"prompt_tokens":2}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"prompt_tokens":null}}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"total_tokens":2}}`, Usage{}},
		{`{"usage":{"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":1}}}`, Usage{}},
		{`{"usage":{"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":1},"prompt_tokens_details":{"cached_tokens":1}}}`, Usage{}},
		{`{"response":{"usage":{"input_tokens":1}},"response":{}}`, Usage{}},
		{`{"response":{"usage":{"input_tokens":1},"usage":{"input_tokens":1}}}`, Usage{}},
		// the Responses API's stream events
		{`{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":4,"output_tokens":2,"input_tokens_details":{"cached_tokens":1}}}}`, found(4, 1, 2)},
		{`{"type":"response.created","response":{"usage":null}}`, Usage{}},
		{`{"response":"x"}`, Usage{}},
		{`{"usage":{"prompt_tokens":1,"completion_tokens":3},"response":{"usage":{"input_tokens":2,"output_tokens":4}}}`, found(1, 0, 3)},
		{`{"usage":null,"response":{"usage":{"input_tokens":2,"output_tokens":4}}}`, found(2, 0, 4)},
		{`{"usage":{"prompt_tokens":1},"response":{"usage":{"input_tokens":2,"output_tokens":4}}}`, found(2, 0, 4)},
		// usage anywhere else is not the response's
		{`{"choices":[{"usage":{"prompt_tokens":1}}]}`, Usage{}},
		{`{"response":{"output":[{"usage":{"input_tokens":1}}]}}`, Usage{}},
		{`{"data":{"usage":{"prompt_tokens":1}}}`, Usage{}},
		{`{"Usage":{"prompt_tokens":1}}`, Usage{}},
	} {
		if got, err := ParseUsage([]byte(c.body)); err != nil || got != c.want {
			t.Errorf("ParseUsage(%s) = %+v, %v; want %+v", c.body, got, err, c.want)
		}
	}
}

func TestParseUsageRefuses(t *testing.T) {
	for _, body := range []string{``, `[]`, `null`, `{"usage":{"prompt_tokens":1}`, `{"usage":{"prompt_tokens":1}}x`,
		`{"usage":{"prompt_tokens":01}}`, `{"usage":{"prompt_tokens":1},}`, "{\"a\":\"\xff\"}", `{"a":"\ud800"}`} {
		got, err := ParseUsage([]byte(body))
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeInvalidJSON || got != (Usage{}) {
			t.Errorf("ParseUsage(%q) = %+v, %v; want invalid_json", body, got, err)
		}
	}
}
