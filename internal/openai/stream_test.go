package openai

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// result is what a Stream reports.
type result struct {
	Usage                  Usage
	Events, Bytes, Skipped int64
}

func feed(body []byte, chunk func(i int) int) result {
	var s Stream
	for len(body) > 0 {
		n := min(chunk(len(body)), len(body))
		s.Write(body[:n])
		body = body[n:]
	}
	return result{s.Usage(), s.Events(), s.OutputBytes(), s.Skipped()}
}

func whole(body []byte) result { return feed(body, func(n int) int { return n }) }

// reference reads an event stream as the WHATWG parsing rules are written:
// the whole body split into lines first.
func reference(body []byte) result {
	body = bytes.TrimPrefix(body, []byte(bom))
	var r result
	var data []byte
	hasData := false
	for {
		i := bytes.IndexAny(body, "\r\n")
		if i < 0 {
			return r // an unfinished line and event are dropped
		}
		line := body[:i]
		if body[i] == '\r' && i+1 < len(body) && body[i+1] == '\n' {
			i++
		}
		body = body[i+1:]
		if len(line) == 0 {
			if hasData && string(data) != "[DONE]" {
				r.Events++
				r.Bytes += int64(len(data))
				if len(data) > MaxEvent {
					r.Skipped++
				} else if u, err := ParseUsage(data); err == nil && u.Found {
					r.Usage = u
				}
			}
			data, hasData = nil, false
			continue
		}
		field, value, colon := bytes.Cut(line, []byte(":"))
		if colon {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		if string(field) == "data" {
			if hasData {
				data = append(data, '\n')
			}
			data, hasData = append(data, value...), true
		}
	}
}

// endings returns body with its line ends as written, as CRLF and as CR.
func endings(body []byte) map[string][]byte {
	lf := bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	return map[string][]byte{
		"as written": body,
		"CRLF":       bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n")),
		"CR":         bytes.ReplaceAll(lf, []byte("\n"), []byte("\r")),
	}
}

func TestStreamSamples(t *testing.T) {
	for _, c := range samples {
		if c.events == 0 {
			continue
		}
		want := result{Usage: c.want, Events: c.events, Bytes: c.outputB}
		for ending, body := range endings(readSample(t, c.file)) {
			name := c.file + " " + ending
			if got := reference(body); got != want {
				t.Fatalf("%s: the reference reads %+v; want %+v", name, got, want)
			}
			checkChunkings(t, name, body, want)
		}
	}
}

// checkChunkings feeds body whole, in 1-byte chunks, and split in two at
// every position.
func checkChunkings(t *testing.T, name string, body []byte, want result) {
	t.Helper()
	if got := whole(body); got != want {
		t.Errorf("%s whole: %+v; want %+v", name, got, want)
	}
	if got := feed(body, func(int) int { return 1 }); got != want {
		t.Errorf("%s in 1-byte chunks: %+v; want %+v", name, got, want)
	}
	for i := 1; i < len(body); i++ {
		var s Stream
		s.Write(body[:i])
		s.Write(body[i:])
		if got := (result{s.Usage(), s.Events(), s.OutputBytes(), s.Skipped()}); got != want {
			t.Fatalf("%s split at %d: %+v; want %+v", name, i, got, want)
		}
	}
}

func TestStream(t *testing.T) {
	u := func(in, out int64) Usage { return Usage{Input: in, Output: out, Found: true} }
	const usage1 = `{"usage":{"prompt_tokens":1,"completion_tokens":2}}`
	const usage2 = `{"usage":{"prompt_tokens":3,"completion_tokens":4}}`
	for _, c := range []struct {
		name, body string
		want       result
	}{
		{"empty", "", result{}},
		{"one event", "data: " + usage1 + "\n\n", result{u(1, 2), 1, 51, 0}},
		{"no space", "data:" + usage1 + "\n\n", result{u(1, 2), 1, 51, 0}},
		{"one space only", "data:  " + usage1 + "\n\n", result{u(1, 2), 1, 52, 0}},
		{"last wins", "data: " + usage1 + "\n\ndata: " + usage2 + "\n\n", result{u(3, 4), 2, 102, 0}},
		{"null does not reset", "data: " + usage1 + "\n\ndata: {\"usage\":null}\n\n", result{u(1, 2), 2, 65, 0}},
		{"unfinished event dropped", "data: " + usage1 + "\n", result{}},
		{"unfinished line dropped", "data: " + usage1, result{}},
		{"lines joined with LF", "data: {\"usage\":\ndata: {\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n", result{u(5, 1), 1, 52, 0}},
		{"CR inside JSON whitespace", "data: {\"usage\":\rdata:{\"input_tokens\":5,\"output_tokens\":1}}\r\r", result{u(5, 1), 1, 47, 0}},
		{"partial usage", "data: " + usage1 + "\n\ndata: {\"usage\":{\"completion_tokens\":9}}\n\n", result{u(1, 2), 2, 51 + 33, 0}},
		{"comments", ": keep-alive\n:\ndata: " + usage1 + "\n: x\n\n", result{u(1, 2), 1, 51, 0}},
		{"other fields", "event: response.completed\nid: 7\nretry: 10\nx\ndata: " + usage1 + "\n\n", result{u(1, 2), 1, 51, 0}},
		{"no data", "event: x\nid: 1\n\n\n\n", result{}},
		{"data alone", "data\n\n", result{Events: 1}},
		{"data alone twice", "data\ndata\n\n", result{Events: 1, Bytes: 1}},
		{"empty data", "data:\n\n", result{Events: 1}},
		{"data names", "Data: " + usage1 + "\ndata : " + usage1 + "\ndat: x\ndatas: x\n data: x\n\n", result{}},
		{"DONE", "data: [DONE]\n\n", result{}},
		{"DONE with a space", "data:  [DONE]\n\n", result{Events: 1, Bytes: 7}},
		{"DONE split in lines", "data: [DO\ndata: NE]\n\n", result{Events: 1, Bytes: 7}},
		{"not JSON", "data: hello\n\ndata: {\"usage\":{\"prompt_tokens\":1}\n\n", result{Events: 2, Bytes: 5 + 28}},
		{"BOM", bom + "data: " + usage1 + "\n\n", result{u(1, 2), 1, 51, 0}},
		{"two BOMs", bom + bom + "data: " + usage1 + "\n\ndata: " + usage2 + "\n\n", result{u(3, 4), 1, 51, 0}},
		{"half a BOM", "\xef\xbbdata: " + usage1 + "\n\ndata: " + usage2 + "\n\n", result{u(3, 4), 1, 51, 0}},
		{"half a BOM then a line end", "\xef\n\ndata: " + usage2 + "\n\n", result{u(3, 4), 1, 51, 0}},
		{"BOM later is data", "data: " + usage1 + "\n\n" + bom + "data: " + usage2 + "\n\n", result{u(1, 2), 1, 51, 0}},
		{"CRLF", "data: " + usage1 + "\r\n\r\n", result{u(1, 2), 1, 51, 0}},
		{"CR CR LF", "data: " + usage1 + "\r\r\n", result{u(1, 2), 1, 51, 0}},
		{"LF CR", "data: " + usage1 + "\n\r", result{u(1, 2), 1, 51, 0}},
		{"CR LF LF", "data: " + usage1 + "\r\n\n", result{u(1, 2), 1, 51, 0}},
		{"nested usage", "data: {\"choices\":[{\"usage\":{\"prompt_tokens\":1}}]}\n\n", result{Events: 1, Bytes: 43}},
	} {
		body := []byte(c.body)
		if got := reference(body); got != c.want {
			t.Errorf("%s: the reference reads %+v; want %+v", c.name, got, c.want)
		}
		checkChunkings(t, c.name, body, c.want)
	}
}

// TestStreamLargeEvent: an event over MaxEvent is counted and skipped
// without being buffered; the stream goes on.
func TestStreamLargeEvent(t *testing.T) {
	big := `{"usage":{"prompt_tokens":9},"pad":"` + strings.Repeat("x", 3*MaxEvent) + `"}`
	body := "data: " + big[:MaxEvent] + "\ndata: " + big[MaxEvent:] + "\n\n" +
		"data: " + `{"usage":{"prompt_tokens":1,"total_tokens":1}}` + "\n\n"
	want := result{Usage{Input: 1, Found: true}, 2, int64(len(big)) + 1 + 46, 1}
	for _, size := range []int{1 << 10, 64 << 10, len(body)} {
		var s Stream
		for b := []byte(body); len(b) > 0; b = b[min(size, len(b)):] {
			s.Write(b[:min(size, len(b))])
			if cap(s.data) > MaxEvent {
				t.Fatalf("chunks of %d: %d bytes buffered", size, cap(s.data))
			}
		}
		if got := (result{s.Usage(), s.Events(), s.OutputBytes(), s.Skipped()}); got != want {
			t.Errorf("chunks of %d: %+v; want %+v", size, got, want)
		}
	}
	if got := reference([]byte(body)); got != want {
		t.Errorf("the reference reads %+v; want %+v", got, want)
	}
	// exactly MaxEvent bytes of data is read
	exact := `{"usage":{"prompt_tokens":7,"total_tokens":7},"pad":"` + strings.Repeat("x", MaxEvent-55) + `"}`
	if len(exact) != MaxEvent {
		t.Fatalf("%d", len(exact))
	}
	if got := whole([]byte("data: " + exact + "\n\n")); got != (result{Usage{Input: 7, Found: true}, 1, MaxEvent, 0}) {
		t.Errorf("an event of MaxEvent bytes: %+v", got)
	}
}

func ExampleStream() {
	var s Stream
	s.Write([]byte("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10}}\n"))
	s.Write([]byte("\ndata: [DONE]\n\n"))
	fmt.Printf("%+v\n", s.Usage())
	// Output: {Input:19 CachedInput:0 Output:10 Found:true}
}
