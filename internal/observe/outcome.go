package observe

import (
	"github.com/keygate/keygate/internal/openai"
	"github.com/keygate/keygate/internal/pricing"
	"github.com/keygate/keygate/internal/settle"
)

// Response is what a stream showed of a response.
type Response struct {
	Headers bool  // its headers arrived
	Status  int   // their :status; 0 if absent or unreadable
	Body    int64 // bytes of its body that arrived
	Ended   bool  // it arrived whole: headers with end of stream, a last body chunk, or trailers
	Usage   openai.Usage
}

// Outcome is how r settles its request (the rules are in the package doc).
func Outcome(r Response) settle.Outcome {
	switch {
	case !r.Headers, r.Status >= 400:
		return settle.Outcome{Failed: true}
	case r.Usage.Found:
		u := r.Usage
		return settle.Outcome{HasUsage: true, Usage: pricing.Usage{Input: u.Input, CachedInput: u.CachedInput, Output: u.Output}}
	case r.Body == 0 && !r.Ended:
		return settle.Outcome{Failed: true}
	}
	return settle.Outcome{}
}
