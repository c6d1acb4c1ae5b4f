package openai

// Usage is the token use a response reports.
type Usage struct {
	Input       int64 // prompt_tokens, or input_tokens (Responses API)
	CachedInput int64 // cached_tokens of prompt_tokens_details or input_tokens_details; part of Input
	Output      int64 // completion_tokens, or output_tokens (Responses API)
	Found       bool  // a usage object with a token count was read, and every count in it is valid
}

// ParseUsage reads the usage of a whole JSON response body: the top-level
// "usage" (chat completions, completions, embeddings, the Responses API),
// else "response"."usage" (the payload of a Responses API stream event).
// An error is returned only for a body that is not a JSON object. A usage
// that is absent, null, duplicated, or holds a count that is not an
// integer from 0 to 1e12 is not found.
func ParseUsage(body []byte) (Usage, error) {
	s := scanner{b: body, body: "response"}
	s.ws()
	u, err := s.topUsage()
	if err != nil {
		return Usage{}, err
	}
	s.ws()
	if s.i != len(body) {
		return Usage{}, s.syntax("data after the top-level object")
	}
	return u, nil
}

// topUsage reads an object for its "usage" or "response"."usage".
func (s *scanner) topUsage() (Usage, error) {
	var top, nested Usage
	var usages, responses int
	err := s.each(func(name, _ []byte) error {
		var err error
		switch string(name) {
		case "usage":
			usages++
			top, err = s.usage()
		case "response":
			responses++
			nested, err = s.responseUsage()
		default:
			err = s.value()
		}
		return err
	})
	switch {
	case err != nil || usages > 1 || responses > 1:
		return Usage{}, err
	case top.Found:
		return top, nil
	}
	return nested, nil
}

// responseUsage reads the "usage" of a Responses API response object.
func (s *scanner) responseUsage() (Usage, error) {
	if s.peek() != '{' {
		return Usage{}, s.value()
	}
	var u Usage
	var usages int
	err := s.each(func(name, _ []byte) error {
		if string(name) != "usage" {
			return s.value()
		}
		usages++
		var err error
		u, err = s.usage()
		return err
	})
	if err != nil || usages > 1 {
		return Usage{}, err
	}
	return u, nil
}

// tally collects the counts of one usage object.
type tally struct {
	counts [6]int64 // prompt, input, completion, output, prompt cached, input cached
	set    [6]bool
	bad    bool
}

const (
	promptTokens = iota
	inputTokens
	completionTokens
	outputTokens
	promptCached
	inputCached
)

// usage reads a usage value; null or any other non-object is not found.
func (s *scanner) usage() (Usage, error) {
	if s.peek() != '{' {
		return Usage{}, s.value()
	}
	var t tally
	err := s.each(func(name, _ []byte) error {
		switch string(name) {
		case "prompt_tokens":
			return t.count(s, promptTokens)
		case "input_tokens":
			return t.count(s, inputTokens)
		case "completion_tokens":
			return t.count(s, completionTokens)
		case "output_tokens":
			return t.count(s, outputTokens)
		case "prompt_tokens_details":
			return t.details(s, promptCached)
		case "input_tokens_details":
			return t.details(s, inputCached)
		}
		return s.value()
	})
	if err != nil {
		return Usage{}, err
	}
	return t.usage(), nil
}

// count reads the count at index i; a second one or an invalid one makes
// the usage bad.
func (t *tally) count(s *scanner, i int) error {
	n, ok, bad, err := s.count()
	if t.set[i] || bad {
		t.bad = true
	}
	if ok {
		t.counts[i], t.set[i] = n, true
	}
	return err
}

// details reads a *_tokens_details object for its cached_tokens.
func (t *tally) details(s *scanner, i int) error {
	switch s.peek() {
	case 'n':
		return s.lit("null")
	case '{':
	default:
		t.bad = true
		return s.value()
	}
	return s.each(func(name, _ []byte) error {
		if string(name) == "cached_tokens" {
			return t.count(s, i)
		}
		return s.value()
	})
}

// usage combines the counts: where both spellings are present the larger
// counts.
func (t *tally) usage() Usage {
	c := &t.counts
	u := Usage{
		Input:       max(c[promptTokens], c[inputTokens]),
		Output:      max(c[completionTokens], c[outputTokens]),
		CachedInput: max(c[promptCached], c[inputCached]),
	}
	anyCount := t.set[promptTokens] || t.set[inputTokens] || t.set[completionTokens] || t.set[outputTokens]
	if t.bad || !anyCount || u.CachedInput > u.Input {
		return Usage{}
	}
	u.Found = true
	return u
}
