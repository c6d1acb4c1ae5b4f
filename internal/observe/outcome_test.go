package observe_test

import (
	"testing"

	"github.com/keygate/keygate/internal/observe"
	"github.com/keygate/keygate/internal/openai"
	"github.com/keygate/keygate/internal/pricing"
	"github.com/keygate/keygate/internal/settle"
)

func TestOutcome(t *testing.T) {
	usage := openai.Usage{Input: 10, CachedInput: 4, Output: 3, Found: true}
	settled := settle.Outcome{HasUsage: true, Usage: pricing.Usage{Input: 10, CachedInput: 4, Output: 3}}
	failed, estimate := settle.Outcome{Failed: true}, settle.Outcome{}
	for _, c := range []struct {
		name string
		r    observe.Response
		want settle.Outcome
	}{
		{"no response headers", observe.Response{}, failed},
		{"no response headers, usage somehow", observe.Response{Usage: usage, Body: 9, Ended: true}, failed},
		{"400", observe.Response{Headers: true, Status: 400, Body: 285, Ended: true}, failed},
		{"500 with usage", observe.Response{Headers: true, Status: 500, Body: 10, Ended: true, Usage: usage}, failed},
		{"503 from the proxy, no body", observe.Response{Headers: true, Status: 503, Ended: true}, failed},
		{"200 with usage", observe.Response{Headers: true, Status: 200, Body: 996, Ended: true, Usage: usage}, settled},
		{"usage, then cut", observe.Response{Headers: true, Status: 200, Body: 2070, Usage: usage}, settled},
		{"200 without usage", observe.Response{Headers: true, Status: 200, Body: 938, Ended: true}, estimate},
		{"cut after some output", observe.Response{Headers: true, Status: 200, Body: 100}, estimate},
		{"cut after the headers, before any body byte", observe.Response{Headers: true, Status: 200}, failed},
		{"an empty body, whole", observe.Response{Headers: true, Status: 200, Ended: true}, estimate},
		{"no status", observe.Response{Headers: true, Body: 5, Ended: true}, estimate},
		{"a redirect", observe.Response{Headers: true, Status: 307, Ended: true}, estimate},
		{"399", observe.Response{Headers: true, Status: 399, Body: 1, Ended: true}, estimate},
	} {
		if got := observe.Outcome(c.r); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
