package openai

// Usage is the token use a response reports.
type Usage struct {
	Input       int64 // prompt_tokens, or input_tokens (Responses API)
	CachedInput int64 // cached_tokens of prompt_tokens_details or input_tokens_details; part of Input
	Output      int64 // completion_tokens, or output_tokens (Responses API)
	Found       bool  // a usage object with its input and output counts was read, and every count in it is valid
}

// ParseUsage reads the usage of a whole JSON response body: the top-level
// "usage" (chat completions, completions, embeddings, the Responses API),
// else "response"."usage" (the payload of a Responses API stream event).
// An error is returned only for a body that is not a JSON object. A usage
// that is absent, null, duplicated, holds a count that is not an integer
// from 0 to 1e12, or lacks its input count or its output count is not
// found.
func ParseUsage(body []byte) (Usage, error) {
	s := scanner{b: body, body: "response"}
	i, u := s.topUsage(s.ws(0))
	if i >= 0 && s.ws(i) != len(body) {
		s.fail(s.ws(i), "data after the top-level object")
	}
	if s.err != nil {
		return Usage{}, s.err
	}
	return u, nil
}

// topUsage reads an object for its "usage" or "response"."usage".
func (s *scanner) topUsage(i int) (int, Usage) {
	var top, nested Usage
	var usages, responses int
	i = s.each(i, func(i int, name, _ []byte) int {
		switch string(name) {
		case "usage":
			usages++
			i, top = s.usage(i)
		case "response":
			responses++
			i, nested = s.responseUsage(i)
		default:
			i = s.value(i)
		}
		return i
	})
	switch {
	case usages > 1 || responses > 1:
		return i, Usage{}
	case top.Found:
		return i, top
	}
	return i, nested
}

// responseUsage reads the "usage" of a Responses API response object.
func (s *scanner) responseUsage(i int) (int, Usage) {
	if s.at(i) != '{' {
		return s.value(i), Usage{}
	}
	var u Usage
	var usages int
	i = s.each(i, func(i int, name, _ []byte) int {
		if string(name) != "usage" {
			return s.value(i)
		}
		usages++
		i, u = s.usage(i)
		return i
	})
	if usages > 1 {
		return i, Usage{}
	}
	return i, u
}

// tally collects the counts of one usage object.
type tally struct {
	counts [7]int64 // prompt, input, completion, output, prompt cached, input cached, total
	set    [7]bool
	bad    bool
}

const (
	promptTokens = iota
	inputTokens
	completionTokens
	outputTokens
	promptCached
	inputCached
	totalTokens
)

// usage reads a usage value; null or any other non-object is not found.
func (s *scanner) usage(i int) (int, Usage) {
	if s.at(i) != '{' {
		return s.value(i), Usage{}
	}
	var t tally
	i = s.each(i, func(i int, name, _ []byte) int {
		switch string(name) {
		case "prompt_tokens":
			return t.count(s, i, promptTokens)
		case "input_tokens":
			return t.count(s, i, inputTokens)
		case "completion_tokens":
			return t.count(s, i, completionTokens)
		case "output_tokens":
			return t.count(s, i, outputTokens)
		case "total_tokens":
			return t.count(s, i, totalTokens)
		case "prompt_tokens_details":
			return t.details(s, i, promptCached)
		case "input_tokens_details":
			return t.details(s, i, inputCached)
		}
		return s.value(i)
	})
	return i, t.usage()
}

// count reads the count at index k; a second one or an invalid one makes
// the usage bad.
func (t *tally) count(s *scanner, i, k int) int {
	i, n, ok, bad := s.count(i)
	if t.set[k] || bad {
		t.bad = true
	}
	if ok {
		t.counts[k], t.set[k] = n, true
	}
	return i
}

// details reads a *_tokens_details object for its cached_tokens.
func (t *tally) details(s *scanner, i, k int) int {
	if j, null := s.null(i); null {
		return j
	}
	if s.at(i) != '{' {
		t.bad = true
		return s.value(i)
	}
	return s.each(i, func(i int, name, _ []byte) int {
		if string(name) == "cached_tokens" {
			return t.count(s, i, k)
		}
		return s.value(i)
	})
}

// usage combines the counts: where both spellings are present the larger
// counts. It needs both the input count (prompt_tokens, input_tokens) and
// the output count (completion_tokens, output_tokens), or, as embeddings
// report no output, an input count with total_tokens equal to it: a
// usage missing either could make a request's input or output free.
func (t *tally) usage() Usage {
	c := &t.counts
	u := Usage{
		Input:       max(c[promptTokens], c[inputTokens]),
		Output:      max(c[completionTokens], c[outputTokens]),
		CachedInput: max(c[promptCached], c[inputCached]),
	}
	in := t.set[promptTokens] || t.set[inputTokens]
	out := t.set[completionTokens] || t.set[outputTokens] || t.set[totalTokens] && c[totalTokens] == u.Input
	if t.bad || !in || !out || u.CachedInput > u.Input {
		return Usage{}
	}
	u.Found = true
	return u
}
